//! A minimal Lambda Runtime API on loopback, enough to run the real
//! `bootstrap` the way Lambda does: it polls `GET /2018-06-01/runtime/invocation/next`
//! for an event and posts the answer to `.../invocation/{id}/response`.
//! Shared by the benchmark and the tests that run the binary.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

const PREFIX: &str = "/2018-06-01/runtime";

/// The answer the function posted for one event.
#[derive(Debug)]
pub struct Invocation {
    /// The response document (for lambda_http: statusCode, headers, body).
    pub response: Value,
    /// True when the function reported an error instead of a response.
    pub is_error: bool,
    /// From the event being handed out to the answer arriving.
    pub latency: Duration,
    /// When the answer arrived.
    pub answered_at: Instant,
}

/// What the function posted: the document, whether it was an error, and when.
type Answer = (Value, bool, Instant);

struct Pending {
    id: String,
    event: Value,
    reply: oneshot::Sender<Answer>,
    handed_out: Arc<Mutex<Option<Instant>>>,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    polled: watch::Sender<Option<Instant>>,
    init_error: Mutex<Option<String>>,
}

/// The emulator; drop it to stop serving.
pub struct RuntimeApi {
    addr: SocketAddr,
    sender: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
    polled: watch::Receiver<Option<Instant>>,
    counter: std::sync::atomic::AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Starts serving on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, receiver) = mpsc::channel(16);
        let (polled_tx, polled_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            polled: polled_tx,
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
            counter: Default::default(),
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

    /// Hands `event` to the function and waits for its answer.
    pub async fn invoke(&self, event: Value, limit: Duration) -> Option<Invocation> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("bench-{n:08}-0000-0000-0000-000000000000");
        let (reply, answer) = oneshot::channel();
        let handed_out = Arc::new(Mutex::new(None));
        self.sender
            .send(Pending {
                id,
                event,
                reply,
                handed_out: handed_out.clone(),
            })
            .await
            .ok()?;
        let (response, is_error, at) = tokio::time::timeout(limit, answer).await.ok()?.ok()?;
        let started = handed_out.lock().unwrap().unwrap_or(at);
        Some(Invocation {
            response,
            is_error,
            latency: at.saturating_duration_since(started),
            answered_at: at,
        })
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
        let reply = handle(&shared, &method, &path, &body).await;
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

async fn handle(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return http(404, &[], b"");
    };
    if method == "GET" && rest == "/invocation/next" {
        shared.polled.send_if_modified(|at| {
            if at.is_none() {
                *at = Some(Instant::now());
                true
            } else {
                false
            }
        });
        let next = shared.queue.lock().await.recv().await;
        let Some(pending) = next else {
            return http(500, &[], b"");
        };
        shared
            .waiting
            .lock()
            .unwrap()
            .insert(pending.id.clone(), pending.reply);
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() + 30_000)
            .unwrap_or(0)
            .to_string();
        let body = pending.event.to_string();
        *pending.handed_out.lock().unwrap() = Some(Instant::now());
        return http(
            200,
            &[
                ("Lambda-Runtime-Aws-Request-Id", pending.id.as_str()),
                ("Lambda-Runtime-Deadline-Ms", deadline.as_str()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:send-email-code",
                ),
                (
                    "Lambda-Runtime-Trace-Id",
                    "Root=1-00000000-000000000000000000000000",
                ),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
    }
    if method == "POST" && rest == "/init/error" {
        *shared.init_error.lock().unwrap() = Some(String::from_utf8_lossy(body).into_owned());
        shared.polled.send_replace(Some(Instant::now()));
        return http(202, &[], b"{}");
    }
    if method == "POST" {
        if let Some(tail) = rest.strip_prefix("/invocation/") {
            if let Some((id, kind)) = tail.split_once('/') {
                let sender = shared.waiting.lock().unwrap().remove(id);
                if let Some(sender) = sender {
                    let value = serde_json::from_slice(body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(body).into_owned())
                    });
                    let _ = sender.send((value, kind == "error", Instant::now()));
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
