//! Model-based test of the invariants of docs/contract.md, against the real
//! stand-ins behind fault-injecting proxies, with every request accounted
//! for.
//!
//! Each scenario, drawn from a seed, sets up users, challenges and callers,
//! then runs phases. In each, the clock moves on (sometimes to just before a
//! window's or a challenge's end), a challenge may be given to another user
//! or switched to `totp`, one fault plan is set, a challenge may be deleted
//! while a batch of concurrent requests goes through the function's event
//! path (`http::event::to_request`) and the handler, each request with its
//! own `now`, front door, body encoding (valid or not) and method.
//!
//! Fault plans (all produced for real, on the wire):
//! - random faults on DynamoDB or SES: error answers (4xx, 5xx), requests
//!   delayed before the stand-in or answered late after it (past the SDK's
//!   attempt timeout), connections cut before or after the stand-in saw the
//!   request, slowness, and an SES 200 without `MessageId`;
//! - targeted sequences: the first attempt of every conditional counter or
//!   reservation write throttled (its retry may then be refused: a plain
//!   refusal); every commit's first attempt held past the attempt timeout
//!   (it lands after the next phase's commits); every reservation write
//!   answered 500;
//! - a dependency that cannot be reached (connection refused, a DNS name
//!   that never resolves, TLS to a port that speaks plain HTTP, a listener
//!   whose backlog is full: a connect timeout), through a second app built
//!   for the phase, to which part of the batch goes.
//!
//! Every SDK attempt is tagged with its request (`fault_proxy::Tagger`),
//! and the proxy records what it did to each and what the stand-in
//! answered. Afterwards, with every delayed request landed, it checks:
//! - each challenge's `codes` entries are keyed by messages SES accepted for
//!   a request of that challenge (and its current user), with `codeHash`,
//!   `expireAt` and `sentAt` exactly as that request must write them; every
//!   200 has its entry; at most the cap of them; `lastCodeSentAt` is the
//!   latest `sentAt` (a late commit never moved it back); entries of
//!   different batches are at least the cooldown apart;
//! - per request, what it took from `codesSent` and from the user's counter
//!   and did not give back is exactly 1 when SES accepted its message and 0
//!   otherwise, except where an attempt whose outcome the client could not
//!   know (DynamoDB 5xx, an answer lost after sending, SES timed out after
//!   sending) allows more, or a give-back refused on as many attempts as any
//!   call gets; so keeping a reservation after failures that certainly did
//!   not apply (never sent, a 4xx) breaks the contract; the counters equal
//!   the sums of what the stand-in applied for each request;
//! - every answer is one the contract allows at that point (order of the
//!   checks included), every 429's `Retry-After`, `N` and rate headers are
//!   the values of the limit that refused it, judged on the item the
//!   function read, and every 5xx follows a fault on a call the request made
//!   that could not be answered from an earlier step;
//! - no caller passed its limit in a window, and the counters match.
//!
//! `MODEL_SCENARIOS` (default 150) and `MODEL_SEED` (default fixed) choose
//! the runs; a failure prints the seed that replays it:
//! `MODEL_SEED=<seed> MODEL_SCENARIOS=1 ./scripts/test.sh --test model`.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::fault_proxy::{
    splitmix, tagged, Attempt, Call, Dialect, Fault, FaultProxy, Hit, Tagger, Target,
};
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use send_email_code::http::event::to_request;
use send_email_code::{
    aws, handle_traced, verify, App, CodeEntry, EpochSeconds, ReservationFate, Timestamp, Trace,
};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// Slow, but well within the SDK's attempt timeout.
const SLOW: Duration = Duration::from_millis(60);
/// Past the SDK's attempt timeout (the production one, `aws::ATTEMPT_TIMEOUT`).
const LATE: Duration = Duration::from_millis(1_300);
/// A commit's first attempt held this long lands after the retry answered
/// and after the next phase's first commits.
const COMMIT_LATE: Duration = Duration::from_millis(1_800);
/// Scenarios that run at once.
const PARALLEL: usize = 4;
const DEFAULT_SCENARIOS: u64 = 150;
const DEFAULT_SEED: u64 = 20_261_130;
/// `RATE_LIMIT_WINDOW_SECONDS`, left at its default.
const CALLER_WINDOW_SECS: i64 = 60;
/// The four front doors.
const DOORS: [&str; 4] = [
    "rest-api.json",
    "http-api.json",
    "function-url.json",
    "alb.json",
];
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

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

#[derive(Debug, Clone, Copy)]
struct Limits {
    cap: u32,
    caller_max: u32,
    user_max: u32,
    cooldown: u32,
    code_ttl: u32,
    user_window: u32,
}

#[derive(Debug, Clone)]
struct UserSpec {
    id: String,
    address: Option<String>,
    exists: bool,
}

/// A challenge's owner and method from a phase on; a new epoch starts when
/// the item is replaced (given to another user).
#[derive(Debug, Clone)]
struct ChallengeState {
    from_phase: usize,
    epoch: usize,
    user: String,
    totp: bool,
}

#[derive(Debug, Clone)]
struct ChallengeSpec {
    id: String,
    /// `expireAt` in milliseconds (written as a fractional Number).
    expire_ms: i64,
    created: i64,
    states: Vec<ChallengeState>,
    /// The phase whose batch deleted it.
    deleted_in: Option<usize>,
}

impl ChallengeSpec {
    fn at(&self, phase: usize) -> &ChallengeState {
        self.states
            .iter()
            .rev()
            .find(|s| s.from_phase <= phase)
            .expect("a state from phase 0")
    }
    fn current(&self) -> &ChallengeState {
        self.states.last().expect("a state")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    DynamoDb,
    Ses,
}

/// How a dependency cannot be reached (the request never leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unreachable {
    Refused,
    Dns,
    Tls,
    ConnectTimeout,
}

#[derive(Debug, Clone)]
enum PhasePlan {
    Clean,
    Random {
        service: Service,
        fault: Fault,
        per_mille: u64,
    },
    ThrottleFirst,
    CommitLate,
    ReserveFails,
    Unreachable {
        service: Service,
        how: Unreachable,
        share: u64,
    },
}

impl PhasePlan {
    fn name(&self) -> String {
        match self {
            Self::Clean => "clean".into(),
            Self::Random { service, fault, .. } => format!("{service:?} {}", fault_name(*fault)),
            Self::ThrottleFirst => "throttle-first-attempt".into(),
            Self::CommitLate => "commit-first-attempt-late".into(),
            Self::ReserveFails => "reservation-500".into(),
            Self::Unreachable { service, how, .. } => format!("{service:?} unreachable {how:?}"),
        }
    }
}

fn fault_name(fault: Fault) -> String {
    match fault {
        Fault::Refuse { status, code } => format!("{status} {code}"),
        Fault::DelayRequest(d) if d < aws::ATTEMPT_TIMEOUT => "slow".into(),
        Fault::DelayRequest(_) => "request late".into(),
        Fault::DelayResponse(_) => "answer late".into(),
        other => format!("{other:?}"),
    }
}

/// How the body of a request is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    JsonBase64,
    JsonBase64NoContentType,
    Form,
    FormBase64,
    NotJson,
    Array,
    NoId,
    BlankId,
    NotUtf8,
    /// Marked base64, and not base64.
    NotBase64,
}

impl BodyKind {
    fn valid(self) -> bool {
        matches!(
            self,
            Self::Json
                | Self::JsonBase64
                | Self::JsonBase64NoContentType
                | Self::Form
                | Self::FormBase64
        )
    }
}

#[derive(Debug, Clone)]
struct Sent {
    tag: u64,
    phase: usize,
    now: Timestamp,
    door: &'static str,
    body_kind: BodyKind,
    method: &'static str,
    challenge: String,
    caller: String,
    /// Sent to the phase's second app, whose dependency cannot be reached.
    unreachable: Option<(Service, Unreachable)>,
    status: u16,
    body: Value,
    headers: HashMap<String, String>,
    trace: Trace,
}

