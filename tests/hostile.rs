//! A fixed corpus of hostile requests, through the handler against the real
//! stand-ins: each gets a 4xx JSON answer with the right errorType, never a
//! 5xx or a panic. (Damage to the event itself, beyond its body, is
//! tests/events.rs's.)

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

/// A body sent through the HTTP API sample, as plain text or base64 bytes.
fn body_event(body: &[u8], content_type: Option<&str>) -> Value {
    let mut ev = with_caller(event("http-api.json"), &random_ip());
    match std::str::from_utf8(body) {
        Ok(text) => {
            ev["body"] = json!(text);
            ev["isBase64Encoded"] = json!(false);
        }
        Err(_) => {
            ev["body"] = json!(STANDARD.encode(body));
            ev["isBase64Encoded"] = json!(true);
        }
    }
    match content_type {
        Some(ct) => ev["headers"]["content-type"] = json!(ct),
        None => {
            ev["headers"]
                .as_object_mut()
                .unwrap()
                .remove("content-type");
        }
    }
    ev
}

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

#[tokio::test]
async fn hostile_bodies_get_the_right_4xx() {
    let env = Env::new().await;
    let app = env.app(&[("RATE_LIMIT_MAX", "1000")]);
    let big_pad = "A".repeat(6 * 1024 * 1024);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let long_id = "x".repeat(10 * 1024);
    let cases: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        (
            "invalid UTF-8",
            b"{\"challengeId\":\"\xff\xfe\"}".to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "invalid UTF-8, no content type",
            vec![0xc3, 0x28, 0xa0, 0xa1],
            None,
            "error-parameter-required",
        ),
        (
            "raw NUL bytes",
            b"{\"challengeId\":\"a\0b\"}".to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "escaped NUL",
            br#"{"challengeId":"a\u0000b"}"#.to_vec(),
            JSON,
            "error-parameter-required",
        ),
        ("only NULs", vec![0; 64], None, "error-parameter-required"),
        (
            "6 MB id",
            format!(r#"{{"challengeId":"{big_pad}"}}"#).into_bytes(),
            JSON,
            "error-parameter-required",
        ),
        (
            "6 MB padding around a short id",
            format!(r#"{{"pad":"{big_pad}","challengeId":"short"}}"#).into_bytes(),
            JSON,
            "error-challenge-not-found",
        ),
        (
            "deeply nested array",
            deep.clone().into_bytes(),
            JSON,
            "error-parameter-required",
        ),
        (
            "deeply nested beside the id (skipped without recursion)",
            format!(r#"{{"challengeId":"x","a":{deep}}}"#).into_bytes(),
            JSON,
            "error-challenge-not-found",
        ),
        (
            "duplicate keys",
            br#"{"challengeId":"a","challengeId":"b"}"#.to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "id as object",
            br#"{"challengeId":{"S":"x"}}"#.to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "id as array",
            br#"{"challengeId":["x"]}"#.to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "id as number",
            br#"{"challengeId":123456}"#.to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "id as bool",
            br#"{"challengeId":true}"#.to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "10 KB id",
            format!(r#"{{"challengeId":"{long_id}"}}"#).into_bytes(),
            JSON,
            "error-parameter-required",
        ),
        (
            "rate-limit key as id",
            br#"{"challengeId":"sendEmailCode#1.2.3.4#0"}"#.to_vec(),
            JSON,
            "error-challenge-not-found",
        ),
        (
            "user key shape as id",
            br#"{"challengeId":"demo-user"}"#.to_vec(),
            JSON,
            "error-challenge-not-found",
        ),
        (
            "RTL override and Arabic",
            "{\"challengeId\":\"\u{202e}\u{0645}\u{0631}\u{062d}\u{0628}\u{0627}\"}"
                .as_bytes()
                .to_vec(),
            JSON,
            "error-challenge-not-found",
        ),
        (
            "emoji and combining marks",
            "{\"challengeId\":\"🔑e\u{301}\u{200d}\"}"
                .as_bytes()
                .to_vec(),
            JSON,
            "error-challenge-not-found",
        ),
        (
            "lone surrogate escape",
            br#"{"challengeId":"\ud800"}"#.to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "bidi control only",
            "{\"challengeId\":\"\u{2066}\"}".as_bytes().to_vec(),
            JSON,
            "error-challenge-not-found",
        ),
        (
            "form with plus and percent",
            b"challengeId=a+b%2Bc%25d".to_vec(),
            FORM,
            "error-challenge-not-found",
        ),
        (
            "form with broken percent",
            b"challengeId=%ZZ%".to_vec(),
            FORM,
            "error-challenge-not-found",
        ),
        (
            "form with encoded NUL",
            b"challengeId=a%00b".to_vec(),
            FORM,
            "error-parameter-required",
        ),
        (
            "form with encoded invalid UTF-8",
            b"challengeId=%FF".to_vec(),
            FORM,
            "error-parameter-required",
        ),
        (
            "form key case",
            b"ChallengeId=x".to_vec(),
            FORM,
            "error-parameter-required",
        ),
        (
            "JSON in a form body",
            br#"{"challengeId":"x"}"#.to_vec(),
            FORM,
            "error-parameter-required",
        ),
        (
            "form body sent as JSON",
            b"challengeId=x".to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "JSON with trailing garbage",
            br#"{"challengeId":"x"} trailing"#.to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "JSON with BOM",
            b"\xef\xbb\xbf{\"challengeId\":\"x\"}".to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "form with BOM before another field",
            b"\xef\xbb\xbfx=1&challengeId=x".to_vec(),
            FORM,
            "error-parameter-required",
        ),
        (
            "form with BOM",
            b"\xef\xbb\xbfchallengeId=x".to_vec(),
            FORM,
            "error-parameter-required",
        ),
        (
            "huge number",
            b"{\"challengeId\":1e999999}".to_vec(),
            JSON,
            "error-parameter-required",
        ),
        (
            "XML",
            b"<challengeId>x</challengeId>".to_vec(),
            Some("application/xml"),
            "error-parameter-required",
        ),
    ];
    for (name, body, ct, expected) in cases {
        let a = call(&app, &body_event(&body, ct), env.now).await;
        assert!(a.status >= 400 && a.status < 500, "{name}: {a:?}");
        assert_eq!(a.error_type(), expected, "{name}");
        assert_eq!(a.header("content-type"), Some("application/json"), "{name}");
        assert_eq!(a.body["success"], json!(false), "{name}");
    }
}

#[tokio::test]
async fn damaged_events_that_still_parse_are_answered_in_json() {
    let env = Env::new().await;
    let app = env.app(&[("RATE_LIMIT_MAX", "1000")]);
    let (challenge, _, _) = env.email_challenge().await;
    let body = json!({"challengeId": challenge}).to_string();

    let mut no_headers = event("http-api.json");
    no_headers.as_object_mut().unwrap().remove("headers");
    no_headers["body"] = json!(body);

    let mut no_source_ip = event("http-api.json");
    no_source_ip["requestContext"]["http"]
        .as_object_mut()
        .unwrap()
        .remove("sourceIp");
    no_source_ip["body"] = json!("{}");

    let mut rest_no_identity = event("rest-api.json");
    rest_no_identity["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("identity");
    rest_no_identity["body"] = json!("{}");

    let mut alb_no_headers = event("alb.json");
    alb_no_headers.as_object_mut().unwrap().remove("headers");
    alb_no_headers["body"] = json!("{}");

    let mut null_body = event("function-url.json");
    null_body["body"] = Value::Null;

    for (name, ev, status, error_type) in [
        ("no headers at all", no_headers, 200, None),
        (
            "HTTP API without sourceIp",
            no_source_ip,
            400,
            Some("error-parameter-required"),
        ),
        (
            "REST without identity",
            rest_no_identity,
            400,
            Some("error-parameter-required"),
        ),
        (
            "ALB without headers",
            alb_no_headers,
            400,
            Some("error-parameter-required"),
        ),
        (
            "null body",
            null_body,
            400,
            Some("error-parameter-required"),
        ),
    ] {
        let a = call(&app, &ev, env.now).await;
        assert_eq!(a.status, status, "{name}: {a:?}");
        if let Some(t) = error_type {
            assert_eq!(a.error_type(), t, "{name}");
        }
        assert!(a.header("x-ratelimit-limit").is_some(), "{name}: counted");
    }
}

#[tokio::test]
async fn callers_without_an_address_share_one_unknown_bucket() {
    let env = Env::new().await;
    let app = env.app(&[("RATE_LIMIT_MAX", "1000")]);
    let mut ev = event("http-api-no-body.json");
    // A window no other test uses, so the shared bucket is ours alone here.
    let now = send_email_code::Timestamp::from_secs(env.now.secs() + 30 * 86_400);
    ev["requestContext"]["http"]["sourceIp"] = json!("not-an-ip");
    let before = call(&app, &ev, now).await;
    ev["requestContext"]["http"]
        .as_object_mut()
        .unwrap()
        .remove("sourceIp");
    let after = call(&app, &ev, now).await;
    let remaining = |a: &Answer| {
        a.header("x-ratelimit-remaining")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert_eq!(
        remaining(&before) - 1,
        remaining(&after),
        "same counter: unknown"
    );
}
