//! Test harness: the real local stand-ins started by scripts/test.sh, tables
//! per test process, sample events from events/, and readers for results.
#![allow(dead_code)]

pub mod fault_proxy;

#[allow(unused_imports)] // only the tests that run the real binary use it
pub use harness::runtime_api;
pub use send_email_code::aws::tables;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::{Body, Request, Response};
use send_email_code::{aws, App, Config, Timestamp};
use serde_json::{json, Value};

pub use tables::TableNames;

pub type Item = HashMap<String, AttributeValue>;

/// The secret every test app uses.
pub const SECRET: &str = "test-secret-test-secret-test-secret!";

fn endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the integration tests through ./scripts/test.sh")
    })
}

/// Tables for this test process, created once.
pub fn tables() -> &'static TableNames {
    static TABLES: OnceLock<TableNames> = OnceLock::new();
    TABLES.get_or_init(|| {
        let prefix = format!("t{}-{}-", std::process::id(), unique(""));
        let names = TableNames {
            challenges: format!("{prefix}challenges"),
            users: format!("{prefix}users"),
            rate_limits: format!("{prefix}rate-limits"),
        };
        let for_thread = names.clone();
        // Each #[tokio::test] has its own runtime; create the tables on a
        // runtime of their own so no client outlives the one it was built in.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                // Table creation on a freshly started, loaded DynamoDB Local
                // can take longer than the function's own timeouts allow.
                let sdk = aws::sdk_config().await;
                let patient = aws_sdk_dynamodb::config::Builder::from(&sdk)
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_timeout(std::time::Duration::from_secs(60))
                            .operation_attempt_timeout(std::time::Duration::from_secs(20))
                            .build(),
                    )
                    .build();
                tables::create_tables(&aws_sdk_dynamodb::Client::from_conf(patient), &for_thread)
                    .await
            })
        })
        .join()
        .expect("table creation thread")
        .expect("create tables");
        names
    })
}

/// A random lowercase hex string with a prefix, for ids no other test uses.
pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("random");
    format!("{prefix}{}", hex::encode(bytes))
}

/// A random caller address (documentation and private ranges only).
pub fn random_ip() -> String {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).expect("random");
    format!("10.{}.{}.{}", b[0], b[1], b[2].max(1))
}

