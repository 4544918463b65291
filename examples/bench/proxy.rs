//! A TCP proxy in front of a stand-in that records every HTTP request passing
//! through it (operation, whether a read was strongly consistent, when it was
//! sent, when its answer began), so the benchmark can count AWS calls and
//! request units per invocation and how many calls ran one after another.
//! HTTP/1.1 without pipelining, as the AWS SDK speaks it: on one connection,
//! bytes from the client after an answer begin the next request. The `HEAD`
//! requests that open the function's early connections are not calls.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request seen by a proxy.
#[derive(Debug, Clone)]
pub struct Call {
    /// `DynamoDB` or `SES`.
    pub service: &'static str,
    /// `UpdateItem`, `GetItem`, `SendEmail`, …
    pub operation: String,
    /// The request asked for a strongly consistent read (`"ConsistentRead":true`).
    pub consistent_read: bool,
    /// First byte of the request.
    pub start: Instant,
    /// First byte of the answer.
    pub end: Option<Instant>,
}

/// Calls recorded by every proxy, in order of arrival.
pub type Calls = Arc<Mutex<Vec<Call>>>;

/// Starts a proxy for `service` to `upstream` (an `http://host:port` URL) on a
/// free loopback port; returns its URL.
pub async fn start(service: &'static str, upstream: &str, calls: Calls) -> std::io::Result<String> {
    let upstream: SocketAddr = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|e| std::io::Error::other(format!("upstream {upstream}: {e}")))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let calls = calls.clone();
            tokio::spawn(relay(service, client, upstream, calls));
        }
    });
    Ok(url)
}

async fn relay(service: &'static str, client: TcpStream, upstream: SocketAddr, calls: Calls) {
    let _ = client.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    // Index in `calls` of the request on this connection awaiting its answer.
    let open: Arc<Mutex<Option<usize>>> = Arc::default();
    let record = |chunk: &[u8], open: &Mutex<Option<usize>>, calls: &Calls| {
        let mut open = open.lock().unwrap();
        let mut calls = calls.lock().unwrap();
        let index = match *open {
            Some(index) => index,
            // The function's early connections (PRECONNECT) open with a
            // HEAD request: no AWS call, so not recorded.
            None if chunk.starts_with(b"HEAD ") => return,
            None => {
                calls.push(Call {
                    service,
                    operation: operation(chunk),
                    consistent_read: false,
                    start: Instant::now(),
                    end: None,
                });
                *open = Some(calls.len() - 1);
                calls.len() - 1
            }
        };
        // The body may come in a later chunk than the head.
        if contains(chunk, b"\"ConsistentRead\":true") {
            if let Some(call) = calls.get_mut(index) {
                call.consistent_read = true;
            }
        }
    };

    // The request's clock starts when the client sends it, not when this
    // proxy has finished connecting upstream.
    let mut first = vec![0u8; 64 * 1024];
    let n = match client_read.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    record(&first[..n], &open, &calls);
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut server_read, mut server_write) = server.into_split();
    if server_write.write_all(&first[..n]).await.is_err() {
        return;
    }

    let (calls_up, open_up) = (calls.clone(), open.clone());
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            record(&buf[..n], &open_up, &calls_up);
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(index) = open.lock().unwrap().take() {
                if let Some(call) = calls.lock().unwrap().get_mut(index) {
                    call.end = Some(Instant::now());
                }
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The operation named in a request head: DynamoDB's `X-Amz-Target`
/// (`DynamoDB_20120810.GetItem` → `GetItem`), else SES v2's path.
fn operation(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    for line in text.lines() {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("x-amz-target") {
                return value.trim().rsplit('.').next().unwrap_or("").to_string();
            }
        }
    }
    let path = text.split_whitespace().nth(1).unwrap_or("");
    if path.ends_with("/outbound-emails") {
        "SendEmail".to_string()
    } else {
        path.to_string()
    }
}

/// The longest chain of calls where each starts after the previous one's
/// answer began: the number of round trips on the critical path.
pub fn sequential_rounds(calls: &[Call]) -> usize {
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.start);
    let mut depth = vec![1usize; sorted.len()];
    for i in 0..sorted.len() {
        for j in 0..i {
            if sorted[j].end.is_some_and(|end| end <= sorted[i].start) {
                depth[i] = depth[i].max(depth[j] + 1);
            }
        }
    }
    depth.into_iter().max().unwrap_or(0)
}
