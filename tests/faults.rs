//! Failing dependencies: each gives a generic 5xx JSON answer, quickly, and
//! leaves the challenge (and its cap) as it was. Real stand-ins where they can
//! produce the fault (down, silent); aws-smithy-mocks for service errors they
//! cannot (SES MessageRejected, DynamoDB throttling).

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use common::fault_proxy::Fault;
use common::*;
use send_email_code::{aws, App};
use serde_json::json;

/// The stated budget: a request facing one failing or slow dependency is
/// answered within 3 s (one 2 s SDK operation timeout plus the fast calls
/// around it), never at the Lambda timeout.
const ANSWER_WITHIN: Duration = Duration::from_millis(3_000);

/// Calls the handler and checks the answer came within the budget.
async fn call_within_budget(
    app: &App,
    ev: &serde_json::Value,
    now: send_email_code::Timestamp,
) -> Answer {
    let started = Instant::now();
    let a = call(app, ev, now).await;
    assert!(
        started.elapsed() < ANSWER_WITHIN,
        "took {:?}",
        started.elapsed()
    );
    a
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A loopback port that accepts connections and never answers.
fn silent_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

fn ses_at(env: &Env, url: &str) -> aws_sdk_sesv2::Client {
    let conf = aws_sdk_sesv2::config::Builder::from(&env.sdk)
        .endpoint_url(url)
        .build();
    aws_sdk_sesv2::Client::from_conf(conf)
}

fn dynamodb_at(env: &Env, url: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(&env.sdk)
        .endpoint_url(url)
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

fn real_dynamodb(env: &Env) -> aws_sdk_dynamodb::Client {
    env.db.clone()
}

fn assert_generic_503(a: &Answer) {
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(
        a.body,
        json!({"success": false, "errorType": "error-service-unavailable",
               "error": "the service is temporarily unavailable, please try again later"})
    );
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("cache-control"), Some("no-store"));
}

/// Sends one code successfully so the challenge has a previous code to keep.
async fn challenge_with_one_code(env: &Env) -> (String, String, Item) {
    let (challenge, _user, address) = env.email_challenge().await;
    let ev = post(&challenge);
    assert_eq!(call(&env.app(&[]), &ev, env.now).await.status, 200);
    let item = env.challenge_item(&challenge).await;
    (challenge, address, item)
}

#[tokio::test]
async fn ses_down_gives_503_and_leaves_the_previous_code_and_the_cap() {
    let env = Env::new().await;
    let (challenge, address, before) = challenge_with_one_code(&env).await;
    let config = config(&[("MAX_CODES_PER_CHALLENGE", "2")]);
    let down = ses_at(&env, &format!("http://127.0.0.1:{}", closed_port()));
    let app = App::with_clients(config, real_dynamodb(&env), down);
    let ev = post(&challenge);

    let a = call_within_budget(&app, &ev, env.now).await;
    assert_generic_503(&a);
    assert_eq!(
        a.header("x-ratelimit-remaining"),
        Some("4"),
        "counter was reachable"
    );
    assert_eq!(
        env.challenge_item(&challenge).await,
        before,
        "code, expiry and count restored"
    );
    assert_eq!(emails_to(&address).len(), 1);

    // The failed send did not use up the cap of 2: one more goes through.
    let ok = call(&env.app(&[("MAX_CODES_PER_CHALLENGE", "2")]), &ev, env.now).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(emails_to(&address).len(), 2);
}

/// After a send whose SES outcome is unknown: the code attributes are as
/// before (nothing uncommitted is stored) and the send stays reserved.
async fn assert_kept_unsent(env: &Env, challenge: &str, before: &Item) {
    let mut after = env.challenge_item(challenge).await;
    assert_eq!(
        n(&after, "codesSent"),
        n(before, "codesSent").map(|c| c + 1),
        "the reservation is kept: SES may have accepted the message"
    );
    after.insert("codesSent".into(), before["codesSent"].clone());
    assert_eq!(&after, before, "no code attribute changed");
}

#[tokio::test]
async fn silent_ses_gives_503_within_the_timeout_budget_and_keeps_the_previous_code() {
    let env = Env::new().await;
    let (challenge, _address, before) = challenge_with_one_code(&env).await;
    let silent = ses_at(&env, &format!("http://127.0.0.1:{}", silent_port()));
    let app = App::with_clients(config(&[]), real_dynamodb(&env), silent);
    let ev = post(&challenge);
    let a = call_within_budget(&app, &ev, env.now).await;
    assert_generic_503(&a);
    assert_kept_unsent(&env, &challenge, &before).await;
}

#[tokio::test]
async fn dynamodb_down_gives_503_without_rate_headers_quickly() {
    let env = Env::new().await;
    let down = dynamodb_at(&env, &format!("http://127.0.0.1:{}", closed_port()));
    let app = App::with_clients(config(&[]), down, aws_sdk_sesv2::Client::new(&env.sdk));
    let ev = post("some-challenge");
    let a = call_within_budget(&app, &ev, env.now).await;
    assert_generic_503(&a);
    assert!(
        a.header("x-ratelimit-limit").is_none(),
        "no counter, no rate headers"
    );
}

#[tokio::test]
async fn silent_dynamodb_gives_503_within_the_timeout_budget() {
    let env = Env::new().await;
    let silent = dynamodb_at(&env, &format!("http://127.0.0.1:{}", silent_port()));
    let app = App::with_clients(config(&[]), silent, aws_sdk_sesv2::Client::new(&env.sdk));
    let ev = post("some-challenge");
    let started = Instant::now();
    let a = call(&app, &ev, env.now).await;
    let took = started.elapsed();
    assert!(took < ANSWER_WITHIN, "took {took:?}");
    assert!(
        took >= aws::OPERATION_TIMEOUT - Duration::from_millis(100),
        "it was the timeout: {took:?}"
    );
    assert_generic_503(&a);
}

#[tokio::test]
async fn missing_table_is_a_generic_500_that_names_nothing() {
    let env = Env::new().await;
    let app = env.app(&[("CHALLENGES_TABLE", "no-such-table-prod-secret-name")]);
    let ev = post("abc");
    let a = call(&app, &ev, env.now).await;
    assert_eq!(a.status, 500, "{a:?}");
    assert_eq!(
        a.body,
        json!({"success": false, "errorType": "error-internal", "error": "an internal error occurred"})
    );
    assert!(!a.raw.contains("no-such-table") && !a.raw.contains("Resource"));
}

fn ses_rejection() -> HttpResponse {
    let mut response = HttpResponse::new(
        400.try_into().unwrap(),
        r#"{"message":"Email address is not verified. The following identities failed the check in region US-EAST-1: victim@example.test"}"#.into(),
    );
    response
        .headers_mut()
        .insert("x-amzn-ErrorType", "MessageRejected");
    response
        .headers_mut()
        .insert("content-type", "application/json");
    response
}

#[tokio::test]
async fn ses_message_rejected_is_a_500_and_gives_the_send_back() {
    let env = Env::new().await;
    let (challenge, _address, before) = challenge_with_one_code(&env).await;
    let rejected = mock!(aws_sdk_sesv2::Client::send_email).then_http_response(ses_rejection);
    let ses = mock_client!(aws_sdk_sesv2, RuleMode::MatchAny, [&rejected]);
    let app = App::with_clients(config(&[]), real_dynamodb(&env), ses);
    let ev = post(&challenge);
    let a = call(&app, &ev, env.now).await;
    assert_eq!(a.status, 500, "{a:?}");
    assert_eq!(a.error_type(), "error-internal");
    assert!(!a.raw.contains("victim") && !a.raw.contains("verified"));
    assert_eq!(rejected.num_calls(), 1, "a rejection is not retried");
    assert_eq!(env.challenge_item(&challenge).await, before);
}

fn dynamodb_throttled() -> HttpResponse {
    let mut response = HttpResponse::new(
        400.try_into().unwrap(),
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#.into(),
    );
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    response
}

#[tokio::test]
async fn dynamodb_throttling_is_retried_then_503() {
    let throttled = mock!(aws_sdk_dynamodb::Client::update_item)
        .sequence()
        .http_response(dynamodb_throttled)
        .repeatedly()
        .build();
    let get = mock!(aws_sdk_dynamodb::Client::get_item)
        .then_output(|| aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder().build());
    let db = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&throttled, &get],
        |c| c
            .retry_config(aws::retry_config())
            .timeout_config(aws::timeouts())
    );
    let ses = mock_client!(
        aws_sdk_sesv2,
        RuleMode::MatchAny,
        Vec::<&aws_smithy_mocks::Rule>::new()
    );
    let app = App::with_clients(config(&[]), db, ses);
    let ev = post("abc");
    let a = call(&app, &ev, send_email_code::Timestamp::now()).await;
    assert_generic_503(&a);
    assert_eq!(
        throttled.num_calls(),
        aws::MAX_ATTEMPTS as usize,
        "retried by the standard strategy"
    );
}

