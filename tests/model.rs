//! Model-based test of the invariants of docs/contract.md, against the real
//! stand-ins behind fault-injecting proxies.
//!
//! Each scenario, drawn from a seed, sets up users, challenges and callers,
//! then runs phases: the clock moves on, a fault is set on DynamoDB or SES
//! (refusals, slowness, answers delayed past the SDK's attempt timeout after
//! the write was applied, cut connections, throttling), a challenge may be
//! deleted, and a batch of concurrent requests goes through the handler.
//! Afterwards, with every delayed request landed, it checks:
//! - a stored `codeHash` is the hash of a code SES accepted for that user;
//! - `codesSent` never exceeds the cap, never falls below the messages SES
//!   accepted, and exceeds them only by requests that logged a kept or
//!   retried reservation; the same for the per-user counter;
//! - no caller got past its limit in a window;
//! - every answer is one the contract allows for its request.
//!
//! `MODEL_SCENARIOS` (default 200) and `MODEL_SEED` (default fixed) choose
//! the runs; a failure prints the seed that replays it:
//! `MODEL_SEED=<seed> MODEL_SCENARIOS=1 ./scripts/test.sh --test model`.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::fault_proxy::{splitmix, Dialect, Fault, FaultProxy};
use common::*;
use send_email_code::domain::code::verify;
use send_email_code::{aws, handle_traced, App, ReservationFate, Timestamp, Trace};
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// Slow, but well within the SDK's attempt timeout.
const SLOW: Duration = Duration::from_millis(60);
/// Past the SDK's attempt timeout (the production one, `aws::ATTEMPT_TIMEOUT`).
const LATE: Duration = Duration::from_millis(1_300);
/// Scenarios that run at once.
const PARALLEL: usize = 4;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        splitmix(&mut self.0) % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
struct ChallengeSpec {
    id: String,
    user: String,
    method: &'static str,
    /// `expireAt` in milliseconds (written as a possibly fractional Number).
    expire_ms: i64,
}

#[derive(Debug, Clone)]
struct UserSpec {
    id: String,
    address: Option<String>,
    exists: bool,
}

#[derive(Debug, Clone)]
struct Sent {
    phase: usize,
    faulty: bool,
    now: Timestamp,
    challenge: String,
    caller: String,
    status: u16,
    body: Value,
    headers: HashMap<String, String>,
    trace: Trace,
}

