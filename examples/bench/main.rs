//! The benchmark: cold start beside a bare `lambda_http` binary (the floor),
//! the first invocation against warm ones, warm latency, AWS calls, rounds
//! and request units for every path of the contract, what a million
//! requests of each cost, CPU per request, peak memory and package size,
//! measured on the real release `bootstrap` against the local stand-ins.
//! Run it with `./scripts/bench.sh`, which starts the stand-ins and builds
//! both binaries.
//!
//! Options: --bootstrap PATH (default target/release/bootstrap), --floor PATH
//! (default target/release/examples/floor), --cold N (fresh processes of
//! each binary, default 20), --warm N (invocations of the three main paths,
//! default 300), --each N (invocations of every other path, default 40),
//! --concurrent N (success requests per level of the concurrency table,
//! default 400), --jitter-bootstrap PATH (the same code built with aws-lc's
//! jitter entropy, for the TLS table; without it that row is left out),
//! --zip PATH (default target/lambda/bootstrap/bootstrap.zip), --out PATH
//! (default bench/results.json). The cold starts over TLS use --cold and
//! --warm too (examples/bench/tls.rs).

// In a developer tool, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod concurrency;
mod cost;
mod proxy;
mod tls;

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
/// Success requests that bring the stand-ins to speed before measuring.
const HEAT: usize = 150;
const SECRET: &str = "bench-secret-bench-secret-bench-secret";
/// `template.yaml`'s defaults where the binary's own differ.
const RESEND_COOLDOWN_SECONDS: u64 = 30;
/// The binary's (and the template's) defaults, to build the 429 paths.
const RATE_LIMIT_MAX: usize = 5;
const MAX_CODES_PER_CHALLENGE: u32 = 5;
const MAX_CODES_PER_USER: usize = 10;

struct Options {
    bootstrap: String,
    floor: String,
    cold: usize,
    warm: usize,
    each: usize,
    concurrent: usize,
    jitter_bootstrap: Option<String>,
    zip: String,
    out: String,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        bootstrap: "target/release/bootstrap".into(),
        floor: "target/release/examples/floor".into(),
        cold: 20,
        warm: 300,
        each: 40,
        concurrent: 400,
        jitter_bootstrap: None,
        zip: "target/lambda/bootstrap/bootstrap.zip".into(),
        out: "bench/results.json".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let count = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--bootstrap" => o.bootstrap = value,
            "--floor" => o.floor = value,
            "--cold" => o.cold = count(&value)?,
            "--warm" => o.warm = count(&value)?,
            "--each" => o.each = count(&value)?,
            "--concurrent" => o.concurrent = count(&value)?,
            "--jitter-bootstrap" => o.jitter_bootstrap = Some(value),
            "--zip" => o.zip = value,
            "--out" => o.out = value,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.cold == 0 || o.warm == 0 || o.each == 0 || o.concurrent == 0 {
        return Err("--cold, --warm, --each and --concurrent must be at least 1".into());
    }
    Ok(o)
}

type Item = HashMap<String, AttributeValue>;

/// Everything a function process needs: tables, proxied endpoints, config.
struct Bench {
    db: aws_sdk_dynamodb::Client,
    tables: send_email_code::aws::tables::TableNames,
    calls: Calls,
    /// The counting proxies (plain HTTP), behind the TLS fronts.
    dynamodb_url: String,
    ses_url: String,
    /// What every function process talks to, as on Lambda.
    fronts: tls::Fronts,
    serial: u64,
    callers: usize,
}

