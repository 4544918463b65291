//! Reading SDK failures: what each attempt of a call did on the wire, what
//! that means for the call (503 or 500; may it still have been carried
//! out?), and every dependency error of the AWS side, built here.
//!
//! What reached the dependency decides, attempt by attempt ([`Reach`]):
//!
//! | the attempt                                                       | [`Reach`]        | may have been carried out |
//! |-------------------------------------------------------------------|------------------|---------------------------|
//! | no connection was made: DNS failure, refused, no route, TLS       | `NeverSent`      | no                        |
//! | handshake failure, connect timeout, a timeout before one existed  |                  |                           |
//! | answered 4xx (throttling included: DynamoDB sends it as a 400)    | `Answered(4xx)`  | no                        |
//! | answered 5xx                                                      | `Answered(5xx)`  | DynamoDB: yes; SES: no    |
//! | answered 2xx (an answer the SDK could not read included)          | `Answered(2xx)`  | yes                       |
//! | a connection carried it, then a timeout or a cut with no answer   | `LostAfterSend`  | yes                       |
//!
//! A call may have been carried out when any of its attempts may have. A
//! server error is read per service ([`ErrorAnswers`]): SES answers an
//! error only for a message it did not accept; a DynamoDB write answered
//! 5xx may still have been applied.

use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::connection::CaptureSmithyConnection;

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

/// What one attempt of a call did on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// No connection was made, so the request never left.
    NeverSent,
    /// The service answered with this HTTP status.
    Answered(u16),
    /// A connection carried the request, then it timed out or was lost
    /// before an answer came.
    LostAfterSend,
}

/// What a service's error answers say about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorAnswers {
    /// A 5xx may come after the request was carried out (DynamoDB).
    #[default]
    ServerErrorsMayHaveApplied,
    /// Any error answer means the request was not carried out (SES: an
    /// error is answered instead of accepting the message).
    NeverApplied,
}

impl Reach {
    /// Whether the service, answering errors as `answers` says, may have
    /// carried this attempt out.
    pub fn may_have_applied(self, answers: ErrorAnswers) -> bool {
        match self {
            Self::NeverSent => false,
            Self::Answered(status) if (400..500).contains(&status) => false,
            Self::Answered(status) if status >= 500 => {
                answers == ErrorAnswers::ServerErrorsMayHaveApplied
            }
            Self::Answered(_) | Self::LostAfterSend => true,
        }
    }
}

/// Records, for one call, what each of its attempts did ([`Reach`]). Given
/// to the call as an interceptor; read once the call has ended.
#[derive(Debug, Clone, Default)]
pub struct AttemptLog(Arc<Mutex<Attempts>>, ErrorAnswers);

#[derive(Debug, Default)]
struct Attempts {
    done: Vec<Reach>,
    /// The current attempt reached the transmit step.
    transmitted: bool,
    /// Where the HTTP client reports the current attempt's connection.
    connection: Option<CaptureSmithyConnection>,
}

impl AttemptLog {
    /// A log for a service whose error answers read as `answers` says.
    pub fn new(answers: ErrorAnswers) -> Self {
        Self(Arc::default(), answers)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Attempts) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What each attempt so far did, in order.
    pub fn reaches(&self) -> Vec<Reach> {
        self.with(|a| a.done.clone())
    }

    /// Attempts so far.
    pub fn count(&self) -> u32 {
        self.with(|a| u32::try_from(a.done.len()).unwrap_or(u32::MAX))
    }

    /// Whether any attempt so far may have been carried out.
    pub fn may_have_applied(&self) -> bool {
        let answers = self.1;
        self.with(|a| a.done.iter().any(|r| r.may_have_applied(answers)))
    }

    /// Whether an attempt before the last may have been carried out.
    pub fn earlier_may_have_applied(&self) -> bool {
        let answers = self.1;
        self.with(|a| match a.done.split_last() {
            Some((_, earlier)) => earlier.iter().any(|r| r.may_have_applied(answers)),
            None => false,
        })
    }
}