/// Environment variables of a test configuration, before overrides.
pub fn base_vars() -> HashMap<String, String> {
    let t = tables();
    HashMap::from(
        [
            ("CHALLENGES_TABLE", t.challenges.as_str()),
            ("USERS_TABLE", t.users.as_str()),
            ("RATE_LIMIT_TABLE", t.rate_limits.as_str()),
            ("SENDER_EMAIL", "Rocket.Chat <no-reply@chat.example.test>"),
            ("CODE_HMAC_SECRET", SECRET),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

/// A configuration validated by the production code, with overrides.
pub fn config(overrides: &[(&str, &str)]) -> Config {
    let mut vars = base_vars();
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test configuration is valid")
}

/// One test's view of the stack.
pub struct Env {
    pub sdk: SdkConfig,
    pub db: aws_sdk_dynamodb::Client,
    pub now: Timestamp,
}

impl Env {
    /// Connects to the stand-ins (endpoints from the environment, exactly as
    /// the function itself finds them).
    pub async fn new() -> Self {
        endpoint("AWS_ENDPOINT_URL_DYNAMODB");
        endpoint("AWS_ENDPOINT_URL_SESV2");
        tables();
        let sdk = aws::sdk_config().await;
        Self {
            db: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
            now: Timestamp::now(),
        }
    }

    /// The function with the default test configuration plus `overrides`.
    pub fn app(&self, overrides: &[(&str, &str)]) -> App {
        App::new(config(overrides), &self.sdk)
    }

    /// Writes a challenge as the login flow would; returns its id.
    pub async fn challenge(&self, user_id: &str, method: &str, expire_in_secs: i64) -> String {
        let id = unique("ch-");
        self.put(
            &tables().challenges,
            item(json!({
                "challengeId": id,
                "userId": user_id,
                "method": method,
                "createdAt": self.now.secs(),
                "expireAt": self.now.secs() + expire_in_secs,
            })),
        )
        .await;
        id
    }

    /// Writes a user with a verified and an unverified address (plus
    /// `extra` attributes); returns (userId, verified address).
    pub async fn user(&self, extra: Value) -> (String, String) {
        let id = unique("user-");
        let verified = format!("{id}@example.test");
        let mut fields = json!({
            "userId": id,
            "username": "ana",
            "emails": [
                {"address": verified, "verified": true},
                {"address": format!("unverified-{id}@example.test"), "verified": false}
            ]
        });
        if let (Some(base), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        self.put(&tables().users, item(fields)).await;
        (id, verified)
    }

    /// A user plus an email challenge for them: (challengeId, userId, address).
    pub async fn email_challenge(&self) -> (String, String, String) {
        let (user, address) = self.user(json!({})).await;
        let challenge = self.challenge(&user, "email", 900).await;
        (challenge, user, address)
    }

    pub async fn put(&self, table: &str, item: Item) {
        self.db
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .expect("put item");
    }

    pub async fn update_challenge(&self, id: &str, set: &str, values: Value) {
        let mut req = self
            .db
            .update_item()
            .table_name(&tables().challenges)
            .key("challengeId", AttributeValue::S(id.into()))
            .update_expression(set);
        for (k, v) in item(values) {
            req = req.expression_attribute_values(k, v);
        }
        req.send().await.expect("update challenge");
    }

    pub async fn get(&self, table: &str, key: &str, value: &str) -> Option<Item> {
        self.db
            .get_item()
            .table_name(table)
            .key(key, AttributeValue::S(value.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item
    }

    pub async fn challenge_item(&self, id: &str) -> Item {
        self.get(&tables().challenges, "challengeId", id)
            .await
            .expect("challenge exists")
    }

    pub async fn delete_challenge(&self, id: &str) {
        self.db
            .delete_item()
            .table_name(&tables().challenges)
            .key("challengeId", AttributeValue::S(id.into()))
            .send()
            .await
            .expect("delete");
    }
}

/// JSON → DynamoDB item (strings, numbers, booleans, lists, maps).
pub fn item(value: Value) -> Item {
    match attribute(value) {
        AttributeValue::M(m) => m,
        other => panic!("not an object: {other:?}"),
    }
}

fn attribute(value: Value) -> AttributeValue {
    match value {
        Value::String(s) => AttributeValue::S(s),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Null => AttributeValue::Null(true),
        Value::Array(a) => AttributeValue::L(a.into_iter().map(attribute).collect()),
        Value::Object(o) => {
            AttributeValue::M(o.into_iter().map(|(k, v)| (k, attribute(v))).collect())
        }
    }
}

pub fn s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub fn n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// A sample event from events/, as JSON to adjust.
pub fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("event is JSON")
}

/// Sets a JSON body `{"challengeId": id}` (plain, not base64).
pub fn with_challenge(mut event: Value, id: &str) -> Value {
    event["body"] = json!(json!({ "challengeId": id }).to_string());
    event["isBase64Encoded"] = json!(false);
    event
}

/// The HTTP API sample asking for `challenge`, from a fresh caller.
pub fn post(challenge: &str) -> Value {
    with_caller(
        with_challenge(event("http-api.json"), challenge),
        &random_ip(),
    )
}

/// Sets the address the front door saw, wherever this kind of event keeps it.
pub fn with_caller(mut event: Value, ip: &str) -> Value {
    if event["requestContext"]["identity"].is_object() {
        event["requestContext"]["identity"]["sourceIp"] = json!(ip);
    } else if event["requestContext"]["http"].is_object() {
        event["requestContext"]["http"]["sourceIp"] = json!(ip);
    } else {
        event["headers"]["x-forwarded-for"] = json!(ip);
    }
    event
}

/// Parses an event the way lambda_http does in Lambda.
pub fn request(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).expect("lambda_http parses the event")
}

/// A response, read back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub raw: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn error_type(&self) -> &str {
        self.body["errorType"].as_str().unwrap_or("")
    }
}

pub fn answer(response: Response<Body>) -> Answer {
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let raw = String::from_utf8(response.body().to_vec()).expect("UTF-8 body");
    Answer {
        status: response.status().as_u16(),
        headers,
        body: serde_json::from_str(&raw).expect("every answer is JSON"),
        raw,
    }
}

/// Sends an event through the handler.
pub async fn call(app: &App, event: &Value, now: Timestamp) -> Answer {
    answer(send_email_code::handle(app, request(event), now).await)
}

/// Emails the SES stand-in holds for `address`.
pub fn emails_to(address: &str) -> Vec<Value> {
    let store = ses_get("/store");
    store["emails"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|e| {
                    e["destination"]["to"]
                        .as_array()
                        .is_some_and(|to| to.iter().any(|a| a == address))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn ses_get(path: &str) -> Value {
    let base = endpoint("AWS_ENDPOINT_URL_SESV2");
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).expect("connect to the SES stand-in");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    serde_json::from_str(body).expect("store is JSON")
}

/// The code in an email's text part, as shown (`123-456`).
pub fn code_in(email: &Value) -> String {
    let text = email["body"]["text"].as_str().expect("text part");
    find_code(text).expect("a ddd-ddd code in the text part")
}

/// The first `ddd-ddd` in a text.
pub fn find_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(6)).find_map(|i| {
        let w = &bytes[i..i + 7];
        let shaped = w[..3].iter().all(u8::is_ascii_digit)
            && w[3] == b'-'
            && w[4..].iter().all(u8::is_ascii_digit);
        let bounded = (i == 0 || !bytes[i - 1].is_ascii_digit())
            && bytes.get(i + 7).is_none_or(|b| !b.is_ascii_digit());
        (shaped && bounded).then(|| text[i..i + 7].to_string())
    })
}

/// One stored `codes.<MessageId>` entry of a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub code_hash: String,
    pub expire_at: i64,
    pub sent_at: i64,
}

/// The `codes` map of a challenge item, by message id (empty when absent).
pub fn stored_codes(item: &Item) -> HashMap<String, StoredCode> {
    let Some(map) = item.get("codes").and_then(|v| v.as_m().ok()) else {
        return HashMap::new();
    };
    map.iter()
        .map(|(id, v)| {
            let e = v.as_m().expect("a codes entry is a map");
            let code = StoredCode {
                code_hash: s(e, "codeHash").expect("entry codeHash"),
                expire_at: n(e, "expireAt").expect("entry expireAt"),
                sent_at: n(e, "sentAt").expect("entry sentAt"),
            };
            (id.clone(), code)
        })
        .collect()
}

/// The codeHash the contract defines for a code (`123-456` or `123456`),
/// computed here, apart from the library: lowercase hex of
/// HMAC-SHA256(SECRET, challengeId + ":" + the six digits).
pub fn expected_hash(challenge_id: &str, code: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes())
        .expect("any key length");
    mac.update(format!("{challenge_id}:{}", code.replace('-', "")).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Asserts that the code in `email` is stored under the email's message id,
/// sent at `sent_at` and valid until `expire_at`.
pub fn assert_stored(item: &Item, challenge_id: &str, email: &Value, sent_at: i64, expire_at: i64) {
    let id = email["messageId"]
        .as_str()
        .expect("the stand-in's messageId");
    let codes = stored_codes(item);
    let entry = codes
        .get(id)
        .unwrap_or_else(|| panic!("no codes entry for message {id}: {codes:?}"));
    assert_eq!(
        entry,
        &StoredCode {
            code_hash: expected_hash(challenge_id, &code_in(email)),
            expire_at,
            sent_at,
        }
    );
}

pub fn assert_common_headers(a: &Answer) {
    assert_eq!(a.header("content-type"), Some("application/json"), "{a:?}");
    assert_eq!(a.header("cache-control"), Some("no-store"), "{a:?}");
}

/// An error answer with exactly this status, `errorType` and `error`, and
/// the headers every answer carries.
pub fn assert_error(a: &Answer, status: u16, error_type: &str, error: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(
        a.body,
        json!({"success": false, "errorType": error_type, "error": error})
    );
    assert_common_headers(a);
    assert!(
        a.header("x-ratelimit-limit").is_some(),
        "rate headers on every answer: {a:?}"
    );
}

/// An SES client whose every `SendEmail` is refused with `MessageRejected`
/// by a fault proxy in front of the stand-in (keep the proxy alive).
pub async fn refusing_ses(env: &Env) -> (fault_proxy::FaultProxy, aws_sdk_sesv2::Client) {
    let (ses, client) = ses_behind_proxy(env, 1).await;
    ses.set(
        fault_proxy::Fault::Refuse {
            status: 400,
            code: "MessageRejected",
        },
        1000,
    );
    (ses, client)
}

/// A DynamoDB client whose calls go through a fault proxy (`seed` drives
/// its random faults), and the proxy, to set faults and count requests.
pub async fn dynamodb_behind_proxy(
    env: &Env,
    seed: u64,
) -> (fault_proxy::FaultProxy, aws_sdk_dynamodb::Client) {
    let proxy = fault_proxy::FaultProxy::start(
        &endpoint("AWS_ENDPOINT_URL_DYNAMODB"),
        fault_proxy::Dialect::DynamoDb,
        seed,
    )
    .await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&env.sdk)
            .endpoint_url(&proxy.url)
            .build(),
    );
    (proxy, client)
}

