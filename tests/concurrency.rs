//! One process serving several invocations at once, as on Lambda Managed
//! Instances (`AWS_LAMBDA_MAX_CONCURRENCY`): the real `bootstrap` under the
//! Runtime API emulator, which hands out an event to every `next` poll
//! waiting. The caller limit holds across concurrent invocations, a
//! concurrent mix of paths answers exactly as the same requests one at a
//! time, and every log line names the invocation it belongs to.
//!
//! Overlap is made certain, not hoped for: SES sits behind a gate that holds
//! each request until several are held at once (or, briefly, gives up), so
//! a process serving one invocation at a time can never have two there.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fault_proxy::{read_request, with_connection_close};
use common::runtime_api::{max_overlap, Invocation};
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// For answers, the function's start-up and its polls: generous, never
/// reached when things work.
const LIMIT: Duration = Duration::from_secs(20);

/// The longest the gate holds one SES request. Well under the function's
/// 1 s attempt timeout (src/aws/mod.rs), so a held request is never a
/// timeout; far longer than concurrent invocations take to arrive together.
const HOLD: Duration = Duration::from_millis(300);

/// The real binary with JSON logs.
struct Function(Running);

impl std::ops::Deref for Function {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.0
    }
}

impl Function {
    /// Starts `bootstrap` with the stand-ins' environment, JSON logs and
    /// `extra`, and waits for its first poll.
    async fn start(extra: &[(&str, &str)]) -> Self {
        Self(
            Running::start(LIMIT, |command| {
                command
                    .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
                    // One long window: a run cannot straddle a window
                    // boundary unless it starts within seconds of midnight UTC.
                    .env("RATE_LIMIT_WINDOW_SECONDS", "86400")
                    .envs(extra.iter().copied());
            })
            .await,
        )
    }

    /// Stops the process; everything it wrote, as JSON lines.
    async fn finish(self) -> Vec<Value> {
        self.0
            .stop()
            .await
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect()
    }
}

/// A relay in front of a stand-in that keeps every request it saw and, as
/// a gate, can hold each one until `need` requests are held at once (then
/// lets every request through from then on), or until it has held that one
/// request for [`HOLD`]. `need` 0: no holding.
#[derive(Clone)]
struct Relay {
    url: String,
    need: usize,
    held: Arc<Mutex<usize>>,
    /// The most requests held at one moment.
    most_held: Arc<AtomicUsize>,
    open: watch::Sender<bool>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    /// A relay to the stand-in whose URL is in `variable`.
    async fn start(variable: &str, need: usize) -> Self {
        let upstream = std::env::var(variable)
            .expect("run through ./scripts/test.sh")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            need,
            held: Arc::default(),
            most_held: Arc::default(),
            open: watch::channel(need == 0).0,
            seen: Arc::default(),
        };
        let shared = relay.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let relay = shared.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move { relay.serve(client, &upstream).await });
            }
        });
        relay
    }

    /// The gate in front of SES.
    async fn ses_gate(need: usize) -> Self {
        Self::start("AWS_ENDPOINT_URL_SESV2", need).await
    }

    fn most_held(&self) -> usize {
        self.most_held.load(Ordering::SeqCst)
    }

    /// How many requests seen so far contain every one of `parts`.
    fn seen_with(&self, parts: &[&str]) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|r| parts.iter().all(|p| r.contains(p)))
            .count()
    }

    /// One request per connection (the answer says `Connection: close`).
    async fn serve(&self, mut client: TcpStream, upstream: &str) {
        let Some(request) = read_request(&mut client).await else {
            return;
        };
        // The function's early connection (PRECONNECT, on by default) opens
        // with a HEAD: no AWS call, so neither seen nor held.
        let call = !request.starts_with(b"HEAD ");
        if call {
            self.seen
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request).into_owned());
        }
        if call && !*self.open.borrow() {
            {
                let mut held = self.held.lock().unwrap();
                *held += 1;
                self.most_held.fetch_max(*held, Ordering::SeqCst);
                if *held >= self.need {
                    self.open.send_replace(true);
                }
            }
            let mut open = self.open.subscribe();
            let _ = tokio::time::timeout(HOLD, open.wait_for(|&o| o)).await;
            *self.held.lock().unwrap() -= 1;
        }
        let mut server = TcpStream::connect(upstream).await.unwrap();
        server.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        server.read_to_end(&mut answer).await.unwrap();
        let _ = client.write_all(&with_connection_close(&answer)).await;
        let _ = client.shutdown().await;
    }
}

/// The stand-ins, once this process's tables exist. Their creation
/// (tests/common) runs under the SDK's 2 s operation timeout, which a cold
/// DynamoDB Local on a busy machine can miss; a failed creation leaves
/// nothing behind and is simply tried again (with fresh names).
async fn stack() -> Env {
    for _ in 0..2 {
        if std::panic::catch_unwind(|| {
            tables();
        })
        .is_ok()
        {
            break;
        }
    }
    Env::new().await
}

