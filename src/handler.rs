//! The request handler: contract section 2, top to bottom.

use std::time::Instant;

use aws_config::SdkConfig;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::caller::{self, CallerIp};
use crate::challenge::{rotation_refusal, Challenge};
use crate::code::{Code, CodeHash};
use crate::config::Config;
use crate::email::{EmailInput, Language, TemplateError, Templates};
use crate::error::{ApiError, DependencyError, FaultKind};
use crate::mailer::Mailer;
use crate::metrics::RequestMetrics;
use crate::rate_limit::{RateStatus, RateWindow};
use crate::request::{self, ChallengeId};
use crate::response;
use crate::store::{Count, PreviousCode, Rotated, Rotation, Store};
use crate::time::Timestamp;
use crate::user::User;

/// Everything a request needs, built once per process.
#[derive(Debug, Clone)]
pub struct App {
    config: Config,
    store: Store,
    mailer: Mailer,
    templates: Templates,
}

impl App {
    /// Builds the clients from a loaded SDK configuration (no network call).
    pub fn new(config: Config, sdk: &SdkConfig) -> Result<Self, TemplateError> {
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
    ) -> Result<Self, TemplateError> {
        Ok(Self {
            store: Store::new(dynamodb, &config),
            mailer: Mailer::new(ses, &config),
            templates: Templates::load()?,
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Serves one request at time `now`. Never fails: every error becomes a JSON answer.
pub async fn handle(app: &App, req: Request, now: Timestamp) -> Response<Body> {
    let started = Instant::now();
    let caller = caller::identify(&req, app.config.trusted_proxy_hops);
    let request_id = req
        .lambda_context_ref()
        .map(|ctx| ctx.request_id.clone())
        .unwrap_or_default();
    let parsed = request::check_method(req.method()).and_then(|()| request::challenge_id(&req));
    drop(req);

    let (rate, outcome) = serve(app, &caller, parsed, now).await;

    let response = response::build(
        &outcome.as_ref().map(|_| ()).map_err(Clone::clone),
        rate.as_ref(),
    );
    log_request(
        &request_id,
        &caller,
        &outcome,
        response.status().as_u16(),
        started,
        now,
    );
    response
}

/// Steps 1 to 8. Returns the caller's rate status (absent only when the
/// counter could not be reached) and the number of recipients on success.
async fn serve(
    app: &App,
    caller: &CallerIp,
    parsed: Result<ChallengeId, ApiError>,
    now: Timestamp,
) -> (Option<RateStatus>, Result<usize, ApiError>) {
    let config = &app.config;
    let window = RateWindow::containing(now, config.rate_limit_window_seconds);
    let count = count_request(app, caller, window);

    // Round 1: the counter and the challenge do not depend on each other.
    let (count, loaded) = match parsed {
        Ok(id) => {
            let (count, read) = tokio::join!(count, app.store.get_challenge(&id));
            (count, Ok((id, read)))
        }
        Err(err) => (count.await, Err(err)),
    };

    let rate = match count {
        Ok(rate) => rate,
        Err(err) => return (None, Err(err.into())),
    };
    if !rate.allowed {
        let retry_after = rate.retry_after(now);
        return (Some(rate), Err(ApiError::TooManyRequests { retry_after }));
    }
    let outcome = match loaded {
        Ok((id, read)) => deliver(app, &id, read, now).await,
        Err(err) => Err(err),
    };
    (Some(rate), outcome)
}

/// Step 1: one conditional increment of the caller's counter for this window.
async fn count_request(
    app: &App,
    caller: &CallerIp,
    window: RateWindow,
) -> Result<RateStatus, DependencyError> {
    let limit = app.config.rate_limit_max;
    let count = app
        .store
        .count_request(
            &window.counter_key(caller),
            window.counter_expire_at(),
            limit,
        )
        .await?;
    Ok(match count {
        Count::Counted(n) => RateStatus::counted(limit, n, window),
        Count::LimitReached => RateStatus::exceeded(limit, window),
    })
}

/// A code written to the challenge by this request, kept so it can be undone.
struct Written {
    hash: CodeHash,
    previous: PreviousCode,
}

/// Steps 3 to 7 for a well-formed, rate-allowed request.
async fn deliver(
    app: &App,
    id: &ChallengeId,
    read: Result<Option<Challenge>, DependencyError>,
    now: Timestamp,
) -> Result<usize, ApiError> {
    let config = &app.config;
    let challenge = read?.ok_or(ApiError::ChallengeNotFound)?;
    challenge.check_usable(now)?;

    let code = Code::generate().map_err(|e| DependencyError {
        service: "OS",
        operation: "getrandom",
        kind: FaultKind::Internal,
        detail: e.to_string(),
    })?;
    let hash = CodeHash::new(config.code_hmac_secret.as_bytes(), id.as_str(), &code);
    let code_expire_at = challenge.code_expire_at(now, config.code_ttl_seconds);

    // Round 2: the user read and the conditional rotation are independent;
    // a challenge already at its cap is not written at all.
    let user_read = app.store.get_user(&challenge.user_id);
    let (user, rotated) = match challenge.check_cap(config.max_codes_per_challenge, now) {
        Ok(()) => {
            let rotation = Rotation {
                challenge: &challenge,
                code_hash: &hash,
                code_expire_at,
                now_secs: now.secs(),
                max_codes: config.max_codes_per_challenge,
            };
            let (user, rotated) = tokio::join!(user_read, app.store.rotate_code(rotation));
            (user, rotated.map_err(ApiError::from))
        }
        Err(cap) => (user_read.await, Err(cap)),
    };
    let written = match &rotated {
        Ok(Rotated::Done(previous)) => Some(Written {
            hash: hash.clone(),
            previous: previous.clone(),
        }),
        _ => None,
    };

    let result = async {
        // Decide in the contract's order: user (step 4) before cap (step 5).
        let user = user?.ok_or(ApiError::UserNotFound)?;
        if user.verified_addresses.is_empty() {
            return Err(ApiError::NoVerifiedEmail);
        }
        if let Rotated::Refused(current) = rotated? {
            return Err(rotation_refusal(
                current.as_ref(),
                &challenge.user_id,
                config.max_codes_per_challenge,
                now,
            ));
        }
        // Round 3: send.
        send(app, &user, &code, code_expire_at, now).await?;
        Ok(user.verified_addresses.len())
    }
    .await;

    if let (Err(_), Some(written)) = (&result, written) {
        // The request failed after our write: put the challenge back.
        if let Err(err) = app
            .store
            .undo_rotation(id.as_str(), &written.hash, &written.previous)
            .await
        {
            tracing::error!(
                service = err.service,
                operation = err.operation,
                detail = %err.detail,
                "could not undo the code rotation of a failed request"
            );
        }
    }
    result
}

/// Step 7: one message to all the user's verified addresses.
async fn send(
    app: &App,
    user: &User,
    code: &Code,
    code_expire_at: i64,
    now: Timestamp,
) -> Result<(), ApiError> {
    let language = user
        .language
        .as_deref()
        .and_then(Language::resolve)
        .unwrap_or(app.config.default_language);
    let email = app.templates.render(&EmailInput {
        code,
        code_expire_at,
        display_name: user.display_name.as_deref(),
        language,
        now,
    });
    app.mailer.send(&user.verified_addresses, &email).await?;
    Ok(())
}

/// One log line and one metrics line per request. Never the code, its hash,
/// the secret or an address.
fn log_request(
    request_id: &str,
    caller: &CallerIp,
    outcome: &Result<usize, ApiError>,
    status: u16,
    started: Instant,
    now: Timestamp,
) {
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error_type = outcome
        .as_ref()
        .map_or_else(ApiError::error_type, |_| "none");
    let summary = match outcome {
        Ok(_) => "sent",
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
    match outcome {
        Ok(recipients) => tracing::info!(
            request_id,
            %caller,
            status,
            outcome = summary,
            error_type,
            recipients,
            duration_ms,
            "request served"
        ),
        Err(ApiError::Dependency(cause)) => tracing::error!(
            request_id,
            %caller,
            status,
            outcome = summary,
            error_type,
            service = cause.service,
            operation = cause.operation,
            cause = %cause.detail,
            duration_ms,
            "request failed"
        ),
        Err(_) => tracing::info!(
            request_id,
            %caller,
            status,
            outcome = summary,
            error_type,
            duration_ms,
            "request refused"
        ),
    }
}
