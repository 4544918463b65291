//! The request handler, in the order of docs/contract.md section 2:
//! caller → rate limit → parse → read → decide → reserve → send → commit,
//! with one place ([`give_back`]) that returns a reservation.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use aws_config::SdkConfig;
use lambda_http::{service_fn, Adapter, Body, Request, RequestExt, Response};

use crate::aws::mailer::Mailer;
use crate::aws::store::{self, Commit, Committed, Count, Reservation, Reserved, Store};
use crate::config::Config;
use crate::domain::caller::CallerIp;
use crate::domain::challenge::{reservation_refusal, Challenge, SendRules};
use crate::domain::code::{Code, CodeHash};
use crate::domain::error::{ApiError, DependencyError};
use crate::domain::rate_window::{RateStatus, RateWindow, RefusedCallers};
use crate::domain::time::Timestamp;
use crate::domain::user::User;
use crate::email::{EmailInput, Language, Templates};
use crate::http::{caller, event, request, response};
use crate::metrics::RequestMetrics;

/// The function's life: configuration and clients once, then the Lambda
/// event loop. A configuration error stops the start-up with one log line
/// and exit status 1.
pub async fn run() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(variable = err.variable, "{err}");
            std::process::exit(1);
        }
    };
    let sdk = crate::aws::function_sdk_config(&config).await;
    let app = App::new(config, &sdk);
    let app = &app;
    let handler = service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handle(app, req, Timestamp::now()).await)
    });
    // Over the raw event, so that no event can fail or panic in lambda_http's
    // conversion (http::event).
    lambda_http::lambda_runtime::run(event::Guarded::new(Adapter::from(handler))).await
}

/// Everything a request needs, built once per process.
#[derive(Debug, Clone)]
pub struct App {
    config: Config,
    store: Store,
    mailer: Mailer,
    templates: Templates,
    refused: Arc<RefusedCallers>,
}

impl App {
    /// Builds the clients from a loaded SDK configuration (no network call).
    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        Self::with_clients(
            config,
            aws_sdk_dynamodb::Client::new(sdk),
            aws_sdk_sesv2::Client::new(sdk),
        )
    }

    /// Builds the app around clients configured elsewhere.
    pub fn with_clients(
        config: Config,
        dynamodb: aws_sdk_dynamodb::Client,
        ses: aws_sdk_sesv2::Client,
    ) -> Self {
        Self {
            store: Store::new(dynamodb, &config),
            mailer: Mailer::new(ses, &config),
            templates: Templates,
            refused: Arc::default(),
            config,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn send_rules(&self) -> SendRules {
        SendRules {
            max_codes: self.config.max_codes_per_challenge,
            cooldown_secs: self.config.resend_cooldown_seconds,
        }
    }
}

/// What became of the sends this request reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReservationFate {
    /// Nothing was reserved.
    #[default]
    None,
    /// Reserved, sent and the code stored (or the challenge gone by then).
    Used,
    /// Reserved, then given back: nothing was sent.
    GivenBack,
    /// Kept although no message is known to have been accepted: the SES
    /// outcome or a reservation write is unknown, or the give-back failed.
    /// Counters may stand one above the messages sent.
    KeptUnsent,
}

impl ReservationFate {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Used => "used",
            Self::GivenBack => "given_back",
            Self::KeptUnsent => "kept_unsent",
        }
    }
}

/// What one request did, for its log line (and for tests that check the
/// invariants). Holds no code, hash, secret or address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The challenge's id, only once it was found (never a caller's guess).
    pub challenge_id: Option<String>,
    /// SES's id of the message sent.
    pub message_id: Option<String>,
    /// How many addresses the message went to.
    pub recipients: usize,
    /// What became of the reservation.
    pub reservation: ReservationFate,
    /// Attempts of the reservation write (more than 1: retried by the SDK).
    pub reserve_attempts: u32,
    /// Answered from this instance's memory of refused callers.
    pub refused_from_memory: bool,
}

/// Serves one request at time `now`. Never fails: every error becomes a JSON answer.
pub async fn handle(app: &App, req: Request, now: Timestamp) -> Response<Body> {
    handle_traced(app, req, now).await.0
}

/// [`handle`], also returning what the request did.
pub async fn handle_traced(app: &App, req: Request, now: Timestamp) -> (Response<Body>, Trace) {
    let started = Instant::now();
    let config = &app.config;
    let caller = caller::identify(
        &req,
        config.trusted_proxy_hops,
        config.rate_limit_ipv6_prefix,
    );
    let request_id = req
        .lambda_context_ref()
        .map(|ctx| ctx.request_id.clone())
        .unwrap_or_default();
    let mut trace = Trace::default();
    let (rate, outcome) = serve(app, &caller, req, now, &mut trace).await;

    let response = response::build(&outcome, rate.as_ref());
    log_request(
        &request_id,
        &caller,
        &outcome,
        &trace,
        response.status().as_u16(),
        started,
        now,
    );
    (response, trace)
}

