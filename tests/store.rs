//! The conditional writes on their own, against DynamoDB Local: races the
//! handler cannot stage on demand (a challenge deleted, expired, replaced or
//! sent to between its read and the reservation or the commit), and the
//! give-backs.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use common::fault_proxy::{Fault, FaultProxy};
use common::*;
use send_email_code::aws;
use send_email_code::aws::store::{Commit, Committed, Count, Reservation, Reserved, Store};
use send_email_code::domain::challenge::ChallengeId;
use send_email_code::domain::challenge::{reservation_refusal, Challenge, SendRules};
use send_email_code::domain::code::{Code, CodeHash};
use send_email_code::domain::error::ApiError;
use send_email_code::domain::error::FaultKind;
use send_email_code::{EpochSeconds, Timestamp};
use serde_json::json;

const RULES: SendRules = SendRules {
    max_codes: 5,
    cooldown_secs: 0,
};

async fn setup() -> (Env, Store, String, Challenge) {
    let env = Env::new().await;
    let store = Store::new(env.db.clone(), &config(&[]));
    let (id, _, _) = env.email_challenge().await;
    let read = read(&store, &id).await;
    (env, store, id, read)
}

async fn read(store: &Store, id: &str) -> Challenge {
    store
        .get_challenge(&ChallengeId::parse(id).unwrap())
        .await
        .unwrap()
        .expect("challenge")
}

async fn reserve(store: &Store, c: &Challenge, now: Timestamp, rules: SendRules) -> Reserved {
    store
        .reserve_send(Reservation {
            challenge: c,
            now,
            rules,
        })
        .await
        .result
        .expect("no service error")
}

fn refusal_of(reserved: Reserved, read: &Challenge, now: Timestamp) -> Option<ApiError> {
    let Reserved::Refused(current) = reserved else {
        panic!("must be refused, got {reserved:?}")
    };
    reservation_refusal(current.as_ref(), &read.user_id, RULES, now)
}

#[tokio::test]
async fn reservation_counts_a_send_and_touches_no_code_attribute() {
    let (env, store, id, read) = setup().await;
    assert_eq!(
        reserve(&store, &read, env.now, RULES).await,
        Reserved::Taken
    );
    let item = env.challenge_item(&id).await;
    assert_eq!(n(&item, "codesSent"), Some(1));
    assert!(!item.contains_key("lastCodeSentAt"));
    assert_eq!(
        entries(&item).map(|m| m.len()),
        Some(0),
        "the reservation makes an empty codes map and no entry"
    );
    reserve(&store, &read, env.now, RULES).await;
    assert_eq!(n(&env.challenge_item(&id).await, "codesSent"), Some(2));
}

#[tokio::test]
async fn reservation_after_the_challenge_was_deleted_is_refused_and_recreates_nothing() {
    let (env, store, id, read) = setup().await;
    env.delete_challenge(&id).await;
    let refused = reserve(&store, &read, env.now, RULES).await;
    assert_eq!(
        refusal_of(refused, &read, env.now),
        Some(ApiError::ChallengeNotFound)
    );
    assert!(env
        .get(&tables().challenges, "challengeId", &id)
        .await
        .is_none());
}

#[tokio::test]
async fn reservation_after_the_challenge_expired_is_refused_as_expired() {
    let (env, store, id, read) = setup().await;
    env.update_challenge(&id, "SET expireAt = :e", json!({":e": env.now.secs() - 1}))
        .await;
    let refused = reserve(&store, &read, env.now, RULES).await;
    assert_eq!(
        refusal_of(refused, &read, env.now),
        Some(ApiError::ChallengeExpired)
    );
    assert!(!env.challenge_item(&id).await.contains_key("codesSent"));
}