impl Bench {
    fn env(&self, api: &RuntimeApi) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", api.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", "send-email-code".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.fronts.dynamodb_url()),
            ("AWS_ENDPOINT_URL_SESV2", self.fronts.ses_url()),
            ("TLS_EXTRA_ROOTS_FILE", self.fronts.ca_file()),
            ("CHALLENGES_TABLE", self.tables.challenges.clone()),
            ("USERS_TABLE", self.tables.users.clone()),
            ("RATE_LIMIT_TABLE", self.tables.rate_limits.clone()),
            ("SENDER_EMAIL", "Bench <bench@example.com>".into()),
            ("CODE_HMAC_SECRET", SECRET.into()),
            (
                "RESEND_COOLDOWN_SECONDS",
                RESEND_COOLDOWN_SECONDS.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn spawn(&self, binary: &str, api: &RuntimeApi) -> Result<Child, String> {
        self.spawn_with(binary, api, &[])
    }

    /// As [`Bench::spawn`], with `extra` variables on top.
    fn spawn_with(
        &self,
        binary: &str,
        api: &RuntimeApi,
        extra: &[(&str, &str)],
    ) -> Result<Child, String> {
        // BENCH_FUNCTION_LOGS=DIR keeps each process's output there (its
        // log level is WARN, so a failure's line and little else).
        let output = || match std::env::var_os("BENCH_FUNCTION_LOGS") {
            Some(dir) => {
                let path = std::path::Path::new(&dir).join(format!("{}.log", api.address()));
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_or_else(|_| Stdio::null(), Stdio::from)
            }
            None => Stdio::null(),
        };
        Command::new(binary)
            .envs(self.env(api))
            .envs(extra.iter().copied())
            .stdout(output())
            .stderr(output())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{binary}: {e}"))
    }

    /// A caller address no earlier request used.
    fn caller(&mut self) -> String {
        self.callers += 1;
        let n = self.callers;
        format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
    }

    fn next_id(&mut self, what: &str) -> String {
        self.serial += 1;
        format!("bench-{what}-{}", self.serial)
    }

    /// A user with one verified address (or none); returns its id.
    fn user(&mut self, users: &mut Vec<Item>, verified: bool) -> String {
        let id = self.next_id("user");
        let mut item = HashMap::from([("userId".to_string(), s(&id))]);
        let entry = AttributeValue::M(HashMap::from([
            ("address".to_string(), s(&format!("{id}@example.com"))),
            ("verified".to_string(), AttributeValue::Bool(verified)),
        ]));
        item.insert("emails".to_string(), AttributeValue::L(vec![entry]));
        users.push(item);
        id
    }

    /// A challenge of `user`; returns its id.
    fn challenge(&mut self, challenges: &mut Vec<Item>, c: ChallengeSpec<'_>) -> String {
        let id = self.next_id("ch");
        let mut item = HashMap::from([
            ("challengeId".to_string(), s(&id)),
            ("userId".to_string(), s(c.user)),
            ("method".to_string(), s(c.method)),
            ("createdAt".to_string(), n(c.now)),
            ("expireAt".to_string(), n(c.expire_at)),
        ]);
        if c.codes_sent > 0 {
            item.insert("codesSent".to_string(), n(c.codes_sent));
        }
        if let Some(at) = c.last_sent {
            item.insert("lastCodeSentAt".to_string(), n(at));
        }
        challenges.push(item);
        id
    }

    async fn put(&self, users: Vec<Item>, challenges: Vec<Item>) -> Result<(), String> {
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
        Ok(())
    }

    /// `n` users with an email challenge each; returns the challenge ids.
    async fn fresh_challenges(&mut self, n: usize) -> Result<Vec<String>, String> {
        let (mut users, mut challenges) = (Vec::new(), Vec::new());
        let now = now_secs();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let user = self.user(&mut users, true);
            ids.push(self.challenge(&mut challenges, ChallengeSpec::new(&user, now)));
        }
        self.put(users, challenges).await?;
        Ok(ids)
    }
}

struct ChallengeSpec<'a> {
    user: &'a str,
    method: &'a str,
    now: u64,
    expire_at: u64,
    codes_sent: u32,
    last_sent: Option<u64>,
}