struct Limits {
    cap: u32,
    caller_max: u32,
    user_max: u32,
    cooldown: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariants_hold_over_random_concurrent_scenarios_with_faults() {
    let scenarios: u64 = std::env::var("MODEL_SCENARIOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let first: u64 = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_130);
    let env = Arc::new(Env::new().await);
    let mut running = JoinSet::new();
    let mut failures = Vec::new();
    let mut faults_hit = 0;
    for seed in first..first + scenarios {
        if running.len() >= PARALLEL {
            collect(running.join_next().await, &mut failures, &mut faults_hit);
        }
        let env = env.clone();
        running.spawn(async move { (seed, run_scenario(&env, seed).await) });
    }
    while let Some(done) = running.join_next().await {
        collect(Some(done), &mut failures, &mut faults_hit);
    }
    assert!(
        failures.is_empty(),
        "{} of {scenarios} scenarios broke an invariant:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        faults_hit as u64 >= scenarios,
        "only {faults_hit} faults were injected in {scenarios} scenarios"
    );
    println!(
        "{scenarios} scenarios from seed {first}: invariants held; {faults_hit} faults injected"
    );
}

type Outcome = (u64, Result<usize, String>);

fn collect(
    done: Option<Result<Outcome, tokio::task::JoinError>>,
    failures: &mut Vec<String>,
    faults_hit: &mut usize,
) {
    match done {
        Some(Ok((_, Ok(hits)))) => *faults_hit += hits,
        Some(Ok((seed, Err(why)))) => failures.push(format!(
            "seed {seed}: {why}\n  replay: MODEL_SEED={seed} MODEL_SCENARIOS=1 ./scripts/test.sh --test model"
        )),
        Some(Err(panic)) => failures.push(format!("a scenario panicked: {panic}")),
        None => {}
    }
}

async fn run_scenario(env: &Env, seed: u64) -> Result<usize, String> {
    let mut rng = Rng(seed);
    let limits = Limits {
        cap: 1 + rng.below(4) as u32,
        caller_max: 2 + rng.below(5) as u32,
        user_max: *rng.pick(&[0, 2, 3, 5, 10]),
        cooldown: *rng.pick(&[0, 0, 5, 30]),
    };
    let ddb = FaultProxy::start(
        &std::env::var("AWS_ENDPOINT_URL_DYNAMODB").map_err(|e| e.to_string())?,
        Dialect::DynamoDb,
        seed ^ 0xD1,
    )
    .await;
    let ses = FaultProxy::start(
        &std::env::var("AWS_ENDPOINT_URL_SESV2").map_err(|e| e.to_string())?,
        Dialect::Ses,
        seed ^ 0x5E5,
    )
    .await;
    let app = Arc::new(app(env, &ddb, &ses, &limits).await);

    // The world: users (one may be missing or have no address), challenges.
    let mut users = Vec::new();
    for i in 0..1 + rng.below(3) {
        let id = unique(&format!("model-{seed}-u{i}-"));
        let kind = rng.below(10);
        let user = UserSpec {
            address: (kind != 0).then(|| format!("{id}@example.test")),
            exists: kind != 1,
            id,
        };
        if user.exists {
            let emails = match &user.address {
                Some(a) => json!([{"address": a, "verified": true}]),
                None => {
                    json!([{"address": format!("x-{}@example.test", user.id), "verified": false}])
                }
            };
            env.put(
                &tables().users,
                item(json!({"userId": user.id, "emails": emails})),
            )
            .await;
        }
        users.push(user);
    }
    let mut now = Timestamp::from_millis(env.now.millis() + rng.below(1000) as i64);
    let mut challenges = Vec::new();
    for i in 0..1 + rng.below(4) {
        let spec = ChallengeSpec {
            id: unique(&format!("model-{seed}-c{i}-")),
            user: rng.pick(&users).id.clone(),
            method: if rng.chance(150) { "totp" } else { "email" },
            expire_ms: now.millis() + 5_000 + rng.below(120_000) as i64,
        };
        env.put(
            &tables().challenges,
            item(json!({
                "challengeId": spec.id,
                "userId": spec.user,
                "method": spec.method,
                "createdAt": now.secs(),
                "expireAt": spec.expire_ms as f64 / 1000.0,
            })),
        )
        .await;
        challenges.push(spec);
    }
    let unknown_id = unique("model-missing-");
    let prefix = format!("2001:db8:{:x}:{:x}", rng.below(0xffff), rng.below(0xffff));
    let callers = [
        format!("198.18.{}.{}", rng.below(255), 1 + rng.below(254)),
        format!("{prefix}::1"),
        format!("{prefix}::2"),
    ];

    let mut sent: Vec<Sent> = Vec::new();
    let mut deleted: HashSet<String> = HashSet::new();
    for phase in 0..2 + rng.below(4) as usize {
        now = Timestamp::from_millis(now.millis() + rng.below(40_000) as i64);
        let (proxy_fault, on_ses) = draw_fault(&mut rng);
        ddb.set(Fault::None, 0);
        ses.set(Fault::None, 0);
        let faulty = proxy_fault != Fault::None;
        if faulty {
            let target = if on_ses { &ses } else { &ddb };
            target.set(proxy_fault, 300 + rng.below(700));
        }
        let mut batch = JoinSet::new();
        if rng.chance(120) {
            let victim = rng.pick(&challenges).id.clone();
            deleted.insert(victim.clone());
            let db = env.db.clone();
            batch.spawn(async move {
                let _ = db
                    .delete_item()
                    .table_name(&tables().challenges)
                    .key(
                        "challengeId",
                        aws_sdk_dynamodb::types::AttributeValue::S(victim),
                    )
                    .send()
                    .await;
                None
            });
        }
        for _ in 0..1 + rng.below(6) {
            let challenge = if rng.chance(100) {
                unknown_id.clone()
            } else {
                rng.pick(&challenges).id.clone()
            };
            let caller = rng.pick(&callers).clone();
            let app = app.clone();
            batch.spawn(async move {
                let event =
                    with_caller(with_challenge(event("http-api.json"), &challenge), &caller);
                let (response, trace) = handle_traced(&app, request(&event), now).await;
                let a = answer(response);
                Some(Sent {
                    phase,
                    faulty,
                    now,
                    challenge,
                    caller,
                    status: a.status,
                    body: a.body,
                    headers: a.headers,
                    trace,
                })
            });
        }
        while let Some(done) = batch.join_next().await {
            if let Some(s) = done.map_err(|e| format!("request task: {e}"))? {
                sent.push(s);
            }
        }
    }
    ddb.set(Fault::None, 0);
    ses.set(Fault::None, 0);
    ddb.settle().await;
    ses.settle().await;
    let hits = ddb.hits.load(std::sync::atomic::Ordering::SeqCst)
        + ses.hits.load(std::sync::atomic::Ordering::SeqCst);
    let world = World {
        env,
        limits: &limits,
        users: &users,
        challenges: &challenges,
        deleted: &deleted,
        sent: &sent,
    };
    world.check().await.map(|()| hits)
}

fn draw_fault(rng: &mut Rng) -> (Fault, bool) {
    let choices: [(Fault, bool); 10] = [
        (Fault::None, false),
        (Fault::None, false),
        (
            Fault::Refuse {
                status: 400,
                code: "MessageRejected",
            },
            true,
        ),
        (
            Fault::Refuse {
                status: 429,
                code: "TooManyRequestsException",
            },
            true,
        ),
        (Fault::DelayRequest(SLOW), true),
        (Fault::DelayRequest(LATE), true),
        (Fault::DelayRequest(LATE), false),
        (Fault::DelayResponse(LATE), false),
        (Fault::Cut, false),
        (
            Fault::Refuse {
                status: 400,
                code: "ThrottlingException",
            },
            false,
        ),
    ];
    *rng.pick(&choices)
}

async fn app(env: &Env, ddb: &FaultProxy, ses: &FaultProxy, limits: &Limits) -> App {
    // The production timeouts and retries: a loaded machine must not turn a
    // fault-free phase into timeouts.
    let timeouts = aws::timeouts();
    let db = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&env.sdk)
            .endpoint_url(&ddb.url)
            .timeout_config(timeouts.clone())
            .retry_config(aws::retry_config())
            .build(),
    );
    let mail = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&env.sdk)
            .endpoint_url(&ses.url)
            .timeout_config(timeouts)
            .build(),
    );
    let config = config(&[
        ("MAX_CODES_PER_CHALLENGE", &limits.cap.to_string()),
        ("RATE_LIMIT_MAX", &limits.caller_max.to_string()),
        ("MAX_CODES_PER_USER", &limits.user_max.to_string()),
        ("RESEND_COOLDOWN_SECONDS", &limits.cooldown.to_string()),
    ]);
    App::with_clients(config, db, mail)
}