#[tokio::test]
async fn reservation_compares_a_fractional_expiry_to_the_millisecond() {
    let (env, store, id, _) = setup().await;
    let expire = Timestamp::from_millis(env.now.millis() + 1_500);
    env.update_challenge(
        &id,
        "SET expireAt = :e",
        json!({":e": serde_json::Number::from_f64(expire.millis() as f64 / 1000.0)}),
    )
    .await;
    let read = read(&store, &id).await;
    let just_before = Timestamp::from_millis(expire.millis() - 1);
    assert_eq!(
        reserve(&store, &read, just_before, RULES).await,
        Reserved::Taken
    );
    let refused = reserve(&store, &read, expire, RULES).await;
    assert_eq!(
        refusal_of(refused, &read, expire),
        Some(ApiError::ChallengeExpired)
    );
}

#[tokio::test]
async fn reservation_after_the_method_or_user_changed_is_refused() {
    let (env, store, id, read) = setup().await;
    let mut item = env.challenge_item(&id).await;
    item.insert(
        "method".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("totp".into()),
    );
    env.put(&tables().challenges, item).await;
    let refused = reserve(&store, &read, env.now, RULES).await;
    assert_eq!(
        refusal_of(refused, &read, env.now),
        Some(ApiError::InvalidChallengeMethod)
    );

    let (env, store, id, read) = setup().await;
    env.update_challenge(&id, "SET userId = :u", json!({":u": "someone-else"}))
        .await;
    let refused = reserve(&store, &read, env.now, RULES).await;
    assert_eq!(
        refusal_of(refused, &read, env.now),
        Some(ApiError::ChallengeNotFound)
    );
}

#[tokio::test]
async fn reservation_stops_at_the_cap_even_from_a_stale_read() {
    let (env, store, id, read) = setup().await;
    let rules = SendRules {
        max_codes: 2,
        cooldown_secs: 0,
    };
    for _ in 0..2 {
        assert!(matches!(
            reserve(&store, &read, env.now, rules).await,
            Reserved::Taken
        ));
    }
    // `read` still says codesSent is absent; the condition re-checks.
    let Reserved::Refused(current) = reserve(&store, &read, env.now, rules).await else {
        panic!("the cap must hold")
    };
    assert!(matches!(
        reservation_refusal(current.as_ref(), &read.user_id, rules, env.now),
        Some(ApiError::CodeLimitReached { .. })
    ));
    assert_eq!(n(&env.challenge_item(&id).await, "codesSent"), Some(2));
}

#[tokio::test]
async fn reservation_respects_a_cooldown_committed_after_the_read() {
    let (env, store, id, read) = setup().await;
    let rules = SendRules {
        max_codes: 5,
        cooldown_secs: 30,
    };
    env.update_challenge(
        &id,
        "SET lastCodeSentAt = :t",
        json!({":t": env.now.secs() - 10}),
    )
    .await;
    let Reserved::Refused(current) = reserve(&store, &read, env.now, rules).await else {
        panic!("inside the cooldown")
    };
    assert!(matches!(
        reservation_refusal(current.as_ref(), &read.user_id, rules, env.now),
        Some(ApiError::ResendCooldown { .. })
    ));
    let later = Timestamp::from_secs(env.now.secs() + 20);
    assert!(matches!(
        reserve(&store, &read, later, rules).await,
        Reserved::Taken
    ));
}

#[tokio::test]
async fn give_back_undoes_one_reservation_and_never_goes_below_zero() {
    let (env, store, id, read) = setup().await;
    reserve(&store, &read, env.now, RULES).await;
    reserve(&store, &read, env.now, RULES).await;
    store.give_back_send(&read).await.unwrap();
    assert_eq!(n(&env.challenge_item(&id).await, "codesSent"), Some(1));
    store.give_back_send(&read).await.unwrap();
    store.give_back_send(&read).await.unwrap();
    assert_eq!(n(&env.challenge_item(&id).await, "codesSent"), Some(0));
}

#[tokio::test]
async fn give_back_leaves_a_deleted_or_reassigned_challenge_alone() {
    let (env, store, id, read) = setup().await;
    reserve(&store, &read, env.now, RULES).await;
    env.delete_challenge(&id).await;
    store.give_back_send(&read).await.unwrap();
    assert!(env
        .get(&tables().challenges, "challengeId", &id)
        .await
        .is_none());

    let (env, store, id, read) = setup().await;
    reserve(&store, &read, env.now, RULES).await;
    env.update_challenge(&id, "SET userId = :u", json!({":u": "someone-else"}))
        .await;
    store.give_back_send(&read).await.unwrap();
    assert_eq!(n(&env.challenge_item(&id).await, "codesSent"), Some(1));
}