/// Step 1 with the challenge read beside it, then the rest. Returns the
/// caller's rate status (absent only when its counter could not be reached).
/// A caller refused from memory costs no parsing and no call.
async fn serve(
    app: &App,
    caller: &CallerIp,
    req: Request,
    now: Timestamp,
    trace: &mut Trace,
) -> (Option<RateStatus>, Result<(), ApiError>) {
    let limit = app.config.rate_limit_max;
    let window = RateWindow::containing(now, app.config.rate_limit_window_seconds);
    let key = window.counter_key(caller);
    let too_many = |rate: RateStatus| {
        let retry_after = rate.retry_after(now);
        (Some(rate), Err(ApiError::TooManyRequests { retry_after }))
    };
    if app.refused.is_refused(&key, window) {
        // Its counter only grows within this window: still refused.
        trace.refused_from_memory = true;
        return too_many(RateStatus::exceeded(limit, window));
    }
    let parsed = request::check_method(req.method()).and_then(|()| request::challenge_id(&req));
    drop(req);

    // Round 1: the caller's counter and the challenge read.
    let count = app.store.count(&key, window.counter_expire_at(), limit);
    let (count, read) = match &parsed {
        Ok(id) => {
            let (count, read) = tokio::join!(count, app.store.get_challenge(id));
            (count, Ok(read))
        }
        Err(err) => (count.await, Err(err.clone())),
    };
    let rate = match count {
        Ok(Count::Counted(n)) => RateStatus::counted(limit, n, window),
        Ok(Count::LimitReached) => {
            app.refused.remember(key, window);
            return too_many(RateStatus::exceeded(limit, window));
        }
        Err(err) => return (None, Err(err.into())),
    };
    let outcome = match read {
        Ok(read) => deliver(app, read, now, trace).await,
        Err(invalid) => Err(invalid),
    };
    (Some(rate), outcome)
}

/// Steps 3 to 11 for a valid, counted request.
async fn deliver(
    app: &App,
    read: Result<Option<Challenge>, DependencyError>,
    now: Timestamp,
    trace: &mut Trace,
) -> Result<(), ApiError> {
    let challenge = read?.ok_or(ApiError::ChallengeNotFound)?;
    trace.challenge_id = Some(challenge.id.clone());
    challenge.check_usable(now)?;
    let code = Code::generate().map_err(DependencyError::from)?;

    // Round 2: the user read beside the reservations, unless the read
    // already shows the cap or the cooldown (then nothing is written).
    let rules = app.send_rules();
    let sendable = challenge.check_sendable(rules, now);
    let (user, held) = if sendable.is_ok() {
        tokio::join!(
            app.store.get_user(&challenge.user_id),
            reserve(app, &challenge, rules, now)
        )
    } else {
        (
            app.store.get_user(&challenge.user_id).await,
            Held::default(),
        )
    };
    trace.reserve_attempts = held.send_attempts;
    let user = match decide(user, sendable, &held, &challenge, rules, now) {
        Ok(user) => user,
        Err(err) => {
            give_back(app, &challenge, &held, trace).await;
            return Err(err);
        }
    };

    // Round 3: the message.
    let code_expire_at = challenge.code_expire_at(now, app.config.code_ttl_seconds);
    let language = user
        .language
        .as_deref()
        .and_then(Language::resolve)
        .unwrap_or(app.config.default_language);
    let email = app.templates.render(&EmailInput {
        code: &code,
        code_expire_at,
        display_name: user.display_name.as_deref(),
        language,
        now,
    });
    trace.recipients = user.verified_addresses.len();
    let message_id = match app.mailer.send(&user.verified_addresses, &email).await {
        Ok(id) => id,
        Err(failure) => {
            if failure.maybe_accepted {
                // SES may have taken it: the reservation stays spent.
                trace.reservation = ReservationFate::KeptUnsent;
            } else {
                give_back(app, &challenge, &held, trace).await;
            }
            return Err(failure.error.into());
        }
    };
    trace.reservation = ReservationFate::Used;
    trace.message_id = Some(message_id.clone());

    // Round 4: the commit, the only write of the code. An email went out,
    // so from here on nothing is given back.
    let code_hash = CodeHash::new(app.config.code_hmac_secret.as_bytes(), &challenge.id, &code);
    let committed = app
        .store
        .commit_code(Commit {
            challenge: &challenge,
            code_hash: &code_hash,
            code_expire_at,
            sent_at: now.whole_secs(),
            message_id: &message_id,
        })
        .await?;
    match committed {
        Committed::Stored => Ok(()),
        Committed::ChallengeGone => Err(ApiError::ChallengeNotFound),
    }
}