impl<'a> ChallengeSpec<'a> {
    fn new(user: &'a str, now: u64) -> Self {
        Self {
            user,
            method: "email",
            now,
            expire_at: now + 3600,
            codes_sent: 0,
            last_sent: None,
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn event(body: Option<&str>, caller: &str) -> Value {
    let mut ev: Value =
        serde_json::from_str(include_str!("../../events/http-api.json")).unwrap_or_default();
    ev["requestContext"]["http"]["sourceIp"] = json!(caller);
    ev["body"] = match body {
        Some(body) => json!(body),
        None => Value::Null,
    };
    ev
}

fn post(challenge: &str, caller: &str) -> Value {
    event(
        Some(&json!({ "challengeId": challenge }).to_string()),
        caller,
    )
}

fn bad_body(caller: &str) -> Value {
    event(Some("{not json"), caller)
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

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    values
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn summary(values: &[f64]) -> Value {
    let values = sorted(values.to_vec());
    json!({
        "n": values.len(),
        "p50": round2(percentile(&values, 50.0)),
        "p90": round2(percentile(&values, 90.0)),
        "p99": round2(percentile(&values, 99.0)),
        "max": round2(values.last().copied().unwrap_or(f64::NAN)),
    })
}

fn median(values: &[f64]) -> f64 {
    percentile(&sorted(values.to_vec()), 50.0)
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
#[derive(Debug, Clone)]
struct CallShape {
    dynamodb: usize,
    ses: usize,
    rounds: usize,
    rru: f64,
    wru: f64,
    /// Time with at least one call waiting for its answer, in ms.
    waiting_ms: f64,
    operations: Vec<String>,
}

/// The length of the union of the calls' intervals (request sent → answer
/// began), in ms: the time the invocation spent waiting on the stand-ins.
fn waiting_ms(calls: &[Call]) -> f64 {
    let mut spans: Vec<(Instant, Instant)> = calls
        .iter()
        .filter_map(|c| c.end.map(|end| (c.start, end)))
        .collect();
    spans.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    ms(total)
}

fn call_shape(calls: &[Call]) -> CallShape {
    let (mut rru, mut wru) = (0.0, 0.0);
    for c in calls.iter().filter(|c| c.service == "DynamoDB") {
        let (r, w) = cost::request_units(&c.operation, c.consistent_read);
        rru += r;
        wru += w;
    }
    let mut ordered: Vec<&Call> = calls.iter().collect();
    ordered.sort_by_key(|c| c.start);
    CallShape {
        dynamodb: calls.iter().filter(|c| c.service == "DynamoDB").count(),
        ses: calls.iter().filter(|c| c.service == "SES").count(),
        rounds: proxy::sequential_rounds(calls),
        rru,
        wru,
        waiting_ms: waiting_ms(calls),
        operations: ordered
            .iter()
            .map(|c| {
                let strong = if c.consistent_read {
                    " (consistent)"
                } else {
                    ""
                };
                format!("{}:{}{strong}", c.service, c.operation)
            })
            .collect(),
    }
}

fn trace_calls(calls: &[Call]) {
    if std::env::var_os("BENCH_TRACE").is_none() {
        return;
    }
    if let Some(first) = calls.iter().map(|c| c.start).min() {
        for c in calls {
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

/// One measured request of a path, after the requests that set it up.
struct Sample {
    /// Sent first, not measured, each with the status it must get.
    setup: Vec<(Value, u64)>,
    /// The measured request.
    event: Value,
}

impl Sample {
    fn plain(event: Value) -> Self {
        Self {
            setup: Vec::new(),
            event,
        }
    }
}

struct PathResult {
    name: &'static str,
    status: u64,
    latencies: Vec<f64>,
    cpu_ms_per_request: f64,
    shapes: Vec<CallShape>,
}

impl PathResult {
    /// Per invocation, the time not spent waiting on a call: the function's
    /// own work, the SDK's included, and the runtime's.
    fn outside_calls_ms(&self) -> Vec<f64> {
        self.latencies
            .iter()
            .zip(&self.shapes)
            .map(|(latency, shape)| latency - shape.waiting_ms)
            .collect()
    }

    /// The median shape: the invocation with the median number of rounds
    /// (calls and request units are the same in every invocation of a path
    /// unless a retry happened).
    fn typical(&self) -> Option<&CallShape> {
        let mut shapes: Vec<&CallShape> = self.shapes.iter().collect();
        shapes.sort_by_key(|s| (s.rounds, s.dynamodb + s.ses));
        shapes.get(shapes.len() / 2).copied()
    }

    fn json(&self) -> Value {
        let typical = self.typical();
        let p50 = median(&self.latencies);
        let (rru, wru, ses) = typical.map_or((0.0, 0.0, 0.0), |s| (s.rru, s.wru, s.ses as f64));
        json!({
            "status": self.status,
            "latency_ms": summary(&self.latencies),
            "outside_calls_ms": summary(&self.outside_calls_ms()),
            "cpu_ms_per_request": (self.cpu_ms_per_request * 1000.0).round() / 1000.0,
            "dynamodb_calls": typical.map_or(0, |s| s.dynamodb),
            "ses_calls": typical.map_or(0, |s| s.ses),
            "sequential_rounds": typical.map_or(0, |s| s.rounds),
            "sequential_rounds_max": self.shapes.iter().map(|s| s.rounds).max().unwrap_or(0),
            "calls_varied": self.shapes.iter().any(|s| s.dynamodb + s.ses != typical.map_or(0, |t| t.dynamodb + t.ses)),
            "read_request_units": rru,
            "write_request_units": wru,
            "operations": typical.map(|s| s.operations.clone()).unwrap_or_default(),
            "cost_per_million": cost::per_million(p50, rru, wru, ses),
        })
    }
}

async fn invoke(
    bench: &Bench,
    api: &RuntimeApi,
    ev: Value,
    expect: u64,
) -> Result<harness::runtime_api::Invocation, String> {
    bench.calls.lock().unwrap().clear();
    let inv = api
        .invoke(ev, LIMIT)
        .await
        .ok_or("no answer from the function")?;
    let status = inv.response["statusCode"].as_u64().unwrap_or(0);
    if status != expect {
        return Err(format!("expected {expect}, got {}", inv.response));
    }
    Ok(inv)
}

async fn run_path(
    bench: &Bench,
    api: &RuntimeApi,
    pid: u32,
    name: &'static str,
    expect: u64,
    samples: Vec<Sample>,
) -> Result<PathResult, String> {
    let mut latencies = Vec::with_capacity(samples.len());
    let mut shapes = Vec::with_capacity(samples.len());
    let mut cpu = 0.0;
    for sample in samples {
        for (ev, status) in sample.setup {
            invoke(bench, api, ev, status)
                .await
                .map_err(|e| format!("{name}, setting up: {e}"))?;
        }
        let before = cpu_seconds(pid).unwrap_or(0.0);
        let inv = invoke(bench, api, sample.event, expect)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        cpu += cpu_seconds(pid).unwrap_or(0.0) - before;
        latencies.push(ms(inv.latency));
        let calls = bench.calls.lock().unwrap().clone();
        trace_calls(&calls);
        shapes.push(call_shape(&calls));
    }
    Ok(PathResult {
        name,
        status: expect,
        cpu_ms_per_request: cpu * 1000.0 / latencies.len().max(1) as f64,
        latencies,
        shapes,
    })
}

/// Every path of the contract's order of checks, each with its fixtures,
/// measured in one warm process.
async fn warm_paths(
    bench: &mut Bench,
    api: &RuntimeApi,
    pid: u32,
    o: &Options,
) -> Result<Vec<PathResult>, String> {
    let mut results = Vec::new();

    let ids = bench.fresh_challenges(o.warm).await?;
    let samples = ids
        .iter()
        .map(|id| Sample::plain(post(id, &bench.caller())))
        .collect();
    results.push(run_path(bench, api, pid, "success", 200, samples).await?);

    let samples = (0..o.warm)
        .map(|_| Sample::plain(bad_body(&bench.caller())))
        .collect();
    results.push(run_path(bench, api, pid, "400 bad body", 400, samples).await?);

    let samples = (0..o.warm)
        .map(|i| Sample::plain(post(&format!("missing-{i}"), &bench.caller())))
        .collect();
    results.push(run_path(bench, api, pid, "400 unknown challenge", 400, samples).await?);

    // One challenge (or user) in the refused state serves every sample: a
    // refusal changes nothing, and each sample comes from a new caller.
    let now = now_secs();
    let (mut users, mut challenges) = (Vec::new(), Vec::new());
    let verified = bench.user(&mut users, true);
    let unverified = bench.user(&mut users, false);
    let expired = bench.challenge(
        &mut challenges,
        ChallengeSpec {
            expire_at: now - 60,
            ..ChallengeSpec::new(&verified, now - 600)
        },
    );
    let totp = bench.challenge(
        &mut challenges,
        ChallengeSpec {
            method: "totp",
            ..ChallengeSpec::new(&verified, now)
        },
    );
    let orphan = bench.challenge(
        &mut challenges,
        ChallengeSpec::new("bench-no-such-user", now),
    );
    let no_address = bench.challenge(&mut challenges, ChallengeSpec::new(&unverified, now));
    let capped = bench.challenge(
        &mut challenges,
        ChallengeSpec {
            codes_sent: MAX_CODES_PER_CHALLENGE,
            ..ChallengeSpec::new(&verified, now)
        },
    );
    bench.put(users, challenges).await?;
    for (name, challenge) in [
        ("400 challenge expired", &expired),
        ("400 not an email challenge", &totp),
        ("400 user not found", &orphan),
        ("400 no verified email", &no_address),
    ] {
        let samples = (0..o.each)
            .map(|_| Sample::plain(post(challenge, &bench.caller())))
            .collect();
        results.push(run_path(bench, api, pid, name, 400, samples).await?);
    }

    let samples = (0..o.each)
        .map(|_| {
            let mut ev = post(&expired, &bench.caller());
            ev["requestContext"]["http"]["method"] = json!("GET");
            Sample::plain(ev)
        })
        .collect();
    results.push(run_path(bench, api, pid, "405 method not POST", 405, samples).await?);

    let samples = (0..o.each)
        .map(|_| Sample::plain(post(&capped, &bench.caller())))
        .collect();
    results.push(run_path(bench, api, pid, "429 challenge cap", 429, samples).await?);

    // Seeded just before it runs: the cooldown lasts 30 s from `now`.
    let now = now_secs();
    let (mut users, mut challenges) = (Vec::new(), Vec::new());
    let user = bench.user(&mut users, true);
    let cooling = bench.challenge(
        &mut challenges,
        ChallengeSpec {
            codes_sent: 1,
            last_sent: Some(now),
            ..ChallengeSpec::new(&user, now)
        },
    );
    bench.put(users, challenges).await?;
    let samples = (0..o.each)
        .map(|_| Sample::plain(post(&cooling, &bench.caller())))
        .collect();
    results.push(run_path(bench, api, pid, "429 resend cooldown", 429, samples).await?);

    // The user's budget, spent by real sends on as many challenges.
    let now = now_secs();
    let (mut users, mut challenges) = (Vec::new(), Vec::new());
    let user = bench.user(&mut users, true);
    let spent: Vec<String> = (0..=MAX_CODES_PER_USER)
        .map(|_| bench.challenge(&mut challenges, ChallengeSpec::new(&user, now)))
        .collect();
    bench.put(users, challenges).await?;
    let (last, spending) = spent.split_last().ok_or("no challenges")?;
    let setup = spending
        .iter()
        .map(|id| (post(id, &bench.caller()), 200))
        .collect();
    let mut samples = vec![Sample {
        setup,
        event: post(last, &bench.caller()),
    }];
    samples.extend((1..o.each).map(|_| Sample::plain(post(last, &bench.caller()))));
    results.push(run_path(bench, api, pid, "429 user budget", 429, samples).await?);

    // The caller's counter refuses: a new caller's sixth request.
    for (name, valid_body) in [
        ("429 caller limit, valid body", true),
        ("429 caller limit, bad body", false),
    ] {
        let samples = (0..o.each)
            .map(|_| {
                let caller = bench.caller();
                let setup = (0..RATE_LIMIT_MAX)
                    .map(|_| (bad_body(&caller), 400))
                    .collect();
                // A real challenge: its read runs beside the refusing counter.
                let event = if valid_body {
                    post(&capped, &caller)
                } else {
                    bad_body(&caller)
                };
                Sample { setup, event }
            })
            .collect();
        results.push(run_path(bench, api, pid, name, 429, samples).await?);
    }

    // Refused from memory: the same caller again, once its counter refused it.
    let caller = bench.caller();
    let mut setup: Vec<(Value, u64)> = (0..RATE_LIMIT_MAX)
        .map(|_| (bad_body(&caller), 400))
        .collect();
    setup.push((post(&capped, &caller), 429));
    let mut samples = vec![Sample {
        setup,
        event: post(&capped, &caller),
    }];
    samples.extend((1..o.warm).map(|_| Sample::plain(post(&capped, &caller))));
    results.push(run_path(bench, api, pid, "429 refused from memory", 429, samples).await?);

    Ok(results)
}

/// One cold start: spawn → ready (init), then one invocation.
struct ColdRun {
    init_ms: f64,
    first_ms: f64,
    first_response_ms: f64,
    shape: Option<CallShape>,
}

async fn cold_run(
    bench: &Bench,
    binary: &str,
    event: Value,
    expect: u64,
) -> Result<ColdRun, String> {
    let mut api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let spawned = Instant::now();
    let mut child = bench.spawn(binary, &api)?;
    let ready = api
        .ready(LIMIT)
        .await
        .ok_or(format!("{binary} never polled for an event"))?;
    if let Some(err) = api.init_error() {
        return Err(format!("{binary}: init error: {err}"));
    }
    let inv = invoke(bench, &api, event, expect)
        .await
        .map_err(|e| format!("{binary}, first invocation: {e}"))?;
    let calls = bench.calls.lock().unwrap().clone();
    trace_calls(&calls);
    let _ = child.kill().await;
    Ok(ColdRun {
        init_ms: ms(ready - spawned),
        first_ms: ms(inv.latency),
        first_response_ms: ms(inv.answered_at - spawned),
        shape: (!calls.is_empty()).then(|| call_shape(&calls)),
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

    let templates = Templates;
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
            code_expire_at: now.whole_secs().plus_secs(600),
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
        fronts: tls::Fronts::start(&dynamodb_url, &ses_url, Duration::ZERO).await?,
        dynamodb_url,
        ses_url,
        serial: 0,
        callers: 0,
    };

    // Warm: one process, every path in turn.
    eprintln!(
        "warm: one process; {} invocations of the main paths, {} of the others",
        o.warm, o.each
    );
    let mut api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let mut child = bench.spawn(&o.bootstrap, &api)?;
    let pid = child.id().ok_or("no pid")?;
    api.ready(LIMIT).await.ok_or("the function never polled")?;
    // Unmeasured: the stand-ins run on a JVM and on Node, which compile
    // their hot paths during the first few hundred requests; these bring
    // them to speed (and open the connections) before anything is measured,
    // cold starts included.
    for id in bench.fresh_challenges(HEAT).await? {
        let caller = bench.caller();
        invoke(&bench, &api, post(&id, &caller), 200).await?;
    }
    let paths = warm_paths(&mut bench, &api, pid, &o).await?;
    let rss_kib = peak_rss_kib(pid);
    let _ = child.kill().await;
    let concurrent = concurrency::measure(&mut bench, &o.bootstrap, o.concurrent).await?;

    // Cold starts, after the warm process is gone: a fresh process per run,
    // as Lambda starts one; the floor and the function take turns, so both
    // see the same machine.
    eprintln!(
        "cold start: {} fresh processes of each binary, taking turns",
        o.cold
    );
    let cold_ids = bench.fresh_challenges(o.cold).await?;
    let (mut floor, mut function) = (Vec::new(), Vec::new());
    for id in &cold_ids {
        let any = bad_body(&bench.caller());
        floor.push(cold_run(&bench, &o.floor, any, 200).await?);
        let first = post(id, &bench.caller());
        function.push(cold_run(&bench, &o.bootstrap, first, 200).await?);
    }

    let tls = tls::measure(
        &mut bench,
        &o.bootstrap,
        o.jitter_bootstrap.as_deref(),
        o.cold,
        o.warm,
        &o.floor,
    )
    .await?;

    let own_us = handler_own_cpu_us()?;
    let zip_bytes = std::fs::metadata(&o.zip).map(|m| m.len()).ok();

    let column = |runs: &[ColdRun], f: fn(&ColdRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let floor_init = column(&floor, |r| r.init_ms);
    let init = column(&function, |r| r.init_ms);
    let first = column(&function, |r| r.first_ms);
    let first_outside = column(&function, |r| {
        r.first_ms - r.shape.as_ref().map_or(0.0, |s| s.waiting_ms)
    });
    let first_response = column(&function, |r| r.first_response_ms);
    let floor_first = column(&floor, |r| r.first_ms);
    let success = paths.first().ok_or("no paths")?;
    let warm_median = median(&success.latencies);
    let init_over_floor = median(&init) - median(&floor_init);
    let first_over_warm = median(&first) - warm_median;
    let mut first_shapes: Vec<&CallShape> =
        function.iter().filter_map(|r| r.shape.as_ref()).collect();
    first_shapes.sort_by_key(|s| s.rounds);
    let first_shape = first_shapes.get(first_shapes.len() / 2).copied();
    let init_cost_per_million_cold_starts = 1e6
        * (median(&init).ceil() / 1000.0)
        * (cost::memory_mb() / 1024.0)
        * cost::LAMBDA_ARM_GB_SECOND;

    let results = json!({
        "generated_at_epoch": now_secs(),
        "machine": machine(),
        "bootstrap": o.bootstrap,
        "floor": o.floor,
        "configuration": {
            "RESEND_COOLDOWN_SECONDS": RESEND_COOLDOWN_SECONDS,
            "other variables": "the binary's defaults (as template.yaml's)",
        },
        "cold_start": {
            "processes_each": o.cold,
            "floor_init_ms": summary(&floor_init),
            "floor_first_invocation_ms": summary(&floor_first),
            "init_ms": summary(&init),
            "init_minus_floor_ms": round2(init_over_floor),
            "first_invocation_ms": summary(&first),
            "warm_success_median_ms": round2(warm_median),
            "first_invocation_minus_warm_median_ms": round2(first_over_warm),
            "first_invocation_outside_calls_ms": summary(&first_outside),
            "warm_success_outside_calls_median_ms": round2(median(&success.outside_calls_ms())),
            "first_response_ms": summary(&first_response),
            "first_invocation_calls": first_shape.map(|s| json!({
                "dynamodb_calls": s.dynamodb,
                "ses_calls": s.ses,
                "sequential_rounds": s.rounds,
            })),
            "init_cost_usd_per_million_cold_starts": round2(init_cost_per_million_cold_starts),
        },
        "paths": paths.iter().map(|p| (p.name.to_string(), p.json())).collect::<serde_json::Map<_, _>>(),
        "prices": cost::prices(),
        "handler_own_cpu_us_per_request": (own_us * 10.0).round() / 10.0,
        "peak_rss_mib": rss_kib.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0),
        "zip_bytes": zip_bytes,
        "concurrency": concurrent,
        "tls": tls,
    });
    print_report(&o, &results, &paths);
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

fn print_report(o: &Options, r: &Value, paths: &[PathResult]) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let cold = &r["cold_start"];
    println!(
        "sendEmailCode benchmark on {} ({} cores, {})",
        r["machine"]["cpu"].as_str().unwrap_or("?"),
        r["machine"]["cores"],
        r["machine"]["arch"].as_str().unwrap_or("?"),
    );
    println!();
    println!(
        "cold start, {} fresh processes of each, taking turns     median      p90",
        o.cold
    );
    let row = |label: &str, s: &Value| {
        println!(
            "  {label:<50} {:>8.2} ms {:>8.2} ms",
            f(&s["p50"]),
            f(&s["p90"])
        );
    };
    row(
        "floor (bare lambda_http): spawn -> ready",
        &cold["floor_init_ms"],
    );
    row("bootstrap: spawn -> ready (init)", &cold["init_ms"]);
    println!(
        "  {:<50} {:>8.2} ms",
        "init - floor (difference of medians)",
        f(&cold["init_minus_floor_ms"])
    );
    row(
        "bootstrap: first invocation, event -> response",
        &cold["first_invocation_ms"],
    );
    println!(
        "  {:<50} {:>8.2} ms",
        "warm success, median",
        f(&cold["warm_success_median_ms"])
    );
    println!(
        "  {:<50} {:>8.2} ms",
        "first invocation - warm median",
        f(&cold["first_invocation_minus_warm_median_ms"])
    );
    row(
        "  of which outside AWS calls",
        &cold["first_invocation_outside_calls_ms"],
    );
    println!(
        "  {:<50} {:>8.2} ms",
        "  warm success outside AWS calls, median",
        f(&cold["warm_success_outside_calls_median_ms"])
    );
    row(
        "bootstrap: spawn -> first response posted",
        &cold["first_response_ms"],
    );
    if let Some(c) = cold["first_invocation_calls"].as_object() {
        println!(
            "  first invocation: {} DynamoDB + {} SES calls in {} rounds",
            c["dynamodb_calls"], c["ses_calls"], c["sequential_rounds"]
        );
    }
    println!();
    println!(
        "warm, one process: latency (event -> response), AWS calls and request units per path"
    );
    println!(
        "  {:<30} {:>6} {:>7} {:>7} {:>7}  {:>3} {:>3} {:>6}  {:>4} {:>4}",
        "path", "n", "p50 ms", "p90 ms", "CPU ms", "DDB", "SES", "rounds", "RRU", "WRU"
    );
    for p in paths {
        let j = p.json();
        println!(
            "  {:<30} {:>6} {:>7.2} {:>7.2} {:>7.3}  {:>3} {:>3} {:>6}  {:>4.1} {:>4.1}",
            p.name,
            p.latencies.len(),
            f(&j["latency_ms"]["p50"]),
            f(&j["latency_ms"]["p90"]),
            p.cpu_ms_per_request,
            j["dynamodb_calls"].as_u64().unwrap_or(0),
            j["ses_calls"].as_u64().unwrap_or(0),
            j["sequential_rounds"].as_u64().unwrap_or(0),
            f(&j["read_request_units"]),
            f(&j["write_request_units"]),
        );
    }
    println!("  (CPU ms: the whole process per request, AWS SDK included; rounds: calls one after another, in the median invocation)");
    println!();
    println!(
        "cost of a million requests, USD ({} MB, arm64; {})",
        cost::memory_mb(),
        cost::PRICES_AS_OF
    );
    println!(
        "  {:<30} {:>9} {:>8} {:>9} {:>8} {:>8} {:>12}",
        "path", "billed ms", "Lambda", "DynamoDB", "SES", "total", "+ HTTP API"
    );
    for p in paths {
        let c = &p.json()["cost_per_million"];
        println!(
            "  {:<30} {:>9.0} {:>8.3} {:>9.3} {:>8.2} {:>8.3} {:>12.3}",
            p.name,
            f(&c["billed_ms"]),
            f(&c["lambda_usd"]),
            f(&c["dynamodb_usd"]),
            f(&c["ses_usd"]),
            f(&c["total_usd"]),
            f(&c["with_http_api_usd"]),
        );
    }
    println!(
        "  each cold start also bills its init: {:.2} USD per million cold starts",
        f(&cold["init_cost_usd_per_million_cold_starts"])
    );
    println!();
    println!(
        "handler's own work on the success path, no network: {} µs per request",
        r["handler_own_cpu_us_per_request"]
    );
    match r["peak_rss_mib"].as_f64() {
        Some(m) => println!("peak RSS of the warm function process: {m:.1} MiB"),
        None => println!("peak RSS: unavailable"),
    }
    match r["zip_bytes"].as_u64() {
        Some(b) => println!(
            "bootstrap.zip ({}): {b} bytes ({:.2} MiB)",
            o.zip,
            b as f64 / 1_048_576.0
        ),
        None => println!("bootstrap.zip: not built ({} missing)", o.zip),
    }
    println!();
    concurrency::print(&r["concurrency"]);
    println!();
    tls::print(&r["tls"]);
}
