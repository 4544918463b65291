//! Property tests over the two parsers that see attacker-controlled input:
//! the body (challengeId) and the caller identity. Whatever arrives, they
//! must not panic, must accept exactly the valid ids, unchanged, and must
//! only ever yield a parseable address or the shared `unknown` caller.
//! Cases per property: PROPTEST_CASES (proptest's default is 256;
//! scripts/test.sh runs 10,000). Failing cases are saved to
//! proptest-regressions/properties.txt, kept in the repository, and replayed
//! first on every run.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv6Addr};

use lambda_http::http::{self, header::CONTENT_TYPE};
use lambda_http::{Body, Request};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use send_email_code::domain::caller::CallerIp;
use send_email_code::domain::challenge::MAX_CHALLENGE_ID_BYTES;
use send_email_code::domain::error::ApiError;
use send_email_code::http::caller::identify;
use send_email_code::http::request::challenge_id;
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
    fn a_json_body_is_valid_exactly_when_it_is_one_utf8_object_without_lone_surrogates(
        prefix in prop_oneof![Just(""), Just(" \n"), Just("\u{feff}")],
        shape in 0u8..5,
        id in prop_oneof![Just("abc".to_string()), "[a-f0-9]{1,20}", Just(" ".to_string())],
        extras in proptest::collection::vec(
            ("[a-z]{1,6}", prop_oneof![
                Just(r#""plain""#), Just(r#""\ud800""#), Just(r#""\udc00x""#),
                Just(r#""\ud83d\ude00""#), Just(r#""\\ud800""#), Just(r#""\ud800\u0041""#),
                Just(r#""é""#), Just("12.5"), Just("[true,null]"), Just(r#"{"k":"\uDBFF"}"#),
            ]),
            0..4,
        ),
        corrupt in proptest::option::of((any::<prop::sample::Index>(), 0x80u8..=0xff)),
    ) {
        let members: Vec<String> = std::iter::once(format!(r#""challengeId":{}"#, json!(id)))
            .chain(extras.iter().map(|(k, v)| format!(r#""x{k}":{v}"#)))
            .collect();
        let object = format!("{{{}}}", members.join(","));
        let text = match shape {
            0 | 1 => object,
            2 => format!("[{object}]"),
            3 => format!("[{}]", json!(id)),
            _ => json!(id).to_string(),
        };
        let mut bytes = format!("{prefix}{text}").into_bytes();
        if let Some((at, byte)) = corrupt {
            bytes.insert(at.index(bytes.len() + 1), byte);
        }
        // The oracle: a full parse into serde_json's Value decodes every
        // string (so it refuses lone surrogates); the rule asks for an object.
        let expected = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| v.get("challengeId").and_then(|i| i.as_str()).map(String::from).filter(|_| v.is_object()))
            .filter(|i| is_valid(i));
        let result = challenge_id(&post(None, Body::Binary(bytes))).map(|i| i.as_str().to_string());
        prop_assert_eq!(result.ok(), expected);
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
        match address(identify(&req, 1, 128)) {
            Some(ip) => {
                let expected = raw.trim().parse::<IpAddr>().map(|p| p.to_canonical());
                prop_assert_eq!(Ok(ip), expected);
            }
            None => prop_assert!(raw.trim().parse::<IpAddr>().is_err()),
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
        prop_assert_eq!(address(identify(&req, hops, 128)), expected);
    }

    #[test]
    fn ipv6_callers_share_a_key_exactly_when_their_prefix_bits_agree(
        a in any::<u128>(),
        b in any::<u128>(),
        shared in 0u32..=128,
        prefix in 48u8..=128,
    ) {
        // b keeps a's first `shared` bits and takes the rest from itself.
        let keep = u128::MAX.checked_shl(128 - shared).unwrap_or(0);
        let b = (a & keep) | (b & !keep);
        let (ip_a, ip_b) = (Ipv6Addr::from(a), Ipv6Addr::from(b));
        prop_assume!(ip_a.to_ipv4_mapped().is_none() && ip_b.to_ipv4_mapped().is_none());
        let key_a = CallerIp::parse(Some(&ip_a.to_string()), prefix).to_string();
        let key_b = CallerIp::parse(Some(&ip_b.to_string()), prefix).to_string();
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        prop_assert_eq!(key_a == key_b, a & mask == b & mask);
        if prefix == 128 {
            prop_assert_eq!(key_a, ip_a.to_string());
        } else {
            let (network, bits) = key_a.split_once('/').expect("network/prefix");
            prop_assert_eq!(bits, prefix.to_string());
            let network: Ipv6Addr = network.parse().expect("an IPv6 network");
            prop_assert_eq!(u128::from(network), a & mask, "host bits cleared");
            prop_assert_eq!(network.to_string(), network.to_string().to_lowercase());
        }
    }
}

/// The address of a caller keyed at prefix 128 (`None`: the unknown caller).
fn address(caller: CallerIp) -> Option<IpAddr> {
    match caller {
        CallerIp::V4(ip) => Some(IpAddr::V4(ip)),
        CallerIp::V6 {
            network,
            prefix: 128,
        } => Some(IpAddr::V6(network)),
        CallerIp::V6 { .. } | CallerIp::Unknown => None,
    }
}
