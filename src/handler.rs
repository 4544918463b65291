//! The request handler, in the order of docs/contract.md section 2:
//! caller → rate limit → parse → read → decide → reserve → send → commit.
//! The reservation's bookkeeping, with the one place that returns a
//! reservation, is in [`reservation`]; what a request did and its log line
//! in [`trace`].

mod reservation;
mod trace;

pub use trace::{ReservationFate, Trace};

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use aws_config::SdkConfig;
use lambda_http::{service_fn, Adapter, Body, Request, RequestExt, Response};

use crate::aws::mailer::Mailer;
use crate::aws::store::{self, Attempted, Commit, Committed, Count, Reserved, Store};
use crate::aws::EarlyConnections;
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
use reservation::{give_back, reserve, Held};
use trace::log_request;

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
    let (sdk, early) = crate::aws::function_sdk_config(&config).await;
    // Lives as long as the process; concurrent invocations share it.
    let app: &'static App = Box::leak(Box::new(
        App::new(config, &sdk).with_early_connections(early),
    ));
    let handler = service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handle(app, req, Timestamp::now()).await)
    });
    // Over the raw event, so that no event can fail or panic in lambda_http's
    // conversion (http::event). With AWS_LAMBDA_MAX_CONCURRENCY set (Lambda
    // Managed Instances) up to that many invocations run at once in this
    // process; without it, one at a time, as on classic Lambda.
    lambda_http::lambda_runtime::run_concurrent(event::Guarded::new(Adapter::from(handler))).await
}

