//! Every way a request can fail, as the domain names it. The one place they
//! become status, `errorType` and `error` is `http::response`.

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
    /// A system outside the function failed (storage, mail, the random source).
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
    /// The failed call may still have been carried out (an attempt was lost
    /// after it was sent, or answered with a server error): a write it
    /// carried may have counted, a message may have gone out.
    pub may_have_applied: bool,
}

impl DependencyError {
    /// A failure of the given kind. Every dependency error is built here.
    pub fn new(
        service: &'static str,
        operation: &'static str,
        kind: FaultKind,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            service,
            operation,
            kind,
            detail: detail.into(),
            may_have_applied: false,
        }
    }

    /// The same failure, marked as one that may still have been carried out.
    #[must_use]
    pub fn applied_maybe(mut self, may_have_applied: bool) -> Self {
        self.may_have_applied = may_have_applied;
        self
    }

    /// A failure that retrying will not fix (a malformed item, a refused
    /// build, a broken invariant).
    pub fn internal(
        service: &'static str,
        operation: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(service, operation, FaultKind::Internal, detail)
    }

    /// A failure that may pass: throttled, timed out, unreachable, or an
    /// outcome that is not known.
    pub fn unavailable(
        service: &'static str,
        operation: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(service, operation, FaultKind::Unavailable, detail)
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