impl Intercept for AttemptLog {
    fn name(&self) -> &'static str {
        "AttemptLog"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.with(|a| {
            a.transmitted = false;
            a.connection = None;
        });
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The SDK's connection-poisoning interceptor puts a capture on every
        // request and the HTTP client fills it once a connection (TLS
        // included) is up. Share that one; add one only if it is missing.
        let request = context.request_mut();
        let capture = match request.extension::<CaptureSmithyConnection>() {
            Some(capture) => capture.clone(),
            None => {
                let capture = CaptureSmithyConnection::new();
                request.add_extension(capture.clone());
                capture
            }
        };
        self.with(|a| {
            a.transmitted = true;
            a.connection = Some(capture);
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let status = context.response().map(|r| r.status().as_u16());
        self.with(|a| {
            let connected = a.connection.as_ref().map(|c| c.get().is_some());
            let reach = attempt_reach(a.transmitted, connected, status);
            a.done.push(reach);
        });
        Ok(())
    }
}

/// One attempt's [`Reach`] from what was seen of it: whether it got to the
/// transmit step, whether a connection was up (`None`: the HTTP client
/// does not say, so it may have been), and the answer's status.
fn attempt_reach(transmitted: bool, connected: Option<bool>, status: Option<u16>) -> Reach {
    match (transmitted, connected, status) {
        (_, _, Some(status)) => Reach::Answered(status),
        (false, _, None) | (true, Some(false), None) => Reach::NeverSent,
        (true, Some(true) | None, None) => Reach::LostAfterSend,
    }
}

/// Classifies a failed call: 503 (throttled, timed out, unreachable, a
/// server error) or 500 (anything else), and whether it may still have been
/// carried out (from `log`). The detail keeps the error's kind, code and
/// HTTP status only: service messages can quote recipients (SES does), so
/// they are left out of logs.
pub fn dependency_error<E>(
    service: &'static str,
    operation: &'static str,
    err: &SdkError<E, HttpResponse>,
    log: &AttemptLog,
) -> DependencyError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (kind, detail) = match err {
        SdkError::TimeoutError(_) => (FaultKind::Unavailable, "timed out".to_string()),
        SdkError::DispatchFailure(failure) => {
            let what = if let Some(tls) = tls_failure(err) {
                tls
            } else if failure.is_timeout() {
                "timed out".to_string()
            } else if failure.is_io() {
                "connection failed".to_string()
            } else {
                "could not send the request".to_string()
            };
            (FaultKind::Unavailable, what)
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
    let reaches = log.reaches();
    let last = reaches.last().map_or("none", |r| match r {
        Reach::NeverSent => "never sent",
        Reach::Answered(_) => "answered",
        Reach::LostAfterSend => "lost after it was sent",
    });
    DependencyError::new(
        service,
        operation,
        kind,
        format!("{detail}; {} attempt(s), the last {last}", reaches.len()),
    )
    .applied_maybe(log.may_have_applied())
}

/// The TLS failure somewhere in `err`'s chain of causes, named: rustls's own
/// error says which check refused the peer (an unknown issuer, another host
/// name, an expired certificate), so the log tells a trust problem from an
/// outage. It holds no request data.
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(_) => format!("TLS certificate refused: {tls}"),
                _ => format!("TLS handshake failed: {tls}"),
            });
        }
        // An I/O error's `source` skips the error it wraps (hyper-rustls
        // wraps rustls's that way): step into it instead.
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

