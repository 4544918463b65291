//! Tests written to kill mutants that cargo-mutants found surviving in the
//! request path (issue 16): behaviour the other suites did not pin down.
//! Against DynamoDB Local, like tests/store.rs.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use send_email_code::aws::store::{Commit, Reservation, Reserved, Store};
use send_email_code::domain::challenge::{Challenge, ChallengeId, ChallengeMethod, SendRules};
use send_email_code::domain::code::{Code, CodeHash};
use send_email_code::domain::error::{DependencyError, FaultKind};
use send_email_code::EpochSeconds;

/// A store whose three tables do not exist: every call is answered with an
/// error that is not a refused condition (ResourceNotFoundException).
async fn store_without_tables() -> (Env, Store) {
    let env = Env::new().await;
    let missing = unique("no-such-table-");
    let config = config(&[
        ("CHALLENGES_TABLE", &missing),
        ("USERS_TABLE", &missing),
        ("RATE_LIMIT_TABLE", &missing),
    ]);
    let store = Store::new(env.db.clone(), &config);
    (env, store)
}

fn challenge(env: &Env) -> Challenge {
    Challenge {
        id: unique("ch-"),
        user_id: unique("user-"),
        method: ChallengeMethod::Email,
        expire_at: EpochSeconds::from(env.now.secs() + 900),
        codes_sent: 0,
        last_code_sent_at: None,
    }
}

fn assert_internal(err: &DependencyError, what: &str) {
    assert_eq!(err.kind, FaultKind::Internal, "{what}: {err:?}");
    assert!(!err.may_have_applied, "{what}: a 400 was not applied");
}

#[tokio::test]
async fn a_write_failing_for_another_reason_than_its_condition_is_an_error() {
    let (env, store) = store_without_tables().await;
    let c = challenge(&env);

    let counted = store
        .count("k", EpochSeconds::from(env.now.secs() + 60), 5)
        .await;
    assert_internal(&counted.result.expect_err("not a limit reached"), "counter");

    let reserved = store
        .reserve_send(Reservation {
            challenge: &c,
            now: env.now,
            rules: SendRules {
                max_codes: 3,
                cooldown_secs: 0,
            },
        })
        .await;
    assert_internal(
        &reserved.result.expect_err("not a refused reservation"),
        "reservation",
    );

    let code = Code::generate().unwrap();
    let hash = CodeHash::new(SECRET.as_bytes(), &c.id, &code);
    let committed = store
        .commit_code(Commit {
            challenge: &c,
            code_hash: &hash,
            code_expire_at: EpochSeconds::from(env.now.secs() + 600),
            sent_at: env.now.whole_secs(),
            message_id: "m-1",
        })
        .await;
    assert_internal(&committed.expect_err("not a challenge gone"), "commit");

    let gave_send = store.give_back_send(&c).await;
    assert_internal(
        &gave_send.expect_err("not nothing to give back"),
        "send give-back",
    );
    let gave_count = store.give_back_count("k").await;
    assert_internal(
        &gave_count.expect_err("not nothing to give back"),
        "count give-back",
    );
}

#[tokio::test]
async fn with_the_cooldown_off_a_send_stamped_later_does_not_refuse_the_reservation() {
    let env = Env::new().await;
    let store = Store::new(env.db.clone(), &config(&[]));
    let (id, _, _) = env.email_challenge().await;
    // Another instance, its clock ahead, committed a send "later" than now.
    env.update_challenge(
        &id,
        "SET lastCodeSentAt = :later",
        serde_json::json!({ ":later": env.now.secs() + 100 }),
    )
    .await;
    let read = store
        .get_challenge(&ChallengeId::parse(&id).unwrap())
        .await
        .unwrap()
        .expect("challenge");
    let reserve = |cooldown_secs| {
        store.reserve_send(Reservation {
            challenge: &read,
            now: env.now,
            rules: SendRules {
                max_codes: 5,
                cooldown_secs,
            },
        })
    };
    let on = reserve(1).await.result.unwrap();
    assert!(
        matches!(on, Reserved::Refused(Some(_))),
        "the cooldown condition is real: {on:?}"
    );
    assert_eq!(reserve(0).await.result.unwrap(), Reserved::Taken);
}

#[tokio::test]
async fn a_reservation_given_back_with_the_user_budget_off_is_traced_as_given_back() {
    let env = Env::new().await;
    let app = env.app(&[("MAX_CODES_PER_USER", "0")]);
    // A challenge whose user does not exist: the reservation is taken in the
    // same round as the user read, then given back (a 400, user not found).
    let challenge = env.challenge(&unique("user-"), "email", 900).await;
    let event = post(&challenge);
    let (response, trace) = send_email_code::handle_traced(&app, request(&event), env.now).await;
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        trace.reservation,
        send_email_code::ReservationFate::GivenBack
    );
    assert_eq!(
        n(&env.challenge_item(&challenge).await, "codesSent"),
        Some(0)
    );
}
