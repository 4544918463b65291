//! Reading SDK errors: which failure a call met, whether it may still have
//! been carried out, and how many attempts it took. Every dependency error
//! of the AWS side is built here.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata, SdkError};

use crate::domain::error::{DependencyError, FaultKind};

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
    DependencyError::new(service, operation, kind, detail)
}

/// A conditional write refused after the SDK retried it may have been
/// refused because of its own first attempt, applied but unanswered: then
/// its outcome is unknown, not a refusal (and it may have counted).
pub fn refused_unless_retried(
    service: &'static str,
    operation: &'static str,
    attempts: u32,
) -> Result<(), DependencyError> {
    if attempts > 1 {
        Err(DependencyError::unavailable(
            service,
            operation,
            format!("condition refused on attempt {attempts}: outcome unknown"),
        ))
    } else {
        Ok(())
    }
}

/// An item that does not have the shape this function reads.
pub fn malformed_item(
    service: &'static str,
    operation: &'static str,
    what: &str,
) -> DependencyError {
    DependencyError::internal(service, operation, format!("malformed item: {what}"))
}

/// A request the SDK would not build.
pub fn not_built(service: &'static str, operation: &'static str, what: &str) -> DependencyError {
    DependencyError::internal(service, operation, format!("{what} could not be built"))
}

/// A conditional write refused although the item it found passes every
/// condition: a broken invariant, not something a retry fixes.
pub fn unexplained_refusal(service: &'static str, operation: &'static str) -> DependencyError {
    DependencyError::internal(
        service,
        operation,
        "condition refused although the item looks acceptable",
    )
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
