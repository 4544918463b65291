//! A minimal Lambda Runtime API on loopback, enough to run the real
//! `bootstrap` the way Lambda does: it polls `GET /2018-06-01/runtime/invocation/next`
//! for an event and posts the answer to `.../invocation/{id}/response`.
//! Shared by the benchmark and the tests that run the binary.
//!
//! Like Lambda Managed Instances, it serves any number of `next` polls at
//! once (one per connection): each poll gets its own event, with its own
//! request id and trace id, and an answer is matched to its event by that
//! request id, whatever order answers come in. Each [`Invocation`] records
//! when its event was handed out and when its answer arrived, so a test can
//! tell whether invocations overlapped ([`max_overlap`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

const PREFIX: &str = "/2018-06-01/runtime";

/// The answer the function posted for one event.
#[derive(Debug)]
pub struct Invocation {
    /// The request id the event was handed out with
    /// (`Lambda-Runtime-Aws-Request-Id`).
    pub request_id: String,
    /// The trace header the event was handed out with
    /// (`Lambda-Runtime-Trace-Id`), different for every event.
    pub trace_id: String,
    /// The response document (for lambda_http: statusCode, headers, body).
    pub response: Value,
    /// True when the function reported an error instead of a response.
    pub is_error: bool,
    /// From the event being handed out to the answer arriving.
    pub latency: Duration,
    /// When the event was handed out to a `next` poll (just before the
    /// function could read it).
    pub handed_out: Instant,
    /// When the answer arrived.
    pub answered_at: Instant,
}

impl Invocation {
    /// True when this invocation and `other` were in the function at the
    /// same moment: each was handed out before the other was answered.
    pub fn overlaps(&self, other: &Invocation) -> bool {
        self.handed_out < other.answered_at && other.handed_out < self.answered_at
    }
}

