//! Turning an outcome into the HTTP answer: JSON body and the fixed headers.

use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::rate_limit::RateStatus;

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
    use crate::rate_limit::RateWindow;
    use crate::time::Timestamp;

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
}