/// The outcome of the reservation round.
#[derive(Debug, Default)]
struct Held {
    /// The challenge's reservation, when one was attempted.
    send: Option<Result<Reserved, DependencyError>>,
    /// The per-user counter (key, result), when the budget is on.
    user: Option<(String, Result<Count, DependencyError>, RateWindow)>,
    /// Attempts of the challenge's reservation write.
    send_attempts: u32,
}

impl Held {
    /// A send was certainly taken from the challenge.
    fn took_send(&self) -> bool {
        matches!(self.send, Some(Ok(Reserved::Taken)))
    }

    /// The user counter key, when one was certainly taken from it.
    fn took_user_count(&self) -> Option<&str> {
        match &self.user {
            Some((key, Ok(Count::Counted(_)), _)) => Some(key),
            _ => None,
        }
    }

    /// A write whose effect is unknown: it may have counted.
    fn unknown(&self) -> bool {
        matches!(self.send, Some(Err(_)))
            || matches!(self.user, Some((_, Err(_), _)))
            || self.send_attempts > 1
    }
}

/// Steps 8 and 7's counter: one conditional write on the challenge and one
/// on the user's counter, in the same round.
async fn reserve(app: &App, challenge: &Challenge, rules: SendRules, now: Timestamp) -> Held {
    let send = app.store.reserve_send(Reservation {
        challenge,
        now,
        rules,
    });
    let max_per_user = app.config.max_codes_per_user;
    if max_per_user == 0 {
        let (send, send_attempts) = send.await;
        return Held {
            send: Some(send),
            user: None,
            send_attempts,
        };
    }
    let window = RateWindow::containing(now, app.config.user_window_seconds);
    let key = window.user_counter_key(&challenge.user_id);
    let ((send, send_attempts), user) = tokio::join!(
        send,
        app.store
            .count(&key, window.counter_expire_at(), max_per_user)
    );
    Held {
        send: Some(send),
        user: Some((key, user, window)),
        send_attempts,
    }
}

/// Steps 3 to 7 in their order, whatever order the calls ran in: the first
/// failing step is the answer.
fn decide(
    user: Result<Option<User>, DependencyError>,
    sendable: Result<(), ApiError>,
    held: &Held,
    challenge: &Challenge,
    rules: SendRules,
    now: Timestamp,
) -> Result<User, ApiError> {
    let refusal = match &held.send {
        Some(Ok(Reserved::Refused(current))) => Some(
            reservation_refusal(current.as_ref(), &challenge.user_id, rules, now)
                .unwrap_or_else(|| store::unexplained_refusal().into()),
        ),
        _ => None,
    };
    // Step 3 as the reservation found it (deleted, replaced, expired).
    if let Some(
        err @ (ApiError::ChallengeNotFound
        | ApiError::ChallengeExpired
        | ApiError::InvalidChallengeMethod),
    ) = &refusal
    {
        return Err(err.clone());
    }
    // Step 4.
    let user = user?.ok_or(ApiError::UserNotFound)?;
    if user.verified_addresses.is_empty() {
        return Err(ApiError::NoVerifiedEmail);
    }
    // Steps 5 and 6, on the read, then as the reservation found them.
    sendable?;
    if let Some(err) = refusal {
        return Err(err);
    }
    if let Some(Err(err)) = &held.send {
        return Err(err.clone().into());
    }
    // Step 7.
    match &held.user {
        Some((_, Ok(Count::LimitReached), window)) => Err(ApiError::UserCodeLimitReached {
            retry_after: now.secs_until(window.end),
        }),
        Some((_, Err(err), _)) => Err(err.clone().into()),
        _ => Ok(user),
    }
}

