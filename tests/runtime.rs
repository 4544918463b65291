//! The real `bootstrap` process under a Lambda Runtime API emulator: log
//! format and level switches, the request id on every log line, and the EMF
//! metrics line, as CloudWatch would receive them.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::runtime_api::RuntimeApi;
use common::*;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

const LIMIT: Duration = Duration::from_secs(20);

async fn spawn(api: &RuntimeApi, extra: &[(&str, &str)]) -> Child {
    bootstrap(&api.address())
        .envs(extra.iter().copied())
        .spawn()
        .expect("bootstrap starts")
}

/// Runs a success and a refusal through a fresh process; returns the answers
/// and everything the process wrote.
async fn run(extra: &[(&str, &str)]) -> (Vec<runtime_api::Invocation>, String) {
    let env = Env::new().await;
    let (challenge, _, _) = env.email_challenge().await;
    let mut api = RuntimeApi::start().await.unwrap();
    let mut child = spawn(&api, extra).await;
    assert!(
        api.ready(LIMIT).await.is_some(),
        "the function polled for an event"
    );
    let mut answers = Vec::new();
    for event in [post(&challenge), post("no-such-challenge")] {
        answers.push(api.invoke(event, LIMIT).await.expect("an answer"));
    }
    child.start_kill().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    (answers, out)
}

fn status(inv: &runtime_api::Invocation) -> u64 {
    inv.response["statusCode"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn json_log_format_gives_json_lines_each_with_the_request_id() {
    let (answers, out) = run(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).await;
    assert_eq!(answers.iter().map(status).collect::<Vec<_>>(), [200, 400]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let logs: Vec<&Value> = lines.iter().filter(|v| v.get("_aws").is_none()).collect();
    let summaries: Vec<&&Value> = logs
        .iter()
        .filter(|v| v["fields"]["outcome"].is_string())
        .collect();
    assert_eq!(summaries.len(), 2, "{out}");
    for line in &logs {
        let id = line["span"]["requestId"].as_str().unwrap_or("");
        assert!(id.starts_with("bench-"), "request id on every line: {line}");
    }
    assert_eq!(summaries[0]["fields"]["outcome"], "sent");
    assert_eq!(
        summaries[1]["fields"]["error_type"],
        "error-challenge-not-found"
    );
}

#[tokio::test]
async fn text_log_format_is_readable_and_carries_the_request_id() {
    let (_, out) = run(&[]).await;
    let logs: Vec<&str> = out.lines().filter(|l| !l.starts_with('{')).collect();
    assert!(logs.iter().any(|l| l.contains("request served")), "{out}");
    for line in logs {
        assert!(
            line.contains("requestId=\"bench-"),
            "request id on every line: {line}"
        );
    }
}

#[tokio::test]
async fn log_level_switch_silences_info_but_not_metrics() {
    let (_, out) = run(&[("AWS_LAMBDA_LOG_LEVEL", "WARN")]).await;
    assert!(
        !out.contains("request served") && !out.contains("request refused"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("\"_aws\"")).count(),
        2,
        "{out}"
    );
}

#[tokio::test]
async fn each_request_writes_one_emf_line_cloudwatch_can_read() {
    let (_, out) = run(&[]).await;
    let emf: Vec<Value> = out
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| serde_json::from_str(l).expect("EMF line is JSON"))
        .collect();
    assert_eq!(emf.len(), 2, "{out}");
    for doc in &emf {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "SendEmailCode");
        assert!(doc["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(doc[metric["Name"].as_str().unwrap()].is_number(), "{doc}");
        }
    }
    assert_eq!(
        (emf[0]["Outcome"].as_str(), emf[0]["CodesSent"].as_u64()),
        (Some("sent"), Some(1))
    );
    assert_eq!(emf[1]["ErrorType"], "error-challenge-not-found");
    assert_eq!(emf[1]["CodesSent"], 0);
}
