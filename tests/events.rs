//! Events of any shape, through the real `bootstrap` under the Runtime API
//! emulator: every invocation is answered with a JSON response (never an
//! invocation error, a panic or a lost process), and a body marked base64
//! that is not base64 is an unreadable body, counted like any request.
//! The property test runs PROPTEST_CASES cases, capped at `MAX_CASES`: each
//! case is a real invocation.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use common::runtime_api::Invocation;
use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

const LIMIT: Duration = Duration::from_secs(10);

/// Each case is a real invocation: PROPTEST_CASES is honoured up to this.
const MAX_CASES: u32 = 300;

/// Every sample event, as the property test's starting points.
const SAMPLES: [&str; 9] = [
    "alb.json",
    "function-url.json",
    "http-api-base64-no-content-type.json",
    "http-api-form.json",
    "http-api-get.json",
    "http-api-invalid-json.json",
    "http-api-no-body.json",
    "http-api.json",
    "rest-api.json",
];

/// The function as Lambda runs it.
struct Function(Running);

impl Function {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let _env = Env::new().await;
        Self(
            Running::start(LIMIT, |command| {
                command.envs(extra.iter().copied());
            })
            .await,
        )
    }

    fn alive(&mut self) -> bool {
        self.0.alive()
    }

    async fn invoke(&self, event: Value) -> Option<Invocation> {
        self.0.api.invoke(event, LIMIT).await
    }

    fn output(&self) -> String {
        self.0.output()
    }
}

/// What every answer must be: a response (not an error report) whose status
/// is 2xx, 4xx or 5xx and whose body is a JSON object with a boolean
/// `success`. Returns the status and the body.
fn check_answer(inv: &Invocation) -> Result<(u64, Value), String> {
    if inv.is_error {
        return Err(format!("an invocation error: {}", inv.response));
    }
    let status = inv.response["statusCode"]
        .as_u64()
        .ok_or_else(|| format!("no statusCode: {}", inv.response))?;
    if !matches!(status, 200..=299 | 400..=599) {
        return Err(format!("status {status}"));
    }
    let raw = inv.response["body"]
        .as_str()
        .ok_or_else(|| format!("no body: {}", inv.response))?;
    let text = if inv.response["isBase64Encoded"] == json!(true) {
        String::from_utf8(STANDARD.decode(raw).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?
    } else {
        raw.to_string()
    };
    let body: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if !body["success"].is_boolean() {
        return Err(format!("no boolean success: {text}"));
    }
    Ok((status, body))
}

/// The last lines the function wrote.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The lines from the first panic message on.
fn around_panic(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("panicked"))
        .unwrap_or(0);
    lines[first..(first + 6).min(lines.len())].join("\n")
}

// ---- Generators -------------------------------------------------------

/// Strings that break URIs, JSON expectations and base64 alike.
fn wild_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[ -~]{0,24}",
        "[a-zA-Z0-9.:@/ \\[\\]%#?&=+_~-]{0,24}",
        "[A-Za-z0-9+/=_ \n-]{0,24}",
        Just(String::new()),
        Just(" ".to_string()),
        Just("\u{feff}".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        wild_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(wild_string(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Hosts and schemes: spaces, unicode, ports, user info, brackets.
fn host_like() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "[a-z0-9.-]{1,20}".prop_map(Value::from),
        "[a-z0-9 .:@/\\[\\]%#?-]{0,20}".prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(json!("exa mple.com")),
        Just(json!("host:99999")),
        Just(json!("[::1")),
        Just(json!("bücher.example")),
        Just(json!("a".repeat(300))),
    ];
    prop_oneof![8 => text, 1 => json_value()]
}

/// Paths and query strings, including one longer than any URI may be.
fn path_like() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "/[a-zA-Z0-9./_-]{0,20}".prop_map(Value::from),
        "[ -~]{0,20}".prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(json!(":99999")),
        Just(json!("@")),
        Just(json!("a b")),
        Just(json!(format!("/{}", "a".repeat(70_000)))),
    ];
    prop_oneof![8 => text, 1 => json_value()]
}

