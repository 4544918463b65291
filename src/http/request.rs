//! The event's method and body: `challengeId` read out of the body (JSON or
//! form), exactly as sent.

use lambda_http::http::{header::CONTENT_TYPE, HeaderMap, Method};
use lambda_http::{Body, Request};
use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::domain::challenge::ChallengeId;
use crate::domain::error::ApiError;

/// Everything but POST is refused (after the rate limit has counted it).
pub fn check_method(method: &Method) -> Result<(), ApiError> {
    if method == Method::POST {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

/// Extracts and validates `challengeId` from the request body. The body as a
/// whole must be valid UTF-8, whatever the content type.
pub fn challenge_id(req: &Request) -> Result<ChallengeId, ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::ParameterRequired)?;
    // A leading byte-order mark makes any body invalid, a form's included
    // (JSON refuses it anyway; a form would read it as part of a key).
    if text.starts_with('\u{feff}') {
        return Err(ApiError::ParameterRequired);
    }
    if is_form(req.headers()) {
        from_form(text)
    } else {
        from_json(text)
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

/// The one property of the body this endpoint reads. Deserialised straight
/// from a JSON object: any other top-level value (an array holding an id
/// included) is a type error, and so is a repeated `challengeId`.
struct JsonBody {
    challenge_id: Option<Value>,
}

impl<'de> Deserialize<'de> for JsonBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(JsonBodyVisitor)
    }
}

struct JsonBodyVisitor;

impl<'de> Visitor<'de> for JsonBodyVisitor {
    type Value = JsonBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonBody, A::Error> {
        let mut challenge_id = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "challengeId" {
                if challenge_id.is_some() {
                    return Err(de::Error::duplicate_field("challengeId"));
                }
                challenge_id = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(JsonBody { challenge_id })
    }
}

fn from_json(text: &str) -> Result<ChallengeId, ApiError> {
    let body: JsonBody = serde_json::from_str(text).map_err(|_| ApiError::ParameterRequired)?;
    // serde_json skips ignored strings without decoding their escapes.
    if has_lone_surrogate_escape(text) {
        return Err(ApiError::ParameterRequired);
    }
    match body.challenge_id {
        Some(Value::String(raw)) => ChallengeId::parse(&raw),
        _ => Err(ApiError::ParameterRequired),
    }
}

/// Whether a syntactically valid JSON text holds a `\uXXXX` escape of a
/// surrogate that is not part of a high-low pair. In valid JSON a backslash
/// only ever starts an escape inside a string, so a left-to-right scan of
/// the escapes is exact.
fn has_lone_surrogate_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let unit_at = |i: usize| -> Option<u16> {
        let hex = bytes.get(i..i + 4)?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2; // \n, \", \\ and the like
            continue;
        }
        let Some(unit) = unit_at(i + 2) else {
            return true;
        };
        i += 6;
        match unit {
            0xD800..=0xDBFF => {
                let low = (bytes.get(i..i + 2) == Some(&b"\\u"[..]))
                    .then(|| unit_at(i + 2))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => i += 6,
                    _ => return true,
                }
            }
            0xDC00..=0xDFFF => return true,
            _ => {}
        }
    }
    false
}

/// `challengeId=...` from a form body. Only that field is decoded, and its
/// decoded bytes must be UTF-8; a repeated field is ambiguous and refused.
fn from_form(text: &str) -> Result<ChallengeId, ApiError> {
    let mut found = None;
    for pair in text.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(key).as_deref() != Some("challengeId") {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::ParameterRequired);
        }
        found = Some(form_decode(value).ok_or(ApiError::ParameterRequired)?);
    }
    found.map_or(Err(ApiError::ParameterRequired), |v| ChallengeId::parse(&v))
}

