//! What reached the dependency decides (docs/contract.md, "Faults"), each
//! failure produced for real through the handler: a host name that never
//! resolves, a closed port, TLS spoken to a port that speaks none, a
//! listener whose accept queue is full, a listener that takes the request
//! and never answers, a cut connection, a server error, a success without a
//! message id, and DynamoDB throttling a write before refusing its retry.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener as StdListener;

use common::fault_proxy::{read_request, Dialect, Fault, FaultProxy};
use common::*;
use send_email_code::{handle_traced, App, ReservationFate, Trace};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ses_at(env: &Env, url: &str) -> aws_sdk_sesv2::Client {
    let conf = aws_sdk_sesv2::config::Builder::from(&env.sdk)
        .endpoint_url(url)
        .build();
    aws_sdk_sesv2::Client::from_conf(conf)
}

fn ses_url() -> String {
    std::env::var("AWS_ENDPOINT_URL_SESV2").unwrap()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A listener whose accept queue (backlog 0: one connection) is already
/// full and never drained: the kernel drops further connection attempts,
/// so they end in the connect timeout. Kept alive for the whole test.
fn full_listener() -> (tokio::net::TcpListener, std::net::TcpStream, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let filler = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    (listener, filler, port)
}

/// A listener that reads each request and never answers.
async fn black_hole() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            held.push(conn);
        }
    });
    port
}

/// A server that answers every request `200 {}`: SES's success without
/// the `MessageId` it must carry.
async fn success_without_message_id() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_request(&mut conn).await.is_none() {
                    return;
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// What one request left behind.
struct After {
    answer: Answer,
    trace: Trace,
    codes_sent: Option<i64>,
    user_count: Option<i64>,
    emails: usize,
}

/// One request for a fresh challenge through `ses`; returns the answer, its
/// trace, and the counters afterwards.
async fn send_through(env: &Env, ses: aws_sdk_sesv2::Client) -> After {
    let (challenge, user, address) = env.email_challenge().await;
    let app = App::with_clients(config(&[]), env.db.clone(), ses);
    let ev = with_caller(post(&challenge), &random_ip());
    let (response, trace) = handle_traced(&app, request(&ev), env.now).await;
    let window = env.now.secs() - env.now.secs().rem_euclid(3_600);
    let user_key = format!("sendEmailCode#user#{user}#{window}");
    After {
        answer: answer(response),
        trace,
        codes_sent: n(&env.challenge_item(&challenge).await, "codesSent"),
        user_count: env
            .get(&tables().rate_limits, "pk", &user_key)
            .await
            .and_then(|item| n(&item, "count")),
        emails: emails_to(&address).len(),
    }
}

fn assert_generic(a: &Answer, status: u16, what: &str) {
    let error_type = if status == 503 {
        "error-service-unavailable"
    } else {
        "error-internal"
    };
    assert_eq!(a.status, status, "{what}: {a:?}");
    assert_eq!(a.error_type(), error_type, "{what}");
    assert!(a.header("x-ratelimit-remaining").is_some(), "{what}");
}

#[tokio::test]
async fn ses_failures_before_the_request_left_give_the_reservation_back() {
    let env = Env::new().await;
    let (_full, _filler, full_port) = full_listener();
    let stand_in_port = ses_url().rsplit(':').next().unwrap().to_string();
    let cases = [
        (
            "a DNS failure",
            "http://ses.endpoint.invalid:4566".to_string(),
        ),
        (
            "a refused connection",
            format!("http://127.0.0.1:{}", closed_port()),
        ),
        (
            "a TLS handshake with a port that speaks no TLS",
            format!("https://127.0.0.1:{stand_in_port}"),
        ),
        (
            "a connect timeout (accept queue full)",
            format!("http://127.0.0.1:{full_port}"),
        ),
    ];
    for (what, url) in cases {
        let after = send_through(&env, ses_at(&env, &url)).await;
        assert_generic(&after.answer, 503, what);
        assert_eq!(
            after.trace.reservation,
            ReservationFate::GivenBack,
            "{what}"
        );
        assert_eq!(after.codes_sent, Some(0), "{what}: the send is given back");
        assert_eq!(after.user_count, Some(0), "{what}: so is the user's count");
        assert_eq!(after.emails, 0, "{what}");
    }
}

#[tokio::test]
async fn ses_error_answers_give_the_reservation_back() {
    let env = Env::new().await;
    let (proxy, ses) = ses_behind_proxy(&env, 21).await;
    for (status, code, want) in [
        (500, "InternalFailure", 503),
        (503, "ServiceUnavailable", 503),
        (400, "MessageRejected", 500),
    ] {
        proxy.set(Fault::Refuse { status, code }, 1000);
        let after = send_through(&env, ses.clone()).await;
        assert_generic(&after.answer, want, code);
        assert_eq!(
            after.trace.reservation,
            ReservationFate::GivenBack,
            "{code}"
        );
        assert_eq!(after.codes_sent, Some(0), "{code}");
        assert_eq!(after.user_count, Some(0), "{code}");
    }
}

#[tokio::test]
async fn ses_failures_after_the_request_left_keep_the_reservation() {
    let env = Env::new().await;
    let silent = format!("http://127.0.0.1:{}", black_hole().await);
    let cut = FaultProxy::start(&ses_url(), Dialect::Ses, 22).await;
    cut.set(Fault::Cut, 1000);
    for (what, url) in [
        ("no answer after the request was sent", silent),
        ("the connection cut after the request", cut.url.clone()),
    ] {
        let after = send_through(&env, ses_at(&env, &url)).await;
        assert_generic(&after.answer, 503, what);
        assert_eq!(
            after.trace.reservation,
            ReservationFate::KeptUnsent,
            "{what}"
        );
        assert_eq!(after.codes_sent, Some(1), "{what}: SES may have sent it");
        assert_eq!(after.user_count, Some(1), "{what}");
    }
    assert_eq!(
        cut.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "an attempt whose outcome is unknown is never repeated"
    );
}

#[tokio::test]
async fn a_ses_success_without_a_message_id_is_a_500_that_keeps_the_reservation() {
    let env = Env::new().await;
    let url = format!("http://127.0.0.1:{}", success_without_message_id().await);
    let after = send_through(&env, ses_at(&env, &url)).await;
    assert_generic(&after.answer, 500, "200 without MessageId");
    assert_eq!(after.trace.reservation, ReservationFate::KeptUnsent);
    assert_eq!(after.codes_sent, Some(1), "SES took a message");
    assert_eq!(after.trace.message_id, None);
}

#[tokio::test]
async fn a_caller_counter_throttled_then_refused_is_the_callers_429() {
    let env = Env::new().await;
    let (proxy, db) = dynamodb_behind_proxy(&env, 23).await;
    let app = App::with_clients(
        config(&[("RATE_LIMIT_MAX", "1")]),
        db,
        aws_sdk_sesv2::Client::new(&env.sdk),
    );
    // No challengeId: round 1 is the counter alone, so the throttled
    // attempt is certainly the counter's.
    let ev = with_caller(
        with_body(event("http-api.json"), json!({"other": 1})),
        &random_ip(),
    );
    let first = call(&app, &ev, env.now).await;
    assert_eq!(first.status, 400, "{first:?}");
    proxy.set_next(
        Fault::Refuse {
            status: 400,
            code: "ThrottlingException",
        },
        1,
    );
    let a = call(&app, &ev, env.now).await;
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(a.status, 429, "a plain refusal: {a:?}");
    assert_documented_429(&a);
    assert_eq!(a.header("x-ratelimit-remaining"), Some("0"));
}

/// DynamoDB's item size limit, in bytes.
const ITEM_LIMIT: usize = 400 * 1024;
/// Room left in the padded item: fewer bytes than the reservation adds
/// (the names `codes` and `codesSent` alone are 14), so the item reads fine
/// and the reservation's write is refused for its size.
const ROOM: usize = 6;

/// An item's size as DynamoDB counts it: names, strings, and numbers at
/// about one byte per two digits plus one.
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    aws_sdk_dynamodb::types::AttributeValue::S(s) => s.len(),
                    aws_sdk_dynamodb::types::AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                    other => panic!("not sized here: {other:?}"),
                }
        })
        .sum()
}

