//! TLS, as Lambda's calls all are. Every function process of the benchmark
//! talks to the stand-ins through TLS fronts (harness/src/tls_front.rs, with
//! a CA made for this run and trusted through `TLS_EXTRA_ROOTS_FILE`) placed
//! before the counting proxies. Here, the cold start: fresh processes of
//! each variant take turns with the same binary over plain HTTP, so all see
//! the same machine: the release bootstrap as built (no jitter entropy),
//! the same code built with aws-lc's jitter entropy (`--jitter-bootstrap`),
//! and each `PRECONNECT` choice. A warm process gives the latency the first
//! invocation is compared with, and proves that warm requests open no
//! connection.

use std::time::{Duration, Instant};

use harness::runtime_api::RuntimeApi;
use harness::tls_front::{Flaw, TestCa, TlsFront};
use serde_json::{json, Value};

use super::{invoke, median, ms, post, round2, summary, Bench, HEAT, LIMIT};

/// The target: the first invocation over TLS is at most this much slower
/// than a warm one (median against median).
const FIRST_OVER_WARM_TARGET_MS: f64 = 5.0;
/// The target: init over TLS is at most this much slower than the floor's.
const INIT_OVER_FLOOR_TARGET_MS: f64 = 1.5;
/// What a new connection costs on a network, for the rows that simulate
/// one: TCP and TLS 1.3 take two round trips before the request goes, about
/// 1 ms each inside an AWS region (an assumption, not a measurement here).
const SIMULATED_SETUP: Duration = Duration::from_millis(2);

/// Both stand-ins behind TLS, and the CA's file.
pub struct Fronts {
    dynamodb: TlsFront,
    ses: TlsFront,
    ca_file: String,
    _dir: TempDir,
}