/// A conditional write refused on its last attempt is a plain refusal when
/// no earlier attempt may have been carried out. Otherwise that attempt may
/// be what the condition now refuses: the outcome is unknown (503), and the
/// write may have counted.
pub fn refusal(
    service: &'static str,
    operation: &'static str,
    log: &AttemptLog,
) -> Result<(), DependencyError> {
    if log.may_have_applied() {
        Err(DependencyError::unavailable(
            service,
            operation,
            format!(
                "condition refused on attempt {} after an attempt that may have been applied: outcome unknown",
                log.count()
            ),
        )
        .applied_maybe(true))
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

/// A success answer without what it must carry (SES's message id): the
/// call was carried out, but its result cannot be used.
pub fn answer_without(
    service: &'static str,
    operation: &'static str,
    what: &str,
) -> DependencyError {
    DependencyError::internal(service, operation, format!("success answer without {what}"))
        .applied_maybe(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_failure_is_named_through_wrapping_io_errors() {
        use rustls::{CertificateError, Error as Tls};
        // As hyper-rustls reports a refused certificate: rustls's error in
        // an I/O error inside another I/O error (whose `source` skips it).
        let refused = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Tls::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        assert_eq!(
            tls_failure(&refused).as_deref(),
            Some("TLS certificate refused: invalid peer certificate: UnknownIssuer")
        );
        let other = std::io::Error::other(Tls::NoCertificatesPresented);
        assert!(tls_failure(&other)
            .unwrap()
            .starts_with("TLS handshake failed: "));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_failure(&plain), None);
    }

    #[test]
    fn each_attempt_is_read_from_what_was_seen_of_it() {
        // (got to transmit, connection up, status) → reach
        let cases = [
            ((false, None, None), Reach::NeverSent),
            ((false, Some(false), None), Reach::NeverSent),
            ((true, Some(false), None), Reach::NeverSent),
            ((true, Some(true), None), Reach::LostAfterSend),
            ((true, None, None), Reach::LostAfterSend),
            ((true, Some(true), Some(400)), Reach::Answered(400)),
            ((true, Some(true), Some(503)), Reach::Answered(503)),
            ((true, None, Some(200)), Reach::Answered(200)),
        ];
        for ((transmitted, connected, status), want) in cases {
            assert_eq!(
                attempt_reach(transmitted, connected, status),
                want,
                "{transmitted} {connected:?} {status:?}"
            );
        }
    }

    #[test]
    fn what_each_attempt_may_have_carried_out_per_service() {
        // reach → (DynamoDB: may have applied, SES: may have accepted)
        let cases = [
            (Reach::NeverSent, (false, false)),
            (Reach::Answered(400), (false, false)),
            (Reach::Answered(403), (false, false)),
            (Reach::Answered(429), (false, false)),
            (Reach::Answered(499), (false, false)),
            (Reach::Answered(500), (true, false)),
            (Reach::Answered(503), (true, false)),
            (Reach::Answered(200), (true, true)),
            (Reach::Answered(399), (true, true)),
            (Reach::LostAfterSend, (true, true)),
        ];
        for (reach, (dynamodb, ses)) in cases {
            let read = |answers| reach.may_have_applied(answers);
            assert_eq!(
                read(ErrorAnswers::ServerErrorsMayHaveApplied),
                dynamodb,
                "DynamoDB {reach:?}"
            );
            assert_eq!(read(ErrorAnswers::NeverApplied), ses, "SES {reach:?}");
        }
    }

    fn log_of(reaches: &[Reach]) -> AttemptLog {
        let log = AttemptLog::new(ErrorAnswers::ServerErrorsMayHaveApplied);
        log.with(|a| a.done = reaches.to_vec());
        log
    }

    #[test]
    fn a_refusal_after_attempts_that_were_not_applied_is_plain() {
        let throttled_then_refused = log_of(&[Reach::Answered(400), Reach::Answered(400)]);
        assert!(refusal("S", "Op", &throttled_then_refused).is_ok());
        let never_sent_then_refused = log_of(&[Reach::NeverSent, Reach::Answered(400)]);
        assert!(refusal("S", "Op", &never_sent_then_refused).is_ok());
        assert!(refusal("S", "Op", &log_of(&[Reach::Answered(400)])).is_ok());
    }

    #[test]
    fn a_refusal_after_an_attempt_that_may_have_applied_is_unknown() {
        for first in [Reach::LostAfterSend, Reach::Answered(500)] {
            let err = refusal("S", "Op", &log_of(&[first, Reach::Answered(400)])).unwrap_err();
            assert_eq!(err.kind, FaultKind::Unavailable);
            assert!(err.may_have_applied, "{first:?}");
        }
    }

    #[test]
    fn the_log_gives_back_what_each_attempt_did_in_order() {
        let attempts = [Reach::NeverSent, Reach::LostAfterSend, Reach::Answered(400)];
        let log = log_of(&attempts);
        assert_eq!(log.reaches(), attempts.to_vec());
        assert_eq!(log.count(), 3);
        assert_eq!(log_of(&[]).count(), 0);
    }

    #[test]
    fn only_an_attempt_before_the_last_is_earlier() {
        let lost = Reach::LostAfterSend;
        let refused = Reach::Answered(400);
        assert!(log_of(&[lost, refused]).earlier_may_have_applied());
        assert!(!log_of(&[refused, lost]).earlier_may_have_applied());
        assert!(!log_of(&[lost]).earlier_may_have_applied());
        assert!(!log_of(&[]).earlier_may_have_applied());
        assert!(log_of(&[lost]).may_have_applied());
        assert!(!log_of(&[refused, refused]).may_have_applied());
    }

    #[test]
    fn an_unknown_refusal_names_its_attempt() {
        let log = log_of(&[
            Reach::LostAfterSend,
            Reach::Answered(400),
            Reach::Answered(400),
        ]);
        let err = refusal("S", "Op", &log).unwrap_err();
        assert!(err.detail.contains("on attempt 3 "), "{}", err.detail);
    }

    type TestError =
        SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, HttpResponse>;

    fn answered(status: u16, code: &str) -> TestError {
        let meta = aws_sdk_dynamodb::error::ErrorMetadata::builder()
            .code(code)
            .build();
        let raw = HttpResponse::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
            "{}".into(),
        );
        SdkError::service_error(
            aws_sdk_dynamodb::operation::update_item::UpdateItemError::generic(meta),
            raw,
        )
    }

    fn read(err: &TestError, log: &AttemptLog) -> (FaultKind, String, bool) {
        let e = dependency_error("S", "Op", err, log);
        assert_eq!((e.service, e.operation), ("S", "Op"));
        (e.kind, e.detail, e.may_have_applied)
    }

    #[test]
    fn failures_that_never_got_an_answer_are_unavailable() {
        use aws_sdk_dynamodb::error::ConnectorError;
        let log = log_of(&[Reach::NeverSent]);
        let cases: [(TestError, &str); 4] = [
            (SdkError::timeout_error("slow"), "timed out"),
            (
                SdkError::dispatch_failure(ConnectorError::timeout("slow".into())),
                "timed out",
            ),
            (
                SdkError::dispatch_failure(ConnectorError::io("reset".into())),
                "connection failed",
            ),
            (
                SdkError::dispatch_failure(ConnectorError::other("odd".into(), None)),
                "could not send the request",
            ),
        ];
        for (err, what) in cases {
            let (kind, detail, applied) = read(&err, &log);
            assert_eq!(kind, FaultKind::Unavailable, "{what}");
            assert_eq!(detail, format!("{what}; 1 attempt(s), the last never sent"));
            assert!(!applied);
        }
    }

    #[test]
    fn an_answered_error_is_unavailable_when_busy_or_a_server_error() {
        // (status, code) → unavailable
        let cases = [
            ((400, "ThrottlingException"), true),
            ((400, "ProvisionedThroughputExceededException"), true),
            ((400, "ValidationException"), false),
            ((403, "AccessDeniedException"), false),
            ((499, "Whatever"), false),
            ((429, "Whatever"), true),
            ((500, "Whatever"), true),
            ((503, "Whatever"), true),
        ];
        let log = log_of(&[Reach::Answered(400)]);
        for ((status, code), unavailable) in cases {
            let (kind, detail, _) = read(&answered(status, code), &log);
            let want = if unavailable {
                FaultKind::Unavailable
            } else {
                FaultKind::Internal
            };
            assert_eq!(kind, want, "{status} {code}");
            assert_eq!(
                detail,
                format!("service error {code}, HTTP {status}; 1 attempt(s), the last answered")
            );
        }
    }

    #[test]
    fn a_request_that_could_not_be_built_is_internal() {
        let err: TestError = SdkError::construction_failure("bad input");
        let (kind, detail, applied) = read(&err, &log_of(&[]));
        assert_eq!(kind, FaultKind::Internal);
        assert_eq!(
            detail,
            "request could not be built; 0 attempt(s), the last none"
        );
        assert!(!applied);
    }

    #[test]
    fn the_detail_names_the_last_attempt_and_the_log_says_if_it_may_have_applied() {
        let err: TestError = SdkError::timeout_error("slow");
        let log = log_of(&[Reach::Answered(500), Reach::LostAfterSend]);
        let (_, detail, applied) = read(&err, &log);
        assert_eq!(
            detail,
            "timed out; 2 attempt(s), the last lost after it was sent"
        );
        assert!(applied);
    }

    #[test]
    fn the_other_builders_name_what_failed() {
        let malformed = malformed_item("S", "GetItem", "codesSent");
        assert_eq!(malformed.kind, FaultKind::Internal);
        assert_eq!(malformed.detail, "malformed item: codesSent");
        assert!(!malformed.may_have_applied);
        let unbuilt = not_built("S", "SendEmail", "message");
        assert_eq!(unbuilt.detail, "message could not be built");
        assert_eq!(unbuilt.kind, FaultKind::Internal);
        let odd = unexplained_refusal("S", "UpdateItem");
        assert_eq!(odd.kind, FaultKind::Internal);
        assert_eq!(odd.operation, "UpdateItem");
        assert!(odd.detail.contains("condition refused"), "{}", odd.detail);
    }

    #[test]
    fn a_success_without_its_result_is_internal_and_may_have_applied() {
        let err = answer_without("SES", "SendEmail", "a message id");
        assert_eq!(err.kind, FaultKind::Internal);
        assert!(err.may_have_applied);
    }
}