/// Everything a request needs, built once per process.
#[derive(Debug, Clone)]
pub struct App {
    config: Config,
    store: Store,
    mailer: Mailer,
    templates: Templates,
    refused: Arc<RefusedCallers>,
    early: EarlyConnections,
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
            early: EarlyConnections::default(),
            config,
        }
    }

    /// The same, opening `early` beside the first request's round 1
    /// (`PRECONNECT=first-request`; empty otherwise).
    pub fn with_early_connections(mut self, early: EarlyConnections) -> Self {
        self.early = early;
        self
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

    // Round 1: the caller's counter and the challenge read; the first time,
    // the connections rounds 2 and 3 will need start opening beside it.
    if parsed.is_ok() {
        app.early.open_once_in_background();
    }
    let count = app.store.count(&key, window.counter_expire_at(), limit);
    let (count, read) = match &parsed {
        Ok(id) => {
            let (count, read) = tokio::join!(count, app.store.get_challenge(id));
            (count, Ok(read))
        }
        Err(err) => (count.await, Err(err.clone())),
    };
    let rate = match count.result {
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
    trace.reserve_attempts = held.send.as_ref().map_or(0, |s| s.attempts);
    let user = match decide(user, sendable, &held, &challenge, rules, now) {
        Ok(user) => user,
        Err(err) => {
            give_back(app, &challenge, &held, trace).await;
            return Err(err);
        }
    };

    // Round 3: the message. The code is drawn only now, so a failing random
    // source cannot hide the answer of a check before it.
    let code = match Code::generate() {
        Ok(code) => code,
        Err(err) => {
            give_back(app, &challenge, &held, trace).await;
            return Err(DependencyError::from(err).into());
        }
    };
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
            if failure.may_have_applied {
                // SES may have taken it: the reservation stays spent.
                trace.reservation = ReservationFate::KeptUnsent;
            } else {
                give_back(app, &challenge, &held, trace).await;
            }
            return Err(failure.into());
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

/// Steps 3 to 7 in their order, whatever order the calls ran in: the first
/// failing step is the answer, and a failed write of step 8 (the
/// reservation) or of step 7's counter only answers once every check before
/// it passed.
fn decide(
    user: Result<Option<User>, DependencyError>,
    sendable: Result<(), ApiError>,
    held: &Held,
    challenge: &Challenge,
    rules: SendRules,
    now: Timestamp,
) -> Result<User, ApiError> {
    let reserved = held.send.as_ref().map(|s| &s.result);
    let refusal = match reserved {
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
    // Steps 5 and 6, on the read, then as the reservation found them (a
    // refusal nothing explains is a failure, answered after step 7).
    sendable?;
    let unexplained = match refusal {
        Some(ApiError::Dependency(err)) => Some(err),
        Some(err) => return Err(err),
        None => None,
    };
    // Step 7.
    if let Some((_, counted, window)) = &held.user {
        if counted.result == Ok(Count::LimitReached) {
            return Err(ApiError::UserCodeLimitReached {
                retry_after: now.secs_until(window.end),
            });
        }
    }
    // The writes that failed: the reservation's, then the user counter's.
    if let Some(err) = unexplained {
        return Err(err.into());
    }
    if let Some(Err(err)) = reserved {
        return Err(err.clone().into());
    }
    match &held.user {
        Some((
            _,
            Attempted {
                result: Err(err), ..
            },
            _,
        )) => Err(err.clone().into()),
        _ => Ok(user),
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

    /// A write that timed out after it was sent: it may have counted.
    fn outage() -> DependencyError {
        DependencyError::unavailable("DynamoDB", "UpdateItem", "timed out").applied_maybe(true)
    }

    /// A write throttled on every attempt: certainly not applied.
    fn throttled() -> DependencyError {
        DependencyError::unavailable("DynamoDB", "UpdateItem", "throttled")
    }

    fn once<T>(result: Result<T, DependencyError>) -> Attempted<T> {
        Attempted {
            result,
            attempts: 1,
            may_count_twice: false,
        }
    }

    fn held(
        send: Option<Result<Reserved, DependencyError>>,
        user: Option<Result<Count, DependencyError>>,
    ) -> Held {
        let window = RateWindow::containing(NOW, 3_600);
        Held {
            send: send.map(once),
            user: user.map(|u| ("k".to_string(), once(u), window)),
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
    fn a_write_that_was_certainly_not_applied_is_not_unknown() {
        let throttled_send = held(Some(Err(throttled())), Some(Ok(Count::Counted(1))));
        assert!(!throttled_send.unknown());
        assert_eq!(
            answer(user(true), Ok(()), &throttled_send).map_err(|e| e.status().as_u16()),
            Err(503)
        );
        let throttled_user = held(Some(Ok(Reserved::Taken)), Some(Err(throttled())));
        assert!(!throttled_user.unknown());
        let mut retried = held(Some(Ok(Reserved::Taken)), None);
        if let Some(send) = retried.send.as_mut() {
            send.may_count_twice = true;
        }
        assert!(
            retried.unknown(),
            "a success after a lost attempt may count twice"
        );
    }

    #[test]
    fn the_budget_answers_before_a_failed_reservation_write() {
        for failure in [outage(), throttled()] {
            let both = held(Some(Err(failure)), Some(Ok(Count::LimitReached)));
            assert_eq!(
                answer(user(true), Ok(()), &both),
                Err(ApiError::UserCodeLimitReached { retry_after: 2_600 })
            );
        }
        // But the user checks still come first.
        let both = held(Some(Err(outage())), Some(Ok(Count::LimitReached)));
        assert_eq!(answer(Ok(None), Ok(()), &both), Err(ApiError::UserNotFound));
    }

    #[test]
    fn a_refusal_nothing_explains_answers_after_the_budget() {
        // The item the refusal returned passes every condition.
        let unexplained = Some(Ok(Reserved::Refused(Some(challenge(0)))));
        let at_budget = held(unexplained.clone(), Some(Ok(Count::LimitReached)));
        assert_eq!(
            answer(user(true), Ok(()), &at_budget),
            Err(ApiError::UserCodeLimitReached { retry_after: 2_600 })
        );
        let under_budget = held(unexplained, Some(Ok(Count::Counted(1))));
        assert_eq!(
            answer(user(true), Ok(()), &under_budget).map_err(|e| e.status().as_u16()),
            Err(500)
        );
    }
}