impl Sent {
    /// The challenge id a valid POST asks for.
    fn asks(&self) -> Option<&str> {
        (self.method == "POST" && self.body_kind.valid()).then_some(self.challenge.as_str())
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

type Coverage = BTreeMap<String, u64>;

fn note(coverage: &mut Coverage, what: impl Into<String>) {
    *coverage.entry(what.into()).or_default() += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariants_hold_over_random_concurrent_scenarios_with_faults() {
    let scenarios: u64 = std::env::var("MODEL_SCENARIOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SCENARIOS);
    let first: u64 = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let env = Arc::new(Env::new().await);
    let mut running = JoinSet::new();
    let mut failures = Vec::new();
    let mut coverage = Coverage::new();
    for seed in first..first + scenarios {
        if running.len() >= PARALLEL {
            collect(running.join_next().await, &mut failures, &mut coverage);
        }
        let env = env.clone();
        running.spawn(async move { (seed, run_scenario(&env, seed).await) });
    }
    while let Some(done) = running.join_next().await {
        collect(Some(done), &mut failures, &mut coverage);
    }
    let summary: Vec<String> = coverage
        .iter()
        .map(|(k, v)| format!("  {k}: {v}"))
        .collect();
    println!(
        "{scenarios} scenarios from seed {first}; what they did:\n{}",
        summary.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {scenarios} scenarios broke an invariant:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if scenarios >= DEFAULT_SCENARIOS / 2 {
        // A full run must have met every kind of fault and every kind of answer.
        let mut missing = Vec::new();
        for what in [
            "plan: commit-first-attempt-late",
            "plan: throttle-first-attempt",
            "plan: reservation-500",
            "plan: Ses unreachable Refused",
            "plan: Ses unreachable Dns",
            "plan: Ses unreachable Tls",
            "plan: Ses unreachable ConnectTimeout",
            "plan: DynamoDb unreachable Refused",
            "plan: Ses DropMessageId",
            "plan: Ses RelayThenCut",
            "plan: DynamoDb 500 InternalServerError",
            "answer: 200",
            "answer: 429 cap",
            "answer: 429 caller",
            "answer: 429 budget",
            "answer: 429 cooldown",
            "answer: 405",
            "answer: 5xx",
            "entries checked",
            "refusal after a throttled first attempt",
            "budget 429 over a failed reservation",
            "late commit landed after a newer one",
            "kept reservation (unknown outcome)",
            "given back after an unreachable SES",
        ] {
            if !coverage.contains_key(what) {
                missing.push(what);
            }
        }
        assert!(
            missing.is_empty(),
            "the run never exercised: {missing:?} (a change of the draws made the model blind)"
        );
    }
}

type Outcome = (u64, Result<Coverage, String>);

fn collect(
    done: Option<Result<Outcome, tokio::task::JoinError>>,
    failures: &mut Vec<String>,
    coverage: &mut Coverage,
) {
    match done {
        Some(Ok((_, Ok(seen)))) => {
            for (k, v) in seen {
                *coverage.entry(k).or_default() += v;
            }
        }
        Some(Ok((seed, Err(why)))) => failures.push(format!(
            "seed {seed}: {why}\n  replay: MODEL_SEED={seed} MODEL_SCENARIOS=1 ./scripts/test.sh --test model"
        )),
        Some(Err(panic)) => failures.push(format!("a scenario panicked: {panic}")),
        None => {}
    }
}

/// An endpoint that cannot be reached, kept unreachable while it lives.
struct DeadEnd {
    url: String,
    _socket: Option<tokio::net::TcpSocket>,
    _listener: Option<tokio::net::TcpListener>,
    _fillers: Vec<tokio::net::TcpStream>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for DeadEnd {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl DeadEnd {
    async fn new(how: Unreachable, seed: u64) -> Self {
        let mut dead = Self {
            url: String::new(),
            _socket: None,
            _listener: None,
            _fillers: Vec::new(),
            task: None,
        };
        match how {
            Unreachable::Refused => {
                // Bound, never listening: a connection is refused, and no
                // one else can take the port meanwhile.
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
                dead.url = format!("http://{}", socket.local_addr().expect("address"));
                dead._socket = Some(socket);
            }
            Unreachable::Dns => {
                dead.url = format!("http://model-{seed}.invalid:4566");
            }
            Unreachable::Tls => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                dead.url = format!("https://{}", listener.local_addr().expect("address"));
                dead.task = Some(tokio::spawn(async move {
                    while let Ok((mut peer, _)) = listener.accept().await {
                        tokio::spawn(async move {
                            let mut buf = [0u8; 4096];
                            let _ = peer.read(&mut buf).await;
                            let _ = peer
                                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                        });
                    }
                }));
            }
            Unreachable::ConnectTimeout => {
                // A backlog of one, never accepted, filled up: the kernel
                // drops further handshakes and the client's connect times out.
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
                let address = socket.local_addr().expect("address");
                let listener = socket.listen(1).expect("listen");
                for _ in 0..16 {
                    let filler = tokio::net::TcpSocket::new_v4().expect("socket");
                    match tokio::time::timeout(Duration::from_millis(200), filler.connect(address))
                        .await
                    {
                        Ok(Ok(stream)) => dead._fillers.push(stream),
                        _ => break,
                    }
                }
                dead.url = format!("http://{address}");
                dead._listener = Some(listener);
            }
        }
        dead
    }
}

/// One scenario's clients, proxies and records.
struct Rig {
    ddb: FaultProxy,
    ses: FaultProxy,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    config: Vec<(&'static str, String)>,
}

impl Rig {
    fn app(&self, env: &Env, ddb_url: &str, ses_url: &str, dead: Option<Service>) -> App {
        // The production timeouts and retries: a loaded machine must not
        // turn a fault-free phase into timeouts.
        let label = |service: Service, name: &'static str, dead_name: &'static str| {
            if dead == Some(service) {
                dead_name
            } else {
                name
            }
        };
        let db = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&env.sdk)
                .endpoint_url(ddb_url)
                .timeout_config(aws::timeouts())
                .retry_config(aws::retry_config())
                .interceptor(Tagger::new(
                    label(Service::DynamoDb, "dynamodb", "dynamodb-unreachable"),
                    self.attempts.clone(),
                ))
                .build(),
        );
        let mail = aws_sdk_sesv2::Client::from_conf(
            aws_sdk_sesv2::config::Builder::from(&env.sdk)
                .endpoint_url(ses_url)
                .timeout_config(aws::timeouts())
                .interceptor(Tagger::new(
                    label(Service::Ses, "ses", "ses-unreachable"),
                    self.attempts.clone(),
                ))
                .build(),
        );
        let overrides: Vec<(&str, &str)> =
            self.config.iter().map(|(k, v)| (*k, v.as_str())).collect();
        App::with_clients(config(&overrides), db, mail)
    }
}

/// The phase's second app, whose one dependency cannot be reached, and the
/// share of the batch (in thousandths) it serves.
struct SecondApp {
    app: Arc<App>,
    what: (Service, Unreachable),
    share: u64,
    _dead: DeadEnd,
}

/// One scenario as it runs: the world the model knows and what was sent.
struct Scenario<'a> {
    env: &'a Env,
    seed: u64,
    rng: Rng,
    limits: Limits,
    rig: Rig,
    main_app: Arc<App>,
    users: Vec<UserSpec>,
    challenges: Vec<ChallengeSpec>,
    callers: Vec<String>,
    unknown_id: String,
    base: Timestamp,
    sent: Vec<Sent>,
    coverage: Coverage,
}

async fn run_scenario(env: &Env, seed: u64) -> Result<Coverage, String> {
    let started_secs = Timestamp::now().secs();
    let mut scenario = Scenario::set_up(env, seed).await?;
    let mut after_commit_late = false;
    let phases = 3 + scenario.rng.below(4) as usize;
    for phase in 0..phases {
        scenario.move_clock(after_commit_late);
        if phase > 0 && scenario.rng.chance(200) {
            scenario.change_a_challenge(phase).await?;
        }
        let plan = if after_commit_late {
            PhasePlan::Clean
        } else {
            draw_plan(&mut scenario.rng)
        };
        after_commit_late = matches!(plan, PhasePlan::CommitLate);
        let second = scenario.arm(&plan).await;
        scenario.run_batch(phase, second.as_ref()).await?;
        // Requests still held by the proxy (late ones) land while the next
        // phase runs.
        scenario.rig.ddb.set(Fault::None, 0);
        scenario.rig.ses.set(Fault::None, 0);
    }
    let Scenario {
        env,
        limits,
        rig,
        users,
        challenges,
        mut sent,
        mut coverage,
        ..
    } = scenario;
    rig.ddb.settle().await;
    rig.ses.settle().await;
    sent.sort_by_key(|s| s.tag);
    let mut hits = rig.ddb.log();
    hits.extend(rig.ses.log());
    let attempts = rig.attempts.lock().expect("attempts").clone();
    let world = World {
        env,
        limits,
        users: &users,
        challenges: &challenges,
        sent: &sent,
        ledger: Ledger::new(&attempts, &hits),
        inbox: inbox_since(started_secs - 5).await,
    };
    world.check(&mut coverage).await.map(|()| coverage)
}

impl<'a> Scenario<'a> {
    /// Limits, proxies, users (one may be missing or have no address),
    /// challenges and callers, drawn from the seed.
    async fn set_up(env: &'a Env, seed: u64) -> Result<Self, String> {
        let mut rng = Rng(seed);
        let limits = Limits {
            cap: 1 + rng.below(5) as u32,
            caller_max: 3 + rng.below(6) as u32,
            user_max: *rng.pick(&[0, 1, 2, 3, 5]),
            cooldown: *rng.pick(&[0, 0, 5, 30]),
            code_ttl: *rng.pick(&[20, 90, 600]),
            user_window: *rng.pick(&[120, 600, 3600]),
        };
        let endpoint = |var: &str| std::env::var(var).map_err(|e| format!("{var}: {e}"));
        let rig = Rig {
            ddb: FaultProxy::start(
                &endpoint("AWS_ENDPOINT_URL_DYNAMODB")?,
                Dialect::DynamoDb,
                seed ^ 0xD1,
            )
            .await,
            ses: FaultProxy::start(
                &endpoint("AWS_ENDPOINT_URL_SESV2")?,
                Dialect::Ses,
                seed ^ 0x5E5,
            )
            .await,
            attempts: Arc::default(),
            config: vec![
                ("MAX_CODES_PER_CHALLENGE", limits.cap.to_string()),
                ("RATE_LIMIT_MAX", limits.caller_max.to_string()),
                ("MAX_CODES_PER_USER", limits.user_max.to_string()),
                ("RESEND_COOLDOWN_SECONDS", limits.cooldown.to_string()),
                ("CODE_TTL_SECONDS", limits.code_ttl.to_string()),
                ("USER_WINDOW_SECONDS", limits.user_window.to_string()),
            ],
        };
        let main_app = Arc::new(rig.app(env, &rig.ddb.url, &rig.ses.url, None));

        let mut users = Vec::new();
        for i in 0..2 + rng.below(3) {
            let id = unique(&format!("model-{seed}-u{i}-"));
            let kind = rng.below(12);
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
        // The clock starts at a point of the hour drawn from the seed (so a
        // replay meets the same window edges), ahead of real time (so no
        // counter's TTL is already past).
        let hour = Timestamp::now().secs().div_euclid(3600) + 2;
        let base = Timestamp::from_millis(
            (hour * 3600 + rng.below(3600) as i64) * 1000 + rng.below(1000) as i64,
        );
        let mut challenges = Vec::new();
        for i in 0..1 + rng.below(4) {
            let spec = ChallengeSpec {
                id: unique(&format!("model-{seed}-c{i}-")),
                expire_ms: base.millis() + 30_000 + rng.below(240_000) as i64,
                created: base.secs(),
                states: vec![ChallengeState {
                    from_phase: 0,
                    epoch: 0,
                    user: rng.pick(&users).id.clone(),
                    totp: rng.chance(100),
                }],
                deleted_in: None,
            };
            write_challenge(env, &spec, spec.current()).await;
            challenges.push(spec);
        }
        // Callers of their own (derived from the seed), so concurrent
        // scenarios never share a counter; an IPv4-mapped address is the
        // same caller as its IPv4 address, two addresses share a /64.
        let a = seed % 65_536;
        let prefix = format!("2001:db8:{:x}:{:x}", (seed >> 16) & 0xffff, seed & 0xffff);
        let callers = vec![
            format!("198.18.{}.{}", a / 256, a % 256),
            format!("198.19.{}.{}", a / 256, a % 256),
            format!("::ffff:198.19.{}.{}", a / 256, a % 256),
            format!("{prefix}::1"),
            format!("{prefix}::2"),
            format!(
                "2001:db8:{:x}:{:x}::1",
                ((seed >> 16) & 0x7fff) | 0x8000,
                seed & 0xffff
            ),
        ];
        Ok(Self {
            env,
            seed,
            rng,
            limits,
            rig,
            main_app,
            users,
            challenges,
            callers,
            unknown_id: unique("model-missing-"),
            base,
            sent: Vec::new(),
            coverage: Coverage::new(),
        })
    }

    /// Moves the clock on, sometimes to just before an edge; after a phase
    /// of late commits, past the cooldown, so that this phase's commits are
    /// newer than the ones still held.
    fn move_clock(&mut self, after_commit_late: bool) {
        let advance = if after_commit_late {
            i64::from(self.limits.cooldown) * 1000 + 1000 + self.rng.below(3000) as i64
        } else {
            self.rng.below(20_000) as i64
        };
        self.base = Timestamp::from_millis(self.base.millis() + advance);
        if self.rng.chance(300) {
            self.base = near_an_edge(&mut self.rng, self.base, &self.limits, &self.challenges);
        }
    }

    /// Between batches: gives a challenge to another user (a new item, once
    /// per challenge) or switches it to `totp`.
    async fn change_a_challenge(&mut self, phase: usize) -> Result<(), String> {
        let c = self.rng.below(self.challenges.len() as u64) as usize;
        let reassign = self.rng.chance(500);
        let spec = &mut self.challenges[c];
        let state = spec.current().clone();
        if spec.deleted_in.is_some() {
            return Ok(());
        }
        if reassign && spec.states.iter().all(|s| s.epoch == 0) {
            let others: Vec<&UserSpec> = self.users.iter().filter(|u| u.id != state.user).collect();
            let next = ChallengeState {
                from_phase: phase,
                epoch: state.epoch + 1,
                user: self.rng.pick(&others).id.clone(),
                totp: false,
            };
            write_challenge(self.env, spec, &next).await;
            spec.states.push(next);
            note(&mut self.coverage, "challenge given to another user");
        } else if !state.totp {
            self.env
                .db
                .update_item()
                .table_name(&tables().challenges)
                .key("challengeId", AttributeValue::S(spec.id.clone()))
                .update_expression("SET #m = :totp")
                .expression_attribute_names("#m", "method")
                .expression_attribute_values(":totp", AttributeValue::S("totp".into()))
                .send()
                .await
                .map_err(|e| format!("switching to totp: {e}"))?;
            spec.states.push(ChallengeState {
                from_phase: phase,
                totp: true,
                ..state
            });
            note(&mut self.coverage, "challenge switched to totp");
        }
        Ok(())
    }

    /// Sets the phase's faults; for an unreachable dependency, builds the
    /// second app.
    async fn arm(&mut self, plan: &PhasePlan) -> Option<SecondApp> {
        note(&mut self.coverage, format!("plan: {}", plan.name()));
        let (ddb, ses) = (&self.rig.ddb, &self.rig.ses);
        ddb.set(Fault::None, 0);
        ses.set(Fault::None, 0);
        match plan {
            PhasePlan::Clean => None,
            PhasePlan::Random {
                service: Service::DynamoDb,
                fault,
                per_mille,
            } => {
                ddb.set(*fault, *per_mille);
                None
            }
            PhasePlan::Random {
                service: Service::Ses,
                fault,
                per_mille,
            } => {
                ses.set(*fault, *per_mille);
                None
            }
            PhasePlan::ThrottleFirst => {
                let throttled = Fault::Refuse {
                    status: 400,
                    code: "ThrottlingException",
                };
                let first_writes = Target {
                    calls: vec![Call::CallerCount, Call::UserCount, Call::Reserve],
                    nth: Some(1),
                };
                ddb.set_targeted(throttled, 1000, first_writes);
                None
            }
            PhasePlan::CommitLate => {
                let first_commits = Target {
                    calls: vec![Call::Commit],
                    nth: Some(1),
                };
                ddb.set_targeted(Fault::DelayRequest(COMMIT_LATE), 1000, first_commits);
                None
            }
            PhasePlan::ReserveFails => {
                let failed = Fault::Refuse {
                    status: 500,
                    code: "InternalServerError",
                };
                let reservations = Target {
                    calls: vec![Call::Reserve],
                    nth: None,
                };
                ddb.set_targeted(failed, 1000, reservations);
                None
            }
            PhasePlan::Unreachable {
                service,
                how,
                share,
            } => {
                let dead = DeadEnd::new(*how, self.seed).await;
                let app = match service {
                    Service::DynamoDb => {
                        self.rig.app(self.env, &dead.url, &ses.url, Some(*service))
                    }
                    Service::Ses => self.rig.app(self.env, &ddb.url, &dead.url, Some(*service)),
                };
                Some(SecondApp {
                    app: Arc::new(app),
                    what: (*service, *how),
                    share: *share,
                    _dead: dead,
                })
            }
        }
    }

    /// One batch of concurrent requests, each with its own `now`, door,
    /// body and method; a challenge may be deleted meanwhile.
    async fn run_batch(&mut self, phase: usize, second: Option<&SecondApp>) -> Result<(), String> {
        let rng = &mut self.rng;
        let mut batch = JoinSet::new();
        if rng.chance(80) {
            let c = rng.below(self.challenges.len() as u64) as usize;
            if self.challenges[c].deleted_in.is_none() {
                self.challenges[c].deleted_in = Some(phase);
                let victim = self.challenges[c].id.clone();
                let db = self.env.db.clone();
                batch.spawn(async move {
                    let _ = db
                        .delete_item()
                        .table_name(&tables().challenges)
                        .key("challengeId", AttributeValue::S(victim))
                        .send()
                        .await;
                    None
                });
            }
        }
        for i in 0..1 + rng.below(6) {
            let tag = self.seed * 65_536 + phase as u64 * 256 + i + 1;
            let challenge = if rng.chance(60) {
                self.unknown_id.clone()
            } else {
                rng.pick(&self.challenges).id.clone()
            };
            let door = *rng.pick(&DOORS);
            let body_kind = draw_body(rng);
            let method = if rng.chance(50) {
                *rng.pick(&["GET", "PUT", "DELETE"])
            } else {
                "POST"
            };
            let caller = rng.pick(&self.callers).clone();
            let now = Timestamp::from_millis(self.base.millis() + rng.below(2_500) as i64);
            let (app, unreachable) = match second {
                Some(s) if rng.chance(s.share) => (s.app.clone(), Some(s.what)),
                _ => (self.main_app.clone(), None),
            };
            let event = build_event(door, body_kind, method, &challenge, &caller);
            batch.spawn(async move {
                let (response, trace) = tagged(
                    tag,
                    handle_traced(&app, to_request(&event.to_string()), now),
                )
                .await;
                let a = answer(response);
                Some(Sent {
                    tag,
                    phase,
                    now,
                    door,
                    body_kind,
                    method,
                    challenge,
                    caller,
                    unreachable,
                    status: a.status,
                    body: a.body,
                    headers: a.headers,
                    trace,
                })
            });
        }
        while let Some(done) = batch.join_next().await {
            if let Some(s) = done.map_err(|e| format!("request task: {e}"))? {
                self.sent.push(s);
            }
        }
        Ok(())
    }
}

async fn write_challenge(env: &Env, spec: &ChallengeSpec, state: &ChallengeState) {
    env.put(
        &tables().challenges,
        item(json!({
            "challengeId": spec.id,
            "userId": state.user,
            "method": if state.totp { "totp" } else { "email" },
            "createdAt": spec.created,
            "expireAt": spec.expire_ms as f64 / 1000.0,
        })),
    )
    .await;
}

/// A time just before the end of a caller window, a user window or a
/// challenge, within the next minute; `base` when none is that close.
fn near_an_edge(
    rng: &mut Rng,
    base: Timestamp,
    limits: &Limits,
    challenges: &[ChallengeSpec],
) -> Timestamp {
    let next_multiple = |secs: i64| (base.secs().div_euclid(secs) + 1) * secs * 1000;
    let mut edges = vec![
        next_multiple(CALLER_WINDOW_SECS),
        next_multiple(i64::from(limits.user_window)),
    ];
    edges.extend(challenges.iter().map(|c| c.expire_ms));
    let edges: Vec<i64> = edges
        .into_iter()
        .filter(|e| *e > base.millis() && *e - base.millis() < 60_000)
        .collect();
    if edges.is_empty() {
        return base;
    }
    let edge = *rng.pick(&edges);
    Timestamp::from_millis((edge - 1_500 + rng.below(1_000) as i64).max(base.millis()))
}

fn draw_plan(rng: &mut Rng) -> PhasePlan {
    let ddb_faults = [
        Fault::Refuse {
            status: 400,
            code: "ThrottlingException",
        },
        Fault::Refuse {
            status: 500,
            code: "InternalServerError",
        },
        Fault::DelayRequest(LATE),
        Fault::DelayResponse(LATE),
        Fault::Cut,
        Fault::RelayThenCut,
        Fault::DelayRequest(SLOW),
    ];
    let ses_faults = [
        Fault::Refuse {
            status: 400,
            code: "MessageRejected",
        },
        Fault::Refuse {
            status: 429,
            code: "TooManyRequestsException",
        },
        Fault::Refuse {
            status: 500,
            code: "InternalFailure",
        },
        Fault::Refuse {
            status: 503,
            code: "ServiceUnavailable",
        },
        Fault::DelayRequest(LATE),
        Fault::DelayResponse(LATE),
        Fault::Cut,
        Fault::RelayThenCut,
        Fault::DropMessageId,
        Fault::DelayRequest(SLOW),
    ];
    match rng.below(100) {
        0..=13 => PhasePlan::Clean,
        14..=31 => PhasePlan::Random {
            service: Service::DynamoDb,
            fault: *rng.pick(&ddb_faults),
            per_mille: 150 + rng.below(500),
        },
        32..=49 => PhasePlan::Random {
            service: Service::Ses,
            fault: *rng.pick(&ses_faults),
            per_mille: 300 + rng.below(700),
        },
        50..=59 => PhasePlan::ThrottleFirst,
        60..=69 => PhasePlan::CommitLate,
        70..=79 => PhasePlan::ReserveFails,
        _ => PhasePlan::Unreachable {
            service: if rng.chance(750) {
                Service::Ses
            } else {
                Service::DynamoDb
            },
            how: *rng.pick(&[
                Unreachable::Refused,
                Unreachable::Dns,
                Unreachable::Tls,
                Unreachable::ConnectTimeout,
            ]),
            share: 500 + rng.below(500),
        },
    }
}

fn draw_body(rng: &mut Rng) -> BodyKind {
    match rng.below(100) {
        0..=44 => BodyKind::Json,
        45..=54 => BodyKind::JsonBase64,
        55..=64 => BodyKind::JsonBase64NoContentType,
        65..=74 => BodyKind::Form,
        75..=84 => BodyKind::FormBase64,
        _ => *rng.pick(&[
            BodyKind::NotJson,
            BodyKind::Array,
            BodyKind::NoId,
            BodyKind::BlankId,
            BodyKind::NotUtf8,
            BodyKind::NotBase64,
        ]),
    }
}

/// A sample event from `door`, carrying `challenge` in a body of `kind`,
/// with `method`, from `caller`.
fn build_event(door: &str, kind: BodyKind, method: &str, challenge: &str, caller: &str) -> Value {
    const JSON: Option<&str> = Some("application/json");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    let json_body = json!({ "challengeId": challenge }).to_string().into_bytes();
    let form_body = form_urlencoded::Serializer::new(String::new())
        .append_pair("challengeId", challenge)
        .finish()
        .into_bytes();
    let (bytes, content_type, base64): (Vec<u8>, Option<&str>, bool) = match kind {
        BodyKind::Json => (json_body, JSON, false),
        BodyKind::JsonBase64 => (json_body, JSON, true),
        BodyKind::JsonBase64NoContentType => (json_body, None, true),
        BodyKind::Form => (form_body, FORM, false),
        BodyKind::FormBase64 => (form_body, FORM, true),
        BodyKind::NotJson => (
            format!("{{\"challengeId\": \"{challenge}\"").into_bytes(),
            JSON,
            false,
        ),
        BodyKind::Array => (json!([challenge]).to_string().into_bytes(), JSON, false),
        BodyKind::NoId => (b"{\"id\": \"x\"}".to_vec(), JSON, false),
        BodyKind::BlankId => (b"{\"challengeId\": \"  \"}".to_vec(), JSON, false),
        BodyKind::NotUtf8 => {
            let mut bytes = b"{\"challengeId\": \"".to_vec();
            bytes.extend_from_slice(&[0xff, 0xfe]);
            bytes.extend_from_slice(b"\"}");
            (bytes, JSON, true)
        }
        BodyKind::NotBase64 => (b"{not base64!}".to_vec(), JSON, false),
    };
    let mut event = event(door);
    event["body"] = if base64 {
        json!(BASE64.encode(&bytes))
    } else {
        json!(String::from_utf8(bytes).expect("plain bodies are text"))
    };
    event["isBase64Encoded"] = json!(base64 || kind == BodyKind::NotBase64);
    set_header(&mut event, "content-length", None);
    set_header(&mut event, "content-type", content_type);
    for pointer in [
        "/httpMethod",
        "/requestContext/httpMethod",
        "/requestContext/http/method",
    ] {
        if let Some(slot) = event.pointer_mut(pointer) {
            *slot = json!(method);
        }
    }
    with_caller(event, caller)
}

/// Sets (or with `None` removes) a header wherever the event keeps headers.
fn set_header(event: &mut Value, name: &str, value: Option<&str>) {
    for (field, multi) in [("headers", false), ("multiValueHeaders", true)] {
        if let Some(headers) = event[field].as_object_mut() {
            headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
            if let Some(v) = value {
                let v = if multi { json!([v]) } else { json!(v) };
                headers.insert(name.to_string(), v);
            }
        }
    }
}

/// Emails the SES stand-in accepted since `secs`.
async fn inbox_since(secs: i64) -> Vec<Value> {
    let base = std::env::var("AWS_ENDPOINT_URL_SESV2").expect("SES endpoint");
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to the SES stand-in");
    stream
        .write_all(format!("GET /store?since={secs} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let store: Value = serde_json::from_str(body).expect("store is JSON");
    store["emails"].as_array().cloned().unwrap_or_default()
}

/// What reached a dependency in one attempt, as the client could know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// No connection to the dependency was made.
    NeverSent,
    /// An answer came, with this status.
    Answered(u16),
    /// Sent, and no answer came (timed out or cut).
    Lost,
}

#[derive(Debug, Clone)]
struct Step<'a> {
    attempt: &'a Attempt,
    hit: Option<&'a Hit>,
    /// When the proxy finished with it, as a rank among the proxy's requests.
    done: usize,
}

impl Step<'_> {
    fn reach(&self) -> Reach {
        if self.attempt.client.ends_with("unreachable") {
            Reach::NeverSent
        } else if let Some(status) = self.attempt.status {
            Reach::Answered(status)
        } else {
            // Through a proxy: sent, or possibly sent (an attempt the
            // proxy never received was cut short by the SDK's timeout).
            Reach::Lost
        }
    }

    /// The client cannot know whether the dependency carried it out.
    fn unknown(&self) -> bool {
        match self.reach() {
            Reach::NeverSent => false,
            Reach::Lost => true,
            // SES's error answers all mean "not accepted".
            Reach::Answered(status) => status >= 500 && self.attempt.call != Call::SendEmail,
        }
    }

    /// The stand-in carried it out (it answered 200 to the proxy).
    fn applied(&self) -> bool {
        self.hit.is_some_and(|h| {
            h.fault.relays() && h.upstream.as_ref().is_some_and(|u| u.status == 200)
        })
    }

    /// Answered as a refused condition by the stand-in itself.
    fn condition_refused(&self) -> bool {
        self.reach() == Reach::Answered(400)
            && self
                .hit
                .and_then(|h| h.upstream.as_ref())
                .is_some_and(|u| u.error == CONDITION_FAILED)
    }

    fn describe(&self) -> String {
        let fault = self.hit.map_or("-".to_string(), |h| fault_name(h.fault));
        let upstream = self
            .hit
            .and_then(|h| h.upstream.as_ref())
            .map_or("-".to_string(), |u| format!("{} {}", u.status, u.error));
        format!(
            "{:?}#{} via {} fault {fault} stand-in {upstream} client {:?}",
            self.attempt.call,
            self.attempt.nth,
            self.attempt.client,
            self.reach()
        )
    }
}

/// Every attempt of every request, with what the proxy did to it.
struct Ledger<'a> {
    by_tag: HashMap<u64, Vec<Step<'a>>>,
    /// Requests the proxies received that no client recorded, or that
    /// came untagged (an SDK call outside its request's task).
    strays: Vec<&'a Hit>,
}

impl<'a> Ledger<'a> {
    /// The accounting itself holds: every request the proxies saw is an
    /// attempt a client recorded for a request.
    fn check_complete(&self) -> Result<(), String> {
        match self.strays.first() {
            Some(hit) if hit.tag == 0 => Err(format!(
                "the proxy saw a {:?} call outside any request's task: the per-request \
                 accounting cannot place it (does the handler spawn SDK calls?)",
                hit.call
            )),
            Some(hit) => Err(format!(
                "the proxy saw attempt {} ({:?} of request {}) that no client recorded",
                hit.attempt, hit.call, hit.tag
            )),
            None => Ok(()),
        }
    }

    /// `hits`: one proxy's requests in the order it finished them, then
    /// the other's.
    fn new(attempts: &'a [Attempt], hits: &'a [Hit]) -> Self {
        let by_attempt: HashMap<u64, (usize, &Hit)> = hits
            .iter()
            .enumerate()
            .filter(|(_, h)| h.attempt != 0)
            .map(|(i, h)| (h.attempt, (i, h)))
            .collect();
        let mut by_tag: HashMap<u64, Vec<Step>> = HashMap::new();
        for attempt in attempts {
            let found = by_attempt.get(&attempt.id).copied();
            by_tag.entry(attempt.tag).or_default().push(Step {
                attempt,
                hit: found.map(|(_, h)| h),
                done: found.map_or(usize::MAX, |(i, _)| i),
            });
        }
        for steps in by_tag.values_mut() {
            steps.sort_by_key(|s| (s.attempt.call, s.attempt.nth));
        }
        let recorded: HashSet<u64> = attempts.iter().map(|a| a.id).collect();
        let strays = hits
            .iter()
            .filter(|h| h.tag == 0 || !recorded.contains(&h.attempt))
            .collect();
        Self { by_tag, strays }
    }

    fn of(&self, tag: u64) -> Footprint<'_> {
        Footprint {
            steps: self.by_tag.get(&tag).map_or(&[], Vec::as_slice),
        }
    }
}

/// One request's attempts.
struct Footprint<'a> {
    steps: &'a [Step<'a>],
}

