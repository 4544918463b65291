//! A fault-injecting HTTP/1.1 proxy in front of a stand-in. Each request
//! (one per connection: the proxy answers with `Connection: close`) is
//! either relayed or hit by the fault currently set, with its probability:
//! refused with an error the service would send, delayed before it reaches
//! the stand-in, answered late after the stand-in applied it, cut off
//! before or after the stand-in saw it, or answered without its `MessageId`.
//!
//! For tests that account per request: a [`Tagger`] on an SDK client marks
//! every attempt with the request it belongs to (set by [`tagged`]) and
//! records what the client saw of it; the proxy records, per attempt, the
//! fault it applied and what the stand-in answered ([`Hit`]). Together they
//! say what reached each dependency and what was carried out there.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to a request that the dice pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Relay untouched.
    None,
    /// Answer with the service's own refusal (`status`, error code); the
    /// stand-in never sees the request.
    Refuse { status: u16, code: &'static str },
    /// Hold the request this long, then relay it (after the client may
    /// have given up: it still reaches the stand-in).
    DelayRequest(Duration),
    /// Relay at once, then hold the answer this long: the stand-in has
    /// applied it whatever the client concludes.
    DelayResponse(Duration),
    /// Read the request and close the connection without an answer (the
    /// stand-in never sees it).
    Cut,
    /// Relay, then close the connection without passing the answer on: the
    /// stand-in applied it, the client never learns so.
    RelayThenCut,
    /// Relay, then pass the answer on with `MessageId` removed from its
    /// JSON body (SES: a 200 that names no message).
    DropMessageId,
}

impl Fault {
    /// Whether the stand-in gets the request under this fault.
    pub fn relays(self) -> bool {
        !matches!(self, Self::Refuse { .. } | Self::Cut)
    }
}

/// Which call of the function a request to a stand-in is, read from the
/// request itself (operation, key attribute, update expression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    /// Step 1: the caller's counter.
    CallerCount,
    /// Step 7: the user's counter.
    UserCount,
    /// A caller counter given back (the function never does this).
    CallerGiveBack,
    /// The user's counter given back.
    UserGiveBack,
    /// Step 3: the challenge read.
    ChallengeRead,
    /// Step 4: the user read.
    UserRead,
    /// Step 8: the reservation (`ADD codesSent`).
    Reserve,
    /// The reservation given back.
    SendGiveBack,
    /// Step 10: the commit of a code entry.
    Commit,
    /// Step 9: SES `SendEmail`.
    SendEmail,
    /// Anything else.
    Other,
}

impl Call {
    /// Classifies a request from its `X-Amz-Target` header (DynamoDB), its
    /// path (SES) and its body.
    pub fn classify(target: Option<&str>, path: &str, body: &[u8]) -> Self {
        if path.contains("/v2/email/outbound-emails") {
            return Self::SendEmail;
        }
        let Some(operation) = target.and_then(|t| t.rsplit('.').next()) else {
            return Self::Other;
        };
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let key = &body["Key"];
        let minus = body["ExpressionAttributeValues"]
            .as_object()
            .is_some_and(|values| {
                values
                    .values()
                    .any(|v| v["N"].as_str().is_some_and(|n| n.starts_with('-')))
            });
        let update = body["UpdateExpression"].as_str().unwrap_or("");
        match operation {
            "GetItem" if key.get("challengeId").is_some() => Self::ChallengeRead,
            "GetItem" if key.get("userId").is_some() => Self::UserRead,
            "UpdateItem" if key.get("pk").is_some() => {
                let user = key["pk"]["S"]
                    .as_str()
                    .is_some_and(|pk| pk.starts_with("sendEmailCode#user#"));
                match (user, minus) {
                    (true, true) => Self::UserGiveBack,
                    (true, false) => Self::UserCount,
                    (false, true) => Self::CallerGiveBack,
                    (false, false) => Self::CallerCount,
                }
            }
            "UpdateItem" if key.get("challengeId").is_some() => {
                if minus {
                    Self::SendGiveBack
                } else if update.contains("codesSent") {
                    Self::Reserve
                } else {
                    Self::Commit
                }
            }
            _ => Self::Other,
        }
    }

    fn index(self) -> u64 {
        self as u64 + 1
    }
}

/// What the stand-in answered to a relayed request.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// HTTP status.
    pub status: u16,
    /// The service's error code (`ConditionalCheckFailedException`, …), or "".
    pub error: String,
    /// The JSON body (`Null` when it is not JSON).
    pub body: Value,
}

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The request it belongs to (0: untagged).
    pub tag: u64,
    /// Which attempt of this call of that request (1: the first).
    pub nth: u32,
    /// The [`Tagger`]'s id of the attempt (0: untagged).
    pub attempt: u64,
    /// What it was.
    pub call: Call,
    /// The fault applied to it.
    pub fault: Fault,
    /// What the stand-in answered, when it was relayed and answered.
    pub upstream: Option<Upstream>,
    /// From its arrival to the end of the proxy's part.
    pub held: Duration,
}

