//! Load and abuse across several function processes, as Lambda scales out:
//! 500 requests from 50 callers, all for one challenge, spread over four
//! `bootstrap` processes at once. Each caller gets exactly RATE_LIMIT_MAX
//! answers past its limiter, nobody gets a 5xx, no counter passes the limit,
//! and the challenge never receives more than MAX_CODES_PER_CHALLENGE emails.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::runtime_api::RuntimeApi;
use common::*;
use tokio::process::Command;

const PROCESSES: usize = 4;
const CALLERS: usize = 50;
const PER_CALLER: usize = 10;
const LIMIT: u32 = 5;
const CAP: usize = 3;
const CALLER_LIMITED: &str = "Error, too many requests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_over_many_processes_respect_every_limit() {
    let env = Env::new().await;
    let (challenge, _user, address) = env.email_challenge().await;
    let mut prefix = [0u8; 1];
    getrandom::fill(&mut prefix).unwrap();
    let ip = |caller: usize| format!("10.{}.{}.{}", prefix[0], caller / 250, caller % 250 + 1);

    let mut apis = Vec::new();
    let mut children = Vec::new();
    for _ in 0..PROCESSES {
        let mut api = RuntimeApi::start().await.unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .envs(base_vars())
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", "send-email-code")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_LEVEL", "ERROR")
            .env("RATE_LIMIT_MAX", LIMIT.to_string())
            // One long window, so the run cannot straddle a window boundary.
            .env("RATE_LIMIT_WINDOW_SECONDS", "86400")
            .env("MAX_CODES_PER_CHALLENGE", CAP.to_string())
            // The cap alone: concurrent takes of the user budget could refuse a
            // request whose reservation is later given back (tests/abuse.rs).
            .env("MAX_CODES_PER_USER", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("bootstrap starts");
        api.ready(Duration::from_secs(30))
            .await
            .expect("process ready");
        apis.push(Arc::new(api));
        children.push(child);
    }

    let mut set = tokio::task::JoinSet::new();
    for round in 0..PER_CALLER {
        for caller in 0..CALLERS {
            let api = apis[(round * CALLERS + caller) % PROCESSES].clone();
            let ev = with_caller(
                with_challenge(event("http-api.json"), &challenge),
                &ip(caller),
            );
            set.spawn(async move {
                let inv = api
                    .invoke(ev, Duration::from_secs(60))
                    .await
                    .expect("an answer");
                (caller, inv.response)
            });
        }
    }
    let answers = set.join_all().await;
    assert_eq!(answers.len(), CALLERS * PER_CALLER);

    let mut past_limiter: HashMap<usize, u32> = HashMap::new();
    let mut sent = 0;
    for (caller, response) in &answers {
        let status = response["statusCode"].as_u64().unwrap_or(0);
        assert!(
            status == 200 || status == 429,
            "no other answer under load: {response}"
        );
        let body: serde_json::Value =
            serde_json::from_str(response["body"].as_str().unwrap_or("{}")).unwrap();
        let limited = body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with(CALLER_LIMITED));
        if !limited {
            *past_limiter.entry(*caller).or_default() += 1;
        }
        sent += usize::from(status == 200);
    }
    for caller in 0..CALLERS {
        assert_eq!(
            past_limiter.get(&caller).copied(),
            Some(LIMIT),
            "caller {caller}"
        );
    }
    assert_eq!(sent, CAP, "exactly the cap's worth of codes");
    assert_eq!(emails_to(&address).len(), CAP);
    assert_eq!(
        n(&env.challenge_item(&challenge).await, "codesSent"),
        Some(CAP as i64)
    );

    let counters = env
        .db
        .scan()
        .table_name(&tables().rate_limits)
        .filter_expression("begins_with(pk, :p)")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("sendEmailCode#10.{}.", prefix[0])),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(counters.len(), CALLERS, "one counter per caller");
    for counter in &counters {
        assert_eq!(n(counter, "count"), Some(i64::from(LIMIT)), "{counter:?}");
    }
    drop(children);
}