/// An SES client whose calls go through a fault proxy, and the proxy.
pub async fn ses_behind_proxy(
    env: &Env,
    seed: u64,
) -> (fault_proxy::FaultProxy, aws_sdk_sesv2::Client) {
    let proxy = fault_proxy::FaultProxy::start(
        &endpoint("AWS_ENDPOINT_URL_SESV2"),
        fault_proxy::Dialect::Ses,
        seed,
    )
    .await;
    let client = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&env.sdk)
            .endpoint_url(&proxy.url)
            .build(),
    );
    (proxy, client)
}

/// The `error` texts openapi.yaml documents for a 429, as a regular
/// expression read from the document itself (its one `pattern` that names
/// `error-too-many-requests`), so the document and the code cannot drift.
pub fn documented_429() -> &'static regex_lite::Regex {
    static PATTERN: OnceLock<regex_lite::Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let path = format!("{}/openapi.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("openapi.yaml");
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("pattern:") && l.contains("error-too-many-requests"))
            .expect("openapi.yaml documents the 429 texts with a pattern");
        // A YAML double-quoted scalar: strip the quotes, undo `\\` escapes.
        let quoted = line.trim_start_matches("pattern:").trim();
        let pattern = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .expect("a double-quoted pattern")
            .replace("\\\\", "\\");
        regex_lite::Regex::new(&pattern).expect("a valid pattern")
    })
}

