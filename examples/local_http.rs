//! A local HTTP front for the function: each HTTP request becomes the Lambda
//! function URL event AWS would send (payload 2.0; a body that is not valid
//! UTF-8 is base64-encoded, as AWS does for binary bodies), runs through the
//! same `handle` the Lambda entry point calls, and the answer goes back as
//! HTTP. Used by scripts/test.sh for schemathesis, and handy with curl:
//!
//!   cargo run --example local_http -- 8080   (configuration from the environment)
//!
//! Loopback only; one request at a time per connection; no TLS.

// In a developer tool, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;

use lambda_http::Body;
use send_email_code::{aws, handle, App, Config, Timestamp};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Largest body accepted, like a function URL's 6 MB payload limit.
const MAX_BODY: usize = 6 * 1024 * 1024;

#[tokio::main]
async fn main() -> Result<(), String> {
    let port: u16 = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "8080".into())
        .parse()
        .map_err(|_| "port must be a number")?;
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let app = Arc::new(App::new(config, &aws::sdk_config().await));
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "listening on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _ = serve(stream, peer, &app).await;
        });
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, app: &App) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("GET").to_string(),
            parts.next().unwrap_or("/").to_string(),
        );
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut h = Vec::new();
            if reader.read_until(b'\n', &mut h).await? == 0 {
                return Ok(());
            }
            let h = String::from_utf8_lossy(&h).trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if length > MAX_BODY {
            write.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
            return Ok(());
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let answer = invoke(app, &method, &target, &headers, body, peer).await;
        write.write_all(&answer).await?;
    }
}

/// Builds the function URL event, runs the handler, renders the HTTP answer.
async fn invoke(
    app: &App,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    peer: SocketAddr,
) -> Vec<u8> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut header_map = Map::new();
    for (name, value) in headers {
        let joined = match header_map.get(name).and_then(Value::as_str) {
            Some(prev) => format!("{prev},{value}"),
            None => value.clone(),
        };
        header_map.insert(name.clone(), json!(joined));
    }
    let (body_value, encoded) = match String::from_utf8(body) {
        Ok(text) => (json!(text), false),
        Err(e) => (json!(STANDARD.encode(e.as_bytes())), true),
    };
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": peer.ip().to_string(), "userAgent": "local"},
            "requestId": "local",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0
        },
        "body": body_value,
        "isBase64Encoded": encoded,
    });
    // The function's own event path: what lambda_http cannot convert is
    // answered as the function answers it on Lambda.
    let req = send_email_code::http::event::to_request(&event.to_string());
    let response = handle(app, req, Timestamp::now()).await;
    let body: Vec<u8> = match response.body() {
        Body::Text(t) => t.clone().into_bytes(),
        Body::Binary(b) => b.clone(),
        _ => Vec::new(),
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\ncontent-length: {}\r\n",
        response.status(),
        body.len()
    );
    for (name, value) in response.headers() {
        out.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}
