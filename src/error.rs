//! The API's errors, and the one place they become status, `errorType` and `error`.

use lambda_http::http::StatusCode;

/// Every way a request can fail, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Anything but POST.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The caller used up its requests for this window.
    #[error("rate limit exceeded")]
    TooManyRequests {
        /// Seconds until the window resets.
        retry_after: i64,
    },
    /// `challengeId` missing or invalid, or the body unreadable.
    #[error("challengeId is required")]
    ParameterRequired,
    /// No challenge with that id.
    #[error("challenge not found")]
    ChallengeNotFound,
    /// The challenge's `expireAt` has passed.
    #[error("challenge expired")]
    ChallengeExpired,
    /// The challenge is not an email challenge.
    #[error("invalid challenge method")]
    InvalidChallengeMethod,
    /// The challenge's user does not exist.
    #[error("user not found")]
    UserNotFound,
    /// The user has no verified address to send to.
    #[error("user has no verified email")]
    NoVerifiedEmail,
    /// The challenge already received `MAX_CODES_PER_CHALLENGE` codes.
    #[error("per-challenge code limit reached")]
    CodeLimitReached {
        /// Seconds until the challenge expires.
        retry_after: i64,
    },
    /// The challenge is inside its resend cooldown.
    #[error("please wait before requesting another code")]
    ResendCooldown {
        /// Seconds until the cooldown ends.
        retry_after: i64,
    },
    /// The user already received `MAX_CODES_PER_USER` codes in this window.
    #[error("too many codes sent to this user")]
    UserCodeLimitReached {
        /// Seconds until the user's window ends.
        retry_after: i64,
    },
    /// DynamoDB, SES or the random source failed.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// A failure of something outside the function. `detail` is for the log
/// only and never reaches a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {operation} failed ({kind:?}): {detail}")]
pub struct DependencyError {
    /// Which system failed.
    pub service: &'static str,
    /// The call that failed, e.g. `GetItem`.
    pub operation: &'static str,
    /// Whether retrying later may help.
    pub kind: FaultKind,
    /// The underlying error, for the log.
    pub detail: String,
}

impl DependencyError {
    /// A failure that retrying will not fix (a malformed item, a refused
    /// build, a broken invariant).
    pub fn internal(
        service: &'static str,
        operation: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            service,
            operation,
            kind: FaultKind::Internal,
            detail: detail.into(),
        }
    }
}

/// How a dependency failed, which decides 503 versus 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Throttled, timed out, unreachable or a server-side error: try again.
    Unavailable,
    /// Anything else (rejected request, missing table, denied access, …).
    Internal,
}

impl ApiError {
    /// HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests { .. }
            | Self::CodeLimitReached { .. }
            | Self::ResendCooldown { .. }
            | Self::UserCodeLimitReached { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ParameterRequired
            | Self::ChallengeNotFound
            | Self::ChallengeExpired
            | Self::InvalidChallengeMethod
            | Self::UserNotFound
            | Self::NoVerifiedEmail => StatusCode::BAD_REQUEST,
            Self::Dependency(e) => match e.kind {
                FaultKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                FaultKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The `errorType` of the answer.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "error-method-not-allowed",
            Self::TooManyRequests { .. }
            | Self::CodeLimitReached { .. }
            | Self::ResendCooldown { .. }
            | Self::UserCodeLimitReached { .. } => "error-too-many-requests",
            Self::ParameterRequired => "error-parameter-required",
            Self::ChallengeNotFound => "error-challenge-not-found",
            Self::ChallengeExpired => "error-challenge-expired",
            Self::InvalidChallengeMethod => "error-invalid-challenge-method",
            Self::UserNotFound => "error-user-not-found",
            Self::NoVerifiedEmail => "error-no-verified-email",
            Self::Dependency(e) => match e.kind {
                FaultKind::Unavailable => "error-service-unavailable",
                FaultKind::Internal => "error-internal",
            },
        }
    }