struct World<'a> {
    env: &'a Env,
    limits: &'a Limits,
    users: &'a [UserSpec],
    challenges: &'a [ChallengeSpec],
    deleted: &'a HashSet<String>,
    sent: &'a [Sent],
}

impl World<'_> {
    async fn check(&self) -> Result<(), String> {
        let mut codes_by_user: HashMap<&str, Vec<String>> = HashMap::new();
        for user in self.users {
            let codes = match &user.address {
                Some(a) => emails_to(a)
                    .iter()
                    .map(|e| code_in(e).replace('-', ""))
                    .collect(),
                None => Vec::new(),
            };
            codes_by_user.insert(&user.id, codes);
        }
        for c in self.challenges {
            self.check_challenge(c, &codes_by_user).await?;
        }
        for user in self.users {
            self.check_user_budget(user, &codes_by_user).await?;
        }
        self.check_callers()?;
        for s in self.sent {
            self.check_answer(s, &codes_by_user)?;
        }
        Ok(())
    }

    async fn check_challenge(
        &self,
        c: &ChallengeSpec,
        codes_by_user: &HashMap<&str, Vec<String>>,
    ) -> Result<(), String> {
        let Some(item) = self
            .env
            .get(&tables().challenges, "challengeId", &c.id)
            .await
        else {
            return if self.deleted.contains(&c.id) {
                Ok(())
            } else {
                Err(format!("challenge {} vanished", c.id))
            };
        };
        let codes = &codes_by_user[c.user.as_str()];
        let codes_sent = n(&item, "codesSent").unwrap_or(0);
        if codes_sent > i64::from(self.limits.cap) {
            return Err(format!("{}: codesSent {codes_sent} > cap", c.id));
        }
        if codes_sent < 0 {
            return Err(format!("{}: codesSent {codes_sent} < 0", c.id));
        }
        if let Some(hash) = s(&item, "codeHash") {
            let expire = n(&item, "codeExpireAt").unwrap_or(0);
            let delivered = codes
                .iter()
                .any(|code| verify(SECRET.as_bytes(), &c.id, code, &hash, expire, expire - 1));
            if !delivered {
                return Err(format!(
                    "{}: the stored codeHash is not the hash of any code SES accepted ({} emails)",
                    c.id,
                    codes.len()
                ));
            }
            if s(&item, "lastMessageId").is_none_or(|m| m.is_empty()) {
                return Err(format!("{}: a committed code without lastMessageId", c.id));
            }
        }
        Ok(())
    }

    /// Per user (whose challenges all still exist): the sends counted on
    /// their challenges cover the messages SES accepted, and exceed them
    /// only by requests that logged a kept or retried reservation.
    async fn check_user_budget(
        &self,
        user: &UserSpec,
        codes_by_user: &HashMap<&str, Vec<String>>,
    ) -> Result<(), String> {
        let theirs: Vec<&ChallengeSpec> = self
            .challenges
            .iter()
            .filter(|c| c.user == user.id)
            .collect();
        if theirs.iter().any(|c| self.deleted.contains(&c.id)) {
            return Ok(());
        }
        let mut counted = 0;
        for c in &theirs {
            if let Some(item) = self
                .env
                .get(&tables().challenges, "challengeId", &c.id)
                .await
            {
                counted += n(&item, "codesSent").unwrap_or(0);
            }
        }
        let accepted = codes_by_user[user.id.as_str()].len() as i64;
        let ids: HashSet<&str> = theirs.iter().map(|c| c.id.as_str()).collect();
        let slack: i64 = self
            .sent
            .iter()
            .filter(|s| ids.contains(s.challenge.as_str()))
            .map(|s| {
                i64::from(s.trace.reservation == ReservationFate::KeptUnsent)
                    + i64::from(s.trace.reserve_attempts.saturating_sub(1))
            })
            .sum();
        if counted < accepted {
            return Err(format!(
                "user {}: codesSent total {counted} < {accepted} messages SES accepted",
                user.id
            ));
        }
        if counted > accepted + slack {
            return Err(format!(
                "user {}: codesSent total {counted} > {accepted} accepted + {slack} kept or retried",
                user.id
            ));
        }
        if self.limits.user_max > 0 && accepted > 0 {
            let counters = self.user_counters(&user.id).await;
            let total: i64 = counters.iter().sum();
            if counters
                .iter()
                .any(|c| *c > i64::from(self.limits.user_max))
            {
                return Err(format!(
                    "user {}: a window counter passed the budget",
                    user.id
                ));
            }
            if total < accepted {
                return Err(format!(
                    "user {}: user counters {total} < {accepted} messages accepted",
                    user.id
                ));
            }
        }
        Ok(())
    }

    async fn user_counters(&self, user: &str) -> Vec<i64> {
        let mut windows: HashSet<i64> = HashSet::new();
        for s in self.sent {
            windows.insert(s.now.secs() - s.now.secs().rem_euclid(3600));
        }
        let mut counts = Vec::new();
        for start in windows {
            let key = format!("sendEmailCode#user#{user}#{start}");
            if let Some(item) = self.env.get(&tables().rate_limits, "pk", &key).await {
                counts.push(n(&item, "count").unwrap_or(0));
            }
        }
        counts
    }

    fn check_callers(&self) -> Result<(), String> {
        let mut passed: HashMap<(String, i64), u32> = HashMap::new();
        for s in self.sent {
            let caller_refused = s.status == 429 && is_caller_refusal(&s.body);
            if s.headers.contains_key("x-ratelimit-limit") && !caller_refused {
                let window = s.now.secs() - s.now.secs().rem_euclid(60);
                let key = if s.caller.contains(':') {
                    "v6".to_string()
                } else {
                    s.caller.clone()
                };
                *passed.entry((key, window)).or_default() += 1;
            }
        }
        match passed.iter().find(|(_, n)| **n > self.limits.caller_max) {
            Some(((caller, window), n)) => Err(format!(
                "caller {caller} passed {n} requests in window {window}, limit {}",
                self.limits.caller_max
            )),
            None => Ok(()),
        }
    }

    fn check_answer(
        &self,
        s: &Sent,
        codes_by_user: &HashMap<&str, Vec<String>>,
    ) -> Result<(), String> {
        let fail = |why: &str| {
            Err(format!(
                "phase {} request for {} from {} at {}: {why}; answered {} {}",
                s.phase,
                s.challenge,
                s.caller,
                s.now.millis(),
                s.status,
                s.body
            ))
        };
        if s.headers.get("content-type").map(String::as_str) != Some("application/json")
            || s.headers.get("cache-control").map(String::as_str) != Some("no-store")
            || !s.body["success"].is_boolean()
        {
            return fail("not a JSON answer with no-store");
        }
        let error_type = s.body["errorType"].as_str().unwrap_or("");
        if s.status >= 500 {
            return if s.faulty {
                Ok(())
            } else {
                fail("5xx without an injected fault")
            };
        }
        if !s.headers.contains_key("x-ratelimit-remaining") {
            return fail("a 4xx or 200 without rate-limit headers");
        }
        if s.status == 429 {
            return self.check_too_many(s, error_type).or_else(|why| fail(&why));
        }
        let spec = self.challenges.iter().find(|c| c.id == s.challenge);
        let user = spec.and_then(|c| self.users.iter().find(|u| u.id == c.user));
        let expected: &[&str] = match (spec, user) {
            (None, _) | (_, None) => &["error-challenge-not-found"],
            (Some(c), Some(u)) => {
                if s.now.millis() >= c.expire_ms {
                    &["error-challenge-expired", "error-challenge-not-found"]
                } else if c.method != "email" {
                    &[
                        "error-invalid-challenge-method",
                        "error-challenge-not-found",
                    ]
                } else if !u.exists {
                    &["error-user-not-found", "error-challenge-not-found"]
                } else if u.address.is_none() {
                    &["error-no-verified-email", "error-challenge-not-found"]
                } else {
                    &["", "error-challenge-not-found"]
                }
            }
        };
        let got = if s.status == 200 { "" } else { error_type };
        if !expected.contains(&got) {
            return fail(&format!("expected one of {expected:?}"));
        }
        if got == "error-challenge-not-found"
            && spec.is_some()
            && !self.deleted.contains(&s.challenge)
        {
            return fail("not found for a challenge nobody deleted");
        }
        if s.status == 200 {
            let codes = user
                .map(|u| codes_by_user[u.id.as_str()].len())
                .unwrap_or(0);
            let successes = self
                .sent
                .iter()
                .filter(|o| {
                    o.status == 200
                        && user.is_some_and(|u| self.user_of(&o.challenge) == Some(&u.id))
                })
                .count();
            if successes > codes {
                return fail(&format!("{successes} successes but {codes} emails"));
            }
            if s.trace.message_id.as_deref().is_none_or(str::is_empty) {
                return fail("200 without a message id");
            }
        }
        Ok(())
    }

    fn user_of(&self, challenge: &str) -> Option<&String> {
        self.challenges
            .iter()
            .find(|c| c.id == challenge)
            .map(|c| &c.user)
    }

    fn check_too_many(&self, s: &Sent, error_type: &str) -> Result<(), String> {
        if error_type != "error-too-many-requests" {
            return Err("429 with another errorType".into());
        }
        let retry: i64 = s
            .headers
            .get("retry-after")
            .and_then(|v| v.parse().ok())
            .ok_or("429 without Retry-After")?;
        if retry < 1 {
            return Err("Retry-After below 1".into());
        }
        let error = s.body["error"].as_str().unwrap_or("");
        if !documented_429().is_match(error) {
            return Err("a 429 text openapi.yaml does not document".into());
        }
        if is_caller_refusal(&s.body) {
            if !error.contains(&format!("wait {retry} seconds")) {
                return Err("caller 429: N differs from Retry-After".into());
            }
            if s.headers.get("x-ratelimit-remaining").map(String::as_str) != Some("0") {
                return Err("caller 429 with places remaining".into());
            }
            return Ok(());
        }
        let spec = self
            .challenges
            .iter()
            .find(|c| c.id == s.challenge)
            .ok_or("a challenge-level 429 for an unknown challenge")?;
        match error {
            "too many codes sent for this challenge" => {
                let left = (spec.expire_ms - s.now.millis() + 999) / 1000;
                if retry != left.max(1) {
                    return Err(format!(
                        "cap 429: Retry-After {retry}, challenge ends in {left}"
                    ));
                }
            }
            "too many codes sent to this user" => {
                if self.limits.user_max == 0 {
                    return Err("user budget 429 with the budget off".into());
                }
            }
            _ if error == format!("Please wait {retry} seconds before requesting another code") => {
                if self.limits.cooldown == 0 || retry > i64::from(self.limits.cooldown) {
                    return Err("cooldown 429 out of range".into());
                }
            }
            _ => return Err("429 with an unknown text".into()),
        }
        Ok(())
    }
}

fn is_caller_refusal(body: &Value) -> bool {
    body["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("Error, too many requests."))
}