/// A POST of the HTTP API sample for `challenge` from `ip`.
fn post_from(challenge: &str, ip: &str) -> Value {
    with_caller(with_challenge(event("http-api.json"), challenge), ip)
}

/// Status, `errorType` and `error` of an answer (`errorType` empty on success).
fn outcome(inv: &Invocation) -> (u64, String, String) {
    assert!(!inv.is_error, "an answer, not an invocation error: {inv:?}");
    let body: Value =
        serde_json::from_str(inv.response["body"].as_str().unwrap_or("")).expect("a JSON body");
    (
        inv.response["statusCode"].as_u64().unwrap_or(0),
        body["errorType"].as_str().unwrap_or("").to_string(),
        body["error"].as_str().unwrap_or("").to_string(),
    )
}

fn answered(invocations: Vec<Option<Invocation>>) -> Vec<Invocation> {
    invocations
        .into_iter()
        .enumerate()
        .map(|(i, inv)| inv.unwrap_or_else(|| panic!("event {i} got no answer in time")))
        .collect()
}

/// The one "request served" / "request refused" line per request.
fn summaries(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["outcome"].is_string())
        .collect()
}

#[tokio::test]
async fn one_caller_gets_exactly_its_limit_across_concurrent_invocations() {
    let env = stack().await;
    let mut challenges = Vec::new();
    for _ in 0..8 {
        challenges.push(env.email_challenge().await);
    }
    let ip = random_ip();
    let gate = Relay::ses_gate(4).await;
    // Only to see each caller-counter write that reached DynamoDB.
    let dynamodb = Relay::start("AWS_ENDPOINT_URL_DYNAMODB", 0).await;
    let function = Function::start(&[
        ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
        ("RATE_LIMIT_MAX", "5"),
        ("AWS_ENDPOINT_URL_SESV2", &gate.url),
        ("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb.url),
    ])
    .await;
    let polled_at_once = function.api.await_polls(4, LIMIT).await;

    let events = challenges
        .iter()
        .map(|(c, _, _)| post_from(c, &ip))
        .collect();
    let invocations = answered(function.api.invoke_all(events, LIMIT).await);
    assert_eq!(function.api.stray_answers(), 0);
    let lines = function.finish().await;
    let logged: Vec<String> = summaries(&lines)
        .iter()
        .map(|l| {
            let f = &l["fields"];
            format!(
                "{} {} {} limit={} from_memory={}",
                f["request_id"], f["status"], f["error_type"], f["limit"], f["from_memory"]
            )
        })
        .collect();

    let mut passed = 0;
    for (inv, (_, _, address)) in invocations.iter().zip(&challenges) {
        let (status, error_type, error) = outcome(inv);
        let sent = emails_to(address).len();
        match status {
            200 => {
                passed += 1;
                assert_eq!(sent, 1, "one email per request served");
            }
            429 => {
                assert_eq!(error_type, "error-too-many-requests");
                assert!(
                    error.starts_with("Error, too many requests."),
                    "the caller's 429, not another limit's: {error}"
                );
                assert_eq!(sent, 0, "nothing sent past the caller limit");
            }
            other => panic!("only 200 or the caller's 429, got {other}: {inv:?}\n{logged:#?}"),
        }
    }
    // Every request not refused from memory writes the counter once; the
    // SDK may send a write again after an attempt timed out, and the
    // contract lets such a write count twice (never less).
    let from_memory = summaries(&lines)
        .iter()
        .filter(|l| l["fields"]["from_memory"] == true)
        .count();
    let counter_writes = dynamodb.seen_with(&["UpdateItem", &format!("#{ip}#"), ":limit"]);
    assert!(
        counter_writes >= 8 - from_memory,
        "{counter_writes} counter writes for {} requests counted\n{logged:#?}",
        8 - from_memory
    );
    let resent = counter_writes - (8 - from_memory);
    assert!(
        passed <= 5 && passed + resent >= 5,
        "exactly RATE_LIMIT_MAX (5) requests pass the caller limit, fewer only \
         by writes sent again ({resent}); {passed} passed\n{logged:#?}"
    );
    let refused = summaries(&lines)
        .into_iter()
        .filter(|l| l["fields"]["limit"] == "caller")
        .count();
    assert_eq!(refused, 8 - passed, "caller refusals logged: {logged:#?}");

    let most_held = gate.most_held();
    let overlap = max_overlap(&invocations);
    assert!(
        polled_at_once && most_held >= 2 && overlap >= 2,
        "invocations overlapped: 4 polls waiting at once: {polled_at_once}, \
         most SES requests in flight at once: {most_held}, \
         most invocations in the function at once: {overlap}"
    );
}

/// Fresh data for one request of every kind; each from its own caller.
async fn mix(env: &Env) -> Vec<Value> {
    let (success, _, _) = env.email_challenge().await;
    let (user, _) = env.user(serde_json::json!({})).await;
    let expired = env.challenge(&user, "email", -60).await;
    let totp = env.challenge(&user, "totp", 900).await;
    [
        post_from(&success, &random_ip()),
        post_from(&unique("ch-"), &random_ip()),
        with_caller(event("http-api-invalid-json.json"), &random_ip()),
        with_caller(event("http-api-get.json"), &random_ip()),
        post_from(&expired, &random_ip()),
        post_from(&totp, &random_ip()),
    ]
    .into()
}

#[tokio::test]
async fn a_concurrent_mix_answers_as_the_same_requests_one_at_a_time() {
    let env = stack().await;
    let expected: Vec<(u64, &str)> = vec![
        (200, ""),
        (400, "error-challenge-not-found"),
        (400, "error-parameter-required"),
        (405, "error-method-not-allowed"),
        (400, "error-challenge-expired"),
        (400, "error-invalid-challenge-method"),
    ];

    // One at a time: the classic runtime, each answer before the next event.
    let mut events = mix(&env).await;
    events.extend(mix(&env).await);
    let function = Function::start(&[]).await;
    let mut one_at_a_time = Vec::new();
    for event in events {
        let inv = function.api.invoke(event, LIMIT).await.expect("an answer");
        one_at_a_time.push(outcome(&inv));
    }
    function.finish().await;

    // The same kinds of request on fresh data, all at once.
    let mut events = mix(&env).await;
    events.extend(mix(&env).await);
    let function = Function::start(&[("AWS_LAMBDA_MAX_CONCURRENCY", "6")]).await;
    // Six polls waiting take six events at once; each takes DynamoDB round
    // trips to answer, far longer than handing out the others.
    let polled_at_once = function.api.await_polls(6, LIMIT).await;
    let invocations = answered(function.api.invoke_all(events, LIMIT).await);
    let at_once: Vec<_> = invocations.iter().map(outcome).collect();
    let overlap = max_overlap(&invocations);
    assert_eq!(function.api.stray_answers(), 0);
    function.finish().await;

    let kinds = |answers: &[(u64, String, String)]| -> Vec<(u64, String)> {
        answers.iter().map(|(s, t, _)| (*s, t.clone())).collect()
    };
    let twice: Vec<(u64, String)> = expected
        .iter()
        .chain(&expected)
        .map(|(s, t)| (*s, t.to_string()))
        .collect();
    assert_eq!(kinds(&one_at_a_time), twice, "one at a time, as documented");
    assert_eq!(
        at_once, one_at_a_time,
        "the same status, errorType and error text for each request"
    );
    assert!(
        polled_at_once && overlap >= 2,
        "the mix ran concurrently: 6 polls waiting at once: {polled_at_once}, \
         most invocations in the function at once: {overlap}"
    );
}

#[tokio::test]
async fn each_log_line_names_its_own_request_id() {
    let env = stack().await;
    let mut requests = Vec::new();
    for _ in 0..8 {
        let (challenge, _, address) = env.email_challenge().await;
        requests.push((challenge, address, random_ip()));
    }
    let gate = Relay::ses_gate(4).await;
    let function = Function::start(&[
        ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
        ("AWS_ENDPOINT_URL_SESV2", &gate.url),
    ])
    .await;
    assert!(function.api.await_polls(4, LIMIT).await, "4 polls at once");
    let events = requests.iter().map(|(c, _, ip)| post_from(c, ip)).collect();
    let invocations = answered(function.api.invoke_all(events, LIMIT).await);
    assert!(
        gate.most_held() >= 2,
        "requests were in SES together (most at once: {})",
        gate.most_held()
    );
    let lines = function.finish().await;

    // Each request's own features, by its caller address.
    let by_caller: HashMap<&str, (&Invocation, &str, &str)> = invocations
        .iter()
        .zip(&requests)
        .map(|(inv, (challenge, address, ip))| {
            assert_eq!(outcome(inv).0, 200, "{inv:?}");
            (ip.as_str(), (inv, challenge.as_str(), address.as_str()))
        })
        .collect();
    let served = summaries(&lines);
    assert_eq!(served.len(), 8, "one summary line per request: {lines:?}");
    for line in served {
        let caller = line["fields"]["caller"].as_str().unwrap_or("");
        let Some((inv, challenge, address)) = by_caller.get(caller) else {
            panic!("a line for a caller that sent nothing: {line}");
        };
        let mail = emails_to(address);
        assert_eq!(mail.len(), 1, "one email to {caller}'s user");
        assert_eq!(line["fields"]["request_id"], *inv.request_id, "{line}");
        assert_eq!(line["span"]["requestId"], *inv.request_id, "{line}");
        assert_eq!(line["span"]["xrayTraceId"], *inv.trace_id, "{line}");
        assert_eq!(line["fields"]["challenge_id"], *challenge, "{line}");
        assert_eq!(line["fields"]["message_id"], mail[0]["messageId"], "{line}");
    }
    // Every other log line too belongs to one of the invocations.
    let ids: Vec<&str> = invocations.iter().map(|i| i.request_id.as_str()).collect();
    for line in lines.iter().filter(|l| l.get("_aws").is_none()) {
        let id = line["span"]["requestId"].as_str().unwrap_or("");
        assert!(ids.contains(&id), "a line of no invocation: {line}");
    }
}