#[tokio::test]
async fn a_user_at_the_budget_gets_its_429_even_when_the_reservation_write_fails() {
    let env = Env::new().await;
    let (user, address) = env.user(json!({})).await;
    let app = env.app(&[("MAX_CODES_PER_USER", "1")]);
    let spent = env.challenge(&user, "email", 600).await;
    assert_eq!(call(&app, &post(&spent), env.now).await.status, 200);

    let full = unique("ch-full-");
    let mut item = item(json!({
        "challengeId": full, "userId": user, "method": "email",
        "createdAt": env.now.secs(), "expireAt": env.now.secs() + 600,
    }));
    let padding = ITEM_LIMIT - ROOM - item_size(&item) - "padding".len();
    item.insert(
        "padding".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("x".repeat(padding)),
    );
    env.put(&tables().challenges, item).await;

    // The same request for a user with budget left shows the write fails.
    let (other, _) = env.user(json!({})).await;
    let check = unique("ch-full-check-");
    let mut twin = env.challenge_item(&full).await;
    twin.insert(
        "challengeId".into(),
        aws_sdk_dynamodb::types::AttributeValue::S(check.clone()),
    );
    twin.insert(
        "userId".into(),
        aws_sdk_dynamodb::types::AttributeValue::S(other),
    );
    env.put(&tables().challenges, twin).await;
    let failed = call(&app, &post(&check), env.now).await;
    assert!(
        failed.status >= 500,
        "the reservation write fails: {failed:?}"
    );

    let a = call(&app, &post(&full), env.now).await;
    assert_eq!(
        a.status, 429,
        "the budget's answer, not the failed write's: {a:?}"
    );
    assert_eq!(a.body["error"], "too many codes sent to this user");
    assert_eq!(emails_to(&address).len(), 1);
}

/// `event` with its body replaced by `body` (plain JSON text).
fn with_body(mut ev: serde_json::Value, body: serde_json::Value) -> serde_json::Value {
    ev["body"] = json!(body.to_string());
    ev["isBase64Encoded"] = json!(false);
    ev
}
