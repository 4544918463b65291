//! The raw Lambda event, made safe for lambda_http's conversion before it
//! gets there (docs/contract.md section 1: no event may end in an invocation error,
//! a panic or a lost process).
//!
//! lambda_http 1.3 turns an event into a request inside
//! `From<LambdaRequest>`, which panics on a body marked base64 that its
//! strict decoder refuses and on a host, scheme, path or query it cannot
//! make into a URI; and an event that is no front door's never reaches the
//! handler. Each would be an invocation error. So the runtime runs over the
//! raw event ([`Guarded`]) and [`prepare`] settles it first:
//!
//! - a body marked base64 that is base64 by the contract's rule
//!   ([`decode_base64`]) is re-encoded canonically, so lambda_http decodes
//!   it; one that is not becomes no body (the handler's answer for an
//!   unreadable body: 400 after the rate limit, 405 first for a non-POST);
//! - an event that is no front door's, or whose URI lambda_http could not
//!   build, is replaced by [`unreadable`]: a body-less HTTP API POST with no
//!   caller address, answered 400 and counted under the shared caller
//!   `unknown`.
//!
//! A panic the checks did not foresee is still caught around the conversion
//! and answered the same way (the last line of defence, not the plan).
//! None of this logs any part of the event.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::task::{Context as TaskContext, Poll};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use lambda_http::aws_lambda_events::alb::AlbTargetGroupRequest;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::header::HOST;
use lambda_http::http::{HeaderMap, Method, Uri};
use lambda_http::lambda_runtime::LambdaEvent;
use lambda_http::request::LambdaRequest;
use lambda_http::{Request, Service};
use serde_json::value::RawValue;
use url::Url;

/// Base64 as the contract reads it: the standard alphabet, `=` padding
/// optional, bits after the last whole byte ignored.
const CONTRACT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes a body marked base64, or `None` when it is not base64: a
/// character outside the standard alphabet (`-`, `_`, whitespace, `=`
/// anywhere but the end), or a length no padding can complete.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    CONTRACT_BASE64.decode(text).ok()
}

/// The event as lambda_http will convert it, without panicking: see the
/// module documentation. Never fails.
pub fn prepare(event: &str) -> LambdaRequest {
    let Ok(mut request) = serde_json::from_str::<LambdaRequest>(event) else {
        tracing::warn!("the event is no API Gateway, function URL or ALB request: read as an unreadable request from an unknown caller");
        return unreadable();
    };
    let (front_door, uri_builds, body, is_base64) = match &mut request {
        LambdaRequest::ApiGatewayV1(ev) => (
            "REST API",
            rest_uri_builds(ev),
            &mut ev.body,
            &mut ev.is_base64_encoded,
        ),
        LambdaRequest::ApiGatewayV2(ev) => (
            "HTTP API or function URL",
            http_api_uri_builds(ev),
            &mut ev.body,
            &mut ev.is_base64_encoded,
        ),
        LambdaRequest::Alb(ev) => (
            "ALB",
            alb_uri_builds(ev),
            &mut ev.body,
            &mut ev.is_base64_encoded,
        ),
        _ => {
            tracing::warn!("the event is of a kind this function does not serve: read as an unreadable request from an unknown caller");
            return unreadable();
        }
    };
    if !uri_builds {
        tracing::warn!(front_door, "the event's host, scheme, path or query makes no URI: read as an unreadable request from an unknown caller");
        return unreadable();
    }
    settle_body(body, is_base64, front_door);
    request
}

/// [`prepare`], then lambda_http's own conversion: the request the handler
/// is given (without the Lambda context the runtime adds).
pub fn to_request(event: &str) -> Request {
    convert_guarded(prepare(event), Request::from)
}

/// The stand-in for an event that cannot be served as sent: an HTTP API
/// (payload 2.0) POST with no body and no caller address. The handler
/// counts it under the shared caller `unknown` and answers 400
/// `error-parameter-required`.
pub fn unreadable() -> LambdaRequest {
    let mut event = ApiGatewayV2httpRequest::default();
    event.request_context.http.method = Method::POST;
    LambdaRequest::ApiGatewayV2(event)
}