/// The most invocations that were in the function at one moment (an
/// answer arriving at the very instant another is handed out does not
/// count as overlap).
pub fn max_overlap(invocations: &[Invocation]) -> usize {
    let mut edges: Vec<(Instant, i32)> = invocations
        .iter()
        .flat_map(|i| [(i.handed_out, 1), (i.answered_at, -1)])
        .collect();
    // At the same instant, answers before hand-outs.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

/// What the function posted: the document, whether it was an error, and when.
type Answer = (Value, bool, Instant);

/// An event waiting for a poll.
struct Pending {
    id: String,
    trace_id: String,
    event: Value,
    handed_out: Arc<Mutex<Option<Instant>>>,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    /// Events handed out and not answered yet, by request id.
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    polled: watch::Sender<Option<Instant>>,
    /// `next` polls currently waiting for an event.
    polls: watch::Sender<usize>,
    /// Answers posted for a request id nobody waits for (any more).
    stray_answers: AtomicUsize,
    init_error: Mutex<Option<String>>,
}

/// The emulator; drop it to stop serving.
pub struct RuntimeApi {
    addr: SocketAddr,
    sender: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
    polled: watch::Receiver<Option<Instant>>,
    counter: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An event handed to the emulator whose answer is still to come.
struct Submitted {
    id: String,
    trace_id: String,
    answer: oneshot::Receiver<Answer>,
    handed_out: Arc<Mutex<Option<Instant>>>,
}

impl RuntimeApi {
    /// Starts serving on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, receiver) = mpsc::channel(256);
        let (polled_tx, polled_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            polled: polled_tx,
            polls: watch::channel(0).0,
            stray_answers: AtomicUsize::new(0),
            init_error: Mutex::new(None),
        });
        let for_loop = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, for_loop.clone()));
            }
        });
        Ok(Self {
            addr,
            sender,
            shared,
            polled: polled_rx,
            counter: AtomicU64::new(0),
            task,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Waits until the function first asks for an event (its init is done),
    /// or it reports an init error, or `limit` passes.
    pub async fn ready(&mut self, limit: Duration) -> Option<Instant> {
        let wait = self.polled.wait_for(Option::is_some);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(at)) => *at,
            _ => None,
        }
    }

    /// The init error the function reported, if any.
    pub fn init_error(&self) -> Option<String> {
        self.shared.init_error.lock().unwrap().clone()
    }

    /// How many `next` polls are waiting for an event right now.
    pub fn polls_waiting(&self) -> usize {
        *self.shared.polls.borrow()
    }

    /// Waits until at least `count` `next` polls are waiting at once; false
    /// if that does not happen within `limit`. A function that serves one
    /// event at a time never has more than one.
    pub async fn await_polls(&self, count: usize, limit: Duration) -> bool {
        let mut polls = self.shared.polls.subscribe();
        let wait = polls.wait_for(|&n| n >= count);
        let reached = matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(_)));
        reached
    }

    /// Answers the function posted for a request id it was not handed,
    /// answered twice, or answered after [`RuntimeApi::invoke`] stopped
    /// waiting for it.
    pub fn stray_answers(&self) -> usize {
        self.shared.stray_answers.load(Ordering::SeqCst)
    }

    /// Queues `event` for the next poll (the answer is expected by its
    /// request id).
    async fn submit(&self, event: Value) -> Option<Submitted> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("bench-{n:08}-0000-0000-0000-000000000000");
        let trace_id = format!("Root=1-00000000-{n:024x};Sampled=0");
        let (reply, answer) = oneshot::channel();
        let handed_out = Arc::new(Mutex::new(None));
        // Registered before it can be handed out, so no answer can beat it.
        self.shared
            .waiting
            .lock()
            .unwrap()
            .insert(id.clone(), reply);
        let sent = self
            .sender
            .send(Pending {
                id: id.clone(),
                trace_id: trace_id.clone(),
                event,
                handed_out: handed_out.clone(),
            })
            .await;
        if sent.is_err() {
            self.shared.waiting.lock().unwrap().remove(&id);
            return None;
        }
        Some(Submitted {
            id,
            trace_id,
            answer,
            handed_out,
        })
    }

    /// Hands `event` to the function and waits for its answer.
    pub async fn invoke(&self, event: Value, limit: Duration) -> Option<Invocation> {
        let deadline = tokio::time::Instant::now() + limit;
        let submitted = self.submit(event).await?;
        collect(&self.shared, submitted, deadline).await
    }

    /// Queues every event at once, in order, for whichever polls come (a
    /// function with several polls waiting gets several at once), and
    /// waits up to `limit` in all for the answers, given in the order of
    /// `events`; `None` for an event not answered in time.
    pub async fn invoke_all(&self, events: Vec<Value>, limit: Duration) -> Vec<Option<Invocation>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut submitted = Vec::with_capacity(events.len());
        for event in events {
            submitted.push(self.submit(event).await);
        }
        let mut answers = Vec::with_capacity(submitted.len());
        for one in submitted {
            answers.push(match one {
                Some(one) => collect(&self.shared, one, deadline).await,
                None => None,
            });
        }
        answers
    }

    /// Closed loop: keeps exactly `in_flight` events queued or in the
    /// function (fewer only at the end), handing over the next event as soon
    /// as an answer arrives, until every event has been answered or `limit`
    /// passes; answers are given in the order of `events`, `None` for one
    /// not answered in time. Unlike [`RuntimeApi::invoke_all`], which queues
    /// every event at once, this holds the load at one level for as long as
    /// the events last.
    pub async fn invoke_closed_loop(
        &self,
        events: Vec<Value>,
        in_flight: usize,
        limit: Duration,
    ) -> Vec<Option<Invocation>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut answers: Vec<Option<Invocation>> = Vec::new();
        answers.resize_with(events.len(), || None);
        let mut events = events.into_iter().enumerate();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < in_flight.max(1) {
                let Some((index, event)) = events.next() else {
                    break;
                };
                if let Some(submitted) = self.submit(event).await {
                    let shared = self.shared.clone();
                    running
                        .spawn(async move { (index, collect(&shared, submitted, deadline).await) });
                }
            }
            match running.join_next().await {
                Some(Ok((index, answer))) => answers[index] = answer,
                Some(Err(_)) => {}
                None => return answers,
            }
        }
    }
}