/// The `codes` map of a challenge item.
fn entries(item: &Item) -> Option<&HashMap<String, AttributeValue>> {
    item.get("codes").and_then(|v| v.as_m().ok())
}

/// One entry's (codeHash, expireAt, sentAt).
fn entry(item: &Item, message_id: &str) -> Option<(String, i64, i64)> {
    let e = entries(item)?.get(message_id)?.as_m().ok()?;
    Some((s(e, "codeHash")?, n(e, "expireAt")?, n(e, "sentAt")?))
}

fn hash_for(id: &str) -> CodeHash {
    CodeHash::new(SECRET.as_bytes(), id, &Code::generate().unwrap())
}

fn commit<'a>(read: &'a Challenge, hash: &'a CodeHash, sent_at: i64, msg: &'a str) -> Commit<'a> {
    Commit {
        challenge: read,
        code_hash: hash,
        code_expire_at: EpochSeconds::from(sent_at + 600),
        sent_at: EpochSeconds::from(sent_at),
        message_id: msg,
    }
}

#[tokio::test]
async fn each_commit_adds_its_own_entry_and_keeps_every_other_attribute() {
    let (env, store, id, read) = setup().await;
    reserve(&store, &read, env.now, RULES).await;
    env.update_challenge(&id, "SET attempts = :a", json!({":a": 2}))
        .await;
    let (first, second) = (hash_for(&id), hash_for(&id));
    for (hash, at, msg) in [(&first, 1_000, "msg-1"), (&second, 1_010, "msg-2")] {
        assert_eq!(
            store
                .commit_code(commit(&read, hash, at, msg))
                .await
                .unwrap(),
            Committed::Stored
        );
    }
    let item = env.challenge_item(&id).await;
    assert_eq!(
        entry(&item, "msg-1"),
        Some((first.as_str().to_string(), 1_600, 1_000))
    );
    assert_eq!(
        entry(&item, "msg-2"),
        Some((second.as_str().to_string(), 1_610, 1_010))
    );
    assert_eq!(entries(&item).map(|m| m.len()), Some(2));
    assert_eq!(n(&item, "lastCodeSentAt"), Some(1_010));
    assert_eq!(
        n(&item, "attempts"),
        Some(2),
        "a verifier's counter is kept"
    );
    assert_eq!(n(&item, "codesSent"), Some(1), "the commit counts nothing");
    for gone in ["codeHash", "codeExpireAt", "lastMessageId"] {
        assert!(!item.contains_key(gone), "{gone} is not written any more");
    }
}

#[tokio::test]
async fn a_commit_landing_after_a_newer_one_keeps_the_newer_time_and_entry() {
    let (env, store, id, read) = setup().await;
    reserve(&store, &read, env.now, RULES).await;
    let (older, newer) = (hash_for(&id), hash_for(&id));
    store
        .commit_code(commit(&read, &newer, 1_010, "msg-new"))
        .await
        .unwrap();
    assert_eq!(
        store
            .commit_code(commit(&read, &older, 1_000, "msg-old"))
            .await
            .unwrap(),
        Committed::Stored
    );
    let item = env.challenge_item(&id).await;
    assert_eq!(n(&item, "lastCodeSentAt"), Some(1_010), "never moves back");
    assert_eq!(entry(&item, "msg-old").map(|e| e.2), Some(1_000));
    assert_eq!(
        entry(&item, "msg-new").map(|e| e.0),
        Some(newer.as_str().to_string())
    );
}

