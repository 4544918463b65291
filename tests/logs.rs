//! What reaches the log: one line per request with its id, and never a code,
//! a code hash, the secret or an email address, with every crate (the AWS SDK
//! included) logging at DEBUG.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use common::*;
use lambda_http::RequestExt;
use send_email_code::App;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        lambda_http::tracing::subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}

fn text() -> String {
    String::from_utf8_lossy(&captured().0.lock().unwrap()).into_owned()
}

async fn call_with_id(app: &App, event: &serde_json::Value, request_id: &str, env: &Env) -> Answer {
    let mut context = lambda_http::Context::default();
    context.request_id = request_id.to_string();
    let req = request(event).with_lambda_context(context);
    answer(send_email_code::handle(app, req, env.now).await)
}

#[tokio::test]
async fn logs_name_each_request_and_hold_no_code_hash_secret_or_address() {
    captured();
    let env = Env::new().await;
    let app = env.app(&[]);
    let mut secrets: Vec<String> = vec![SECRET.to_string()];

    // Success: learn the code and hash this request produced.
    let (challenge, user, address) = env.email_challenge().await;
    let ev = post(&challenge);
    let ok = call_with_id(&app, &ev, "req-success-1", &env).await;
    assert_eq!(ok.status, 200);
    let code = code_in(&emails_to(&address)[0]);
    let hash = expected_hash(&challenge, &code);
    assert!(stored_codes(&env.challenge_item(&challenge).await)
        .values()
        .any(|e| e.code_hash == hash));
    secrets.extend([code.clone(), code.replace('-', ""), hash, address.clone()]);
    secrets.push(format!("unverified-{user}@example.test"));

    // A refusal, and an SES rejection whose AWS message quotes an address.
    let missing = post("nope");
    assert_eq!(
        call_with_id(&app, &missing, "req-refused-2", &env)
            .await
            .status,
        400
    );
    let rejected = mock!(aws_sdk_sesv2::Client::send_email).then_http_response(|| {
        let mut r = HttpResponse::new(
            400.try_into().unwrap(),
            r#"{"message":"Address blacklisted: victim@example.test"}"#.into(),
        );
        r.headers_mut()
            .insert("x-amzn-ErrorType", "MessageRejected");
        r
    });
    let ses = mock_client!(aws_sdk_sesv2, RuleMode::MatchAny, [&rejected]);
    let failing = App::with_clients(config(&[]), env.db.clone(), ses);
    let (challenge2, _, address2) = env.email_challenge().await;
    let ev2 = post(&challenge2);
    assert_eq!(
        call_with_id(&failing, &ev2, "req-failed-3", &env)
            .await
            .status,
        500
    );
    secrets.extend([address2, "victim@example.test".to_string()]);

    // The remaining paths: a resend (a second code and hash for the first
    // challenge), the per-challenge cap, a caller over its limit, a wrong
    // method, a user without a verified address, and SES unreachable.
    let capped = env.app(&[("MAX_CODES_PER_CHALLENGE", "2")]);
    assert_eq!(
        call_with_id(&capped, &post(&challenge), "req-resend", &env)
            .await
            .status,
        200
    );
    let mails = emails_to(&address);
    let resent = code_in(&mails[mails.len() - 1]);
    secrets.push(expected_hash(&challenge, &resent));
    secrets.push(resent);
    assert_eq!(
        call_with_id(&capped, &post(&challenge), "req-cap", &env)
            .await
            .status,
        429
    );
    let limited = with_caller(event("http-api-get.json"), &random_ip());
    for i in 0..6 {
        call_with_id(&app, &limited, &format!("req-limit-{i}"), &env).await;
    }
    let (unverified, hidden) = env
        .user(
            serde_json::json!({"emails": [{"address": "hidden@example.test", "verified": false}]}),
        )
        .await;
    let c3 = env.challenge(&unverified, "email", 600).await;
    assert_eq!(
        call_with_id(&app, &post(&c3), "req-unverified", &env)
            .await
            .status,
        400
    );
    secrets.extend([hidden, "hidden@example.test".to_string()]);
    let down = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&env.sdk)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let unreachable = App::with_clients(config(&[]), env.db.clone(), down);
    let (c4, _, address4) = env.email_challenge().await;
    assert_eq!(
        call_with_id(&unreachable, &post(&c4), "req-ses-down", &env)
            .await
            .status,
        503
    );
    secrets.push(address4);

    let logs = text();
    assert!(
        logs.contains("aws_smithy_runtime"),
        "the SDK's own DEBUG lines are part of the check"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "log leaks {secret:?}:\n{logs}"
        );
    }
    for (id, outcome) in [
        ("req-success-1", "sent"),
        ("req-refused-2", "refused"),
        ("req-failed-3", "failed"),
    ] {
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(id) && l.contains("outcome"))
            .collect();
        assert_eq!(lines.len(), 1, "one summary line for {id}:\n{logs}");
        assert!(
            lines[0].contains(&format!("outcome=\"{outcome}\""))
                || lines[0].contains(&format!("outcome={outcome}")),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("duration_ms"), "{}", lines[0]);
    }
    let failed = logs
        .lines()
        .find(|l| l.contains("req-failed-3") && l.contains("outcome"))
        .unwrap();
    assert!(
        failed.contains("MessageRejected") && failed.contains("error-internal"),
        "{failed}"
    );
}