/// The runtime's service over raw events: each one [`prepare`]d, then
/// handed to `inner` (lambda_http's `Adapter`, which converts it and shapes
/// the answer for its front door).
#[derive(Debug, Clone)]
pub struct Guarded<S>(S);

impl<S> Guarded<S> {
    /// Wraps lambda_http's adapter.
    pub fn new(inner: S) -> Self {
        Self(inner)
    }
}

impl<S> Service<LambdaEvent<Box<RawValue>>> for Guarded<S>
where
    S: Service<LambdaEvent<LambdaRequest>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<Box<RawValue>>) -> Self::Future {
        let LambdaEvent { payload, context } = event;
        let inner = &mut self.0;
        convert_guarded(prepare(payload.get()), |request| {
            inner.call(LambdaEvent::new(request, context.clone()))
        })
    }
}

/// Runs the conversion; should it panic after all, runs it again on
/// [`unreadable`] (which converts).
fn convert_guarded<T>(request: LambdaRequest, mut convert: impl FnMut(LambdaRequest) -> T) -> T {
    match catch_unwind(AssertUnwindSafe(|| convert(request))) {
        Ok(converted) => converted,
        Err(_) => {
            tracing::error!("lambda_http could not convert the event: read as an unreadable request from an unknown caller");
            convert(unreadable())
        }
    }
}

/// A body marked base64: re-encoded canonically when it is base64 by the
/// contract's rule, otherwise dropped (no body is an unreadable body).
fn settle_body(body: &mut Option<String>, is_base64: &mut bool, front_door: &str) {
    if !*is_base64 {
        return;
    }
    let Some(text) = body.as_mut() else {
        return;
    };
    match decode_base64(text) {
        Some(bytes) => *text = STANDARD.encode(bytes),
        None => {
            tracing::warn!(
                front_door,
                "a body marked base64 is not base64: read as no body"
            );
            *body = None;
            *is_base64 = false;
        }
    }
}

// lambda_http 1.3 builds the request URI as below and unwraps each step
// (request.rs: `build_request_uri`, `apigw_path_with_stage`, then
// `http::Request::builder().uri(..)` and `.expect(..)`). These repeat its
// steps with the same crates, to learn beforehand whether they succeed.

fn rest_uri_builds(ev: &ApiGatewayProxyRequest) -> bool {
    let path = with_stage(
        ev.request_context.stage.as_deref(),
        ev.path.as_deref().unwrap_or_default(),
    );
    let host = host_header(&ev.headers).or(ev.request_context.domain_name.as_deref());
    let query = query_suffix(
        &ev.multi_value_query_string_parameters,
        &ev.query_string_parameters,
    );
    uri_builds(&path, &ev.headers, host, &query)
}

fn http_api_uri_builds(ev: &ApiGatewayV2httpRequest) -> bool {
    let path = with_stage(
        ev.request_context.stage.as_deref(),
        ev.raw_path.as_deref().unwrap_or_default(),
    );
    let host = host_header(&ev.headers).or(ev.request_context.domain_name.as_deref());
    let query = match ev.raw_query_string.as_deref() {
        Some(raw) if !raw.is_empty() => format!("?{raw}"),
        _ => String::new(),
    };
    uri_builds(&path, &ev.headers, host, &query)
}

fn alb_uri_builds(ev: &AlbTargetGroupRequest) -> bool {
    let decoded = |query: &QueryMap| {
        let text = query.to_query_string();
        let text = percent_encoding::percent_decode(text.as_bytes()).decode_utf8_lossy();
        QueryMap::from_str(&text).unwrap_or_default()
    };
    let query = query_suffix(
        &decoded(&ev.multi_value_query_string_parameters),
        &decoded(&ev.query_string_parameters),
    );
    uri_builds(
        ev.path.as_deref().unwrap_or_default(),
        &ev.headers,
        host_header(&ev.headers),
        &query,
    )
}

fn host_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(HOST).and_then(|v| v.to_str().ok())
}