impl Footprint<'_> {
    fn of(&self, call: Call) -> impl Iterator<Item = &Step<'_>> {
        self.steps.iter().filter(move |s| s.attempt.call == call)
    }
    fn used(&self, call: Call) -> bool {
        self.of(call).next().is_some()
    }
    fn last(&self, call: Call) -> Option<&Step<'_>> {
        self.of(call).last()
    }
    fn unknown(&self, call: Call) -> bool {
        self.of(call).any(Step::unknown)
    }
    fn applied(&self, call: Call) -> i64 {
        self.of(call).filter(|s| s.applied()).count() as i64
    }
    fn succeeded(&self, call: Call) -> bool {
        self.last(call)
            .is_some_and(|s| matches!(s.reach(), Reach::Answered(200..=299)))
    }
    /// Refused by its condition, with no earlier attempt that may have
    /// been carried out: a plain refusal.
    fn refused(&self, call: Call) -> bool {
        let all: Vec<&Step> = self.of(call).collect();
        match all.split_last() {
            Some((last, earlier)) => {
                last.condition_refused() && !earlier.iter().any(|s| s.unknown())
            }
            None => false,
        }
    }
    /// Refused by its condition after an attempt that may have been carried
    /// out: its outcome is unknown.
    fn refused_after_unknown(&self, call: Call) -> bool {
        let all: Vec<&Step> = self.of(call).collect();
        match all.split_last() {
            Some((last, earlier)) => {
                last.condition_refused() && earlier.iter().any(|s| s.unknown())
            }
            None => false,
        }
    }
    /// Ended without an answer that the function can use (neither a success
    /// nor a condition's refusal).
    fn failed(&self, call: Call) -> bool {
        self.last(call).is_some_and(|s| {
            !matches!(s.reach(), Reach::Answered(200..=299)) && !s.condition_refused()
        })
    }
    /// A give-back that failed on every one of as many attempts as any
    /// other call gets (`aws::MAX_ATTEMPTS`): its counter honestly stays
    /// one high. Fewer attempts, each certainly not applied (never sent,
    /// or a 4xx), is giving up on a write that was safe to retry.
    fn gave_up(&self, back: Call) -> bool {
        let all: Vec<&Step> = self.of(back).collect();
        all.len() >= aws::MAX_ATTEMPTS as usize
            && all
                .iter()
                .all(|s| !matches!(s.reach(), Reach::Answered(200..=299)) && !s.condition_refused())
    }
    /// The message ids SES accepted for this request.
    fn accepted(&self) -> Vec<String> {
        self.of(Call::SendEmail)
            .filter(|s| s.applied())
            .filter_map(|s| {
                s.hit?.upstream.as_ref()?.body["MessageId"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }
    /// SES answered 200 without a message id.
    fn answered_without_id(&self) -> bool {
        self.of(Call::SendEmail)
            .any(|s| s.hit.is_some_and(|h| h.fault == Fault::DropMessageId) && s.applied())
    }
    /// The item a call saw: the read's, or the one a refused condition returned.
    fn item_seen(&self, call: Call) -> Option<&Value> {
        let upstream = self.last(call)?.hit?.upstream.as_ref()?;
        upstream.body.get("Item")
    }
    fn describe(&self) -> String {
        if self.steps.is_empty() {
            return "no calls".into();
        }
        self.steps
            .iter()
            .map(Step::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A DynamoDB JSON Number attribute of an item as JSON.
fn item_number(item: &Value, name: &str) -> Option<f64> {
    item[name]["N"].as_str().and_then(|n| n.parse().ok())
}

/// What an answer is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Sent,
    CallerLimit,
    Cap,
    Cooldown,
    Budget,
    Refused(String),
    MethodNotAllowed,
    ServerError,
    Unknown,
}

fn kind_of(s: &Sent) -> Kind {
    let error = s.body["error"].as_str().unwrap_or("");
    match s.status {
        200 => Kind::Sent,
        429 if error.starts_with("Error, too many requests.") => Kind::CallerLimit,
        429 if error == "too many codes sent for this challenge" => Kind::Cap,
        429 if error.starts_with("Please wait ") => Kind::Cooldown,
        429 if error == "too many codes sent to this user" => Kind::Budget,
        400 => Kind::Refused(s.body["errorType"].as_str().unwrap_or("").to_string()),
        405 => Kind::MethodNotAllowed,
        500..=599 => Kind::ServerError,
        _ => Kind::Unknown,
    }
}

/// Whole seconds from `now` until `end_ms`, rounded up, at least 1.
fn secs_until(now: Timestamp, end_ms: i64) -> i64 {
    ((end_ms - now.millis() + 999).div_euclid(1000)).max(1)
}

fn code_hash(challenge: &str, digits: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{challenge}:{digits}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The counter key of a caller (section 3): IPv6 callers by their /64.
fn caller_key(caller: &str) -> String {
    match caller.parse::<Ipv6Addr>() {
        Ok(v6) if v6.to_ipv4_mapped().is_some() => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        Ok(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(bits))
        }
        Err(_) => caller.to_string(),
    }
}

fn window_start(now: Timestamp, length: i64) -> i64 {
    now.secs() - now.secs().rem_euclid(length)
}

struct World<'a> {
    env: &'a Env,
    limits: Limits,
    users: &'a [UserSpec],
    challenges: &'a [ChallengeSpec],
    sent: &'a [Sent],
    ledger: Ledger<'a>,
    inbox: Vec<Value>,
}

/// What the model says a valid request for a challenge must meet at step 3/4.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Answered by step 3 or 4 with this `errorType`.
    Refused(&'static str),
    /// Usable: sent, or refused by a limit (steps 5–7).
    Usable,
}

impl World<'_> {
    fn user(&self, id: &str) -> &UserSpec {
        self.users
            .iter()
            .find(|u| u.id == id)
            .expect("a known user")
    }

    fn spec(&self, id: &str) -> Option<&ChallengeSpec> {
        self.challenges.iter().find(|c| c.id == id)
    }

    /// The answers steps 3 and 4 allow for `s` (several while its challenge
    /// was being deleted), and whether that is certain.
    fn expected(&self, s: &Sent) -> (Vec<Expect>, bool) {
        let Some(spec) = s.asks().and_then(|id| self.spec(id)) else {
            return (vec![Expect::Refused("error-challenge-not-found")], true);
        };
        if spec.deleted_in.is_some_and(|d| d < s.phase) {
            return (vec![Expect::Refused("error-challenge-not-found")], true);
        }
        let state = spec.at(s.phase);
        let user = self.user(&state.user);
        let while_there = if spec.expire_ms <= s.now.millis() {
            Expect::Refused("error-challenge-expired")
        } else if state.totp {
            Expect::Refused("error-invalid-challenge-method")
        } else if !user.exists {
            Expect::Refused("error-user-not-found")
        } else if user.address.is_none() {
            Expect::Refused("error-no-verified-email")
        } else {
            Expect::Usable
        };
        if spec.deleted_in == Some(s.phase) {
            (
                vec![while_there, Expect::Refused("error-challenge-not-found")],
                false,
            )
        } else {
            (vec![while_there], true)
        }
    }

    /// The user a valid request's challenge belonged to when it ran.
    fn user_of(&self, s: &Sent) -> Option<&UserSpec> {
        let spec = self.spec(s.asks()?)?;
        if spec.deleted_in.is_some_and(|d| d < s.phase) {
            return None;
        }
        Some(self.user(&spec.at(s.phase).user))
    }

    async fn check(&self, coverage: &mut Coverage) -> Result<(), String> {
        self.ledger.check_complete()?;
        let accepted_by = self.check_inbox()?;
        for s in self.sent {
            self.check_answer(s, coverage)?;
            self.check_request_counts(s, coverage)?;
        }
        for c in self.challenges {
            self.check_challenge(c, &accepted_by, coverage).await?;
        }
        self.check_user_counters().await?;
        self.check_callers().await?;
        Ok(())
    }

    /// Every message SES accepted for a request is in the inbox, to the
    /// request's user, and every email to these users is one of them.
    /// Returns message id → request tag.
    fn check_inbox(&self) -> Result<HashMap<String, u64>, String> {
        let ours: HashSet<&str> = self
            .users
            .iter()
            .filter_map(|u| u.address.as_deref())
            .collect();
        let mut accepted_by = HashMap::new();
        for s in self.sent {
            let accepted = self.ledger.of(s.tag).accepted();
            if accepted.len() > 1 {
                return Err(format!(
                    "request {} sent {} messages for one reservation",
                    s.tag,
                    accepted.len()
                ));
            }
            for m in accepted {
                let email = self
                    .inbox
                    .iter()
                    .find(|e| e["messageId"] == m)
                    .ok_or_else(|| format!("SES accepted {m} but the inbox lacks it"))?;
                let to: Vec<&str> = email["destination"]["to"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let user = self.user_of(s);
                if user
                    .and_then(|u| u.address.as_deref())
                    .is_none_or(|a| to != [a])
                {
                    return Err(format!(
                        "message {m} of request {} went to {} recipients, not its user's address",
                        s.tag,
                        to.len()
                    ));
                }
                accepted_by.insert(m, s.tag);
            }
        }
        for email in &self.inbox {
            let to_us = email["destination"]["to"].as_array().is_some_and(|to| {
                to.iter()
                    .any(|a| a.as_str().is_some_and(|a| ours.contains(a)))
            });
            let id = email["messageId"].as_str().unwrap_or("");
            if to_us && !accepted_by.contains_key(id) {
                return Err(format!(
                    "the inbox holds {id}, which no request of this scenario sent"
                ));
            }
        }
        Ok(accepted_by)
    }

    fn check_answer(&self, s: &Sent, coverage: &mut Coverage) -> Result<(), String> {
        let foot = self.ledger.of(s.tag);
        let fail = |why: &str| {
            Err(format!(
                "phase {} request {} ({} {} {:?} via {}{}) for {} from {} at {}: {why}; answered {} {}; trace {:?}; calls: {}",
                s.phase,
                s.tag,
                s.method,
                s.door,
                s.body_kind,
                if s.unreachable.is_some() { "the app with " } else { "the main app" },
                s.unreachable.map_or(String::new(), |(svc, how)| format!("{svc:?} {how:?}")),
                s.challenge,
                s.caller,
                s.now.millis(),
                s.status,
                s.body,
                s.trace,
                foot.describe()
            ))
        };
        if s.header("content-type") != Some("application/json")
            || s.header("cache-control") != Some("no-store")
            || s.body["success"].as_bool() != Some(s.status == 200)
        {
            return fail("not a JSON answer with no-store and a boolean success");
        }
        let kind = kind_of(s);
        note(
            coverage,
            match &kind {
                Kind::Sent => "answer: 200".to_string(),
                Kind::CallerLimit => "answer: 429 caller".into(),
                Kind::Cap => "answer: 429 cap".into(),
                Kind::Cooldown => "answer: 429 cooldown".into(),
                Kind::Budget => "answer: 429 budget".into(),
                Kind::Refused(t) => format!("answer: 400 {t}"),
                Kind::MethodNotAllowed => "answer: 405".into(),
                Kind::ServerError => "answer: 5xx".into(),
                Kind::Unknown => "answer: unknown".into(),
            },
        );
        note(coverage, format!("door: {}", s.door));
        note(coverage, format!("body: {:?}", s.body_kind));
        if kind == Kind::Unknown {
            return fail("an answer the contract does not have");
        }
        if s.status != 200 && s.body["errorType"].as_str().is_none() {
            return fail("an error without errorType");
        }

        // Headers of step 1 (they may be missing only when the counter
        // could not be reached).
        let counted = foot.succeeded(Call::CallerCount) || s.trace.refused_from_memory;
        if s.status < 500 || counted {
            if let Err(why) = self.check_rate_headers(s, &kind) {
                return fail(&why);
            }
        }

        if kind == Kind::ServerError {
            return match self.why_server_error(s, &foot) {
                Ok(()) => Ok(()),
                Err(why) => fail(&why),
            };
        }
        for call in [Call::CallerCount, Call::Reserve, Call::UserCount] {
            if foot.refused(call) && foot.of(call).count() > 1 {
                note(coverage, "refusal after a throttled first attempt");
            }
        }
        if kind == Kind::Budget && foot.failed(Call::Reserve) {
            note(coverage, "budget 429 over a failed reservation");
        }
        if kind == Kind::CallerLimit {
            let fresh = foot.refused(Call::CallerCount);
            let remembered = s.trace.refused_from_memory && !foot.used(Call::CallerCount);
            return if fresh || remembered {
                Ok(())
            } else {
                fail("a caller 429 without a refused counter write")
            };
        }
        if s.method != "POST" {
            return if kind == Kind::MethodNotAllowed
                && s.header("allow") == Some("POST")
                && s.body["errorType"] == "error-method-not-allowed"
            {
                Ok(())
            } else {
                fail("another method not answered 405 with Allow: POST")
            };
        }
        if !s.body_kind.valid() {
            return if kind == Kind::Refused("error-parameter-required".into()) {
                Ok(())
            } else {
                fail("an invalid body not answered error-parameter-required")
            };
        }
        let (expected, _) = self.expected(s);
        let fits = match &kind {
            Kind::Refused(t) => expected
                .iter()
                .any(|e| matches!(e, Expect::Refused(x) if x == t)),
            Kind::Sent | Kind::Cap | Kind::Cooldown | Kind::Budget => {
                expected.contains(&Expect::Usable)
            }
            _ => false,
        };
        if !fits {
            return fail(&format!(
                "expected one of {expected:?} (steps 3 and 4 in order)"
            ));
        }
        let checked = match kind {
            Kind::Sent => self.check_sent(s, &foot, coverage),
            Kind::Cap | Kind::Cooldown | Kind::Budget => self.check_limit(s, &foot, &kind),
            _ => Ok(()),
        };
        if let Err(why) = checked {
            return fail(&why);
        }
        // The budget answers before a failed reservation; a refused
        // counter with a usable challenge is the budget's 429.
        if foot.refused(Call::UserCount)
            && foot.succeeded(Call::ChallengeRead)
            && foot.succeeded(Call::UserRead)
            && !foot.refused(Call::Reserve)
            && expected == [Expect::Usable]
            && kind != Kind::Budget
        {
            return fail("the user counter refused, yet the answer is not the budget's 429");
        }
        Ok(())
    }

    fn check_rate_headers(&self, s: &Sent, kind: &Kind) -> Result<(), String> {
        let end_ms = (window_start(s.now, CALLER_WINDOW_SECS) + CALLER_WINDOW_SECS) * 1000;
        let limit = s.header("x-ratelimit-limit");
        let reset = s.header("x-ratelimit-reset");
        let remaining: Option<u32> = s
            .header("x-ratelimit-remaining")
            .and_then(|v| v.parse().ok());
        if limit != Some(self.limits.caller_max.to_string().as_str()) {
            return Err(format!("X-RateLimit-Limit {limit:?}"));
        }
        if reset != Some(end_ms.to_string().as_str()) {
            return Err(format!(
                "X-RateLimit-Reset {reset:?}, window ends at {end_ms}"
            ));
        }
        match remaining {
            Some(0) => {}
            Some(r) if r < self.limits.caller_max && *kind != Kind::CallerLimit => {}
            other => return Err(format!("X-RateLimit-Remaining {other:?}")),
        }
        if *kind == Kind::CallerLimit {
            let n = secs_until(s.now, end_ms);
            let error = s.body["error"].as_str().unwrap_or("");
            if s.header("retry-after") != Some(n.to_string().as_str())
                || error
                    != format!(
                        "Error, too many requests. Please slow down. You must wait {n} seconds \
                         before trying this endpoint again. [error-too-many-requests]"
                    )
            {
                return Err(format!("caller 429: N and Retry-After must be {n}"));
            }
        }
        Ok(())
    }

    /// A 5xx needs a failed call of this request, and no earlier step that
    /// already decides the answer.
    fn why_server_error(&self, s: &Sent, foot: &Footprint) -> Result<(), String> {
        let answering = [
            Call::CallerCount,
            Call::ChallengeRead,
            Call::UserRead,
            Call::Reserve,
            Call::UserCount,
            Call::SendEmail,
            Call::Commit,
        ];
        let justified = answering
            .iter()
            .any(|c| foot.failed(*c) || foot.refused_after_unknown(*c))
            || foot.answered_without_id();
        if !justified {
            return Err("a 5xx without a failed call to a dependency".into());
        }
        let (expected, certain) = self.expected(s);
        if !(certain && s.asks().is_some() && foot.succeeded(Call::CallerCount)) {
            return Ok(());
        }
        if !foot.succeeded(Call::ChallengeRead) {
            return Ok(());
        }
        if matches!(
            expected[0],
            Expect::Refused("error-challenge-expired" | "error-invalid-challenge-method")
        ) {
            return Err("a 5xx where step 3 decides the answer".into());
        }
        if !foot.succeeded(Call::UserRead) {
            return Ok(());
        }
        if matches!(expected[0], Expect::Refused(_)) {
            return Err("a 5xx where step 4 decides the answer".into());
        }
        if foot.refused(Call::UserCount) {
            return Err("a 5xx for a user at the budget (step 7 answers first)".into());
        }
        if foot.refused(Call::Reserve) {
            return Err("a 5xx for a reservation plainly refused".into());
        }
        Ok(())
    }

    /// A 200: SES accepted this request's message, and no limit was passed
    /// on the item the function read.
    fn check_sent(
        &self,
        s: &Sent,
        foot: &Footprint,
        coverage: &mut Coverage,
    ) -> Result<(), String> {
        let Some(m) = s.trace.message_id.as_deref() else {
            return Err("200 without a message id".into());
        };
        if !foot.accepted().iter().any(|a| a == m) {
            return Err(format!(
                "200 for message {m}, which SES did not accept for it"
            ));
        }
        if !foot.succeeded(Call::Reserve) {
            return Err("200 without a reservation".into());
        }
        if self.limits.user_max > 0 && !foot.succeeded(Call::UserCount) {
            return Err("200 without counting the user".into());
        }
        if let Some(read) = foot.item_seen(Call::ChallengeRead) {
            if let Some(last) = item_number(read, "lastCodeSentAt") {
                if self.limits.cooldown > 0
                    && (last + f64::from(self.limits.cooldown)) * 1000.0 > s.now.millis() as f64
                {
                    return Err(format!(
                        "200 inside the cooldown: the read saw lastCodeSentAt {last}"
                    ));
                }
            }
            if item_number(read, "codesSent").unwrap_or(0.0) >= f64::from(self.limits.cap) {
                return Err("200 with the cap reached on the read".into());
            }
        }
        note(coverage, "200 checked");
        Ok(())
    }

    /// A challenge-level 429: the limit holds on the item the function
    /// judged (the read's, or the refused reservation's), and its
    /// Retry-After and N are that limit's.
    fn check_limit(&self, s: &Sent, foot: &Footprint, kind: &Kind) -> Result<(), String> {
        let retry: i64 = s
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .ok_or("429 without Retry-After")?;
        let error = s.body["error"].as_str().unwrap_or("");
        if !documented_429().is_match(error) {
            return Err("a 429 text openapi.yaml does not document".into());
        }
        let spec = self
            .spec(&s.challenge)
            .ok_or("a challenge-level 429 for an unknown challenge")?;
        let seen = if !foot.used(Call::Reserve) {
            foot.item_seen(Call::ChallengeRead)
        } else if foot.refused(Call::Reserve) {
            foot.item_seen(Call::Reserve)
        } else if *kind == Kind::Budget {
            None
        } else {
            return Err(
                "a cap or cooldown 429 after a reservation that was not plainly refused".into(),
            );
        };
        match kind {
            Kind::Cap => {
                let n = secs_until(s.now, spec.expire_ms);
                if retry != n {
                    return Err(format!(
                        "cap 429: Retry-After {retry}, the challenge ends in {n}"
                    ));
                }
                let sent = seen
                    .and_then(|i| item_number(i, "codesSent"))
                    .unwrap_or(0.0);
                if sent < f64::from(self.limits.cap) {
                    return Err(format!("cap 429 on an item with codesSent {sent}"));
                }
            }
            Kind::Cooldown => {
                if self.limits.cooldown == 0 {
                    return Err("cooldown 429 with the cooldown off".into());
                }
                let item = seen.ok_or("cooldown 429 without an item seen")?;
                if item_number(item, "codesSent").unwrap_or(0.0) >= f64::from(self.limits.cap) {
                    return Err("cooldown 429 where the cap answers first".into());
                }
                let last = item_number(item, "lastCodeSentAt")
                    .ok_or("cooldown 429 on an item without lastCodeSentAt")?;
                let end_ms = ((last + f64::from(self.limits.cooldown)) * 1000.0).round() as i64;
                if end_ms <= s.now.millis() {
                    return Err(format!("cooldown 429 after the cooldown ended ({last})"));
                }
                let n = secs_until(s.now, end_ms);
                if retry != n
                    || error != format!("Please wait {n} seconds before requesting another code")
                {
                    return Err(format!(
                        "cooldown 429: Retry-After {retry}, text {error:?}; N must be {n} from lastCodeSentAt {last}"
                    ));
                }
            }
            Kind::Budget => {
                if self.limits.user_max == 0 {
                    return Err("budget 429 with the budget off".into());
                }
                if !foot.refused(Call::UserCount) {
                    return Err("budget 429 without a plainly refused user counter".into());
                }
                let w = i64::from(self.limits.user_window);
                let end_ms = (window_start(s.now, w) + w) * 1000;
                let n = secs_until(s.now, end_ms);
                if retry != n {
                    return Err(format!(
                        "budget 429: Retry-After {retry}, the window ends in {n}"
                    ));
                }
                if let Some(item) = seen {
                    if item_number(item, "codesSent").unwrap_or(0.0) >= f64::from(self.limits.cap) {
                        return Err("budget 429 where the cap answers first".into());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What the request took from `codesSent` and from the user's counter
    /// and did not give back: 1 when SES accepted its message, else 0,
    /// unless an attempt with an unknown outcome allows more.
    fn check_request_counts(&self, s: &Sent, coverage: &mut Coverage) -> Result<(), String> {
        let foot = self.ledger.of(s.tag);
        let accepted = !foot.accepted().is_empty();
        let fail = |why: String| {
            Err(format!(
                "phase {} request {}{} for {} at {} answered {} {}: {why}; trace {:?}; calls: {}",
                s.phase,
                s.tag,
                s.unreachable.map_or(String::new(), |(svc, how)| format!(
                    " (through the app whose {svc:?} is unreachable: {how:?})"
                )),
                s.challenge,
                s.now.millis(),
                s.status,
                s.body,
                s.trace,
                foot.describe()
            ))
        };
        if foot.used(Call::CallerGiveBack) {
            return fail("a caller's counter was given back".into());
        }
        if self.limits.user_max == 0 && foot.used(Call::UserCount) {
            return fail("the user counter was called with the budget off".into());
        }
        let ses_unknown = foot.unknown(Call::SendEmail);
        let gave_up = |back: Call| foot.gave_up(back);
        for (name, take, back, on) in [
            ("codesSent", Call::Reserve, Call::SendGiveBack, true),
            (
                "the user counter",
                Call::UserCount,
                Call::UserGiveBack,
                self.limits.user_max > 0,
            ),
        ] {
            if !on {
                continue;
            }
            let taken = foot.applied(take);
            let net = taken - foot.applied(back);
            let doubt = foot.unknown(take) || foot.unknown(back) || ses_unknown || gave_up(back);
            if net < 0 {
                return fail(format!("{name}: gave back more than it took ({net})"));
            }
            if accepted && net < 1 {
                return fail(format!(
                    "{name}: SES accepted the message, yet it counts {net}"
                ));
            }
            let most = if doubt { taken } else { i64::from(accepted) };
            if net > most && foot.failed(back) {
                return fail(format!(
                    "{name}: counts {net} because its give-back stopped after {} attempt(s) that \
                     certainly did not apply (never sent, or a 4xx): a write safe to retry",
                    foot.of(back).count()
                ));
            }
            if net > most {
                return fail(format!(
                    "{name}: counts {net} though {} (most {most})",
                    if accepted {
                        "one message was accepted"
                    } else {
                        "SES accepted nothing and no attempt had an unknown outcome"
                    }
                ));
            }
        }
        if s.trace.reservation == ReservationFate::KeptUnsent {
            let doubt = [
                Call::Reserve,
                Call::UserCount,
                Call::SendEmail,
                Call::SendGiveBack,
                Call::UserGiveBack,
            ]
            .iter()
            .any(|c| foot.unknown(*c))
                || foot.answered_without_id()
                || foot.gave_up(Call::SendGiveBack)
                || foot.gave_up(Call::UserGiveBack);
            if !doubt {
                return fail(
                    "kept a reservation although every failure was certain (never sent, or refused with a 4xx)"
                        .into(),
                );
            }
            note(coverage, "kept reservation (unknown outcome)");
        }
        if s.unreachable.is_some_and(|(svc, _)| svc == Service::Ses)
            && s.trace.reservation == ReservationFate::GivenBack
        {
            note(coverage, "given back after an unreachable SES");
        }
        Ok(())
    }

    async fn check_challenge(
        &self,
        c: &ChallengeSpec,
        accepted_by: &HashMap<String, u64>,
        coverage: &mut Coverage,
    ) -> Result<(), String> {
        let item = self
            .env
            .get(&tables().challenges, "challengeId", &c.id)
            .await;
        let Some(item) = item else {
            return if c.deleted_in.is_some() {
                Ok(())
            } else {
                Err(format!("challenge {} vanished", c.id))
            };
        };
        if c.deleted_in.is_some() {
            return Err(format!("challenge {} came back after it was deleted", c.id));
        }
        let state = c.current();
        let fail = |why: String| Err(format!("challenge {} (epoch {}): {why}", c.id, state.epoch));

        // Attributes: the login flow's untouched, and only this function's own added.
        let allowed = [
            "challengeId",
            "userId",
            "method",
            "createdAt",
            "expireAt",
            "codesSent",
            "codes",
            "lastCodeSentAt",
        ];
        if let Some(extra) = item.keys().find(|k| !allowed.contains(&k.as_str())) {
            return fail(format!("an attribute this version does not write: {extra}"));
        }
        let method = if state.totp { "totp" } else { "email" };
        if s(&item, "userId").as_deref() != Some(state.user.as_str())
            || s(&item, "method").as_deref() != Some(method)
            || n(&item, "createdAt") != Some(c.created)
            || item
                .get("expireAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<f64>().ok())
                != Some(c.expire_ms as f64 / 1000.0)
        {
            return fail("the login flow's attributes were changed".into());
        }

        let epoch: Vec<&Sent> = self
            .sent
            .iter()
            .filter(|s| s.asks() == Some(c.id.as_str()) && c.at(s.phase).epoch == state.epoch)
            .collect();
        let codes_sent = n(&item, "codesSent").unwrap_or(0);
        let net: i64 = epoch
            .iter()
            .map(|s| {
                let foot = self.ledger.of(s.tag);
                foot.applied(Call::Reserve) - foot.applied(Call::SendGiveBack)
            })
            .sum();
        if codes_sent != net {
            return fail(format!(
                "codesSent {codes_sent}, but its requests took {net} net"
            ));
        }
        if codes_sent > i64::from(self.limits.cap) || codes_sent < 0 {
            return fail(format!(
                "codesSent {codes_sent} outside 0..={}",
                self.limits.cap
            ));
        }

        // The code entries.
        let entries = match item.get("codes") {
            None => HashMap::new(),
            Some(AttributeValue::M(m)) => m.clone(),
            Some(other) => return fail(format!("codes is not a map: {other:?}")),
        };
        if entries.len() > self.limits.cap as usize || entries.len() as i64 > codes_sent {
            return fail(format!(
                "{} code entries, cap {}, codesSent {codes_sent}",
                entries.len(),
                self.limits.cap
            ));
        }
        let mut committed: Vec<(i64, &Sent)> = Vec::new();
        for (key, entry) in &entries {
            let Some(tag) = accepted_by.get(key) else {
                return fail(format!(
                    "an entry keyed {key:?}, which is no message SES accepted"
                ));
            };
            let Some(r) = epoch.iter().find(|s| s.tag == *tag) else {
                return fail(format!(
                    "an entry for message {key} of another challenge or user"
                ));
            };
            let AttributeValue::M(fields) = entry else {
                return fail(format!("entry {key} is not a map"));
            };
            let email = self
                .inbox
                .iter()
                .find(|e| e["messageId"] == key.as_str())
                .expect("accepted messages are in the inbox");
            let digits = code_in(email).replace('-', "");
            let expire_at =
                (r.now.secs() + i64::from(self.limits.code_ttl)).min(c.expire_ms.div_euclid(1000));
            if s(fields, "codeHash") != Some(code_hash(&c.id, &digits)) {
                return fail(format!(
                    "entry {key}: codeHash is not the HMAC of the code in that email"
                ));
            }
            if n(fields, "sentAt") != Some(r.now.secs()) {
                return fail(format!(
                    "entry {key}: sentAt {:?}, the request started at {}",
                    n(fields, "sentAt"),
                    r.now.millis()
                ));
            }
            if n(fields, "expireAt") != Some(expire_at) {
                return fail(format!(
                    "entry {key}: expireAt {:?}, must be {expire_at}",
                    n(fields, "expireAt")
                ));
            }
            if fields.len() != 3 {
                return fail(format!("entry {key} has other fields than the three"));
            }
            if !(r.status == 200 || r.status >= 500) {
                return fail(format!(
                    "entry {key} for request {}, which answered {}",
                    r.tag, r.status
                ));
            }
            committed.push((r.now.secs(), r));
            note(coverage, "entries checked");
        }
        // The contract's promise as the login flow meets it: every code
        // whose commit succeeded (answered 200, or a commit attempt the
        // stand-in applied whatever the request answered) verifies through
        // the library's own `verify`, over the whole map as stored, from
        // its sending until its own expireAt, and not at that second.
        let stored: Vec<(String, EpochSeconds)> = entries
            .values()
            .filter_map(|e| match e {
                AttributeValue::M(f) => match (f.get("codeHash"), f.get("expireAt")) {
                    (Some(AttributeValue::S(h)), Some(AttributeValue::N(x))) => {
                        Some((h.clone(), EpochSeconds::parse(x)?))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let all = || {
            stored.iter().map(|(h, x)| CodeEntry {
                code_hash: h,
                expire_at: *x,
            })
        };
        for r in &epoch {
            let committed = self.ledger.of(r.tag).applied(Call::Commit) > 0;
            if r.status != 200 && !committed {
                continue;
            }
            let m = r.trace.message_id.as_deref().unwrap_or("");
            if !entries.contains_key(m) {
                return fail(format!(
                    "request {} (answered {}, commit applied: {committed}) has no entry for its message {m:?}",
                    r.tag, r.status
                ));
            }
            let email = self
                .inbox
                .iter()
                .find(|e| e["messageId"] == m)
                .expect("accepted messages are in the inbox");
            let digits = code_in(email).replace('-', "");
            let expire_at =
                (r.now.secs() + i64::from(self.limits.code_ttl)).min(c.expire_ms.div_euclid(1000));
            // (Empty when the challenge ends within the second the code is
            // sent: its entry's expireAt is then floor(challenge expireAt),
            // as the contract's data section fixes.)
            let lifetime = r.now.secs()..expire_at;
            for at in [r.now.secs(), expire_at - 1]
                .into_iter()
                .filter(|at| lifetime.contains(at))
            {
                if !verify(
                    SECRET.as_bytes(),
                    &c.id,
                    &digits,
                    all(),
                    Timestamp::from_secs(at),
                ) {
                    return fail(format!(
                        "the code of message {m} does not verify at {at} (expireAt {expire_at})"
                    ));
                }
            }
            // Unless another email carried the same digits and lasts longer.
            let hash = code_hash(&c.id, &digits);
            let twin = stored
                .iter()
                .any(|(h, x)| *h == hash && x.floor_i64() > expire_at);
            if !twin
                && verify(
                    SECRET.as_bytes(),
                    &c.id,
                    &digits,
                    all(),
                    Timestamp::from_secs(expire_at),
                )
            {
                return fail(format!(
                    "the code of message {m} still verifies at its expireAt {expire_at}"
                ));
            }
            note(coverage, "codes verified through verify");
        }
        let latest = committed.iter().map(|(t, _)| *t).max();
        if n(&item, "lastCodeSentAt") != latest {
            return fail(format!(
                "lastCodeSentAt {:?}, the latest entry was sent at {latest:?}",
                n(&item, "lastCodeSentAt")
            ));
        }
        // A commit whose held first attempt reached the stand-in after a
        // newer commit of the same challenge was stored (the checks above
        // show it neither replaced that entry nor moved lastCodeSentAt back).
        for (t, r) in &committed {
            let foot = self.ledger.of(r.tag);
            let held = foot.of(Call::Commit).find(|s| {
                s.hit
                    .is_some_and(|h| matches!(h.fault, Fault::DelayRequest(d) if d >= COMMIT_LATE))
            });
            let Some(held) = held else { continue };
            let overtaken = committed.iter().any(|(u, o)| {
                u > t
                    && self
                        .ledger
                        .of(o.tag)
                        .of(Call::Commit)
                        .any(|s| s.applied() && s.done < held.done)
            });
            if overtaken {
                note(coverage, "late commit landed after a newer one");
            }
        }
        if self.limits.cooldown > 0 {
            for (t1, r1) in &committed {
                for (t2, r2) in &committed {
                    let racing = r1.phase == r2.phase || r1.status >= 500 || r2.status >= 500;
                    if r1.tag < r2.tag
                        && !racing
                        && (t2 - t1).abs() < i64::from(self.limits.cooldown)
                    {
                        return fail(format!(
                            "entries sent at {t1} and {t2} by requests of different batches, closer than the cooldown {}",
                            self.limits.cooldown
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Each user window's counter is what its requests took and did not
    /// give back, never above the budget.
    async fn check_user_counters(&self) -> Result<(), String> {
        if self.limits.user_max == 0 {
            return Ok(());
        }
        let w = i64::from(self.limits.user_window);
        let mut expected: HashMap<(String, i64), i64> = HashMap::new();
        for s in self.sent {
            let Some(user) = self.user_of(s) else {
                continue;
            };
            let foot = self.ledger.of(s.tag);
            let net = foot.applied(Call::UserCount) - foot.applied(Call::UserGiveBack);
            *expected
                .entry((user.id.clone(), window_start(s.now, w)))
                .or_default() += net;
        }
        for ((user, start), net) in expected {
            let key = format!("sendEmailCode#user#{user}#{start}");
            let count = self
                .env
                .get(&tables().rate_limits, "pk", &key)
                .await
                .and_then(|item| n(&item, "count"))
                .unwrap_or(0);
            if count != net {
                return Err(format!(
                    "user {user} window {start}: counter {count}, its requests took {net} net"
                ));
            }
            if count > i64::from(self.limits.user_max) {
                return Err(format!(
                    "user {user} window {start}: counter {count} over the budget"
                ));
            }
        }
        Ok(())
    }

    /// No caller got past its limit in a window, and each counter holds
    /// what its requests' writes applied.
    async fn check_callers(&self) -> Result<(), String> {
        let mut passed: HashMap<(String, i64), u32> = HashMap::new();
        let mut applied: HashMap<(String, i64), i64> = HashMap::new();
        for s in self.sent {
            let key = (
                caller_key(&s.caller),
                window_start(s.now, CALLER_WINDOW_SECS),
            );
            let foot = self.ledger.of(s.tag);
            *applied.entry(key.clone()).or_default() += foot.applied(Call::CallerCount);
            if s.headers.contains_key("x-ratelimit-limit") && kind_of(s) != Kind::CallerLimit {
                *passed.entry(key).or_default() += 1;
            }
        }
        if let Some(((caller, window), n)) =
            passed.iter().find(|(_, n)| **n > self.limits.caller_max)
        {
            return Err(format!(
                "caller {caller} passed {n} requests in window {window}, limit {}",
                self.limits.caller_max
            ));
        }
        for ((caller, start), net) in applied {
            let key = format!("sendEmailCode#{caller}#{start}");
            let count = self
                .env
                .get(&tables().rate_limits, "pk", &key)
                .await
                .and_then(|item| n(&item, "count"))
                .unwrap_or(0);
            if count != net || count > i64::from(self.limits.caller_max) {
                return Err(format!(
                    "caller {caller} window {start}: counter {count}, writes applied {net}, limit {}",
                    self.limits.caller_max
                ));
            }
        }
        Ok(())
    }
}
