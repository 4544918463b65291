//! What the function asks SES to send, checked on the SendEmail request
//! itself: the SES stand-in does not keep configuration sets or tags, so a
//! mocked SES client records the input (DynamoDB stays the real stand-in).

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use aws_sdk_sesv2::operation::send_email::{SendEmailInput, SendEmailOutput};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use common::*;
use send_email_code::App;

/// Sends one code through an app whose SES client records the request.
async fn sent_input(overrides: &[(&str, &str)]) -> (SendEmailInput, String) {
    let env = Env::new().await;
    let (challenge, _user, address) = env.email_challenge().await;
    let seen: Arc<Mutex<Option<SendEmailInput>>> = Arc::default();
    let record = seen.clone();
    let rule = mock!(aws_sdk_sesv2::Client::send_email)
        .match_requests(move |input| {
            *record.lock().unwrap() = Some(input.clone());
            true
        })
        .then_output(|| SendEmailOutput::builder().message_id("m-1").build());
    let ses = mock_client!(aws_sdk_sesv2, RuleMode::MatchAny, [&rule]);
    let app = App::with_clients(config(overrides), env.db.clone(), ses);
    assert_eq!(call(&app, &post(&challenge), env.now).await.status, 200);
    assert_eq!(rule.num_calls(), 1, "one message per request");
    let input = seen.lock().unwrap().take().expect("SendEmail was called");
    (input, address)
}

#[tokio::test]
async fn message_has_sender_recipient_purpose_tag_and_utf8_text_and_html() {
    let (input, address) = sent_input(&[]).await;
    assert_eq!(
        input.from_email_address(),
        Some("Rocket.Chat <no-reply@chat.example.test>")
    );
    let to = input
        .destination()
        .map(|d| d.to_addresses().to_vec())
        .unwrap_or_default();
    assert_eq!(to, [address]);
    let tags: Vec<(&str, &str)> = input
        .email_tags()
        .iter()
        .map(|t| (t.name(), t.value()))
        .collect();
    assert_eq!(tags, [("purpose", "two-factor-email-code")]);
    assert_eq!(
        input.configuration_set_name(),
        None,
        "no configuration set unless configured"
    );
    let simple = input
        .content()
        .and_then(|c| c.simple())
        .expect("simple content");
    let body = simple.body().expect("body");
    for part in [
        simple.subject().expect("subject"),
        body.text().expect("text part"),
        body.html().expect("html part"),
    ] {
        assert_eq!(part.charset(), Some("UTF-8"));
    }
    let text = body.text().unwrap().data();
    let html = body.html().unwrap().data();
    let code = find_code(text).expect("code in the text part");
    assert!(html.contains(&code), "same code in the HTML part");
    assert!(
        !simple.subject().expect("subject").data().contains(&code),
        "code kept out of the subject"
    );
}

#[tokio::test]
async fn configured_ses_configuration_set_is_used() {
    let (input, _) = sent_input(&[("SES_CONFIGURATION_SET", "two-factor-mail")]).await;
    assert_eq!(input.configuration_set_name(), Some("two-factor-mail"));
}
