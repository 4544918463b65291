//! What one request did ([`Trace`]), and its one log line and metrics line.

use std::time::Instant;

use crate::domain::caller::CallerIp;
use crate::domain::error::ApiError;
use crate::domain::time::Timestamp;
use crate::metrics::RequestMetrics;

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

/// Which limit a 429 came from (the four share one `errorType`), for the log.
pub fn limit_name(err: &ApiError) -> &'static str {
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
pub fn log_request(
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
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The log lines of one `log_request` call, on this thread only.
    fn logged(outcome: &Result<(), ApiError>, trace: &Trace, started: Instant) -> Vec<String> {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = lambda_http::tracing::subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            log_request(
                "req-1",
                &CallerIp::Unknown,
                outcome,
                trace,
                200,
                started,
                Timestamp::from_secs(1_000),
            );
        });
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn each_fate_has_its_log_name() {
        let cases = [
            (ReservationFate::None, "none"),
            (ReservationFate::Used, "used"),
            (ReservationFate::GivenBack, "given_back"),
            (ReservationFate::KeptUnsent, "kept_unsent"),
        ];
        for (fate, name) in cases {
            assert_eq!(fate.as_str(), name);
        }
        let trace = Trace {
            reservation: ReservationFate::GivenBack,
            ..Trace::default()
        };
        let lines = logged(&Ok(()), &trace, Instant::now());
        assert!(lines[0].contains("reservation=\"given_back\""), "{lines:?}");
    }

    #[test]
    fn the_duration_is_logged_in_milliseconds() {
        let started = Instant::now().checked_sub(Duration::from_secs(3)).unwrap();
        let lines = logged(&Ok(()), &Trace::default(), started);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let ms: f64 = lines[0]
            .split("duration_ms=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        // At least the 3 s that had passed; the upper bound is only a guard
        // against seconds or microseconds.
        assert!((3_000.0..3_600_000.0).contains(&ms), "{ms}");
    }

    #[test]
    fn a_retried_reservation_write_adds_a_warning() {
        for (attempts, warned) in [(0, false), (1, false), (2, true), (3, true)] {
            let trace = Trace {
                reserve_attempts: attempts,
                ..Trace::default()
            };
            let lines = logged(&Ok(()), &trace, Instant::now());
            let warnings = lines.iter().filter(|l| l.contains("was retried")).count();
            assert_eq!(warnings, usize::from(warned), "{attempts}: {lines:?}");
            assert!(lines.last().unwrap().contains("request served"));
        }
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