/// The one place a reservation goes back: the challenge's send and the
/// user's count, whichever this request certainly took. Each give-back is
/// a single attempt; a failure is logged and leaves the counter one high.
async fn give_back(app: &App, challenge: &Challenge, held: &Held, trace: &mut Trace) {
    let send = async {
        if held.took_send() {
            app.store.give_back_send(challenge).await.map(|()| true)
        } else {
            Ok(false)
        }
    };
    let user = async {
        match held.took_user_count() {
            Some(key) => app.store.give_back_count(key).await.map(|()| true),
            None => Ok(false),
        }
    };
    let (send, user) = tokio::join!(send, user);
    let mut failed = held.unknown();
    for result in [&send, &user] {
        if let Err(err) = result {
            failed = true;
            tracing::error!(
                service = err.service,
                operation = err.operation,
                detail = %err.detail,
                "could not give a reservation back; its counter stays one high"
            );
        }
    }
    let gave = matches!(send, Ok(true)) || matches!(user, Ok(true));
    trace.reservation = if failed {
        ReservationFate::KeptUnsent
    } else if gave {
        ReservationFate::GivenBack
    } else {
        ReservationFate::None
    };
}

/// Which limit a 429 came from (the four share one `errorType`), for the log.
fn limit_name(err: &ApiError) -> &'static str {
    match err {
        ApiError::TooManyRequests { .. } => "caller",
        ApiError::CodeLimitReached { .. } => "challenge_cap",
        ApiError::ResendCooldown { .. } => "resend_cooldown",
        ApiError::UserCodeLimitReached { .. } => "user_budget",
        _ => "none",
    }
}