/// A body with its `isBase64Encoded`: valid base64 of random bytes (padded
/// or not), base64 with a damaged character, random text, other JSON.
fn body_pair() -> impl Strategy<Value = (Value, Value)> {
    let flag = prop_oneof![
        6 => Just(json!(true)),
        2 => Just(json!(false)),
        1 => json_value(),
    ];
    let bytes = || prop::collection::vec(any::<u8>(), 0..40);
    let body = prop_oneof![
        bytes().prop_map(|b| json!(STANDARD.encode(b))),
        bytes().prop_map(|b| json!(STANDARD_NO_PAD.encode(b))),
        (bytes(), any::<Index>(), "[-_= \n.!\u{e9}]").prop_map(|(b, at, bad)| {
            let mut s = STANDARD.encode(b);
            let i = if s.is_empty() { 0 } else { at.index(s.len()) };
            s.insert_str(i, &bad);
            json!(s)
        }),
        wild_string().prop_map(Value::from),
        Just(Value::Null),
        json_value(),
    ];
    (flag, body)
}

/// In a `Set`, the field holding the path (or the query) of this kind of event.
const PATH: &str = "@path";
const QUERY: &str = "@query";

/// One change to an event.
#[derive(Debug, Clone)]
enum Edit {
    /// Removes the field (or element) at one of the event's paths.
    Delete(Index),
    /// Replaces the value at one of the event's paths.
    Replace(Index, Value),
    /// Sets a field a front door reads, creating its parents.
    Set(&'static str, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::Delete),
        1 => (any::<Index>(), json_value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => (any::<Index>(), wild_string()).prop_map(|(i, s)| Edit::Replace(i, json!(s))),
        3 => (prop::sample::select(&[
            "/headers/host",
            "/headers/Host",
            "/multiValueHeaders/Host",
            "/requestContext/domainName",
        ][..]), host_like()).prop_map(|(p, v)| Edit::Set(p, v)),
        2 => (prop::sample::select(&[
            "/headers/x-forwarded-proto",
            "/headers/X-Forwarded-Proto",
            "/headers/content-type",
            "/headers/x-forwarded-for",
            "/requestContext/http/sourceIp",
            "/requestContext/identity/sourceIp",
            "/requestContext/http/method",
            "/httpMethod",
        ][..]), host_like()).prop_map(|(p, v)| Edit::Set(p, v)),
        3 => (prop::sample::select(&[
            PATH,
            QUERY,
            "/requestContext/stage",
            "/queryStringParameters",
            "/multiValueQueryStringParameters",
            "/cookies",
        ][..]), path_like()).prop_map(|(p, v)| Edit::Set(p, v)),
        1 => (wild_string(), wild_string()).prop_map(|(k, v)| {
            // A header of any name and value: invalid ones make the event
            // unreadable as any front door's.
            Edit::Set("/headers", json!({ (k): v }))
        }),
    ]
}

/// Every JSON pointer inside `value` (not the root).
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{at}/{}", escape(k));
                out.push(p.clone());
                pointers(v, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, &p, out);
            }
        }
        _ => {}
    }
}

fn split_pointer(pointer: &str) -> (&str, String) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    (parent, last.replace("~1", "/").replace("~0", "~"))
}

fn apply(event: &mut Value, edit: &Edit) {
    let mut all = Vec::new();
    pointers(event, "", &mut all);
    match edit {
        Edit::Delete(i) if !all.is_empty() => {
            let (parent, key) = split_pointer(&all[i.index(all.len())]);
            match event.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&key);
                }
                Some(Value::Array(items)) => {
                    items.remove(key.parse::<usize>().unwrap());
                }
                _ => {}
            }
        }
        Edit::Replace(i, v) if !all.is_empty() => {
            if let Some(slot) = event.pointer_mut(&all[i.index(all.len())]) {
                *slot = v.clone();
            }
        }
        Edit::Set(pointer, v) => {
            let http_api = event.get("rawPath").is_some();
            let pointer = match (*pointer, http_api) {
                (PATH, true) => "/rawPath",
                (PATH, false) => "/path",
                (QUERY, true) => "/rawQueryString",
                (QUERY, false) => "/queryStringParameters",
                (other, _) => other,
            };
            let mut slot = &mut *event;
            for part in pointer.split('/').skip(1) {
                let Value::Object(map) = slot else { return };
                slot = map
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            match (slot, v) {
                // A header map gains the entry; anything else is replaced.
                (Value::Object(map), Value::Object(add)) if pointer == "/headers" => {
                    map.extend(add.clone());
                }
                (slot, v) => *slot = v.clone(),
            }
        }
        _ => {}
    }
}