/// The stage prefix lambda_http puts before an API Gateway path.
fn with_stage(stage: Option<&str>, path: &str) -> String {
    if std::env::var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_ok() {
        return path.to_owned();
    }
    match stage {
        None | Some("$default") => path.to_owned(),
        Some(stage) if path.starts_with(&format!("/{stage}/")) => path.to_owned(),
        Some(stage) => format!("/{stage}{path}"),
    }
}

/// `?` and the query lambda_http appends: the multi-valued parameters when
/// there are any, else the single-valued ones.
fn query_suffix(multi: &QueryMap, single: &QueryMap) -> String {
    let query = if !multi.is_empty() {
        multi
    } else if !single.is_empty() {
        single
    } else {
        return String::new();
    };
    format!("?{}", query.to_query_string())
}

fn uri_builds(path: &str, headers: &HeaderMap, host: Option<&str>, query: &str) -> bool {
    let base = match host {
        None => match Url::parse(&format!("http://localhost{path}")) {
            Ok(url) => url.path().to_owned(),
            Err(_) => return false,
        },
        Some(host) => {
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("https");
            match Url::parse(&format!("{scheme}://{host}{path}")) {
                Ok(url) => String::from(url),
                Err(_) => return false,
            }
        }
    };
    Uri::try_from(base + query).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::request::RequestContext;
    use lambda_http::{Body, RequestExt};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn sample(name: &str) -> Value {
        let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

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

    /// Whether lambda_http's own conversion panics on this event (it is
    /// the thing the checks above predict).
    fn lambda_http_panics(event: &Value) -> bool {
        let Ok(request) = serde_json::from_str::<LambdaRequest>(&event.to_string()) else {
            return false;
        };
        catch_unwind(AssertUnwindSafe(|| Request::from(request))).is_err()
    }

    /// [`prepare`] and the conversion, without the guard: a panic the
    /// checks missed fails the test.
    fn convert(event: &str) -> Request {
        Request::from(prepare(event))
    }

    fn is_unreadable(req: &Request) -> bool {
        let no_source = matches!(
            req.request_context_ref(),
            Some(RequestContext::ApiGatewayV2(ctx)) if ctx.http.source_ip.is_none()
        );
        no_source && req.method() == Method::POST && matches!(req.body(), Body::Empty)
    }

    fn body_bytes(req: &Request) -> &[u8] {
        match req.body() {
            Body::Text(t) => t.as_bytes(),
            Body::Binary(b) => b,
            _ => &[],
        }
    }

    #[test]
    fn base64_missing_padding_is_tolerated() {
        assert_eq!(decode_base64("QQ").unwrap(), b"A");
        assert_eq!(decode_base64("QQ=").unwrap(), b"A");
        assert_eq!(decode_base64("QQ==").unwrap(), b"A");
        assert_eq!(decode_base64("QUI").unwrap(), b"AB");
        assert_eq!(decode_base64("QUI=").unwrap(), b"AB");
        assert_eq!(decode_base64("QUJD").unwrap(), b"ABC");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn base64_non_zero_trailing_bits_are_decoded_not_refused() {
        // "QR" carries 4 bits after the byte 'A' ("QQ" has them zero).
        assert_eq!(decode_base64("QR").unwrap(), b"A");
        assert_eq!(decode_base64("QR==").unwrap(), b"A");
        assert_eq!(decode_base64("QUJ=").unwrap(), b"AB");
    }

    #[test]
    fn not_base64_is_refused() {
        for text in [
            "QQ==QQ==", // padding in the middle
            "Q=Q=", "=QQQ", "Q",     // 1 character mod 4: no padding completes it
            "QUJDR", // 5
            "Q===", "QQ===", // more padding than any length needs
            "QUJD=", "QUJD====", "-_-_", // URL-safe alphabet
            "QQ-_", "QU JD", // whitespace
            "QUJD\n", " QUJD", "QUJD\t", "QU.D", "QUé=",
        ] {
            assert_eq!(decode_base64(text), None, "{text:?}");
        }
    }

    #[test]
    fn valid_base64_is_handed_on_canonically() {
        let mut ev = sample("http-api-base64-no-content-type.json");
        let canonical = ev["body"].as_str().unwrap().to_owned();
        let plain = STANDARD.decode(&canonical).unwrap();
        for variant in [
            canonical.clone(),
            canonical.trim_end_matches('=').to_owned(),
        ] {
            ev["body"] = json!(variant);
            let req = convert(&ev.to_string());
            assert_eq!(body_bytes(&req), plain, "{variant:?}");
        }
        // Trailing bits: 'A' is "QQ"; "QR" decodes to it too.
        ev["body"] = json!("QR");
        assert_eq!(body_bytes(&convert(&ev.to_string())), b"A");
    }

    #[test]
    fn invalid_base64_becomes_no_body_and_keeps_the_caller() {
        for name in ["rest-api.json", "http-api.json", "alb.json"] {
            for body in ["Q", "QQ==QQ==", "eyJj-_", "eyJj aGFs"] {
                let mut ev = sample(name);
                ev["body"] = json!(body);
                ev["isBase64Encoded"] = json!(true);
                assert!(lambda_http_panics(&ev), "lambda_http itself panics");
                let req = convert(&ev.to_string());
                assert!(matches!(req.body(), Body::Empty), "{name} {body}");
                assert!(!is_unreadable(&req), "{name}: the event is kept");
                assert_eq!(req.method(), Method::POST);
            }
        }
    }

    #[test]
    fn events_of_no_front_door_become_the_unreadable_request() {
        for event in [
            json!(null),
            json!(true),
            json!(1),
            json!("event"),
            json!([]),
            json!([sample("http-api.json")]),
            json!({}),
            json!({"body": "{\"challengeId\":\"x\"}"}),
            json!({"requestContext": {}}),
        ] {
            assert!(is_unreadable(&convert(&event.to_string())), "{event}");
        }
        let mut no_context = sample("http-api.json");
        no_context.as_object_mut().unwrap().remove("requestContext");
        assert!(is_unreadable(&convert(&no_context.to_string())));
        let mut bad_header = sample("rest-api.json");
        bad_header["headers"]["bad name"] = json!("x");
        assert!(is_unreadable(&convert(&bad_header.to_string())));
    }

    #[test]
    fn events_lambda_http_cannot_make_a_uri_of_become_the_unreadable_request() {
        let long = format!("/{}", "a".repeat(70_000));
        let cases: Vec<(&str, &str, Value)> = vec![
            ("rest-api.json", "/headers/Host", json!("exa mple.com")),
            ("rest-api.json", "/headers/Host", json!("host:99999")),
            ("rest-api.json", "/headers/X-Forwarded-Proto", json!("1x")),
            ("rest-api.json", "/headers/X-Forwarded-Proto", json!("a b")),
            ("rest-api.json", "/path", json!(long)),
            ("http-api.json", "/headers/host", json!("[::1")),
            ("http-api.json", "/rawQueryString", json!("a b")),
            ("http-api.json", "/rawQueryString", json!("x\"y")),
            ("http-api.json", "/rawPath", json!(long)),
            ("function-url.json", "/headers/host", json!("a@b@c d")),
            ("alb.json", "/headers/host", json!("exa mple.com")),
            (
                "alb.json",
                "/headers/x-forwarded-proto",
                json!("x".repeat(70)),
            ),
        ];
        for (name, pointer, value) in cases {
            let mut ev = sample(name);
            *ev.pointer_mut(pointer).unwrap() = value;
            assert!(lambda_http_panics(&ev), "{name} {pointer}: a real case");
            assert!(is_unreadable(&convert(&ev.to_string())), "{name} {pointer}");
        }
        // Without a Host header (nor a domain name) the path alone must parse.
        let mut ev = sample("alb.json");
        ev["headers"].as_object_mut().unwrap().remove("host");
        ev["path"] = json!(":99999");
        assert!(lambda_http_panics(&ev));
        assert!(is_unreadable(&convert(&ev.to_string())));
    }

    #[test]
    fn sample_events_pass_through_unchanged() {
        for name in SAMPLES {
            let ev = sample(name).to_string();
            let ours = convert(&ev);
            let theirs = lambda_http::request::from_str(&ev).unwrap();
            assert_eq!(ours.method(), theirs.method(), "{name}");
            assert_eq!(ours.uri(), theirs.uri(), "{name}");
            assert_eq!(ours.headers(), theirs.headers(), "{name}");
            assert_eq!(body_bytes(&ours), body_bytes(&theirs), "{name}");
            assert!(!is_unreadable(&ours), "{name}");
        }
    }

    #[test]
    fn a_panic_the_checks_missed_is_still_answered() {
        let mut calls = 0;
        let req = convert_guarded(prepare(&sample("http-api.json").to_string()), |request| {
            calls += 1;
            assert!(calls > 1, "a conversion that panics");
            Request::from(request)
        });
        assert_eq!(calls, 2);
        assert!(is_unreadable(&req));
        let fine = to_request(&sample("http-api.json").to_string());
        assert!(!is_unreadable(&fine));
    }

    #[test]
    fn the_stand_in_converts() {
        assert!(!lambda_http_panics(&json!({
            "version": "2.0",
            "requestContext": {"http": {"method": "POST"}}
        })));
        assert!(is_unreadable(&Request::from(unreadable())));
    }

    fn uri_part() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,16}",
            ".{0,8}",
            "[a-z0-9.:@/\\[\\]%#?-]{0,16}",
            Just(String::new()),
            Just("$default".to_owned()),
        ]
    }

    /// An event of one of the three kinds with this host, scheme, path,
    /// query and stage (`None`: no such header).
    fn with_uri_parts(
        name: &str,
        host: Option<&str>,
        proto: Option<&str>,
        path: &str,
        query: &str,
        stage: &str,
    ) -> Value {
        let mut ev = sample(name);
        let rest = name == "rest-api.json";
        let (host_key, proto_key) = if rest {
            ("Host", "X-Forwarded-Proto")
        } else {
            ("host", "x-forwarded-proto")
        };
        let headers = ev["headers"].as_object_mut().unwrap();
        for (key, value) in [(host_key, host), (proto_key, proto)] {
            match value {
                Some(v) => headers.insert(key.into(), json!(v)),
                None => headers.remove(key),
            };
        }
        match name {
            "http-api.json" => {
                ev["rawPath"] = json!(path);
                ev["rawQueryString"] = json!(query);
                ev["requestContext"]["stage"] = json!(stage);
            }
            "rest-api.json" => {
                ev["path"] = json!(path);
                ev["queryStringParameters"] = json!({ "q": query });
                ev["requestContext"]["stage"] = json!(stage);
            }
            _ => {
                ev["path"] = json!(path);
                ev["queryStringParameters"] = json!({ "q": query });
            }
        }
        ev
    }

    /// The URI check agrees with lambda_http both ways: it refuses exactly
    /// the events whose conversion would panic. Each case that panics costs
    /// a backtrace, so PROPTEST_CASES is honoured up to 2,000 here (the
    /// runner is built by hand: the `proptest!` macro lets the variable
    /// override any cap).
    #[test]
    fn uri_check_matches_lambda_http() {
        let config = ProptestConfig {
            cases: ProptestConfig::default().cases.min(2_000),
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let parts = (
            prop::sample::select(&["rest-api.json", "http-api.json", "alb.json"][..]),
            prop::option::of(uri_part()),
            prop::option::of(uri_part()),
            uri_part(),
            uri_part(),
            uri_part(),
        );
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let result = runner.run(&parts, |(name, host, proto, path, query, stage)| {
            let ev = with_uri_parts(
                name,
                host.as_deref(),
                proto.as_deref(),
                &path,
                &query,
                &stage,
            );
            let text = ev.to_string();
            // Headers that are not header values leave no front door's event.
            prop_assume!(serde_json::from_str::<LambdaRequest>(&text).is_ok());
            let panics = lambda_http_panics(&ev);
            prop_assert_eq!(is_unreadable(&convert(&text)), panics, "{}", text);
            Ok(())
        });
        if let Err(err) = result {
            panic!("{err}");
        }
    }
}
