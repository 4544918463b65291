//! Per-request metrics in CloudWatch Embedded Metric Format: one JSON line on
//! stdout that CloudWatch Logs turns into metrics, with no API call and no
//! extra latency.
//!
//! Namespace `SendEmailCode`; dimension sets `[Outcome]` and `[ErrorType]`;
//! metrics `Requests`, `Duration` (ms), `CodesSent`, `RateLimited` (counts).

use std::io::Write;

use serde_json::{json, Value};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "SendEmailCode";

/// What one request contributes to the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestMetrics<'a> {
    /// When the request was served, epoch milliseconds.
    pub timestamp_ms: i64,
    /// `sent`, `refused` or `failed`.
    pub outcome: &'a str,
    /// The answer's `errorType`, or `none` on success.
    pub error_type: &'a str,
    /// Time spent in the handler, milliseconds.
    pub duration_ms: f64,
    /// Emails accepted by SES for this request (0 or 1).
    pub codes_sent: u32,
    /// Whether the caller's rate limit refused the request.
    pub rate_limited: bool,
}

impl RequestMetrics<'_> {
    /// The EMF document for this request.
    pub fn to_emf(&self) -> Value {
        json!({
            "_aws": {
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Outcome"], ["ErrorType"]],
                    "Metrics": [
                        {"Name": "Requests", "Unit": "Count"},
                        {"Name": "Duration", "Unit": "Milliseconds"},
                        {"Name": "CodesSent", "Unit": "Count"},
                        {"Name": "RateLimited", "Unit": "Count"}
                    ]
                }]
            },
            "Outcome": self.outcome,
            "ErrorType": self.error_type,
            "Requests": 1,
            "Duration": (self.duration_ms * 1000.0).round() / 1000.0,
            "CodesSent": self.codes_sent,
            "RateLimited": u32::from(self.rate_limited),
        })
    }

    /// Writes the EMF line to stdout, where Lambda ships it to CloudWatch Logs.
    pub fn emit(&self) {
        let line = self.to_emf().to_string();
        let mut out = std::io::stdout().lock();
        // A failed write to stdout must not fail the request.
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_metric_it_carries() {
        let doc = RequestMetrics {
            timestamp_ms: 1_795_808_700_123,
            outcome: "refused",
            error_type: "error-too-many-requests",
            duration_ms: 12.345_6,
            codes_sent: 0,
            rate_limited: true,
        }
        .to_emf();
        let text = doc.to_string();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let directive = &parsed["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(parsed["_aws"]["Timestamp"], 1_795_808_700_123_i64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        for set in directive["Dimensions"].as_array().unwrap() {
            for dim in set.as_array().unwrap() {
                assert!(
                    parsed[dim.as_str().unwrap()].is_string(),
                    "dimension {dim} has a value"
                );
            }
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(parsed[name].is_number(), "metric {name} has a value");
        }
        assert_eq!(parsed["RateLimited"], 1);
        assert_eq!(parsed["Duration"], 12.346);
        assert_eq!(parsed["ErrorType"], "error-too-many-requests");
        assert!(!text.contains('\n'), "one line");
    }
}