/// Which requests a targeted fault may hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// These calls only.
    pub calls: Vec<Call>,
    /// Only this attempt of each (1: the first); `None`: every attempt.
    pub nth: Option<u32>,
}

#[derive(Debug)]
struct Plan {
    fault: Fault,
    /// Chance, in thousandths, that a request is hit.
    per_mille: u64,
    /// When set, exactly this many next requests are hit, then none.
    next: Option<u64>,
    /// When set, only requests it names may be hit.
    only: Option<Target>,
    /// Draws for untagged requests.
    rng: u64,
    /// Draws for tagged requests: a function of (seed, tag, call, attempt),
    /// so a request meets the same faults whatever order requests arrive in.
    seed: u64,
}

/// A running proxy.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    /// Its `http://127.0.0.1:port` URL.
    pub url: String,
    plan: Arc<Mutex<Plan>>,
    in_flight: Arc<AtomicUsize>,
    /// Requests hit by a fault so far.
    pub hits: Arc<AtomicUsize>,
    /// Requests seen so far.
    pub requests: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Hit>>>,
}

/// How the service spells an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// DynamoDB: awsJson1_0, the code in `__type`.
    DynamoDb,
    /// SES v2: restJson1, the code in `x-amzn-ErrorType`.
    Ses,
}

/// The header a [`Tagger`] adds (`tag.nth.attempt`); the proxy takes it off
/// before relaying and echoes the attempt id on its answer.
const TAG_HEADER: &str = "x-model-tag";
const ECHO_HEADER: &str = "x-model-attempt";

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, dialect: Dialect, seed: u64) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Self {
            url: format!("http://{}", listener.local_addr().expect("address")),
            plan: Arc::new(Mutex::new(Plan {
                fault: Fault::None,
                per_mille: 0,
                next: None,
                only: None,
                rng: seed,
                seed,
            })),
            in_flight: Arc::default(),
            hits: Arc::default(),
            requests: Arc::default(),
            log: Arc::default(),
        };
        let shared = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let proxy = shared.clone();
                proxy.in_flight.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    proxy.serve(client, upstream, dialect).await;
                    proxy.in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        proxy
    }

    /// Sets the fault and the chance (in thousandths) that a request gets it.
    pub fn set(&self, fault: Fault, per_mille: u64) {
        let mut plan = self.plan.lock().expect("plan");
        plan.fault = fault;
        plan.per_mille = per_mille;
        plan.next = None;
        plan.only = None;
    }

    /// Hits exactly the next `count` requests with `fault`, then none.
    pub fn set_next(&self, fault: Fault, count: u64) {
        let mut plan = self.plan.lock().expect("plan");
        plan.fault = fault;
        plan.next = Some(count);
        plan.only = None;
    }

    /// Like [`FaultProxy::set`], for the requests `target` names only.
    pub fn set_targeted(&self, fault: Fault, per_mille: u64, target: Target) {
        let mut plan = self.plan.lock().expect("plan");
        plan.fault = fault;
        plan.per_mille = per_mille;
        plan.next = None;
        plan.only = Some(target);
    }

    /// Every request received so far, in order of arrival.
    pub fn log(&self) -> Vec<Hit> {
        self.log.lock().expect("log").clone()
    }

    /// Waits until no request is held or relayed (delayed requests land).
    pub async fn settle(&self) {
        for _ in 0..400 {
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the fault proxy did not settle within 4 s");
    }

    fn draw(&self, tag: u64, call: Call, nth: u32) -> Fault {
        let mut plan = self.plan.lock().expect("plan");
        if let Some(only) = &plan.only {
            if !only.calls.contains(&call) || only.nth.is_some_and(|n| n != nth) {
                return Fault::None;
            }
        }
        let roll = if tag == 0 {
            splitmix(&mut plan.rng) % 1000
        } else {
            let mut state = plan.seed
                ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ call.index().wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
                ^ u64::from(nth).wrapping_mul(0x1656_67B1_9E37_79F9);
            splitmix(&mut state) % 1000
        };
        let hit = match plan.next {
            Some(left) => {
                plan.next = Some(left.saturating_sub(1));
                left > 0
            }
            None => roll < plan.per_mille,
        };
        if plan.fault != Fault::None && hit {
            self.hits.fetch_add(1, Ordering::SeqCst);
            plan.fault
        } else {
            Fault::None
        }
    }

    async fn serve(&self, mut client: TcpStream, upstream: SocketAddr, dialect: Dialect) {
        let arrived = Instant::now();
        let Some(received) = read_request(&mut client).await else {
            return;
        };
        self.requests.fetch_add(1, Ordering::SeqCst);
        let (request, tag, nth, attempt) = untag(&received);
        let call = classify_message(&request);
        let fault = self.draw(tag, call, nth);
        let mut upstream_answer = None;
        let answer = match fault {
            Fault::None => relay(&request, upstream).await,
            Fault::Refuse { status, code } => Some(refusal(dialect, status, code)),
            Fault::DelayRequest(pause) => {
                tokio::time::sleep(pause).await;
                relay(&request, upstream).await
            }
            Fault::DelayResponse(pause) => {
                let answer = relay(&request, upstream).await;
                tokio::time::sleep(pause).await;
                answer
            }
            Fault::Cut => None,
            Fault::RelayThenCut => {
                upstream_answer = relay(&request, upstream).await;
                None
            }
            Fault::DropMessageId => relay(&request, upstream).await.map(|a| {
                upstream_answer = Some(a.clone());
                without_message_id(&a)
            }),
        };
        if fault.relays() && upstream_answer.is_none() {
            upstream_answer.clone_from(&answer);
        }
        if let Some(answer) = answer {
            let answer = with_header(&answer, ECHO_HEADER, &attempt.to_string());
            // The client may have given up already; that is the point.
            let _ = client.write_all(&answer).await;
        }
        let _ = client.shutdown().await;
        self.log.lock().expect("log").push(Hit {
            tag,
            nth,
            attempt,
            call,
            fault,
            upstream: upstream_answer.as_deref().and_then(read_upstream),
            held: arrived.elapsed(),
        });
    }
}

