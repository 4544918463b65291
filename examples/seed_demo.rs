//! Local demo helper: creates the three tables in DynamoDB Local and writes a
//! demo user and a fresh email challenge whose id matches the sample events.
//!
//! Reads the same variables as the function (`CHALLENGES_TABLE`, …) plus
//! `DEMO_EMAIL`; run by scripts/demo.sh.

// In a developer tool, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use send_email_code::aws;
use send_email_code::aws::tables::{create_tables, TableNames};

/// The challenge id used by every file in events/.
const DEMO_CHALLENGE_ID: &str = "8f4c2d1e9a7b6c5d3e2f1a0b";
const DEMO_USER_ID: &str = "demo-user";

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let names = TableNames {
        challenges: var("CHALLENGES_TABLE")?,
        users: var("USERS_TABLE")?,
        rate_limits: var("RATE_LIMIT_TABLE")?,
    };
    let email = var("DEMO_EMAIL")?;
    let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config().await);
    create_tables(&client, &names).await?;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let s = |v: &str| AttributeValue::S(v.to_string());
    let n = |v: u64| AttributeValue::N(v.to_string());
    let address = |a: &str, verified: bool| {
        AttributeValue::M(
            [
                ("address".to_string(), s(a)),
                ("verified".to_string(), AttributeValue::Bool(verified)),
            ]
            .into(),
        )
    };
    client
        .put_item()
        .table_name(&names.users)
        .item("userId", s(DEMO_USER_ID))
        .item("username", s("ana"))
        .item("name", s("Ana Souza"))
        .item("language", s("en"))
        .item(
            "emails",
            AttributeValue::L(vec![
                address(&email, true),
                address("old-address@example.com", false),
            ]),
        )
        .send()
        .await
        .map_err(|e| format!("writing the demo user: {e}"))?;
    // Overwritten on every run, so the demo always starts from a fresh challenge.
    client
        .put_item()
        .table_name(&names.challenges)
        .item("challengeId", s(DEMO_CHALLENGE_ID))
        .item("userId", s(DEMO_USER_ID))
        .item("method", s("email"))
        .item("createdAt", n(now))
        .item("expireAt", n(now + 900))
        .send()
        .await
        .map_err(|e| format!("writing the demo challenge: {e}"))?;
    println!(
        "seeded user {DEMO_USER_ID} (verified address {email}) and email challenge {DEMO_CHALLENGE_ID}, valid 15 min"
    );
    Ok(())
}