/// A folder removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Fronts {
    /// Fronts before the counting proxies at these (plain HTTP) URLs, each
    /// new connection held for `setup_delay` before its handshake.
    pub async fn start(dynamodb: &str, ses: &str, setup_delay: Duration) -> Result<Self, String> {
        let ca = TestCa::new();
        // A folder per set of fronts: each has a CA of its own.
        static SETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let set = SETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "send-email-code-bench-{}-{set}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let ca_file = ca.write_pem(&dir).to_string_lossy().into_owned();
        let front = |upstream: &str| {
            let (upstream, cert) = (upstream.to_string(), ca.server_cert(Flaw::None));
            async move {
                TlsFront::start_delayed(&upstream, cert, setup_delay)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        Ok(Self {
            dynamodb: front(dynamodb).await?,
            ses: front(ses).await?,
            ca_file,
            _dir: TempDir(dir),
        })
    }

    pub fn dynamodb_url(&self) -> String {
        self.dynamodb.url()
    }

    pub fn ses_url(&self) -> String {
        self.ses.url()
    }

    /// The test CA's PEM file, for `TLS_EXTRA_ROOTS_FILE`.
    pub fn ca_file(&self) -> String {
        self.ca_file.clone()
    }

    /// TLS handshakes completed on both fronts so far.
    fn handshakes(&self) -> usize {
        self.dynamodb.handshakes() + self.ses.handshakes()
    }

    /// Connections accepted by both fronts so far.
    fn accepted(&self) -> usize {
        self.dynamodb.accepted() + self.ses.accepted()
    }
}

/// One way to start the function for a cold run.
struct Variant {
    name: &'static str,
    binary: String,
    tls: bool,
    /// Through the fronts that simulate a network's connection set-up.
    network: bool,
    preconnect: &'static str,
}

/// One cold run of a variant.
struct Cold {
    init_ms: f64,
    first_ms: f64,
    response_ms: f64,
    init_handshakes: usize,
    first_handshakes: usize,
    /// Success requests after the first, in the same process, minus the
    /// first of them: warm latency under the very conditions of the cold run.
    warm_ms: Vec<f64>,
}

/// Success requests sent after each first invocation (the first of them is
/// not counted as warm).
const AFTER_FIRST: usize = 5;

async fn cold(
    bench: &Bench,
    network: &Fronts,
    v: &Variant,
    mut events: Vec<Value>,
) -> Result<Cold, String> {
    let event = events.remove(0);
    let fronts = if v.network { network } else { &bench.fronts };
    let mut api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let (dynamodb, ses, ca) = (fronts.dynamodb_url(), fronts.ses_url(), fronts.ca_file());
    let mut extra = vec![("PRECONNECT", v.preconnect)];
    if !v.tls {
        // Straight to the counting proxies.
        extra.push(("AWS_ENDPOINT_URL_DYNAMODB", bench.dynamodb_url.as_str()));
        extra.push(("AWS_ENDPOINT_URL_SESV2", bench.ses_url.as_str()));
    } else if v.network {
        extra.push(("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.as_str()));
        extra.push(("AWS_ENDPOINT_URL_SESV2", ses.as_str()));
        extra.push(("TLS_EXTRA_ROOTS_FILE", ca.as_str()));
    }
    let before = fronts.handshakes();
    let spawned = Instant::now();
    let mut child = bench.spawn_with(&v.binary, &api, &extra)?;
    let ready = api
        .ready(LIMIT)
        .await
        .ok_or(format!("{}: never polled for an event", v.name))?;
    if let Some(err) = api.init_error() {
        return Err(format!("{}: init error: {err}", v.name));
    }
    let at_ready = fronts.handshakes();
    let inv = invoke(bench, &api, event, 200)
        .await
        .map_err(|e| format!("{}, first invocation: {e}", v.name))?;
    let answered = fronts.handshakes();
    let mut warm_ms = Vec::new();
    for (n, event) in events.into_iter().enumerate() {
        let inv = invoke(bench, &api, event, 200).await?;
        if n > 0 {
            warm_ms.push(ms(inv.latency));
        }
    }
    let _ = child.kill().await;
    Ok(Cold {
        warm_ms,
        init_ms: ms(ready - spawned),
        first_ms: ms(inv.latency),
        response_ms: ms(inv.answered_at - spawned),
        init_handshakes: at_ready - before,
        first_handshakes: answered - at_ready,
    })
}

/// Warm success latency over TLS in one process, and the connections the
/// measured requests opened.
async fn warm(bench: &mut Bench, binary: &str, n: usize) -> Result<(Vec<f64>, usize), String> {
    let mut api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let mut child = bench.spawn(binary, &api)?;
    api.ready(LIMIT).await.ok_or("the function never polled")?;
    for id in bench.fresh_challenges(HEAT).await? {
        let caller = bench.caller();
        invoke(bench, &api, post(&id, &caller), 200).await?;
    }
    let before = bench.fronts.accepted();
    let mut latencies = Vec::with_capacity(n);
    for id in bench.fresh_challenges(n).await? {
        let caller = bench.caller();
        latencies.push(ms(invoke(bench, &api, post(&id, &caller), 200)
            .await?
            .latency));
    }
    let opened = bench.fronts.accepted() - before;
    let _ = child.kill().await;
    Ok((latencies, opened))
}

/// Cold starts over TLS beside plain HTTP, and warm latency over TLS.
/// `floor` is the bare lambda_http binary: it takes its turn too, so init
/// is compared with a floor measured under the same conditions.
pub async fn measure(
    bench: &mut Bench,
    bootstrap: &str,
    jitter_bootstrap: Option<&str>,
    runs: usize,
    warm_requests: usize,
    floor: &str,
) -> Result<Value, String> {
    eprintln!("TLS: warm process, {warm_requests} success requests");
    let (warm_latencies, warm_opened) = warm(bench, bootstrap, warm_requests).await?;

    let network = Fronts::start(&bench.dynamodb_url, &bench.ses_url, SIMULATED_SETUP).await?;
    let variant = |name, binary: &str, tls, network, preconnect| Variant {
        name,
        binary: binary.to_string(),
        tls,
        network,
        preconnect,
    };
    let mut variants = vec![
        variant(
            "floor (bare lambda_http)",
            floor,
            false,
            false,
            "first-request",
        ),
        variant("plain HTTP", bootstrap, false, false, "first-request"),
        variant("TLS", bootstrap, true, false, "first-request"),
        variant("TLS, PRECONNECT=off", bootstrap, true, false, "off"),
        variant("TLS, PRECONNECT=init", bootstrap, true, false, "init"),
        variant("TLS + 2 ms set-up", bootstrap, true, true, "first-request"),
        variant(
            "TLS + 2 ms set-up, PRECONNECT=off",
            bootstrap,
            true,
            true,
            "off",
        ),
        variant(
            "TLS + 2 ms set-up, PRECONNECT=init",
            bootstrap,
            true,
            true,
            "init",
        ),
    ];
    if let Some(jitter) = jitter_bootstrap {
        variants.push(variant(
            "TLS, built with jitter entropy",
            jitter,
            true,
            false,
            "first-request",
        ));
    }
    eprintln!(
        "TLS: {runs} cold starts of each of {} variants, taking turns",
        variants.len()
    );
    let mut results: Vec<Vec<Cold>> = variants.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (v, runs) in variants.iter().zip(results.iter_mut()) {
            let events = if v.binary == floor {
                vec![post("any", &bench.caller())]
            } else {
                let ids = bench.fresh_challenges(1 + AFTER_FIRST).await?;
                ids.iter().map(|id| post(id, &bench.caller())).collect()
            };
            runs.push(cold(bench, &network, v, events).await?);
            // The killed process's connections close before the next run.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let rows: Vec<Value> = variants
        .iter()
        .zip(&results)
        .map(|(v, runs)| {
            let column = |f: fn(&Cold) -> f64| runs.iter().map(f).collect::<Vec<_>>();
            json!({
                "variant": v.name,
                "preconnect": v.preconnect,
                "tls": v.tls,
                "simulated_connection_setup_ms": if v.network { ms(SIMULATED_SETUP) } else { 0.0 },
                "init_ms": summary(&column(|r| r.init_ms)),
                "first_invocation_ms": summary(&column(|r| r.first_ms)),
                "spawn_to_response_ms": summary(&column(|r| r.response_ms)),
                "handshakes_at_init": median(&column(|r| r.init_handshakes as f64)),
                "handshakes_in_first_invocation": median(&column(|r| r.first_handshakes as f64)),
            })
        })
        .collect();
    // Row 0 is the floor, row 2 the function over TLS as deployed.
    let tls_row = &rows[2];
    let p50 = |row: &Value, key: &str| row[key]["p50"].as_f64().unwrap_or(f64::NAN);
    let warm_beside: Vec<f64> = results[2].iter().flat_map(|r| r.warm_ms.clone()).collect();
    let first_over_warm = p50(tls_row, "first_invocation_ms") - median(&warm_beside);
    let init_over_floor = p50(tls_row, "init_ms") - p50(&rows[0], "init_ms");
    Ok(json!({
        "cold_runs_each": runs,
        "warm_success_latency_ms": summary(&warm_latencies),
        "warm_success_beside_cold_runs_ms": summary(&warm_beside),
        "warm_new_connections": warm_opened,
        "cold": rows,
        "targets": {
            "first_invocation_minus_warm_p50_ms": round2(first_over_warm),
            "first_invocation_within_warm_plus_5_ms": first_over_warm <= FIRST_OVER_WARM_TARGET_MS,
            "warm_opens_no_connection": warm_opened == 0,
            "init_minus_floor_ms": round2(init_over_floor),
            "init_within_floor_plus_1_5_ms": init_over_floor <= INIT_OVER_FLOOR_TARGET_MS,
            "handshakes_per_cold_request": tls_row["handshakes_in_first_invocation"],
        },
    }))
}

/// The report's TLS table.
pub fn print(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "cold start over TLS (local TLS front, test CA), {} fresh processes of each, taking turns",
        r["cold_runs_each"]
    );
    println!(
        "  {:<36} {:>9} {:>9} {:>9} {:>9}  {:>10}",
        "variant", "init", "first", "first p90", "spawn→ans", "handshakes"
    );
    for row in r["cold"].as_array().into_iter().flatten() {
        println!(
            "  {:<36} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms  {:>4} + {:<4}",
            row["variant"].as_str().unwrap_or("?"),
            f(&row["init_ms"]["p50"]),
            f(&row["first_invocation_ms"]["p50"]),
            f(&row["first_invocation_ms"]["p90"]),
            f(&row["spawn_to_response_ms"]["p50"]),
            row["handshakes_at_init"],
            row["handshakes_in_first_invocation"],
        );
    }
    println!("  (medians; handshakes: during init + during the first invocation)");
    let t = &r["targets"];
    println!(
        "  warm success over TLS: p50 {:.2} ms, p99 {:.2} ms; connections opened by {} warm requests: {}",
        f(&r["warm_success_latency_ms"]["p50"]),
        f(&r["warm_success_latency_ms"]["p99"]),
        r["warm_success_latency_ms"]["n"],
        r["warm_new_connections"],
    );
    let verdict = |ok: &Value| {
        if ok.as_bool() == Some(true) {
            "met"
        } else {
            "NOT MET"
        }
    };
    println!(
        "  warm success beside the cold runs (requests 3 to {} of each TLS process): p50 {:.2} ms",
        AFTER_FIRST + 1,
        f(&r["warm_success_beside_cold_runs_ms"]["p50"]),
    );
    println!(
        "  target first invocation <= that warm p50 + {FIRST_OVER_WARM_TARGET_MS} ms: {:+.2} ms, {}",
        f(&t["first_invocation_minus_warm_p50_ms"]),
        verdict(&t["first_invocation_within_warm_plus_5_ms"])
    );
    println!(
        "  target init <= the floor's (same rotation) + {INIT_OVER_FLOOR_TARGET_MS} ms: {:+.2} ms, {}",
        f(&t["init_minus_floor_ms"]),
        verdict(&t["init_within_floor_plus_1_5_ms"])
    );
    println!(
        "  target a warm request opens no connection: {}",
        verdict(&t["warm_opens_no_connection"])
    );
}
