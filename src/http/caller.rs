//! Who is calling: the client IP that the AWS front door itself observed,
//! read from the event.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::domain::caller::CallerIp;

/// Identifies the caller of `req`.
///
/// API Gateway (REST, HTTP API) and function URLs put the peer address they
/// saw in the request context; client headers are ignored there. Behind an
/// ALB the address is the `X-Forwarded-For` entry `trusted_proxy_hops` from
/// the right, since only the entries appended by trusted proxies are honest.
pub fn identify(req: &Request, trusted_proxy_hops: u32, ipv6_prefix: u8) -> CallerIp {
    let parse = |raw: Option<&str>| CallerIp::parse(raw, ipv6_prefix);
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => parse(ctx.identity.source_ip.as_deref()),
        Some(RequestContext::ApiGatewayV2(ctx)) => parse(ctx.http.source_ip.as_deref()),
        Some(RequestContext::Alb(_)) => {
            let chain: Vec<&str> = req
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect();
            parse(forwarded_entry(&chain, trusted_proxy_hops))
        }
        _ => CallerIp::Unknown,
    }
}

/// The entry `hops` from the right (1 = rightmost); the leftmost when the
/// chain is shorter; none when it is empty.
fn forwarded_entry<'a>(chain: &[&'a str], hops: u32) -> Option<&'a str> {
    let hops = usize::try_from(hops.max(1)).unwrap_or(usize::MAX);
    let index = chain.len().saturating_sub(hops);
    chain.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Request {
        lambda_http::request::from_str(json).expect("valid event")
    }

    fn rest(source_ip: &str, xff: &str) -> Request {
        event(&format!(
            r#"{{"resource":"/x","path":"/x","httpMethod":"POST",
            "headers":{{"X-Forwarded-For":"{xff}","X-Real-IP":"{xff}"}},
            "multiValueHeaders":{{"X-Forwarded-For":["{xff}"]}},
            "requestContext":{{"accountId":"1","resourceId":"r","stage":"prod","requestId":"q",
              "identity":{{"sourceIp":"{source_ip}"}},"resourcePath":"/x","httpMethod":"POST","apiId":"a"}},
            "body":null,"isBase64Encoded":false}}"#
        ))
    }

    fn http_api(source_ip: &str, xff: &str) -> Request {
        event(&format!(
            r#"{{"version":"2.0","routeKey":"POST /x","rawPath":"/x","rawQueryString":"",
            "headers":{{"x-forwarded-for":"{xff}","x-real-ip":"{xff}"}},
            "requestContext":{{"accountId":"1","apiId":"a","domainName":"d","domainPrefix":"d",
              "http":{{"method":"POST","path":"/x","protocol":"HTTP/1.1","sourceIp":"{source_ip}","userAgent":"t"}},
              "requestId":"q","routeKey":"POST /x","stage":"$default","time":"t","timeEpoch":0}},
            "isBase64Encoded":false}}"#
        ))
    }

    fn alb(xff_values: &[&str]) -> Request {
        let values = xff_values
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        event(&format!(
            r#"{{"requestContext":{{"elb":{{"targetGroupArn":"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/1"}}}},
            "httpMethod":"POST","path":"/x","multiValueQueryStringParameters":{{}},
            "multiValueHeaders":{{"x-forwarded-for":[{values}]}},"body":"","isBase64Encoded":false}}"#
        ))
    }

    #[test]
    fn rest_api_uses_identity_source_ip_not_client_headers() {
        assert_eq!(
            identify(&rest("203.0.113.9", "1.1.1.1"), 1, 128).to_string(),
            "203.0.113.9"
        );
    }

    #[test]
    fn http_api_and_function_url_use_http_source_ip_not_client_headers() {
        assert_eq!(
            identify(&http_api("198.51.100.7", "1.1.1.1"), 1, 128).to_string(),
            "198.51.100.7"
        );
    }

    #[test]
    fn missing_or_garbage_source_ip_is_the_shared_unknown_caller() {
        assert_eq!(identify(&rest("", "1.1.1.1"), 1, 128), CallerIp::Unknown);
        assert_eq!(
            identify(&http_api("not-an-ip", "1.1.1.1"), 1, 128),
            CallerIp::Unknown
        );
        assert_eq!(
            identify(&http_api("1.2.3.4#0", "1.1.1.1"), 1, 128),
            CallerIp::Unknown
        );
        let bare = lambda_http::http::Request::builder()
            .body(lambda_http::Body::Empty)
            .unwrap();
        assert_eq!(identify(&bare, 1, 128).to_string(), "unknown");
    }

    #[test]
    fn ipv6_is_canonicalised_and_mapped_ipv4_folds_to_ipv4() {
        assert_eq!(
            identify(&http_api("2001:DB8:0:0::1", "x"), 1, 128).to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            identify(&http_api("::ffff:192.0.2.1", "x"), 1, 128).to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn ipv6_callers_are_counted_per_network_of_the_prefix() {
        let key = |raw: &str, prefix: u8| identify(&http_api(raw, "x"), 1, prefix).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(key("2001:db8:1:3::1", 64), "2001:db8:1:3::/64");
        assert_eq!(key("2001:db8:1:2:aaaa::1", 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8:1:2:aaaa::1", 56), "2001:db8:1::/56");
        assert_eq!(key("2001:db8:1:2ff:aaaa::1", 56), "2001:db8:1:200::/56");
        assert_eq!(
            key("2001:DB8:0:0::1", 128),
            "2001:db8::1",
            "128: the address"
        );
        assert_eq!(key("2001:db8::1", 127), "2001:db8::/127");
        assert_eq!(
            key("::ffff:192.0.2.1", 64),
            "192.0.2.1",
            "mapped IPv4 is IPv4"
        );
        assert_eq!(key("192.0.2.1", 48), "192.0.2.1", "IPv4 is never grouped");
        assert_eq!(CallerIp::parse(Some("::1"), 0).to_string(), "::/0");
    }

    #[test]
    fn alb_takes_the_entry_trusted_hops_from_the_right() {
        let req = alb(&["6.6.6.6, 192.0.2.10", "10.0.0.1"]);
        assert_eq!(identify(&req, 1, 128).to_string(), "10.0.0.1");
        assert_eq!(identify(&req, 2, 128).to_string(), "192.0.2.10");
        assert_eq!(identify(&req, 3, 128).to_string(), "6.6.6.6");
        assert_eq!(
            identify(&req, 9, 128).to_string(),
            "6.6.6.6",
            "leftmost when too few"
        );
    }

    #[test]
    fn alb_without_a_usable_forwarded_for_is_unknown() {
        assert_eq!(identify(&alb(&[]), 1, 128), CallerIp::Unknown);
        assert_eq!(
            identify(&alb(&["1.2.3.4, garbage"]), 1, 128),
            CallerIp::Unknown
        );
    }
}
