//! Local demo helper: checks a typed code the way a login flow would. Reads
//! the challenge's `codes` map from DynamoDB (consistent read) and calls the
//! library's `verify` over all its entries with `CODE_HMAC_SECRET`: any
//! unexpired code verifies, the first as well as a resent one.
//!
//!   verify_code <challengeId> <code>      (code as `123456` or `123-456`)
//!
//! Reads the same variables as the function (`CHALLENGES_TABLE`,
//! `CODE_HMAC_SECRET`, `AWS_ENDPOINT_URL_DYNAMODB`, …); run by scripts/demo.sh.
//! Exit status: 0 the code verified, 1 it did not, 2 it could not be checked.

// In a developer tool, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitCode;

use aws_sdk_dynamodb::types::AttributeValue;
use send_email_code::{aws, verify, CodeEntry, EpochSeconds, Timestamp};

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// One entry of the `codes` map; `None` when it lacks a field (it can then
/// never match).
fn code_entry(value: &AttributeValue) -> Option<CodeEntry<'_>> {
    let fields = value.as_m().ok()?;
    Some(CodeEntry {
        code_hash: fields.get("codeHash")?.as_s().ok()?,
        expire_at: EpochSeconds::parse(fields.get("expireAt")?.as_n().ok()?)?,
    })
}

async fn check(challenge_id: &str, code: &str) -> Result<bool, String> {
    let table = var("CHALLENGES_TABLE")?;
    let secret = var("CODE_HMAC_SECRET")?;
    let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config().await);
    let item = client
        .get_item()
        .table_name(&table)
        .key("challengeId", AttributeValue::S(challenge_id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("reading the challenge: {e}"))?
        .item
        .ok_or(format!("no challenge {challenge_id} in {table}"))?;
    let codes = item
        .get("codes")
        .and_then(|v| v.as_m().ok())
        .ok_or("the challenge has no codes map: no code was sent for it")?;
    Ok(verify(
        secret.as_bytes(),
        challenge_id,
        code,
        codes.values().filter_map(code_entry),
        Timestamp::now(),
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [challenge_id, code] = args.as_slice() else {
        eprintln!("usage: verify_code <challengeId> <code>");
        return ExitCode::from(2);
    };
    match check(challenge_id, code).await {
        Ok(true) => {
            println!("code {code} verified for challenge {challenge_id}");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("code {code} does NOT verify for challenge {challenge_id}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("verify_code: {e}");
            ExitCode::from(2)
        }
    }
}