/// A proxy to `upstream` (an `http://host:port` URL) that holds every answer
/// for `delay` before passing it on: a dependency that is slow, not dead.
async fn slow_proxy(upstream: &str, delay: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    url
}

#[tokio::test]
async fn slow_dynamodb_gives_503_within_the_budget() {
    let env = Env::new().await;
    let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap();
    let slow = dynamodb_at(
        &env,
        &slow_proxy(&upstream, Duration::from_millis(2_500)).await,
    );
    let app = App::with_clients(config(&[]), slow, aws_sdk_sesv2::Client::new(&env.sdk));
    let a = call_within_budget(&app, &post("some-challenge"), env.now).await;
    assert_generic_503(&a);
}

#[tokio::test]
async fn slow_ses_gives_503_within_the_budget_and_keeps_the_previous_code() {
    let env = Env::new().await;
    let (challenge, _address, before) = challenge_with_one_code(&env).await;
    let upstream = std::env::var("AWS_ENDPOINT_URL_SESV2").unwrap();
    let slow = ses_at(
        &env,
        &slow_proxy(&upstream, Duration::from_millis(2_500)).await,
    );
    let app = App::with_clients(config(&[]), real_dynamodb(&env), slow);
    let a = call_within_budget(&app, &post(&challenge), env.now).await;
    assert_generic_503(&a);
    assert_kept_unsent(&env, &challenge, &before).await;
}

