//! A fault-injecting HTTP/1.1 proxy in front of a stand-in. Each request
//! (one per connection: the proxy answers with `Connection: close`) is
//! either relayed or hit by the fault currently set, with its probability:
//! refused with an error the service would send, delayed before it reaches
//! the stand-in, answered late after the stand-in applied it, or cut off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Read the request and close the connection without an answer.
    Cut,
}

#[derive(Debug)]
struct Plan {
    fault: Fault,
    /// Chance, in thousandths, that a request is hit.
    per_mille: u64,
    /// When set, exactly this many next requests are hit, then none.
    next: Option<u64>,
    rng: u64,
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
}

/// How the service spells an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// DynamoDB: awsJson1_0, the code in `__type`.
    DynamoDb,
    /// SES v2: restJson1, the code in `x-amzn-ErrorType`.
    Ses,
}

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
                rng: seed,
            })),
            in_flight: Arc::default(),
            hits: Arc::default(),
            requests: Arc::default(),
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
    }

    /// Hits exactly the next `count` requests with `fault`, then none.
    pub fn set_next(&self, fault: Fault, count: u64) {
        let mut plan = self.plan.lock().expect("plan");
        plan.fault = fault;
        plan.next = Some(count);
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

    fn draw(&self) -> Fault {
        let mut plan = self.plan.lock().expect("plan");
        let roll = splitmix(&mut plan.rng) % 1000;
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
        let Some(request) = read_request(&mut client).await else {
            return;
        };
        self.requests.fetch_add(1, Ordering::SeqCst);
        let fault = self.draw();
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
        };
        if let Some(answer) = answer {
            // The client may have given up already; that is the point.
            let _ = client.write_all(&answer).await;
        }
        let _ = client.shutdown().await;
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
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
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

/// The message with its `Connection` header replaced by `close`.
fn with_connection_close(message: &[u8]) -> Vec<u8> {
    let Some(end) = find(message, b"\r\n\r\n") else {
        return message.to_vec();
    };
    let head = String::from_utf8_lossy(&message[..end]);
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(&message[end + 4..]);
    out
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
