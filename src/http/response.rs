//! Turning an outcome into the HTTP answer: the one place an error becomes
//! status, `errorType` and `error`, then the JSON body and the fixed headers.

use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::json;

use crate::domain::error::{ApiError, FaultKind};
use crate::domain::rate_window::RateStatus;

/// The answer each error gets.
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
}

/// Builds the answer for `outcome`. `rate` is absent only when the counter
/// itself could not be reached.
pub fn build(outcome: &Result<(), ApiError>, rate: Option<&RateStatus>) -> Response<Body> {
    let (status, body) = match outcome {
        Ok(()) => (StatusCode::OK, json!({ "success": true })),
        Err(err) => (
            err.status(),
            json!({ "success": false, "error": err.message(), "errorType": err.error_type() }),
        ),
    };
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(rate) = rate {
        headers.insert("x-ratelimit-limit", rate.limit.into());
        headers.insert("x-ratelimit-remaining", rate.remaining.into());
        headers.insert("x-ratelimit-reset", rate.reset_millis().into());
    }
    if let Err(err) = outcome {
        if let Some(seconds) = err.retry_after() {
            headers.insert(RETRY_AFTER, seconds.into());
        }
        if *err == ApiError::MethodNotAllowed {
            headers.insert("allow", HeaderValue::from_static("POST"));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::DependencyError;
    use crate::domain::rate_window::RateWindow;
    use crate::domain::time::Timestamp;

    fn body_json(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    fn rate() -> RateStatus {
        RateStatus::counted(5, 1, RateWindow::containing(Timestamp::from_secs(61), 60))
    }

    #[test]
    fn success_is_a_json_boolean_with_all_headers() {
        let response = build(&Ok(()), Some(&rate()));
        assert_eq!(response.status(), 200);
        assert_eq!(body_json(&response), json!({"success": true}));
        let h = response.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-ratelimit-limit"], "5");
        assert_eq!(h["x-ratelimit-remaining"], "4");
        assert_eq!(h["x-ratelimit-reset"], "120000");
        assert!(h.get("retry-after").is_none());
    }

    #[test]
    fn errors_carry_type_text_and_their_extra_headers() {
        let response = build(
            &Err(ApiError::TooManyRequests { retry_after: 7 }),
            Some(&rate()),
        );
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(body_json(&response)["success"], json!(false));
        assert_eq!(body_json(&response)["errorType"], "error-too-many-requests");

        let response = build(&Err(ApiError::MethodNotAllowed), Some(&rate()));
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
    }

    #[test]
    fn without_a_counter_the_rate_headers_are_omitted() {
        let response = build(&Err(ApiError::ChallengeNotFound), None);
        assert!(response.headers().get("x-ratelimit-limit").is_none());
        assert_eq!(response.headers()["cache-control"], "no-store");
    }

    fn dependency(kind: FaultKind) -> ApiError {
        ApiError::Dependency(DependencyError::new(
            "DynamoDB",
            "GetItem",
            kind,
            "ResourceNotFoundException: table prod-challenges",
        ))
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