    /// The `error` text of the answer: fixed wording, nothing internal.
    pub fn message(&self) -> String {
        match self {
            Self::TooManyRequests { retry_after } => format!(
                "Error, too many requests. Please slow down. You must wait {retry_after} seconds \
                 before trying this endpoint again. [error-too-many-requests]"
            ),
            Self::CodeLimitReached { .. } => "too many codes sent for this challenge".into(),
            Self::ResendCooldown { retry_after } => {
                format!("Please wait {retry_after} seconds before requesting another code")
            }
            Self::UserCodeLimitReached { .. } => "too many codes sent to this user".into(),
            Self::Dependency(e) => match e.kind {
                FaultKind::Unavailable => {
                    "the service is temporarily unavailable, please try again later".into()
                }
                FaultKind::Internal => "an internal error occurred".into(),
            },
            other => other.to_string(),
        }
    }

    /// `Retry-After` seconds, for the answers that have one.
    pub fn retry_after(&self) -> Option<i64> {
        match self {
            Self::TooManyRequests { retry_after }
            | Self::CodeLimitReached { retry_after }
            | Self::ResendCooldown { retry_after }
            | Self::UserCodeLimitReached { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dependency(kind: FaultKind) -> ApiError {
        ApiError::Dependency(DependencyError {
            service: "DynamoDB",
            operation: "GetItem",
            kind,
            detail: "ResourceNotFoundException: table prod-challenges".into(),
        })
    }

    #[test]
    fn seed_errors_keep_their_exact_status_type_and_text() {
        let cases = [
            (
                ApiError::ParameterRequired,
                400,
                "error-parameter-required",
                "challengeId is required",
            ),
            (
                ApiError::ChallengeNotFound,
                400,
                "error-challenge-not-found",
                "challenge not found",
            ),
            (
                ApiError::ChallengeExpired,
                400,
                "error-challenge-expired",
                "challenge expired",
            ),
            (
                ApiError::InvalidChallengeMethod,
                400,
                "error-invalid-challenge-method",
                "invalid challenge method",
            ),
            (
                ApiError::UserNotFound,
                400,
                "error-user-not-found",
                "user not found",
            ),
            (
                ApiError::NoVerifiedEmail,
                400,
                "error-no-verified-email",
                "user has no verified email",
            ),
            (
                ApiError::MethodNotAllowed,
                405,
                "error-method-not-allowed",
                "method not allowed",
            ),
            (
                ApiError::CodeLimitReached { retry_after: 9 },
                429,
                "error-too-many-requests",
                "too many codes sent for this challenge",
            ),
            (
                ApiError::ResendCooldown { retry_after: 17 },
                429,
                "error-too-many-requests",
                "Please wait 17 seconds before requesting another code",
            ),
            (
                ApiError::UserCodeLimitReached { retry_after: 9 },
                429,
                "error-too-many-requests",
                "too many codes sent to this user",
            ),
        ];
        for (err, status, error_type, message) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.error_type(), error_type);
            assert_eq!(err.message(), message);
        }
    }

    #[test]
    fn rate_limit_message_names_the_wait() {
        let err = ApiError::TooManyRequests { retry_after: 42 };
        assert_eq!(
            err.message(),
            "Error, too many requests. Please slow down. You must wait 42 seconds before trying \
             this endpoint again. [error-too-many-requests]"
        );
        assert_eq!(err.retry_after(), Some(42));
        assert_eq!(
            ApiError::ResendCooldown { retry_after: 3 }.retry_after(),
            Some(3)
        );
        assert_eq!(
            ApiError::UserCodeLimitReached { retry_after: 4 }.retry_after(),
            Some(4)
        );
        assert_eq!(
            ApiError::CodeLimitReached { retry_after: 5 }.retry_after(),
            Some(5)
        );
        assert_eq!(ApiError::ChallengeNotFound.retry_after(), None);
    }

    #[test]
    fn dependency_failures_are_generic_and_leak_nothing() {
        let unavailable = dependency(FaultKind::Unavailable);
        assert_eq!(unavailable.status().as_u16(), 503);
        assert_eq!(unavailable.error_type(), "error-service-unavailable");
        let internal = dependency(FaultKind::Internal);
        assert_eq!(internal.status().as_u16(), 500);
        assert_eq!(internal.error_type(), "error-internal");
        for err in [unavailable, internal] {
            let text = err.message();
            assert!(
                !text.contains("prod-challenges") && !text.contains("Resource"),
                "{text}"
            );
        }
    }
}