/// A sample event damaged by a few edits, with a body of any kind.
fn damaged_sample() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&SAMPLES[..]),
        prop::option::weighted(0.6, body_pair()),
        prop::collection::vec(edit(), 0..3),
    )
        .prop_map(|(name, body, edits)| {
            let mut ev = with_caller(event(name), &random_ip());
            if let Some((flag, body)) = body {
                ev["isBase64Encoded"] = flag;
                ev["body"] = body;
            }
            for e in &edits {
                apply(&mut ev, e);
            }
            ev
        })
}

fn any_event() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => json_value(),
        5 => damaged_sample(),
    ]
}

/// Every malformed event gets an answer: never an invocation error, never a
/// lost process, and no panic on the way (not even a caught one).
#[test]
fn malformed_events_always_get_a_json_answer() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let function = RefCell::new(rt.block_on(Function::start(&[("RATE_LIMIT_MAX", "1000000")])));
    let config = ProptestConfig {
        cases: ProptestConfig::default().cases.min(MAX_CASES),
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&any_event(), |event| {
        let mut function = function.borrow_mut();
        if !function.alive() {
            return Err(TestCaseError::fail("the process is gone"));
        }
        let inv = rt
            .block_on(function.invoke(event))
            .ok_or_else(|| TestCaseError::fail("no answer: the process hung or died"))?;
        check_answer(&inv).map_err(TestCaseError::fail)?;
        prop_assert!(function.alive(), "the process is gone");
        Ok(())
    });
    let mut function = function.into_inner();
    let output = function.output();
    if let Err(err) = result {
        panic!(
            "{err}\n--- the function's last lines ---\n{}",
            tail(&output)
        );
    }
    assert!(function.alive(), "the process is gone");
    assert!(
        !output.contains("panicked"),
        "a panic was caught:\n{}",
        around_panic(&output)
    );
}

// ---- Named cases --------------------------------------------------------

fn header<'a>(inv: &'a Invocation, name: &str) -> &'a str {
    inv.response["headers"][name].as_str().unwrap_or("")
}

/// `event` with a body marked base64.
fn marked_base64(mut event: Value, body: &str) -> Value {
    event["body"] = json!(body);
    event["isBase64Encoded"] = json!(true);
    event
}

/// Through the runtime: a body marked base64 that is not base64 is an
/// unreadable body (400), counted against its caller like any request,
/// until the caller's 429; a GET is still a 405; and base64 without its
/// padding is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_base64_is_a_counted_400_until_the_callers_429() {
    let function = Function::start(&[("RATE_LIMIT_MAX", "3")]).await;
    let caller = random_ip();
    let mut remaining = Vec::new();
    for body in ["eyJj-_", "QQ==QQ==", "Q"] {
        for sample in ["http-api.json", "rest-api.json", "alb.json"] {
            let ev = marked_base64(with_caller(event(sample), &random_ip()), body);
            let inv = function.invoke(ev).await.expect("an answer");
            let (status, answer) = check_answer(&inv).unwrap();
            assert_eq!(status, 400, "{sample} {body}");
            assert_eq!(answer["errorType"], "error-parameter-required");
        }
        let ev = marked_base64(with_caller(event("http-api.json"), &caller), body);
        let inv = function.invoke(ev).await.expect("an answer");
        let (status, answer) = check_answer(&inv).unwrap();
        assert_eq!(
            (status, answer["errorType"].as_str()),
            (400, Some("error-parameter-required"))
        );
        remaining.push(header(&inv, "x-ratelimit-remaining").to_string());
    }
    assert_eq!(remaining, ["2", "1", "0"], "each one counted");
    let ev = marked_base64(with_caller(event("http-api.json"), &caller), "Q");
    let inv = function.invoke(ev).await.expect("an answer");
    let (status, answer) = check_answer(&inv).unwrap();
    assert_eq!(
        (status, answer["errorType"].as_str()),
        (429, Some("error-too-many-requests"))
    );

    let get = marked_base64(with_caller(event("http-api-get.json"), &random_ip()), "Q");
    let inv = function.invoke(get).await.expect("an answer");
    assert_eq!(check_answer(&inv).unwrap().0, 405, "the method first");

    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let mut text = json!({ "challengeId": challenge }).to_string();
    if text.len().is_multiple_of(3) {
        text.push(' '); // so that the encoding needs padding
    }
    let body = STANDARD_NO_PAD.encode(text);
    assert!(
        !body.len().is_multiple_of(4),
        "the padding is really missing"
    );
    let ev = marked_base64(with_caller(event("http-api.json"), &random_ip()), &body);
    let inv = function.invoke(ev).await.expect("an answer");
    assert_eq!(check_answer(&inv).unwrap().0, 200, "{:?}", inv.response);
    assert_eq!(emails_to(&address).len(), 1);
}

