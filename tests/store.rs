//! The conditional writes on their own, against DynamoDB Local: races the
//! handler cannot stage on demand (a challenge deleted, expired or replaced
//! between its read and the rotation; a newer code written before an undo).

mod common;

use common::*;
use send_email_code::challenge::rotation_refusal;
use send_email_code::code::{Code, CodeHash};
use send_email_code::error::ApiError;
use send_email_code::request::ChallengeId;
use send_email_code::store::{Count, Rotated, Rotation, Store};
use serde_json::json;

async fn setup() -> (Env, Store, String, send_email_code::challenge::Challenge) {
    let env = Env::new().await;
    let store = Store::new(env.db.clone(), &config(&[]));
    let (id, _, _) = env.email_challenge().await;
    let read = store
        .get_challenge(&ChallengeId::parse(&id).unwrap())
        .await
        .unwrap()
        .expect("challenge");
    (env, store, id, read)
}

fn fresh_hash(id: &str) -> CodeHash {
    CodeHash::new(SECRET.as_bytes(), id, &Code::generate().unwrap())
}

async fn rotate(
    store: &Store,
    env: &Env,
    c: &send_email_code::challenge::Challenge,
    hash: &CodeHash,
) -> Rotated {
    store
        .rotate_code(Rotation {
            challenge: c,
            code_hash: hash,
            code_expire_at: env.now.secs() + 600,
            now_secs: env.now.secs(),
            max_codes: 5,
        })
        .await
        .expect("no service error")
}

#[tokio::test]
async fn rotation_after_the_challenge_was_deleted_is_refused_and_recreates_nothing() {
    let (env, store, id, read) = setup().await;
    env.delete_challenge(&id).await;
    let refused = rotate(&store, &env, &read, &fresh_hash(&id)).await;
    let Rotated::Refused(current) = refused else {
        panic!("must be refused")
    };
    assert!(current.is_none());
    assert_eq!(
        rotation_refusal(None, &read.user_id, 5, env.now),
        ApiError::ChallengeNotFound
    );
    assert!(env
        .get(&tables().challenges, "challengeId", &id)
        .await
        .is_none());
}

#[tokio::test]
async fn rotation_after_the_challenge_expired_is_refused_as_expired() {
    let (env, store, id, read) = setup().await;
    env.update_challenge(&id, "SET expireAt = :e", json!({":e": env.now.secs() - 1}))
        .await;
    let Rotated::Refused(current) = rotate(&store, &env, &read, &fresh_hash(&id)).await else {
        panic!("must be refused")
    };
    assert_eq!(
        rotation_refusal(current.as_ref(), &read.user_id, 5, env.now),
        ApiError::ChallengeExpired
    );
    assert!(s(&env.challenge_item(&id).await, "codeHash").is_none());
}

#[tokio::test]
async fn rotation_after_the_method_or_user_changed_is_refused() {
    let (env, store, id, read) = setup().await;
    let mut item = env.challenge_item(&id).await;
    item.insert(
        "method".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("totp".into()),
    );
    env.put(&tables().challenges, item).await;
    let Rotated::Refused(current) = rotate(&store, &env, &read, &fresh_hash(&id)).await else {
        panic!("must be refused")
    };
    assert_eq!(
        rotation_refusal(current.as_ref(), &read.user_id, 5, env.now),
        ApiError::InvalidChallengeMethod
    );

    let (env, store, id, read) = setup().await;
    env.update_challenge(&id, "SET userId = :u", json!({":u": "someone-else"}))
        .await;
    let Rotated::Refused(current) = rotate(&store, &env, &read, &fresh_hash(&id)).await else {
        panic!("must be refused")
    };
    assert_eq!(
        rotation_refusal(current.as_ref(), &read.user_id, 5, env.now),
        ApiError::ChallengeNotFound
    );
}

#[tokio::test]
async fn undo_restores_the_previous_code_when_ours_is_current() {
    let (env, store, id, read) = setup().await;
    let first = fresh_hash(&id);
    assert!(matches!(
        rotate(&store, &env, &read, &first).await,
        Rotated::Done(_)
    ));
    let before = env.challenge_item(&id).await;
    let second = fresh_hash(&id);
    let Rotated::Done(previous) = rotate(&store, &env, &read, &second).await else {
        panic!()
    };
    store.undo_rotation(&id, &second, &previous).await.unwrap();
    assert_eq!(env.challenge_item(&id).await, before);
}

#[tokio::test]
async fn undo_keeps_a_newer_code_and_only_gives_the_send_back() {
    let (env, store, id, read) = setup().await;
    let ours = fresh_hash(&id);
    let Rotated::Done(previous) = rotate(&store, &env, &read, &ours).await else {
        panic!()
    };
    let newer = fresh_hash(&id);
    assert!(matches!(
        rotate(&store, &env, &read, &newer).await,
        Rotated::Done(_)
    ));
    store.undo_rotation(&id, &ours, &previous).await.unwrap();
    let item = env.challenge_item(&id).await;
    assert_eq!(s(&item, "codeHash").as_deref(), Some(newer.as_str()));
    assert_eq!(n(&item, "codesSent"), Some(1));
}

#[tokio::test]
async fn counter_never_passes_the_limit_and_refusals_write_nothing() {
    let env = Env::new().await;
    let store = Store::new(env.db.clone(), &config(&[]));
    let key = unique("sendEmailCode#test#");
    for expected in 1..=3 {
        assert_eq!(
            store.count_request(&key, 999, 3).await.unwrap(),
            Count::Counted(expected)
        );
    }
    assert_eq!(
        store.count_request(&key, 999, 3).await.unwrap(),
        Count::LimitReached
    );
    let item = env.get(&tables().rate_limits, "pk", &key).await.unwrap();
    assert_eq!(n(&item, "count"), Some(3));
    assert_eq!(n(&item, "expireAt"), Some(999));
}