#[tokio::test]
async fn a_commit_on_a_challenge_replaced_since_its_reservation_starts_its_map() {
    // No reservation made the map (the item was written again meanwhile).
    let (env, store, id, read) = setup().await;
    let hash = hash_for(&id);
    assert_eq!(
        store
            .commit_code(commit(&read, &hash, 1_000, "msg-1"))
            .await
            .unwrap(),
        Committed::Stored
    );
    let item = env.challenge_item(&id).await;
    assert_eq!(entry(&item, "msg-1").map(|e| e.1), Some(1_600));
    assert_eq!(n(&item, "lastCodeSentAt"), Some(1_000));
}

#[tokio::test]
async fn commit_on_a_deleted_or_reassigned_challenge_writes_nothing() {
    let (env, store, id, read) = setup().await;
    reserve(&store, &read, env.now, RULES).await;
    let hash = hash_for(&id);
    let c = commit(&read, &hash, 1_000, "msg-1");
    env.update_challenge(&id, "SET userId = :u", json!({":u": "someone-else"}))
        .await;
    assert_eq!(
        store.commit_code(c).await.unwrap(),
        Committed::ChallengeGone
    );
    let item = env.challenge_item(&id).await;
    assert_eq!(entries(&item).map(|m| m.len()), Some(0));
    assert!(!item.contains_key("lastCodeSentAt"));
    env.delete_challenge(&id).await;
    assert_eq!(
        store.commit_code(c).await.unwrap(),
        Committed::ChallengeGone
    );
    assert!(env
        .get(&tables().challenges, "challengeId", &id)
        .await
        .is_none());
}

#[tokio::test]
async fn a_commit_whose_first_attempt_lands_after_a_newer_commit_changes_nothing() {
    let env = Env::new().await;
    let (proxy, store) = store_behind_proxy(&env).await;
    let (id, _, _) = env.email_challenge().await;
    let read = read(&store, &id).await;
    reserve(&store, &read, env.now, RULES).await;
    let (a, b) = (hash_for(&id), hash_for(&id));
    // A's first attempt is held past the attempt timeout; the SDK's retry
    // lands first, then B commits, then A's first attempt reaches DynamoDB.
    proxy.set_next(
        Fault::DelayRequest(aws::ATTEMPT_TIMEOUT + Duration::from_millis(1_200)),
        1,
    );
    assert_eq!(
        store
            .commit_code(commit(&read, &a, 1_000, "msg-a"))
            .await
            .unwrap(),
        Committed::Stored
    );
    store
        .commit_code(commit(&read, &b, 1_030, "msg-b"))
        .await
        .unwrap();
    proxy.settle().await;
    assert_eq!(
        proxy.hits.load(Ordering::SeqCst),
        1,
        "A's first attempt was held"
    );
    let item = env.challenge_item(&id).await;
    assert_eq!(n(&item, "lastCodeSentAt"), Some(1_030));
    assert_eq!(
        entry(&item, "msg-a").map(|e| e.0),
        Some(a.as_str().to_string())
    );
    assert_eq!(
        entry(&item, "msg-b").map(|e| e.0),
        Some(b.as_str().to_string())
    );
}

#[tokio::test]
async fn counter_never_passes_the_limit_and_refusals_write_nothing() {
    let env = Env::new().await;
    let store = Store::new(env.db.clone(), &config(&[]));
    let key = unique("sendEmailCode#test#");
    for expected in 1..=3 {
        assert_eq!(
            store
                .count(&key, EpochSeconds::from(999), 3)
                .await
                .result
                .unwrap(),
            Count::Counted(expected)
        );
    }
    assert_eq!(
        store
            .count(&key, EpochSeconds::from(999), 3)
            .await
            .result
            .unwrap(),
        Count::LimitReached
    );
    let item = env.get(&tables().rate_limits, "pk", &key).await.unwrap();
    assert_eq!(n(&item, "count"), Some(3));
    assert_eq!(n(&item, "expireAt"), Some(999));
}