/// Through the runtime: events that are no front door's, or that
/// lambda_http could not convert, are answered 400 in the HTTP API's
/// response shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconvertible_events_get_a_400_in_the_http_api_shape() {
    let function = Function::start(&[("RATE_LIMIT_MAX", "1000000")]).await;
    let served = function
        .invoke(with_caller(event("http-api-no-body.json"), &random_ip()))
        .await
        .expect("an answer");
    let shape = |inv: &Invocation| -> Vec<String> {
        inv.response.as_object().unwrap().keys().cloned().collect()
    };
    let mut bad_host = event("rest-api.json");
    bad_host["headers"]["Host"] = json!("exa mple.com");
    let mut bad_query = event("http-api.json");
    bad_query["rawQueryString"] = json!("a b");
    let mut no_context = event("alb.json");
    no_context.as_object_mut().unwrap().remove("requestContext");
    for ev in [
        json!(null),
        json!("text"),
        json!([1, 2]),
        json!({}),
        bad_host,
        bad_query,
        no_context,
    ] {
        let inv = function.invoke(ev.clone()).await.expect("an answer");
        let (status, answer) = check_answer(&inv).unwrap();
        assert_eq!(status, 400, "{ev}");
        assert_eq!(answer["errorType"], "error-parameter-required", "{ev}");
        assert_eq!(shape(&inv), shape(&served), "{ev}");
        assert!(!header(&inv, "x-ratelimit-remaining").is_empty(), "counted");
    }
    let output = function.output();
    assert!(!output.contains("panicked"), "{}", around_panic(&output));
}

/// Through the handler: the stand-in for an unconvertible event is counted
/// under the one shared caller `unknown`, with an HTTP API event that has
/// no source address.
#[tokio::test]
async fn unconvertible_events_are_counted_under_the_unknown_caller() {
    let env = Env::new().await;
    let app = env.app(&[("RATE_LIMIT_MAX", "1000")]);
    // A window no other test uses, so the shared bucket is this test's alone.
    let now = send_email_code::Timestamp::from_secs(env.now.secs() + 41 * 86_400);
    let mut no_source = event("http-api-no-body.json");
    no_source["requestContext"]["http"]
        .as_object_mut()
        .unwrap()
        .remove("sourceIp");
    let mut bad_host = event("rest-api.json");
    bad_host["headers"]["Host"] = json!("exa mple.com");
    let mut remaining = Vec::new();
    for ev in [no_source, json!([]), bad_host, json!({"body": "x"})] {
        let req = send_email_code::http::event::to_request(&ev.to_string());
        let a = answer(send_email_code::handle(&app, req, now).await);
        assert_eq!(a.status, 400, "{ev}");
        assert_eq!(a.error_type(), "error-parameter-required");
        remaining.push(a.header("x-ratelimit-remaining").unwrap().to_string());
    }
    assert_eq!(remaining, ["999", "998", "997", "996"], "one bucket");
}