/// A 429 answer whose `error` text openapi.yaml documents.
pub fn assert_documented_429(a: &Answer) {
    assert_eq!(a.status, 429, "{a:?}");
    let error = a.body["error"].as_str().unwrap_or("");
    assert!(
        documented_429().is_match(error),
        "openapi.yaml does not document the 429 text {error:?}"
    );
}

/// The real `bootstrap` as Lambda starts it under the Runtime API emulator at
/// `api_address`: the stand-ins' configuration, the function's Lambda
/// variables, no log settings of the caller's shell, output piped, killed
/// with its handle. Callers add their own variables before spawning.
pub fn bootstrap(api_address: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bootstrap"));
    cmd.envs(base_vars())
        .env("AWS_LAMBDA_RUNTIME_API", api_address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "send-email-code")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env_remove("RUST_LOG")
        .env_remove("AWS_LAMBDA_LOG_LEVEL")
        .env_remove("AWS_LAMBDA_LOG_FORMAT")
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Everything a spawned process writes to stdout and stderr, gathered as it
/// comes, and the tasks that gather it (they end when the process does).
pub fn collect_output(
    child: &mut tokio::process::Child,
) -> (
    std::sync::Arc<std::sync::Mutex<String>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    use tokio::io::{AsyncRead, AsyncReadExt};
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut streams: Vec<Box<dyn AsyncRead + Unpin + Send>> = Vec::new();
    if let Some(out) = child.stdout.take() {
        streams.push(Box::new(out));
    }
    if let Some(err) = child.stderr.take() {
        streams.push(Box::new(err));
    }
    let readers = streams
        .into_iter()
        .map(|mut stream| {
            let output = output.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .expect("output")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        })
        .collect();
    (output, readers)
}

/// The real `bootstrap` under its own Runtime API emulator, with its output
/// gathered as it comes (a full pipe would stall it).
pub struct Running {
    pub api: runtime_api::RuntimeApi,
    pub child: tokio::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Spawns [`bootstrap`] with the variables `configure` adds, and waits
    /// (up to `limit`) for its first poll, which must follow a clean init.
    pub async fn start(
        limit: std::time::Duration,
        configure: impl FnOnce(&mut tokio::process::Command),
    ) -> Self {
        let mut api = runtime_api::RuntimeApi::start().await.expect("emulator");
        let mut command = bootstrap(&api.address());
        configure(&mut command);
        let mut child = command.spawn().expect("bootstrap starts");
        let (output, readers) = collect_output(&mut child);
        let ready = api.ready(limit).await.is_some();
        let text = output.lock().expect("output").clone();
        assert!(ready, "the function polled for an event: {text}");
        assert_eq!(api.init_error(), None, "{text}");
        Self {
            api,
            child,
            output,
            readers,
        }
    }

    /// Everything the process wrote so far.
    pub fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process; everything it wrote.
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        self.output()
    }
}