/// One log line and one metrics line per request. Never the code, its hash,
/// the secret or an address.
fn log_request(
    request_id: &str,
    caller: &CallerIp,
    outcome: &Result<(), ApiError>,
    trace: &Trace,
    status: u16,
    started: Instant,
    now: Timestamp,
) {
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error_type = outcome
        .as_ref()
        .map_or_else(ApiError::error_type, |()| "none");
    let summary = match outcome {
        Ok(()) => "sent",
        Err(ApiError::Dependency(_)) => "failed",
        Err(_) => "refused",
    };
    RequestMetrics {
        timestamp_ms: now.millis(),
        outcome: summary,
        error_type,
        duration_ms,
        codes_sent: u32::from(outcome.is_ok()),
        rate_limited: matches!(outcome, Err(ApiError::TooManyRequests { .. })),
    }
    .emit();
    let challenge_id = trace.challenge_id.as_deref().unwrap_or("");
    let message_id = trace.message_id.as_deref().unwrap_or("");
    let reservation = trace.reservation.as_str();
    let reserve_attempts = trace.reserve_attempts;
    let from_memory = trace.refused_from_memory;
    if reserve_attempts > 1 {
        tracing::warn!(
            request_id,
            challenge_id,
            reserve_attempts,
            "the reservation write was retried: codesSent may count this request twice"
        );
    }
    match outcome {
        Ok(()) => tracing::info!(
            request_id,
            %caller,
            status,
            outcome = summary,
            error_type,
            challenge_id,
            message_id,
            recipients = trace.recipients,
            reservation,
            duration_ms,
            "request served"
        ),
        Err(ApiError::Dependency(cause)) => tracing::error!(
            request_id,
            %caller,
            status,
            outcome = summary,
            error_type,
            challenge_id,
            message_id,
            reservation,
            service = cause.service,
            operation = cause.operation,
            cause = %cause.detail,
            duration_ms,
            "request failed"
        ),
        Err(refusal) => tracing::info!(
            request_id,
            %caller,
            status,
            outcome = summary,
            error_type,
            limit = limit_name(refusal),
            challenge_id,
            message_id,
            reservation,
            from_memory,
            duration_ms,
            "request refused"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::challenge::ChallengeMethod;
    use crate::domain::time::EpochSeconds;
    use crate::domain::user::StoredUser;

    const RULES: SendRules = SendRules {
        max_codes: 3,
        cooldown_secs: 0,
    };
    const NOW: Timestamp = Timestamp::from_secs(1_000);

    fn challenge(codes_sent: u32) -> Challenge {
        Challenge {
            id: "c".into(),
            user_id: "u".into(),
            method: ChallengeMethod::Email,
            expire_at: EpochSeconds::from(1_500),
            codes_sent,
            last_code_sent_at: None,
        }
    }

    fn user(verified: bool) -> Result<Option<User>, DependencyError> {
        let email = verified.then(|| "a@x.test".to_string());
        Ok(Some(User::from(StoredUser {
            id: "u".into(),
            email,
            ..StoredUser::default()
        })))
    }

    fn outage() -> DependencyError {
        DependencyError::unavailable("DynamoDB", "UpdateItem", "timed out")
    }

    fn held(
        send: Option<Result<Reserved, DependencyError>>,
        user: Option<Result<Count, DependencyError>>,
    ) -> Held {
        let window = RateWindow::containing(NOW, 3_600);
        Held {
            send,
            user: user.map(|u| ("k".to_string(), u, window)),
            send_attempts: 1,
        }
    }

    fn answer(
        user: Result<Option<User>, DependencyError>,
        sendable: Result<(), ApiError>,
        held: &Held,
    ) -> Result<(), ApiError> {
        decide(user, sendable, held, &challenge(0), RULES, NOW).map(|_| ())
    }

    #[test]
    fn a_reservation_that_finds_the_challenge_gone_answers_before_the_user_checks() {
        let gone = held(Some(Ok(Reserved::Refused(None))), None);
        assert_eq!(
            answer(Ok(None), Ok(()), &gone),
            Err(ApiError::ChallengeNotFound)
        );
        let mut expired = challenge(0);
        expired.expire_at = EpochSeconds::from(900);
        let found_expired = held(Some(Ok(Reserved::Refused(Some(expired)))), None);
        assert_eq!(
            answer(user(false), Ok(()), &found_expired),
            Err(ApiError::ChallengeExpired)
        );
    }

    #[test]
    fn the_user_checks_answer_before_the_cap_the_cooldown_and_the_budget() {
        let at_cap = held(
            Some(Ok(Reserved::Refused(Some(challenge(3))))),
            Some(Ok(Count::LimitReached)),
        );
        assert_eq!(
            answer(Ok(None), Ok(()), &at_cap),
            Err(ApiError::UserNotFound)
        );
        assert_eq!(
            answer(user(false), Ok(()), &at_cap),
            Err(ApiError::NoVerifiedEmail)
        );
        let cooling = Err(ApiError::ResendCooldown { retry_after: 4 });
        assert_eq!(
            answer(Ok(None), cooling, &held(None, None)),
            Err(ApiError::UserNotFound)
        );
        let read_failed = Err(outage());
        assert_eq!(
            answer(read_failed, Ok(()), &at_cap).map_err(|e| e.status().as_u16()),
            Err(503)
        );
    }

    #[test]
    fn the_cap_answers_before_the_user_budget() {
        let both = held(
            Some(Ok(Reserved::Refused(Some(challenge(3))))),
            Some(Ok(Count::LimitReached)),
        );
        assert_eq!(
            answer(user(true), Ok(()), &both),
            Err(ApiError::CodeLimitReached { retry_after: 500 })
        );
        let seen_on_read = Err(ApiError::CodeLimitReached { retry_after: 500 });
        assert_eq!(
            answer(user(true), seen_on_read.clone(), &held(None, None)),
            seen_on_read
        );
    }

    #[test]
    fn the_user_budget_answers_last_with_the_end_of_its_window() {
        let budget = held(Some(Ok(Reserved::Taken)), Some(Ok(Count::LimitReached)));
        assert_eq!(
            answer(user(true), Ok(()), &budget),
            Err(ApiError::UserCodeLimitReached { retry_after: 2_600 })
        );
        let fine = held(Some(Ok(Reserved::Taken)), Some(Ok(Count::Counted(2))));
        assert!(answer(user(true), Ok(()), &fine).is_ok());
        let budget_off = held(Some(Ok(Reserved::Taken)), None);
        assert!(answer(user(true), Ok(()), &budget_off).is_ok());
    }

    #[test]
    fn an_unknown_reservation_is_a_5xx_and_counts_as_kept() {
        let unknown = held(Some(Err(outage())), Some(Ok(Count::Counted(1))));
        assert_eq!(
            answer(user(true), Ok(()), &unknown).map_err(|e| e.status().as_u16()),
            Err(503)
        );
        assert!(
            unknown.unknown(),
            "never given back as if it had not counted"
        );
        assert!(!unknown.took_send());
        assert_eq!(unknown.took_user_count(), Some("k"));
        let user_unknown = held(Some(Ok(Reserved::Taken)), Some(Err(outage())));
        assert!(user_unknown.unknown() && user_unknown.took_send());
        assert_eq!(user_unknown.took_user_count(), None);
    }

    #[test]
    fn each_429_names_its_limit_in_the_log() {
        let cases = [
            (ApiError::TooManyRequests { retry_after: 1 }, "caller"),
            (
                ApiError::CodeLimitReached { retry_after: 1 },
                "challenge_cap",
            ),
            (
                ApiError::ResendCooldown { retry_after: 1 },
                "resend_cooldown",
            ),
            (
                ApiError::UserCodeLimitReached { retry_after: 1 },
                "user_budget",
            ),
            (ApiError::ChallengeNotFound, "none"),
        ];
        for (err, name) in cases {
            assert_eq!(limit_name(&err), name, "{err:?}");
        }
    }
}