#[tokio::test]
async fn counter_give_back_frees_one_place_and_creates_nothing() {
    let env = Env::new().await;
    let store = Store::new(env.db.clone(), &config(&[]));
    let key = unique("sendEmailCode#user#test#");
    store
        .count(&key, EpochSeconds::from(999), 2)
        .await
        .result
        .unwrap();
    store
        .count(&key, EpochSeconds::from(999), 2)
        .await
        .result
        .unwrap();
    store.give_back_count(&key).await.unwrap();
    assert_eq!(
        store
            .count(&key, EpochSeconds::from(999), 2)
            .await
            .result
            .unwrap(),
        Count::Counted(2)
    );
    let absent = unique("sendEmailCode#user#none#");
    store.give_back_count(&absent).await.unwrap();
    assert!(env
        .get(&tables().rate_limits, "pk", &absent)
        .await
        .is_none());
}

/// A store whose DynamoDB sits behind a fault proxy.
async fn store_behind_proxy(env: &Env) -> (FaultProxy, Store) {
    let (proxy, client) = dynamodb_behind_proxy(env, 5).await;
    (proxy, Store::new(client, &config(&[])))
}

/// The next request is answered only after the SDK's attempt timeout,
/// although the stand-in applied it: the SDK retries it.
fn answer_next_late(proxy: &FaultProxy) {
    proxy.set_next(
        Fault::DelayResponse(aws::ATTEMPT_TIMEOUT + Duration::from_millis(300)),
        1,
    );
}

#[tokio::test]
async fn a_counter_retry_refused_by_its_own_first_attempt_is_unknown_not_over_the_limit() {
    let env = Env::new().await;
    let (proxy, store) = store_behind_proxy(&env).await;
    let key = unique("sendEmailCode#late#");
    answer_next_late(&proxy);
    let err = store
        .count(&key, EpochSeconds::from(999), 1)
        .await
        .result
        .expect_err("not a refusal");
    assert_eq!(err.kind, FaultKind::Unavailable, "{err}");
    assert!(err.may_have_applied, "{err}");
    let item = env.get(&tables().rate_limits, "pk", &key).await.unwrap();
    assert_eq!(n(&item, "count"), Some(1), "the first attempt did count");
}

#[tokio::test]
async fn a_reservation_retried_after_a_late_answer_reports_its_attempts() {
    let env = Env::new().await;
    let (proxy, store) = store_behind_proxy(&env).await;
    let (id, _, _) = env.email_challenge().await;
    let read = read(&store, &id).await;
    answer_next_late(&proxy);
    let reserved = store
        .reserve_send(Reservation {
            challenge: &read,
            now: env.now,
            rules: RULES,
        })
        .await;
    assert_eq!(reserved.result.unwrap(), Reserved::Taken);
    assert_eq!(reserved.attempts, 2, "the SDK retried the write");
    assert!(reserved.may_count_twice);
    assert_eq!(
        n(&env.challenge_item(&id).await, "codesSent"),
        Some(2),
        "a retried write may count twice, never less"
    );
}

#[tokio::test]
async fn a_reservation_retry_refused_by_its_own_first_attempt_is_unknown_not_the_cap() {
    let env = Env::new().await;
    let (proxy, store) = store_behind_proxy(&env).await;
    let (id, _, _) = env.email_challenge().await;
    let read = read(&store, &id).await;
    answer_next_late(&proxy);
    let one = SendRules {
        max_codes: 1,
        cooldown_secs: 0,
    };
    let reserved = store
        .reserve_send(Reservation {
            challenge: &read,
            now: env.now,
            rules: one,
        })
        .await;
    assert_eq!(reserved.attempts, 2);
    let err = reserved.result.expect_err("the outcome is unknown");
    assert_eq!(err.kind, FaultKind::Unavailable);
    assert!(err.may_have_applied);
    assert_eq!(n(&env.challenge_item(&id).await, "codesSent"), Some(1));
}

