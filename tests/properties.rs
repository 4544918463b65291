//! Property tests over the two parsers that see attacker-controlled input:
//! the body (challengeId) and the caller identity. Whatever arrives, they
//! must not panic, must accept exactly the valid ids, unchanged, and must
//! only ever yield a parseable address or the shared `unknown` caller.
//! Cases per property: PROPTEST_CASES (proptest's default is 256;
//! scripts/test.sh runs 10,000). Failing cases are saved to
//! proptest-regressions/properties.txt, kept in the repository, and replayed
//! first on every run.

use std::net::IpAddr;

use lambda_http::http::{self, header::CONTENT_TYPE};
use lambda_http::{Body, Request};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use send_email_code::caller::{identify, CallerIp};
use send_email_code::error::ApiError;
use send_email_code::request::{challenge_id, MAX_CHALLENGE_ID_BYTES};
use serde_json::json;

fn post(content_type: Option<&str>, body: Body) -> Request {
    let mut b = http::Request::builder().method("POST").uri("/");
    if let Some(ct) = content_type {
        b = b.header(CONTENT_TYPE, ct);
    }
    b.body(body).unwrap()
}

/// The contract's validity rule, written independently of the code under test.
fn is_valid(id: &str) -> bool {
    !id.chars().all(char::is_whitespace)
        && id.len() <= MAX_CHALLENGE_ID_BYTES
        && !id.chars().any(|c| c.is_control())
}

fn content_types() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_string())),
        Just(Some("application/x-www-form-urlencoded".to_string())),
        Just(Some(
            "APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8".to_string()
        )),
        Just(Some("text/plain".to_string())),
        "[ -~]{0,40}".prop_map(Some),
    ]
}

fn sample(name: &str) -> serde_json::Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_body_either_yields_a_valid_id_or_parameter_required(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ct in content_types(),
    ) {
        let req = post(ct.as_deref(), Body::Binary(bytes));
        match challenge_id(&req) {
            Ok(id) => prop_assert!(is_valid(id.as_str())),
            Err(e) => prop_assert_eq!(e, ApiError::ParameterRequired),
        }
    }

    #[test]
    fn json_ids_are_accepted_exactly_when_valid_and_kept_unchanged(
        id in prop_oneof![".{0,300}", "[ \\t\\n\\u{a0}\\u{2003}]{0,5}", "[a-f0-9]{1,300}"],
        noise in proptest::collection::btree_map("[a-zA-Z]{1,8}", any::<i64>(), 0..4),
    ) {
        let mut body = json!({ "challengeId": id });
        for (k, v) in &noise {
            if k != "challengeId" {
                body[k] = json!(v);
            }
        }
        let result = challenge_id(&post(Some("application/json"), Body::from(body.to_string())));
        if is_valid(&id) {
            prop_assert_eq!(result.map(|i| i.as_str().to_string()), Ok(id));
        } else {
            prop_assert_eq!(result, Err(ApiError::ParameterRequired));
        }
    }

    #[test]
    fn form_ids_survive_url_encoding_unchanged(id in ".{1,200}") {
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("other", "x+y")
            .append_pair("challengeId", &id)
            .finish();
        let req = post(Some("application/x-www-form-urlencoded"), Body::from(encoded));
        let result = challenge_id(&req);
        if is_valid(&id) {
            prop_assert_eq!(result.map(|i| i.as_str().to_string()), Ok(id));
        } else {
            prop_assert_eq!(result, Err(ApiError::ParameterRequired));
        }
    }

    #[test]
    fn any_source_ip_string_gives_a_canonical_ip_or_unknown(
        raw in prop_oneof![
            any::<IpAddr>().prop_map(|ip| ip.to_string()),
            "[0-9a-fA-F:.%#\\[\\] ]{0,45}",
            ".{0,60}",
        ],
        v2 in any::<bool>(),
    ) {
        let mut event = sample(if v2 { "http-api.json" } else { "rest-api.json" });
        if v2 {
            event["requestContext"]["http"]["sourceIp"] = json!(raw);
        } else {
            event["requestContext"]["identity"]["sourceIp"] = json!(raw);
        }
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        match identify(&req, 1) {
            CallerIp::Ip(ip) => {
                let expected = raw.trim().parse::<IpAddr>().map(|p| p.to_canonical());
                prop_assert_eq!(Ok(ip), expected);
            }
            CallerIp::Unknown => prop_assert!(raw.trim().parse::<IpAddr>().is_err()),
        }
    }

    #[test]
    fn alb_caller_is_the_trusted_hop_or_unknown(
        chain in proptest::collection::vec(prop_oneof![any::<IpAddr>().prop_map(|i| i.to_string()), "[ -+\\--~]{0,20}"], 0..6),
        hops in 1u32..8,
    ) {
        let header = chain.join(", ");
        let mut event = sample("alb.json");
        event["headers"]["x-forwarded-for"] = json!(header);
        let Ok(req) = lambda_http::request::from_str(&event.to_string()) else {
            // A header value http cannot carry never reaches the handler.
            return Ok(());
        };
        let entries: Vec<&str> = header.split(',').map(str::trim).collect();
        let index = entries.len().saturating_sub(hops as usize);
        let expected = entries.get(index).and_then(|e| e.parse::<IpAddr>().ok()).map(|ip| ip.to_canonical());
        match identify(&req, hops) {
            CallerIp::Ip(ip) => prop_assert_eq!(Some(ip), expected),
            CallerIp::Unknown => prop_assert_eq!(None, expected),
        }
    }
}
