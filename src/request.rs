//! Reading `challengeId` out of the request body (JSON or form), exactly as sent.

use lambda_http::http::{header::CONTENT_TYPE, HeaderMap, Method};
use lambda_http::{Body, Request};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// Longest accepted `challengeId`, in UTF-8 bytes.
pub const MAX_CHALLENGE_ID_BYTES: usize = 256;

/// A `challengeId` that passed validation: non-blank, at most 256 bytes, no
/// control characters. Kept exactly as the caller sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeId(String);

impl ChallengeId {
    /// Validates a raw value (see the contract, section 2, step 2).
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let valid = !raw.trim().is_empty()
            && raw.len() <= MAX_CHALLENGE_ID_BYTES
            && !raw.chars().any(char::is_control);
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::ParameterRequired)
        }
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything but POST is refused (after the rate limit has counted it).
pub fn check_method(method: &Method) -> Result<(), ApiError> {
    if method == Method::POST {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

/// Extracts and validates `challengeId` from the request body.
pub fn challenge_id(req: &Request) -> Result<ChallengeId, ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if is_form(req.headers()) {
        from_form(bytes)
    } else {
        from_json(bytes)
    }
}

/// `application/x-www-form-urlencoded`, any case, parameters allowed.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

#[derive(Deserialize)]
struct JsonBody {
    // Other properties are ignored; a repeated `challengeId` is a parse
    // error, so an ambiguous body is refused rather than guessed.
    #[serde(rename = "challengeId", default)]
    challenge_id: Option<Value>,
}

fn from_json(bytes: &[u8]) -> Result<ChallengeId, ApiError> {
    let body: JsonBody = serde_json::from_slice(bytes).map_err(|_| ApiError::ParameterRequired)?;
    match body.challenge_id {
        Some(Value::String(raw)) => ChallengeId::parse(&raw),
        _ => Err(ApiError::ParameterRequired),
    }
}

fn from_form(bytes: &[u8]) -> Result<ChallengeId, ApiError> {
    let mut found = None;
    for (key, value) in form_urlencoded::parse(bytes) {
        if key == "challengeId" {
            if found.is_some() {
                return Err(ApiError::ParameterRequired);
            }
            found = Some(value);
        }
    }
    found.map_or(Err(ApiError::ParameterRequired), |v| ChallengeId::parse(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http;

    fn request(content_type: Option<&str>, body: Body) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        builder.body(body).unwrap()
    }

    fn parse_json(body: &str) -> Result<String, ApiError> {
        challenge_id(&request(Some("application/json"), Body::from(body))).map(|id| id.0)
    }

    fn parse_form(body: &str) -> Result<String, ApiError> {
        let req = request(Some("application/x-www-form-urlencoded"), Body::from(body));
        challenge_id(&req).map(|id| id.0)
    }

    #[test]
    fn json_body_yields_the_id_as_sent() {
        assert_eq!(parse_json(r#"{"challengeId":"Ab c1"}"#).unwrap(), "Ab c1");
        assert_eq!(
            parse_json(r#"{"challengeId":" x "}"#).unwrap(),
            " x ",
            "not trimmed"
        );
        assert_eq!(
            parse_json(r#"{"other":[1,{"a":2}],"challengeId":"k"}"#).unwrap(),
            "k",
            "other properties are ignored"
        );
    }

    #[test]
    fn missing_content_type_and_binary_bodies_are_read_as_json() {
        let req = request(None, Body::from(r#"{"challengeId":"abc"}"#));
        assert_eq!(challenge_id(&req).unwrap().0, "abc");
        let req = request(None, Body::Binary(br#"{"challengeId":"abc"}"#.to_vec()));
        assert_eq!(challenge_id(&req).unwrap().0, "abc");
        let req = request(Some("text/plain"), Body::from(r#"{"challengeId":"abc"}"#));
        assert_eq!(challenge_id(&req).unwrap().0, "abc");
    }

    #[test]
    fn invalid_bodies_are_parameter_required() {
        for body in [
            "",
            "not json",
            "[]",
            "\"challengeId\"",
            "null",
            "{}",
            r#"{"challengeId":null}"#,
            r#"{"challengeId":12}"#,
            r#"{"challengeId":true}"#,
            r#"{"challengeId":["a"]}"#,
            r#"{"challengeId":{"S":"a"}}"#,
            r#"{"challengeId":""}"#,
            r#"{"challengeId":"   "}"#,
            r#"{"challengeId":"\u00a0\u2003"}"#,
            r#"{"challengeId":"a\u0000b"}"#,
            r#"{"challengeId":"a\nb"}"#,
            r#"{"challengeId":"a\u007fb"}"#,
            r#"{"challengeId":"a\u0085b"}"#,
            r#"{"challengeId":"a","challengeId":"b"}"#,
            r#"{"challengeid":"a"}"#,
            r#"{"challengeId":"a""#,
        ] {
            assert_eq!(
                parse_json(body),
                Err(ApiError::ParameterRequired),
                "{body:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_parameter_required() {
        let req = request(None, Body::Binary(b"{\"challengeId\":\"\xff\"}".to_vec()));
        assert_eq!(challenge_id(&req), Err(ApiError::ParameterRequired));
    }

    #[test]
    fn length_limit_is_256_utf8_bytes() {
        let ok = "a".repeat(256);
        assert_eq!(
            parse_json(&format!(r#"{{"challengeId":"{ok}"}}"#)).unwrap(),
            ok
        );
        let long = "a".repeat(257);
        assert!(parse_json(&format!(r#"{{"challengeId":"{long}"}}"#)).is_err());
        // 128 two-byte characters fit; 129 do not.
        let wide = "é".repeat(128);
        assert!(parse_json(&format!(r#"{{"challengeId":"{wide}"}}"#)).is_ok());
        let wider = "é".repeat(129);
        assert!(parse_json(&format!(r#"{{"challengeId":"{wider}"}}"#)).is_err());
    }

    #[test]
    fn form_bodies_decode_plus_and_percent_and_keys_are_exact() {
        assert_eq!(parse_form("challengeId=abc").unwrap(), "abc");
        assert_eq!(parse_form("x=1&challengeId=a+b%2Bc%25").unwrap(), "a b+c%");
        assert!(
            parse_form("challengeid=abc").is_err(),
            "key is case-sensitive"
        );
        assert!(parse_form("challengeId=").is_err());
        assert!(parse_form("challengeId=%0A").is_err(), "control character");
        assert!(
            parse_form("challengeId=a&challengeId=b").is_err(),
            "ambiguous"
        );
        assert!(parse_form("").is_err());
        let req = request(
            Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            Body::from("challengeId=abc"),
        );
        assert_eq!(challenge_id(&req).unwrap().0, "abc");
    }

    #[test]
    fn json_sent_with_a_form_content_type_is_not_it() {
        assert!(parse_form(r#"{"challengeId":"abc"}"#).is_err());
    }

    #[test]
    fn only_post_is_allowed() {
        assert!(check_method(&Method::POST).is_ok());
        for m in [
            Method::GET,
            Method::PUT,
            Method::HEAD,
            Method::OPTIONS,
            Method::DELETE,
        ] {
            assert_eq!(check_method(&m), Err(ApiError::MethodNotAllowed));
        }
    }
}