#[tokio::test]
async fn a_write_throttled_then_refused_is_a_plain_refusal() {
    let env = Env::new().await;
    let (proxy, store) = store_behind_proxy(&env).await;
    let key = unique("sendEmailCode#throttled#");
    store
        .count(&key, EpochSeconds::from(999), 1)
        .await
        .result
        .unwrap();
    proxy.set_next(THROTTLED, 1);
    let counted = store.count(&key, EpochSeconds::from(999), 1).await;
    assert_eq!(counted.attempts, 2, "the throttled attempt was retried");
    assert_eq!(counted.result, Ok(Count::LimitReached));

    let (id, _, _) = env.email_challenge().await;
    let read = read(&store, &id).await;
    let one = SendRules {
        max_codes: 1,
        cooldown_secs: 0,
    };
    reserve(&store, &read, env.now, one).await;
    proxy.set_next(THROTTLED, 1);
    let refused = store
        .reserve_send(Reservation {
            challenge: &read,
            now: env.now,
            rules: one,
        })
        .await;
    assert_eq!(refused.attempts, 2);
    assert!(!refused.may_count_twice);
    let Ok(Reserved::Refused(current)) = refused.result else {
        panic!("a plain refusal, got {:?}", refused.result)
    };
    assert!(matches!(
        reservation_refusal(current.as_ref(), &read.user_id, one, env.now),
        Some(ApiError::CodeLimitReached { .. })
    ));
}

#[tokio::test]
async fn a_write_refused_after_a_server_error_is_unknown() {
    let env = Env::new().await;
    let (proxy, store) = store_behind_proxy(&env).await;
    let key = unique("sendEmailCode#5xx#");
    store
        .count(&key, EpochSeconds::from(999), 1)
        .await
        .result
        .unwrap();
    proxy.set_next(
        Fault::Refuse {
            status: 500,
            code: "InternalServerError",
        },
        1,
    );
    let err = store
        .count(&key, EpochSeconds::from(999), 1)
        .await
        .result
        .expect_err("a 5xx may have been applied");
    assert_eq!(err.kind, FaultKind::Unavailable);
    assert!(err.may_have_applied);
}

/// DynamoDB's throttling answer (sent as a 400).
const THROTTLED: Fault = Fault::Refuse {
    status: 400,
    code: "ThrottlingException",
};

#[tokio::test]
async fn a_give_back_throttled_once_is_tried_again_and_one_lost_after_sending_is_not() {
    let env = Env::new().await;
    let (proxy, store) = store_behind_proxy(&env).await;
    let (id, _, _) = env.email_challenge().await;
    let read = read(&store, &id).await;
    reserve(&store, &read, env.now, RULES).await;
    reserve(&store, &read, env.now, RULES).await;
    proxy.set_next(THROTTLED, 1);
    store.give_back_send(&read).await.unwrap();
    assert_eq!(
        n(&env.challenge_item(&id).await, "codesSent"),
        Some(1),
        "the throttled attempt was certainly not applied: tried again"
    );
    let before = proxy.requests.load(Ordering::SeqCst);
    answer_next_late(&proxy);
    let err = store
        .give_back_send(&read)
        .await
        .expect_err("the outcome is unknown");
    assert!(err.may_have_applied);
    proxy.settle().await;
    assert_eq!(
        proxy.requests.load(Ordering::SeqCst),
        before + 1,
        "never tried again: it may have applied"
    );
    assert_eq!(
        n(&env.challenge_item(&id).await, "codesSent"),
        Some(0),
        "the one attempt did apply"
    );
}

#[tokio::test]
async fn a_commit_refused_after_an_attempt_that_may_have_written_is_unknown_not_gone() {
    let env = Env::new().await;
    let (proxy, store) = store_behind_proxy(&env).await;
    let (id, _, _) = env.email_challenge().await;
    let read = read(&store, &id).await;
    reserve(&store, &read, env.now, RULES).await;
    let hash = hash_for(&id);
    // The first attempt writes the entry but its answer comes too late; the
    // login flow deletes the challenge meanwhile; the retry is refused.
    answer_next_late(&proxy);
    let deleting = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.delete_challenge(&id).await;
    };
    let (committed, ()) = tokio::join!(
        store.commit_code(commit(&read, &hash, 1_000, "msg-1")),
        deleting
    );
    let err = committed.expect_err("the entry may have been written: 503, not 400");
    assert_eq!(err.kind, FaultKind::Unavailable);
    proxy.settle().await;
}
