//! What a million requests of one path cost, from the calls and durations
//! the benchmark measured and AWS's list prices.

use serde_json::{json, Value};

/// The prices used, and where they hold.
pub const PRICES_AS_OF: &str = "AWS list prices for us-east-1 as published in 2025 (DynamoDB on-demand after its November 2024 cut); no free tier";

/// Lambda, Arm (Graviton): per GB-second of duration.
pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
/// Lambda: per million requests.
pub const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
/// DynamoDB on-demand: per million read request units.
pub const DYNAMODB_PER_MILLION_RRU: f64 = 0.125;
/// DynamoDB on-demand: per million write request units.
pub const DYNAMODB_PER_MILLION_WRU: f64 = 0.625;
/// SES: per 1,000 outbound messages.
pub const SES_PER_THOUSAND_MESSAGES: f64 = 0.10;
/// API Gateway HTTP API: per million requests (first 300 million a month).
pub const HTTP_API_PER_MILLION_REQUESTS: f64 = 1.00;

/// The function's memory in MB as `template.yaml` deploys it (its
/// `MemorySize`), read once; Lambda bills it as MB / 1024 GB. The prices
/// above are Arm's, so the template must deploy arm64.
pub fn memory_mb() -> f64 {
    static MEMORY: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *MEMORY.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
        let template = std::fs::read_to_string(path).expect("template.yaml is readable");
        let value = |key: &str| {
            template
                .lines()
                .find_map(|line| line.trim().strip_prefix(key))
                .map(str::trim)
                .unwrap_or_else(|| panic!("template.yaml has no {key}"))
        };
        assert_eq!(
            value("Architectures:"),
            "[arm64]",
            "the cost table uses Arm prices"
        );
        // On demand: `!If [OnManagedInstances, <managed>, <on demand>]`
        // gives the on-demand size last.
        let memory = value("MemorySize:");
        let on_demand = memory
            .trim_end_matches(']')
            .rsplit(',')
            .next()
            .unwrap_or(memory);
        on_demand
            .trim()
            .parse()
            .expect("MemorySize is a number of MB")
    })
}

/// Lambda's price of one invocation billed for `ms` (rounded up to whole ms).
pub fn lambda_per_million(ms: f64) -> f64 {
    let billed_seconds = ms.ceil() / 1000.0;
    LAMBDA_PER_MILLION_REQUESTS
        + 1e6 * billed_seconds * (memory_mb() / 1024.0) * LAMBDA_ARM_GB_SECOND
}

/// Request units one call uses. Items here are under 1 KB (writes) and 4 KB
/// (reads): a write is 1 WRU whether or not its condition held (a refused
/// conditional write is billed too), a strongly consistent read 1 RRU, an
/// eventually consistent one 0.5.
pub fn request_units(operation: &str, consistent_read: bool) -> (f64, f64) {
    match operation {
        "GetItem" if consistent_read => (1.0, 0.0),
        "GetItem" => (0.5, 0.0),
        "UpdateItem" | "PutItem" | "DeleteItem" => (0.0, 1.0),
        _ => (0.0, 0.0),
    }
}

/// Cost of a million requests of a path whose invocations took `ms` (median)
/// and made calls using `rru`/`wru` request units and `messages` emails.
pub fn per_million(ms: f64, rru: f64, wru: f64, messages: f64) -> Value {
    let lambda = lambda_per_million(ms);
    let dynamodb = rru * DYNAMODB_PER_MILLION_RRU + wru * DYNAMODB_PER_MILLION_WRU;
    let ses = messages * 1e6 / 1000.0 * SES_PER_THOUSAND_MESSAGES;
    let r = |v: f64| (v * 1000.0).round() / 1000.0;
    json!({
        "billed_ms": ms.ceil(),
        "lambda_usd": r(lambda),
        "dynamodb_usd": r(dynamodb),
        "ses_usd": r(ses),
        "total_usd": r(lambda + dynamodb + ses),
        "with_http_api_usd": r(lambda + dynamodb + ses + HTTP_API_PER_MILLION_REQUESTS),
    })
}

/// The prices, for the results file.
pub fn prices() -> Value {
    json!({
        "as_of": PRICES_AS_OF,
        "lambda_arm_usd_per_gb_second": LAMBDA_ARM_GB_SECOND,
        "lambda_usd_per_million_requests": LAMBDA_PER_MILLION_REQUESTS,
        "memory_mb": memory_mb(),
        "dynamodb_usd_per_million_rru": DYNAMODB_PER_MILLION_RRU,
        "dynamodb_usd_per_million_wru": DYNAMODB_PER_MILLION_WRU,
        "ses_usd_per_thousand_messages": SES_PER_THOUSAND_MESSAGES,
        "http_api_usd_per_million_requests": HTTP_API_PER_MILLION_REQUESTS,
    })
}