/// A small deterministic generator (SplitMix64).
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One request: head and body, by `Content-Length`.
pub async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(with_connection_close(&buf[..end + 4 + length]));
            }
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends one request to the stand-in on a fresh connection and returns its
/// whole answer (the stand-in closes after it, as asked).
async fn relay(request: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(request).await.ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await.ok()?;
    Some(with_connection_close(&answer))
}

/// The head's lines and the body of an HTTP message.
fn split_message(message: &[u8]) -> Option<(Vec<String>, &[u8])> {
    let end = find(message, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&message[..end]);
    Some((
        head.split("\r\n").map(str::to_string).collect(),
        &message[end + 4..],
    ))
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// The message with the head lines named in `drop` taken out and `extra`
/// lines added; the body is untouched.
fn rewrite_head(message: &[u8], drop: &[&str], extra: &[String]) -> Vec<u8> {
    let Some((lines, body)) = split_message(message) else {
        return message.to_vec();
    };
    let mut head: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, line)| {
            *i == 0
                || !line
                    .split_once(':')
                    .is_some_and(|(k, _)| drop.iter().any(|d| k.trim().eq_ignore_ascii_case(d)))
        })
        .map(|(_, line)| line.as_str())
        .collect();
    head.extend(extra.iter().map(String::as_str));
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// The message with its `Connection` header replaced by `close`.
pub fn with_connection_close(message: &[u8]) -> Vec<u8> {
    rewrite_head(message, &["connection"], &["Connection: close".to_string()])
}

/// The request without the tag header, and the tag, attempt number and
/// attempt id it carried (zeros when untagged).
fn untag(request: &[u8]) -> (Vec<u8>, u64, u32, u64) {
    let Some(value) = split_message(request)
        .and_then(|(lines, _)| header(&lines, TAG_HEADER).map(str::to_string))
    else {
        return (request.to_vec(), 0, 0, 0);
    };
    let mut parts = value.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (tag, nth, attempt) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (
        rewrite_head(request, &[TAG_HEADER], &[]),
        tag,
        u32::try_from(nth).unwrap_or(0),
        attempt,
    )
}

fn classify_message(request: &[u8]) -> Call {
    let Some((lines, body)) = split_message(request) else {
        return Call::Other;
    };
    let path = lines
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    Call::classify(header(&lines, "x-amz-target"), path, body)
}

fn with_header(message: &[u8], name: &str, value: &str) -> Vec<u8> {
    rewrite_head(message, &[], &[format!("{name}: {value}")])
}

/// A JSON answer with `MessageId` taken out of its body.
fn without_message_id(answer: &[u8]) -> Vec<u8> {
    let Some((_, body)) = split_message(answer) else {
        return answer.to_vec();
    };
    let mut json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(object) = json.as_object_mut() {
        object.remove("MessageId");
    }
    let body = json.to_string();
    let head = &answer[..answer.len() - split_message(answer).map_or(0, |(_, b)| b.len())];
    let mut out = rewrite_head(
        head,
        &["content-length", "transfer-encoding"],
        &[format!("Content-Length: {}", body.len())],
    );
    out.extend_from_slice(body.as_bytes());
    out
}