const SES_THROTTLED: Fault = Fault::Refuse {
    status: 429,
    code: "TooManyRequestsException",
};

#[tokio::test]
async fn ses_throttling_is_tried_once_more_then_503_with_the_send_given_back() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let (proxy, ses) = ses_behind_proxy(&env, 11).await;
    proxy.set(SES_THROTTLED, 1000);
    let app = App::with_clients(config(&[]), real_dynamodb(&env), ses);
    let a = call_within_budget(&app, &post(&challenge), env.now).await;
    assert_generic_503(&a);
    assert_eq!(
        proxy.requests.load(Ordering::SeqCst),
        2,
        "one retry, no more"
    );
    assert_eq!(
        n(&env.challenge_item(&challenge).await, "codesSent"),
        Some(0)
    );
    assert!(emails_to(&address).is_empty());

    proxy.set_next(SES_THROTTLED, 1);
    let a = call(&app, &post(&challenge), env.now).await;
    assert_eq!(a.status, 200, "the retry went through: {a:?}");
    assert_eq!(proxy.requests.load(Ordering::SeqCst), 4);
    assert_eq!(emails_to(&address).len(), 1);
}

#[tokio::test]
async fn a_message_ses_rejects_is_not_tried_again() {
    let env = Env::new().await;
    let (challenge, _, _) = env.email_challenge().await;
    let (proxy, ses) = ses_behind_proxy(&env, 11).await;
    proxy.set(
        Fault::Refuse {
            status: 400,
            code: "MessageRejected",
        },
        1000,
    );
    let app = App::with_clients(config(&[]), real_dynamodb(&env), ses);
    let a = call(&app, &post(&challenge), env.now).await;
    assert_eq!(a.status, 500, "{a:?}");
    assert_eq!(proxy.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        n(&env.challenge_item(&challenge).await, "codesSent"),
        Some(0)
    );
}
