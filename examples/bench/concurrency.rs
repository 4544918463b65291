//! One process serving several invocations at once, as on Lambda Managed
//! Instances: for each level of `AWS_LAMBDA_MAX_CONCURRENCY`, a fresh
//! `bootstrap` is warmed up, then kept busy with exactly that many success
//! requests in flight (closed loop: an answer lets the next event in) for a
//! fixed number of requests. Throughput, latency, CPU per request, peak
//! memory, and the overlap the emulator saw, which proves the level was
//! reached.

use std::time::{Duration, Instant};

use harness::runtime_api::{max_overlap, RuntimeApi};
use serde_json::{json, Value};

use crate::{cpu_seconds, ms, peak_rss_kib, percentile, post, round2, sorted, Bench, LIMIT};

/// The levels measured: classic Lambda's one at a time, then two that a
/// managed instance might be given.
pub const LEVELS: [usize; 3] = [1, 4, 8];

/// Unmeasured success requests per level, at that level, before measuring:
/// they open the pooled connections the level needs.
const WARM_UP: usize = 40;

/// One level's figures.
struct Level {
    concurrency: usize,
    requests: usize,
    seconds: f64,
    latencies: Vec<f64>,
    cpu_ms_per_request: f64,
    peak_rss_kib: Option<u64>,
    max_overlap: usize,
}

impl Level {
    fn json(&self) -> Value {
        let latencies = sorted(self.latencies.clone());
        json!({
            "max_concurrency": self.concurrency,
            "requests": self.requests,
            "requests_per_second": round2(self.requests as f64 / self.seconds),
            "latency_p50_ms": round2(percentile(&latencies, 50.0)),
            "latency_p99_ms": round2(percentile(&latencies, 99.0)),
            "cpu_ms_per_request": (self.cpu_ms_per_request * 1000.0).round() / 1000.0,
            "peak_rss_mib": self.peak_rss_kib.map(|k| round2(k as f64 / 1024.0)),
            "max_overlap_observed": self.max_overlap,
        })
    }
}

/// Success requests on fresh challenges from fresh callers, `n` of them,
/// answered `concurrency` at a time; every one must get a 200.
async fn closed_loop(
    bench: &mut Bench,
    api: &RuntimeApi,
    n: usize,
    concurrency: usize,
) -> Result<Vec<harness::runtime_api::Invocation>, String> {
    let ids = bench.fresh_challenges(n).await?;
    let events = ids.iter().map(|id| post(id, &bench.caller())).collect();
    // Generous: a second per request on top of the usual limit.
    let limit = LIMIT + Duration::from_secs(n as u64);
    let answers = api.invoke_closed_loop(events, concurrency, limit).await;
    // The proxies log every call; nothing here reads them.
    bench.calls.lock().unwrap().clear();
    let mut invocations = Vec::with_capacity(answers.len());
    for answer in answers {
        let inv = answer.ok_or("no answer from the function")?;
        let status = inv.response["statusCode"].as_u64().unwrap_or(0);
        if status != 200 {
            return Err(format!("expected 200, got {}", inv.response));
        }
        invocations.push(inv);
    }
    Ok(invocations)
}

async fn level(
    bench: &mut Bench,
    binary: &str,
    concurrency: usize,
    requests: usize,
) -> Result<Level, String> {
    let mut api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let level = concurrency.to_string();
    let mut child = bench.spawn_with(binary, &api, &[("AWS_LAMBDA_MAX_CONCURRENCY", &level)])?;
    let pid = child.id().ok_or("no pid")?;
    api.ready(LIMIT).await.ok_or("the function never polled")?;
    if !api.await_polls(concurrency, LIMIT).await {
        return Err(format!("fewer than {concurrency} polls waiting at once"));
    }
    closed_loop(bench, &api, WARM_UP, concurrency).await?;
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
    let started = Instant::now();
    let invocations = closed_loop(bench, &api, requests, concurrency).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let peak_rss_kib = peak_rss_kib(pid);
    let _ = child.kill().await;
    Ok(Level {
        concurrency,
        requests,
        seconds,
        latencies: invocations.iter().map(|i| ms(i.latency)).collect(),
        cpu_ms_per_request: cpu * 1000.0 / requests as f64,
        peak_rss_kib,
        max_overlap: max_overlap(&invocations),
    })
}

/// Every level in turn, a fresh process each; the figures as JSON.
pub async fn measure(bench: &mut Bench, binary: &str, requests: usize) -> Result<Value, String> {
    eprintln!(
        "concurrency: a fresh process per level {LEVELS:?}, {requests} success requests each, that many in flight"
    );
    let mut levels = Vec::with_capacity(LEVELS.len());
    for concurrency in LEVELS {
        let figures = level(bench, binary, concurrency, requests)
            .await
            .map_err(|e| format!("concurrency {concurrency}: {e}"))?;
        levels.push(figures.json());
    }
    Ok(json!({
        "binary": binary,
        "requests_per_level": requests,
        "warm_up_requests_per_level": WARM_UP,
        "levels": levels,
    }))
}

/// The table, from the JSON [`measure`] gives.
pub fn print(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "one process, N invocations in flight (AWS_LAMBDA_MAX_CONCURRENCY = N), {} success requests per level",
        r["requests_per_level"]
    );
    println!(
        "  {:>2} {:>8} {:>7} {:>7} {:>7} {:>9} {:>7}",
        "N", "req/s", "p50 ms", "p99 ms", "CPU ms", "peak RSS", "overlap"
    );
    for l in r["levels"].as_array().into_iter().flatten() {
        println!(
            "  {:>2} {:>8.1} {:>7.2} {:>7.2} {:>7.3} {:>5.1} MiB {:>7}",
            l["max_concurrency"],
            f(&l["requests_per_second"]),
            f(&l["latency_p50_ms"]),
            f(&l["latency_p99_ms"]),
            f(&l["cpu_ms_per_request"]),
            f(&l["peak_rss_mib"]),
            l["max_overlap_observed"],
        );
    }
    println!("  (CPU ms: the whole process per request; overlap: the most invocations the emulator saw in the function at once)");
}