fn read_upstream(answer: &[u8]) -> Option<Upstream> {
    let (lines, body) = split_message(answer)?;
    let status = lines.first()?.split_whitespace().nth(1)?.parse().ok()?;
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = header(&lines, "x-amzn-errortype")
        .map(str::to_string)
        .or_else(|| body["__type"].as_str().map(str::to_string))
        .map(|code| {
            let code = code.split(':').next().unwrap_or("");
            code.rsplit('#').next().unwrap_or("").to_string()
        })
        .unwrap_or_default();
    Some(Upstream {
        status,
        error,
        body,
    })
}

fn refusal(dialect: Dialect, status: u16, code: &str) -> Vec<u8> {
    let (content_type, extra, body) = match dialect {
        Dialect::DynamoDb => (
            "application/x-amz-json-1.0",
            String::new(),
            format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"fault proxy"}}"#
            ),
        ),
        Dialect::Ses => (
            "application/json",
            format!("x-amzn-ErrorType: {code}\r\n"),
            r#"{"message":"fault proxy"}"#.to_string(),
        ),
    };
    format!(
        "HTTP/1.1 {status} Fault\r\ncontent-type: {content_type}\r\n{extra}content-length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

tokio::task_local! {
    static REQUEST_TAG: u64;
}

/// Runs `work` (a handler call) as request `tag`: every SDK attempt it makes
/// through a client with a [`Tagger`] is recorded under that tag.
pub async fn tagged<F: Future>(tag: u64, work: F) -> F::Output {
    REQUEST_TAG.scope(tag, work).await
}

/// One attempt an SDK client made, as the client saw it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Its id (what the proxy's [`Hit::attempt`] names).
    pub id: u64,
    /// The request it belongs to.
    pub tag: u64,
    /// What it was.
    pub call: Call,
    /// Which attempt of this call of that request (1: the first).
    pub nth: u32,
    /// The [`Tagger`]'s label (which client made it).
    pub client: &'static str,
    /// The HTTP status the client received from the proxy, if any answer
    /// came (none: refused, unresolved, timed out, cut…).
    pub status: Option<u16>,
}

/// An interceptor that tags each attempt with the request running it (see
/// [`tagged`]) and records it, with the answer the client got.
#[derive(Debug, Clone)]
pub struct Tagger {
    client: &'static str,
    log: Arc<Mutex<Vec<Attempt>>>,
}

/// Attempt ids, unique in the process.
static NEXT_ATTEMPT: AtomicU64 = AtomicU64::new(1);

impl Tagger {
    /// A tagger named `client`, writing to `log` (shared by the taggers whose
    /// attempts must be numbered together).
    pub fn new(client: &'static str, log: Arc<Mutex<Vec<Attempt>>>) -> Self {
        Self { client, log }
    }

    /// Every attempt so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.log.lock().expect("attempts").clone()
    }
}

impl Intercept for Tagger {
    fn name(&self) -> &'static str {
        "Tagger"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(tag) = REQUEST_TAG.try_with(|t| *t) else {
            return Ok(());
        };
        let request = context.request_mut();
        let path = request
            .uri()
            .split_once("://")
            .map_or(request.uri(), |(_, rest)| rest);
        let path = path.find('/').map_or("", |i| &path[i..]).to_string();
        let call = Call::classify(
            request.headers().get("x-amz-target"),
            &path,
            request.body().bytes().unwrap_or(&[]),
        );
        let id = {
            let mut log = self.log.lock().expect("attempts");
            let id = NEXT_ATTEMPT.fetch_add(1, Ordering::SeqCst);
            let nth = 1 + log
                .iter()
                .filter(|a| a.tag == tag && a.call == call)
                .count() as u32;
            log.push(Attempt {
                id,
                tag,
                call,
                nth,
                client: self.client,
                status: None,
            });
            (id, nth)
        };
        request
            .headers_mut()
            .insert(TAG_HEADER, format!("{tag}.{}.{}", id.1, id.0));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(response) = context.response() else {
            return Ok(());
        };
        let Some(id) = response
            .headers()
            .get(ECHO_HEADER)
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return Ok(());
        };
        let status = response.status().as_u16();
        let mut log = self.log.lock().expect("attempts");
        if let Some(attempt) = log.iter_mut().find(|a| a.id == id) {
            attempt.status = Some(status);
        }
        Ok(())
    }
}
