//! Shared AWS SDK set-up (timeouts, retries) and the mapping of SDK errors
//! onto [`DependencyError`]. Nothing outside `store` and `mailer` sees SDK types.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{DependencyError, FaultKind};

/// Time allowed to open a connection (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Time allowed for one attempt of a call, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Time allowed for a whole call, retries included. The SDK has no read
/// timeout of its own, so without this a silent peer would hold the request
/// until the Lambda timeout.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Attempts per call under the standard retry strategy (throttling included).
pub const MAX_ATTEMPTS: u32 = 3;
/// First retry back-off. The SDK's default (1 s) would spend half of
/// `OPERATION_TIMEOUT` on one wait; DynamoDB and SES answer in milliseconds.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Loads region and credentials the standard way (environment, profile, …),
/// with this function's timeouts and retries. Makes no network call.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(retry_config())
        .load()
        .await
}

/// The retry configuration every client uses.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
}

/// The timeout configuration every client uses.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// Service error codes that mean "busy, try again".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// Classifies an SDK error. The detail keeps the error's kind, code and
/// HTTP status only: service messages can quote recipients (SES does), so
/// they are left out of logs.
pub fn dependency_error<E>(
    service: &'static str,
    operation: &'static str,
    err: &SdkError<E, HttpResponse>,
) -> DependencyError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (kind, detail) = match err {
        SdkError::TimeoutError(_) => (FaultKind::Unavailable, "timed out".to_string()),
        SdkError::DispatchFailure(failure) => {
            let what = if failure.is_timeout() {
                "timed out"
            } else if failure.is_io() {
                "connection failed"
            } else {
                "could not send the request"
            };
            (FaultKind::Unavailable, what.to_string())
        }
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let code = err.code().unwrap_or("unknown");
            let transient =
                TRANSIENT_CODES.contains(&code) || status.is_some_and(|s| s >= 500 || s == 429);
            let kind = if transient {
                FaultKind::Unavailable
            } else {
                FaultKind::Internal
            };
            (
                kind,
                format!("service error {code}, HTTP {}", status.unwrap_or(0)),
            )
        }
        _ => (
            FaultKind::Internal,
            "request could not be built".to_string(),
        ),
    };
    DependencyError {
        service,
        operation,
        kind,
        detail,
    }
}

/// Whether a failed call may still have been carried out by the service:
/// false only when the service answered with an error, or the request
/// never left (the connection was refused or timed out while opening).
pub fn may_have_been_applied<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: std::error::Error + 'static,
{
    match err {
        SdkError::ConstructionFailure(_) | SdkError::ServiceError(_) => false,
        SdkError::ResponseError(_) => err.raw_response().is_some_and(|r| r.status().is_success()),
        // No read timeout is configured, so a dispatch timeout is the
        // connect timeout: nothing was sent.
        SdkError::DispatchFailure(failure) => !(failure.is_timeout() || is_refused(err)),
        _ => true,
    }
}

/// A connection refused by the peer, anywhere in the error's sources.
fn is_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(current) = source {
        if current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = current.source();
    }
    false
}

/// Counts the attempts the SDK makes for one call, so a retried write (which
/// may have been applied twice) can be logged.
#[derive(Debug, Clone, Default)]
pub struct AttemptCounter(Arc<AtomicU32>);

impl AttemptCounter {
    /// Attempts so far.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "AttemptCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
