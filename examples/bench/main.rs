//! The benchmark: cold start, warm latency per path, AWS calls per
//! invocation, CPU per request, peak memory and package size, measured on the
//! real release `bootstrap` against the local stand-ins. Run it with
//! `./scripts/bench.sh`, which starts the stand-ins and builds the binary.
//!
//! Options: --bootstrap PATH (default target/release/bootstrap), --cold N
//! (fresh processes, default 20), --warm N (invocations per path, default 300),
//! --zip PATH (default target/lambda/bootstrap/bootstrap.zip), --out PATH
//! (default bench/results.json).

// In a developer tool, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proxy;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use harness::runtime_api::RuntimeApi;
use proxy::{Call, Calls};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(30);
const SECRET: &str = "bench-secret-bench-secret-bench-secret";

struct Options {
    bootstrap: String,
    cold: usize,
    warm: usize,
    zip: String,
    out: String,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        bootstrap: "target/release/bootstrap".into(),
        cold: 20,
        warm: 300,
        zip: "target/lambda/bootstrap/bootstrap.zip".into(),
        out: "bench/results.json".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap" => o.bootstrap = value,
            "--cold" => o.cold = value.parse().map_err(|_| "--cold takes a number")?,
            "--warm" => o.warm = value.parse().map_err(|_| "--warm takes a number")?,
            "--zip" => o.zip = value,
            "--out" => o.out = value,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// Everything a function process needs: tables, proxied endpoints, config.
struct Bench {
    db: aws_sdk_dynamodb::Client,
    tables: send_email_code::aws::tables::TableNames,
    calls: Calls,
    dynamodb_url: String,
    ses_url: String,
    bootstrap: String,
    serial: u64,
}

impl Bench {
    fn env(&self, api: &RuntimeApi) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", api.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", "send-email-code".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.dynamodb_url.clone()),
            ("AWS_ENDPOINT_URL_SESV2", self.ses_url.clone()),
            ("CHALLENGES_TABLE", self.tables.challenges.clone()),
            ("USERS_TABLE", self.tables.users.clone()),
            ("RATE_LIMIT_TABLE", self.tables.rate_limits.clone()),
            ("SENDER_EMAIL", "Bench <bench@example.com>".into()),
            ("CODE_HMAC_SECRET", SECRET.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn spawn(&self, api: &RuntimeApi) -> std::io::Result<Child> {
        Command::new(&self.bootstrap)
            .envs(self.env(api))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
    }

    /// Writes `n` users with an email challenge each; returns the challenge ids.
    async fn seed(&mut self, n: usize, now: u64) -> Result<Vec<String>, String> {
        let mut ids = Vec::with_capacity(n);
        let mut users = Vec::new();
        let mut challenges = Vec::new();
        for _ in 0..n {
            self.serial += 1;
            let (user, challenge) = (
                format!("bench-user-{}", self.serial),
                format!("bench-ch-{}", self.serial),
            );
            let s = |v: &str| AttributeValue::S(v.to_string());
            users.push(HashMap::from([
                ("userId".to_string(), s(&user)),
                ("email".to_string(), s(&format!("{user}@example.com"))),
            ]));
            challenges.push(HashMap::from([
                ("challengeId".to_string(), s(&challenge)),
                ("userId".to_string(), s(&user)),
                ("method".to_string(), s("email")),
                ("createdAt".to_string(), AttributeValue::N(now.to_string())),
                (
                    "expireAt".to_string(),
                    AttributeValue::N((now + 3600).to_string()),
                ),
            ]));
            ids.push(challenge);
        }
        for (table, items) in [
            (&self.tables.users, users),
            (&self.tables.challenges, challenges),
        ] {
            for chunk in items.chunks(25) {
                let writes = chunk
                    .iter()
                    .map(|item| {
                        let put = PutRequest::builder().set_item(Some(item.clone())).build();
                        put.map(|p| WriteRequest::builder().put_request(p).build())
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                self.db
                    .batch_write_item()
                    .request_items(table.as_str(), writes)
                    .send()
                    .await
                    .map_err(|e| format!("seeding: {e}"))?;
            }
        }
        Ok(ids)
    }
}

fn event(challenge_body: Option<&str>, caller: &str) -> Value {
    let mut ev: Value =
        serde_json::from_str(include_str!("../../events/http-api.json")).unwrap_or_default();
    ev["requestContext"]["http"]["sourceIp"] = json!(caller);
    ev["body"] = match challenge_body {
        Some(body) => json!(body),
        None => Value::Null,
    };
    ev
}

fn success_event(challenge: &str, caller: &str) -> Value {
    event(
        Some(&json!({ "challengeId": challenge }).to_string()),
        caller,
    )
}

fn caller(n: usize) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut values: Vec<f64>) -> Value {
    values.sort_by(|a, b| a.total_cmp(b));
    let r = |v: f64| (v * 100.0).round() / 100.0;
    json!({
        "n": values.len(),
        "p50": r(percentile(&values, 50.0)),
        "p90": r(percentile(&values, 90.0)),
        "p99": r(percentile(&values, 99.0)),
        "max": r(values.last().copied().unwrap_or(f64::NAN)),
    })
}

/// Seconds of CPU (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Peak resident memory of the process so far, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The AWS calls one invocation made.
struct CallShape {
    dynamodb: usize,
    ses: usize,
    rounds: usize,
    operations: Vec<String>,
}

fn call_shape(calls: &[Call]) -> CallShape {
    CallShape {
        dynamodb: calls.iter().filter(|c| c.service == "DynamoDB").count(),
        ses: calls.iter().filter(|c| c.service == "SES").count(),
        rounds: proxy::sequential_rounds(calls),
        operations: calls
            .iter()
            .map(|c| format!("{}:{}", c.service, c.operation))
            .collect(),
    }
}

struct PathResult {
    latencies: Vec<f64>,
    cpu_ms_per_request: f64,
    shapes: Vec<CallShape>,
}

async fn run_path(
    bench: &Bench,
    api: &RuntimeApi,
    pid: u32,
    events: Vec<Value>,
    expect: u64,
) -> Result<PathResult, String> {
    let mut latencies = Vec::with_capacity(events.len());
    let mut shapes = Vec::with_capacity(events.len());
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
    for ev in events {
        bench.calls.lock().unwrap().clear();
        let inv = api
            .invoke(ev, LIMIT)
            .await
            .ok_or("no answer from the function")?;
        let status = inv.response["statusCode"].as_u64().unwrap_or(0);
        if status != expect {
            return Err(format!("expected {expect}, got {}", inv.response));
        }
        latencies.push(ms(inv.latency));
        let calls = bench.calls.lock().unwrap().clone();
        if std::env::var_os("BENCH_TRACE").is_some() {
            if let Some(first) = calls.iter().map(|c| c.start).min() {
                for c in &calls {
                    let end = c.end.map(|e| ms(e - first)).unwrap_or(f64::NAN);
                    eprintln!(
                        "  {:>8.3} .. {:>8.3} ms  {} {}",
                        ms(c.start - first),
                        end,
                        c.service,
                        c.operation
                    );
                }
                eprintln!("  --");
            }
        }
        shapes.push(call_shape(&calls));
    }
    let cpu_after = cpu_seconds(pid).unwrap_or(0.0);
    Ok(PathResult {
        cpu_ms_per_request: (cpu_after - cpu_before) * 1000.0 / latencies.len().max(1) as f64,
        latencies,
        shapes,
    })
}

fn shape_json(shapes: &[CallShape]) -> Value {
    let mut rounds: Vec<usize> = shapes.iter().map(|s| s.rounds).collect();
    rounds.sort_unstable();
    json!({
        "dynamodb_calls": shapes.iter().map(|s| s.dynamodb).max().unwrap_or(0),
        "ses_calls": shapes.iter().map(|s| s.ses).max().unwrap_or(0),
        "sequential_rounds": rounds.get(rounds.len() / 2).copied().unwrap_or(0),
        "sequential_rounds_max": rounds.last().copied().unwrap_or(0),
        "operations": shapes.first().map(|s| s.operations.clone()).unwrap_or_default(),
    })
}

/// The handler's own work on the success path, without any network call:
/// event parsing, caller, body, counter key, code, HMAC, email rendering and
/// the answer. Microseconds per request, in this process.
fn handler_own_cpu_us() -> Result<f64, String> {
    use send_email_code::domain::code::{Code, CodeHash};
    use send_email_code::domain::rate_window::{RateStatus, RateWindow};
    use send_email_code::email::{EmailInput, Language, Templates};
    use send_email_code::http::caller::identify;
    use send_email_code::http::{request, response};
    use send_email_code::Timestamp;

    let templates = Templates::load().map_err(|e| e.to_string())?;
    let text = include_str!("../../events/http-api.json");
    let rounds = 20_000;
    let started = Instant::now();
    for _ in 0..rounds {
        let now = Timestamp::now();
        let req = lambda_http::request::from_str(text).map_err(|e| e.to_string())?;
        let caller = identify(&req, 1, 64);
        let id = request::challenge_id(&req).map_err(|e| e.to_string())?;
        let window = RateWindow::containing(now, 60);
        std::hint::black_box(window.counter_key(&caller));
        let code = Code::generate().map_err(|e| e.to_string())?;
        std::hint::black_box(CodeHash::new(SECRET.as_bytes(), id.as_str(), &code));
        std::hint::black_box(templates.render(&EmailInput {
            code: &code,
            code_expire_at: now.secs() + 600,
            display_name: Some("Ana"),
            language: Language::En,
            now,
        }));
        std::hint::black_box(response::build(
            &Ok(()),
            Some(&RateStatus::counted(5, 1, window)),
        ));
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds))
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({ "cpu": model, "cores": cores, "arch": std::env::consts::ARCH })
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let o = options()?;
    let sdk = send_email_code::aws::sdk_config().await;
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let suffix = now_secs();
    let tables = send_email_code::aws::tables::TableNames {
        challenges: format!("bench-{suffix}-challenges"),
        users: format!("bench-{suffix}-users"),
        rate_limits: format!("bench-{suffix}-rate-limits"),
    };
    send_email_code::aws::tables::create_tables(&db, &tables).await?;
    let calls: Calls = Arc::new(Mutex::new(Vec::new()));
    let upstream = |var: &str| {
        std::env::var(var).map_err(|_| format!("{var} is not set: run ./scripts/bench.sh"))
    };
    let dynamodb_url = proxy::start(
        "DynamoDB",
        &upstream("AWS_ENDPOINT_URL_DYNAMODB")?,
        calls.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let ses_url = proxy::start("SES", &upstream("AWS_ENDPOINT_URL_SESV2")?, calls.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut bench = Bench {
        db,
        tables,
        calls,
        dynamodb_url,
        ses_url,
        bootstrap: o.bootstrap.clone(),
        serial: 0,
    };

    // Cold starts: a fresh process per run, as Lambda starts one.
    eprintln!("cold start: {} fresh processes", o.cold);
    let mut init = Vec::new();
    let mut first = Vec::new();
    let cold_ids = bench.seed(o.cold, now_secs()).await?;
    for (i, id) in cold_ids.iter().enumerate() {
        let mut api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
        let spawned = Instant::now();
        let mut child = bench
            .spawn(&api)
            .map_err(|e| format!("{}: {e}", o.bootstrap))?;
        let ready = api
            .ready(LIMIT)
            .await
            .ok_or("the function never polled for an event")?;
        if let Some(err) = api.init_error() {
            return Err(format!("init error: {err}"));
        }
        let inv = api
            .invoke(success_event(id, &caller(900_000 + i)), LIMIT)
            .await
            .ok_or("no first answer")?;
        let answered = inv.answered_at;
        if inv.response["statusCode"] != 200 {
            return Err(format!("cold start request failed: {}", inv.response));
        }
        init.push(ms(ready - spawned));
        first.push(ms(answered - spawned));
        let _ = child.kill().await;
    }

    // Warm: one process, many sequential invocations per path.
    eprintln!("warm: {} invocations per path in one process", o.warm);
    let warm_ids = bench.seed(o.warm + 2, now_secs()).await?;
    let mut api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let mut child = bench.spawn(&api).map_err(|e| e.to_string())?;
    let pid = child.id().ok_or("no pid")?;
    api.ready(LIMIT).await.ok_or("the function never polled")?;
    // Two warm-up calls open the connections; they are not measured.
    run_path(
        &bench,
        &api,
        pid,
        warm_ids[..2]
            .iter()
            .enumerate()
            .map(|(i, id)| success_event(id, &caller(800_000 + i)))
            .collect(),
        200,
    )
    .await?;
    let success = run_path(
        &bench,
        &api,
        pid,
        warm_ids[2..]
            .iter()
            .enumerate()
            .map(|(i, id)| success_event(id, &caller(i)))
            .collect(),
        200,
    )
    .await?;
    let bad = run_path(
        &bench,
        &api,
        pid,
        (0..o.warm)
            .map(|i| event(Some("{not json"), &caller(100_000 + i)))
            .collect(),
        400,
    )
    .await?;
    let unknown = run_path(
        &bench,
        &api,
        pid,
        (0..o.warm)
            .map(|i| success_event(&format!("missing-{i}"), &caller(200_000 + i)))
            .collect(),
        400,
    )
    .await?;
    let limited_caller = caller(300_000);
    run_path(
        &bench,
        &api,
        pid,
        (0..5).map(|_| event(None, &limited_caller)).collect(),
        400,
    )
    .await?;
    let limited = run_path(
        &bench,
        &api,
        pid,
        (0..o.warm).map(|_| event(None, &limited_caller)).collect(),
        429,
    )
    .await?;
    let rss_kib = peak_rss_kib(pid);
    let _ = child.kill().await;

    let own_us = handler_own_cpu_us()?;
    let zip_bytes = std::fs::metadata(&o.zip).map(|m| m.len()).ok();
    let mut sorted_init = init.clone();
    sorted_init.sort_by(|a, b| a.total_cmp(b));
    let mut sorted_first = first.clone();
    sorted_first.sort_by(|a, b| a.total_cmp(b));
    let paths = [
        ("success (200)", &success),
        ("bad body (400)", &bad),
        ("unknown challenge (400)", &unknown),
        ("rate limited (429)", &limited),
    ];
    let results = json!({
        "generated_at_epoch": now_secs(),
        "machine": machine(),
        "bootstrap": o.bootstrap,
        "cold_start": {
            "processes": o.cold,
            "init_ms": summary(init),
            "first_response_ms": summary(first),
        },
        "warm_ms": paths.iter().map(|(name, r)| (name.to_string(), summary(r.latencies.clone()))).collect::<serde_json::Map<_, _>>(),
        "cpu_ms_per_request": paths.iter().map(|(name, r)| (name.to_string(), json!((r.cpu_ms_per_request * 1000.0).round() / 1000.0))).collect::<serde_json::Map<_, _>>(),
        "aws_calls": paths.iter().map(|(name, r)| (name.to_string(), shape_json(&r.shapes))).collect::<serde_json::Map<_, _>>(),
        "handler_own_cpu_us_per_request": (own_us * 10.0).round() / 10.0,
        "peak_rss_mib": rss_kib.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0),
        "zip_bytes": zip_bytes,
    });

    println!(
        "sendEmailCode benchmark on {} ({} cores)",
        results["machine"]["cpu"].as_str().unwrap_or("?"),
        results["machine"]["cores"]
    );
    println!();
    println!(
        "cold start over {} fresh processes    median      p90",
        o.cold
    );
    println!(
        "  spawn -> ready for first event  {:>8.2} ms {:>8.2} ms",
        percentile(&sorted_init, 50.0),
        percentile(&sorted_init, 90.0)
    );
    println!(
        "  spawn -> first response posted  {:>8.2} ms {:>8.2} ms",
        percentile(&sorted_first, 50.0),
        percentile(&sorted_first, 90.0)
    );
    println!();
    println!("warm, {} sequential invocations per path", o.warm);
    println!(
        "  path                        p50 ms   p90 ms   p99 ms  CPU ms/req  DynamoDB  SES  rounds"
    );
    for (name, r) in paths {
        let s = summary(r.latencies.clone());
        let shape = shape_json(&r.shapes);
        println!(
            "  {:<26} {:>7.2}  {:>7.2}  {:>7.2}  {:>9.3}  {:>8}  {:>3}  {:>6}",
            name,
            s["p50"].as_f64().unwrap_or(f64::NAN),
            s["p90"].as_f64().unwrap_or(f64::NAN),
            s["p99"].as_f64().unwrap_or(f64::NAN),
            r.cpu_ms_per_request,
            shape["dynamodb_calls"],
            shape["ses_calls"],
            shape["sequential_rounds"],
        );
    }
    println!(
        "  (CPU ms/req: the whole process, AWS SDK included; rounds: median of sequential calls)"
    );
    println!();
    println!("handler's own work on the success path, no network: {own_us:.1} µs per request");
    match rss_kib {
        Some(k) => println!(
            "peak RSS of the function process: {:.1} MiB",
            k as f64 / 1024.0
        ),
        None => println!("peak RSS: unavailable"),
    }
    match zip_bytes {
        Some(b) => println!(
            "bootstrap.zip ({}): {:.2} MiB",
            o.zip,
            b as f64 / 1_048_576.0
        ),
        None => println!("bootstrap.zip: not built ({} missing)", o.zip),
    }
    if let Some(dir) = std::path::Path::new(&o.out).parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        &o.out,
        serde_json::to_string_pretty(&results).map_err(|e| e.to_string())? + "\n",
    )
    .map_err(|e| e.to_string())?;
    println!("\nwritten to {}", o.out);
    Ok(())
}
