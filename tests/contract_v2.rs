//! The behaviours contract versions 2 and 3 added or changed, one test
//! each, through the handler from events/-style requests against the
//! stand-ins: whole-body validation, fractional times, reserve → send →
//! commit, and each code stored under its SES message id.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use send_email_code::{App, Timestamp};
use serde_json::json;
use tokio::task::JoinSet;

/// The HTTP API sample carrying exactly these body bytes (base64, as API
/// Gateway delivers a body it cannot pass as text).
fn raw_body(bytes: &[u8]) -> serde_json::Value {
    use base64::Engine;
    let mut ev = with_caller(event("http-api.json"), &random_ip());
    ev["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    ev["isBase64Encoded"] = json!(true);
    ev
}

/// Each body, sent as is, gets the 400 for an invalid body.
async fn assert_each_parameter_required(app: &App, bodies: [Vec<u8>; 3], now: Timestamp) {
    for body in bodies {
        let a = call(app, &raw_body(&body), now).await;
        assert_error(
            &a,
            400,
            "error-parameter-required",
            "challengeId is required",
        );
    }
}

#[tokio::test]
async fn a_top_level_array_holding_a_real_id_is_refused_and_nothing_is_sent() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let app = env.app(&[]);
    let bodies = [
        format!(r#"["{challenge}"]"#),
        format!(r#"[{{"challengeId":"{challenge}"}}]"#),
        format!(r#""{challenge}""#),
    ];
    assert_each_parameter_required(&app, bodies.map(String::into_bytes), env.now).await;
    assert!(emails_to(&address).is_empty());
    assert!(!env
        .challenge_item(&challenge)
        .await
        .contains_key("codesSent"));
}

#[tokio::test]
async fn invalid_utf8_or_a_lone_surrogate_in_an_ignored_property_is_refused() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let app = env.app(&[]);
    let mut surrogate = format!(r#"{{"challengeId":"{challenge}","note":""#).into_bytes();
    surrogate.extend_from_slice(b"\xed\xa0\x80\"}");
    let escaped = format!(r#"{{"challengeId":"{challenge}","note":"\ud800"}}"#);
    let bom = format!("\u{feff}{{\"challengeId\":\"{challenge}\"}}");
    let bodies = [surrogate, escaped.into_bytes(), bom.into_bytes()];
    assert_each_parameter_required(&app, bodies, env.now).await;
    assert!(emails_to(&address).is_empty());
    let fine = format!(r#"{{"challengeId":"{challenge}","note":"\ud83d\ude00 ok"}}"#);
    let a = call(&app, &raw_body(fine.as_bytes()), env.now).await;
    assert_eq!(a.status, 200, "a valid pair is fine: {a:?}");
}

#[tokio::test]
async fn a_fractional_expire_at_from_a_javascript_login_flow_works() {
    let env = Env::new().await;
    let (user, address) = env.user(json!({})).await;
    let id = unique("ch-js-");
    // Date.now() / 1000 + 900, as a JavaScript login flow writes it.
    let expire = env.now.millis() as f64 / 1000.0 + 900.123;
    env.put(
        &tables().challenges,
        item(json!({"challengeId": id, "userId": user, "method": "email",
                    "createdAt": env.now.millis() as f64 / 1000.0, "expireAt": expire})),
    )
    .await;
    let app = env.app(&[("CODE_TTL_SECONDS", "3600")]);
    let a = call(&app, &post(&id), env.now).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(emails_to(&address).len(), 1);
    let stored = env.challenge_item(&id).await;
    // Capped by the challenge, written whole.
    assert_stored(
        &stored,
        &id,
        &emails_to(&address)[0],
        env.now.secs(),
        expire.floor() as i64,
    );
    assert_eq!(n(&stored, "lastCodeSentAt"), Some(env.now.secs()));

    // Past its fractional end, to the millisecond: expired.
    let end = Timestamp::from_millis((expire * 1000.0).ceil() as i64);
    let a = call(&app, &post(&id), end).await;
    assert_error(&a, 400, "error-challenge-expired", "challenge expired");
    let just_before = Timestamp::from_millis(end.millis() - 2);
    let a = call(&app, &post(&id), just_before).await;
    assert_eq!(a.status, 200, "{a:?}");
}

#[tokio::test]
async fn the_commit_stores_ses_message_id_and_the_code_the_user_received() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let (response, trace) =
        send_email_code::handle_traced(&env.app(&[]), request(&post(&challenge)), env.now).await;
    assert_eq!(response.status(), 200);
    let mail = emails_to(&address);
    assert_eq!(mail.len(), 1);
    let item = env.challenge_item(&challenge).await;
    assert_eq!(
        trace.message_id.as_deref(),
        mail[0]["messageId"].as_str(),
        "SES's MessageId"
    );
    assert_stored(
        &item,
        &challenge,
        &mail[0],
        env.now.secs(),
        env.now.secs() + 600,
    );
    assert_eq!(stored_codes(&item).len(), 1);
}

/// Contract v3: a resend adds an entry and keeps the first, so the code of
/// the email that arrives last still works, whichever email it is.
#[tokio::test]
async fn after_a_resend_both_codes_are_stored_each_under_its_message_id() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let app = env.app(&[]);
    let later = Timestamp::from_secs(env.now.secs() + 40);
    for now in [env.now, later] {
        assert_eq!(call(&app, &post(&challenge), now).await.status, 200);
    }
    let mail = emails_to(&address);
    assert_eq!(mail.len(), 2);
    assert_ne!(
        code_in(&mail[0]),
        code_in(&mail[1]),
        "a fresh code each time"
    );
    let item = env.challenge_item(&challenge).await;
    assert_eq!(stored_codes(&item).len(), 2);
    assert_stored(
        &item,
        &challenge,
        &mail[0],
        env.now.secs(),
        env.now.secs() + 600,
    );
    assert_stored(
        &item,
        &challenge,
        &mail[1],
        later.secs(),
        later.secs() + 600,
    );
    assert_eq!(n(&item, "lastCodeSentAt"), Some(later.secs()));
}

/// The case fixed examples never caught: a delivered code P, then several
/// resends at once while SES refuses. Every resend answers 503, and P is
/// still the only stored code, with the cap unspent.
#[tokio::test]
async fn concurrent_failed_resends_leave_the_delivered_code_in_place() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let first = call(&env.app(&[]), &post(&challenge), env.now).await;
    assert_eq!(first.status, 200);
    let delivered = code_in(&emails_to(&address)[0]);
    let before = env.challenge_item(&challenge).await;

    let (_proxy, refusing) = refusing_ses(&env).await;
    let app = Arc::new(App::with_clients(config(&[]), env.db.clone(), refusing));
    let mut resends = JoinSet::new();
    for _ in 0..4 {
        let (app, ev, now) = (app.clone(), post(&challenge), env.now);
        resends.spawn(async move { call(&app, &ev, now).await });
    }
    for a in resends.join_all().await {
        assert_eq!(a.status, 500, "MessageRejected is not retryable: {a:?}");
        assert_eq!(a.error_type(), "error-internal");
    }
    assert_eq!(emails_to(&address).len(), 1, "nothing else went out");
    let after = env.challenge_item(&challenge).await;
    assert_eq!(stored_codes(&after), stored_codes(&before));
    assert_eq!(
        n(&after, "codesSent"),
        n(&before, "codesSent"),
        "all given back"
    );
    let entry = stored_codes(&after).into_values().next().unwrap();
    assert_eq!(entry.code_hash, expected_hash(&challenge, &delivered));
}