/// Waits for the answer to a submitted event until `deadline`.
async fn collect(
    shared: &Shared,
    submitted: Submitted,
    deadline: tokio::time::Instant,
) -> Option<Invocation> {
    let got = tokio::time::timeout_at(deadline, submitted.answer).await;
    let Ok(Ok((response, is_error, at))) = got else {
        shared.waiting.lock().unwrap().remove(&submitted.id);
        return None;
    };
    let started = submitted.handed_out.lock().unwrap().unwrap_or(at);
    Some(Invocation {
        request_id: submitted.id,
        trace_id: submitted.trace_id,
        response,
        is_error,
        latency: at.saturating_duration_since(started),
        handed_out: started,
        answered_at: at,
    })
}

/// Counts a `next` poll as waiting for as long as it lives.
struct WaitingPoll<'a>(&'a watch::Sender<usize>);

impl<'a> WaitingPoll<'a> {
    fn new(polls: &'a watch::Sender<usize>) -> Self {
        polls.send_modify(|n| *n += 1);
        Self(polls)
    }
}

impl Drop for WaitingPoll<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let reply = if method == "GET" && path == format!("{PREFIX}/invocation/next") {
            // A poll whose connection closes gives up its place: it must
            // not take an event it could no longer deliver.
            tokio::select! {
                reply = next_event(&shared) => reply,
                () = closed(&mut reader) => return,
            }
        } else {
            handle(&shared, &method, &path, &body)
        };
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Resolves when the peer closes its side (or the connection fails); a
/// client sends nothing more while its poll is pending.
async fn closed(reader: &mut BufReader<OwnedReadHalf>) {
    match reader.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Serves one `next` poll: waits for an event and hands it out with its
/// own request id and trace id.
async fn next_event(shared: &Shared) -> Vec<u8> {
    shared.polled.send_if_modified(|at| {
        if at.is_none() {
            *at = Some(Instant::now());
            true
        } else {
            false
        }
    });
    let next = {
        let _waiting = WaitingPoll::new(&shared.polls);
        shared.queue.lock().await.recv().await
    };
    // No await from here on: once taken, an event is always handed out.
    let Some(pending) = next else {
        return http(500, &[], b"");
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or(0)
        .to_string();
    let body = pending.event.to_string();
    *pending.handed_out.lock().unwrap() = Some(Instant::now());
    http(
        200,
        &[
            ("Lambda-Runtime-Aws-Request-Id", pending.id.as_str()),
            ("Lambda-Runtime-Deadline-Ms", deadline.as_str()),
            (
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:send-email-code",
            ),
            ("Lambda-Runtime-Trace-Id", pending.trace_id.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

fn handle(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return http(404, &[], b"");
    };
    if method == "POST" && rest == "/init/error" {
        *shared.init_error.lock().unwrap() = Some(String::from_utf8_lossy(body).into_owned());
        shared.polled.send_replace(Some(Instant::now()));
        return http(202, &[], b"{}");
    }
    if method == "POST" {
        if let Some(tail) = rest.strip_prefix("/invocation/") {
            if let Some((id, kind)) = tail.split_once('/') {
                let sender = shared.waiting.lock().unwrap().remove(id);
                match sender {
                    Some(sender) => {
                        let value = serde_json::from_slice(body).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(body).into_owned())
                        });
                        let _ = sender.send((value, kind == "error", Instant::now()));
                    }
                    None => {
                        shared.stray_answers.fetch_add(1, Ordering::SeqCst);
                    }
                }
                return http(202, &[], b"{}");
            }
        }
    }
    http(404, &[], b"")
}

fn http(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