/// Form decoding: `+` is a space, `%XX` a byte; `None` unless the result is UTF-8.
fn form_decode(raw: &str) -> Option<String> {
    let plus_as_space = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
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
        challenge_id(&request(Some("application/json"), Body::from(body)))
            .map(|id| id.as_str().to_owned())
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    fn parse_form(body: &str) -> Result<String, ApiError> {
        let req = request(Some(FORM), Body::from(body));
        challenge_id(&req).map(|id| id.as_str().to_owned())
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
        assert_eq!(challenge_id(&req).unwrap().as_str(), "abc");
        let req = request(None, Body::Binary(br#"{"challengeId":"abc"}"#.to_vec()));
        assert_eq!(challenge_id(&req).unwrap().as_str(), "abc");
        let req = request(Some("text/plain"), Body::from(r#"{"challengeId":"abc"}"#));
        assert_eq!(challenge_id(&req).unwrap().as_str(), "abc");
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
    fn only_a_json_object_is_a_body_even_when_it_holds_an_id() {
        for body in [
            r#"["abc"]"#,
            r#"[{"challengeId":"abc"}]"#,
            r#""abc""#,
            "12",
            "true",
            "null",
            r#"{"challengeId":"abc"} {}"#,
            r#"{"challengeId":"abc"}]"#,
        ] {
            assert_eq!(
                parse_json(body),
                Err(ApiError::ParameterRequired),
                "{body:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_anywhere_in_the_body_is_refused() {
        // ED A0 80 encodes a surrogate: not UTF-8, even inside an ignored property.
        for (content_type, body) in [
            (
                None,
                &b"{\"challengeId\":\"abc\",\"x\":\"\xed\xa0\x80\"}"[..],
            ),
            (None, &b"{\"challengeId\":\"abc\",\"\xff\":1}"[..]),
            (
                Some("application/json"),
                &b"{\"challengeId\":\"abc\"}\xc3"[..],
            ),
            (Some(FORM), &b"challengeId=abc&x=\xff"[..]),
        ] {
            let req = request(content_type, Body::Binary(body.to_vec()));
            assert_eq!(
                challenge_id(&req),
                Err(ApiError::ParameterRequired),
                "{body:?}"
            );
        }
        let fine = request(Some(FORM), Body::Binary(b"challengeId=abc&x=%FF".to_vec()));
        assert_eq!(
            challenge_id(&fine).unwrap().as_str(),
            "abc",
            "other form fields stay encoded"
        );
    }

    #[test]
    fn lone_surrogate_escapes_and_a_byte_order_mark_are_refused() {
        for body in [
            r#"{"challengeId":"abc","x":"\ud800"}"#,
            r#"{"challengeId":"abc","x":"\udc00"}"#,
            r#"{"challengeId":"abc","x":"\ud800\u0041"}"#,
            r#"{"challengeId":"abc","x":"\ud800\ud800"}"#,
            r#"{"challengeId":"abc","x":["\uDBFF"]}"#,
            r#"{"challengeId":"abc","\ud800":1}"#,
            r#"{"challengeId":"a\ud800"}"#,
            "\u{feff}{\"challengeId\":\"abc\"}",
        ] {
            assert_eq!(
                parse_json(body),
                Err(ApiError::ParameterRequired),
                "{body:?}"
            );
        }
        for body in [
            r#"{"challengeId":"abc","x":"\ud83d\ude00"}"#,
            r#"{"challengeId":"abc","x":"\\ud800"}"#,
            r#"{"challengeId":"abc","x":"\\\u0041","y":1e400}"#,
        ] {
            assert_eq!(parse_json(body).unwrap(), "abc", "{body:?}");
        }
    }

    #[test]
    fn form_challenge_id_must_decode_to_utf8() {
        assert!(parse_form("challengeId=%FF").is_err());
        assert!(parse_form("challengeId=%ED%A0%80").is_err());
        assert_eq!(parse_form("challengeId=%C3%A9").unwrap(), "é");
        assert_eq!(
            parse_form("challenge%49d=abc").unwrap(),
            "abc",
            "keys are decoded"
        );
        assert!(parse_form("challengeId").is_err(), "no value is empty");
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
        assert_eq!(challenge_id(&req).unwrap().as_str(), "abc");
    }

    #[test]
    fn a_leading_byte_order_mark_refuses_a_form_body_too() {
        assert!(parse_form("\u{feff}x=1&challengeId=abc").is_err());
        assert!(parse_form("\u{feff}challengeId=abc").is_err());
        assert!(parse_json("\u{feff}{\"challengeId\":\"abc\"}").is_err());
        // Only a leading one: inside a value it is a character like any other.
        assert_eq!(parse_form("x=\u{feff}&challengeId=abc").unwrap(), "abc");
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
