//! The abuse controls beyond the seed, through the handler against the
//! stand-ins: the per-user budget, the resend cooldown, IPv6 callers counted
//! per network, and refused callers answered from memory.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use send_email_code::{App, Timestamp};
use serde_json::json;

fn later(now: Timestamp, millis: i64) -> Timestamp {
    Timestamp::from_millis(now.millis() + millis)
}

/// A /64 no other test uses, as `2001:db8:x:y` in canonical spelling
/// (no leading zeros in a group, as the counter key writes it).
fn random_v6_network() -> String {
    let hex = unique("");
    let group = |h: &str| u16::from_str_radix(h, 16).unwrap() | 0x1000;
    format!("2001:db8:{:x}:{:x}", group(&hex[..4]), group(&hex[4..8]))
}

#[tokio::test]
async fn two_challenges_of_one_user_share_the_per_user_budget() {
    let env = Env::new().await;
    let (user, address) = env.user(json!({})).await;
    let first = env.challenge(&user, "email", 900).await;
    let second = env.challenge(&user, "email", 900).await;
    let app = env.app(&[("MAX_CODES_PER_USER", "3")]);
    for id in [&first, &first, &second] {
        assert_eq!(call(&app, &post(id), env.now).await.status, 200);
    }
    let a = call(&app, &post(&second), env.now).await;
    assert_error(
        &a,
        429,
        "error-too-many-requests",
        "too many codes sent to this user",
    );
    assert_documented_429(&a);
    let window_end = env.now.secs() - env.now.secs().rem_euclid(3600) + 3600;
    assert_eq!(
        a.header("retry-after"),
        Some(env.now.secs_until(window_end.into()).to_string().as_str())
    );
    assert_eq!(emails_to(&address).len(), 3);
    assert_eq!(
        n(&env.challenge_item(&second).await, "codesSent"),
        Some(1),
        "the refused request gave its challenge reservation back"
    );
    let key = format!(
        "sendEmailCode#user#{user}#{}",
        env.now.secs() - env.now.secs().rem_euclid(3600)
    );
    let counter = env.get(&tables().rate_limits, "pk", &key).await.unwrap();
    assert_eq!(n(&counter, "count"), Some(3));
    assert_eq!(n(&counter, "expireAt"), Some(window_end + 3600));

    // The next user window starts afresh.
    let next = Timestamp::from_secs(window_end);
    let mut fresh = env.challenge(&user, "email", 900).await;
    env.update_challenge(&fresh, "SET expireAt = :e", json!({":e": window_end + 900}))
        .await;
    assert_eq!(call(&app, &post(&fresh), next).await.status, 200);
    fresh.clear();
}

#[tokio::test]
async fn the_budget_is_off_at_zero_and_writes_no_user_counter() {
    let env = Env::new().await;
    let (user, _) = env.user(json!({})).await;
    let app = env.app(&[
        ("MAX_CODES_PER_USER", "0"),
        ("MAX_CODES_PER_CHALLENGE", "20"),
    ]);
    let challenge = env.challenge(&user, "email", 900).await;
    for _ in 0..12 {
        assert_eq!(call(&app, &post(&challenge), env.now).await.status, 200);
    }
    let key = format!(
        "sendEmailCode#user#{user}#{}",
        env.now.secs() - env.now.secs().rem_euclid(3600)
    );
    assert!(env.get(&tables().rate_limits, "pk", &key).await.is_none());
}

#[tokio::test]
async fn a_failed_send_spends_neither_the_cap_nor_the_user_budget() {
    let env = Env::new().await;
    let (challenge, user, address) = env.email_challenge().await;
    let overrides = [
        ("MAX_CODES_PER_USER", "1"),
        ("MAX_CODES_PER_CHALLENGE", "1"),
    ];
    let (_proxy, refusing) = refusing_ses(&env).await;
    let failing = App::with_clients(config(&overrides), env.db.clone(), refusing);
    for _ in 0..3 {
        let a = call(&failing, &post(&challenge), env.now).await;
        assert_eq!(a.status, 500, "{a:?}");
    }
    let key = format!(
        "sendEmailCode#user#{user}#{}",
        env.now.secs() - env.now.secs().rem_euclid(3600)
    );
    let counter = env.get(&tables().rate_limits, "pk", &key).await.unwrap();
    assert_eq!(n(&counter, "count"), Some(0), "user budget given back");
    assert_eq!(
        n(&env.challenge_item(&challenge).await, "codesSent"),
        Some(0)
    );
    let a = call(&env.app(&overrides), &post(&challenge), env.now).await;
    assert_eq!(a.status, 200, "both budgets still whole: {a:?}");
    assert_eq!(emails_to(&address).len(), 1);
}

#[tokio::test]
async fn resend_cooldown_names_the_seconds_left_in_text_and_retry_after() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let app = env.app(&[("RESEND_COOLDOWN_SECONDS", "30")]);
    let start = Timestamp::from_secs(env.now.secs());
    assert_eq!(call(&app, &post(&challenge), start).await.status, 200);
    let a = call(&app, &post(&challenge), later(start, 10_200)).await;
    assert_error(
        &a,
        429,
        "error-too-many-requests",
        "Please wait 20 seconds before requesting another code",
    );
    assert_eq!(a.header("retry-after"), Some("20"));
    assert_documented_429(&a);
    let a = call(&app, &post(&challenge), later(start, 29_999)).await;
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(
        a.body["error"],
        "Please wait 1 seconds before requesting another code"
    );
    assert_eq!(
        n(&env.challenge_item(&challenge).await, "codesSent"),
        Some(1),
        "refused in the cooldown: nothing reserved"
    );
    assert_eq!(emails_to(&address).len(), 1);
    assert_eq!(
        call(&app, &post(&challenge), later(start, 30_000))
            .await
            .status,
        200
    );
    assert_eq!(emails_to(&address).len(), 2);
}

#[tokio::test]
async fn without_a_cooldown_a_resend_goes_out_at_once() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let app = env.app(&[]);
    assert_eq!(call(&app, &post(&challenge), env.now).await.status, 200);
    assert_eq!(call(&app, &post(&challenge), env.now).await.status, 200);
    assert_eq!(emails_to(&address).len(), 2);
}

async fn status_from(app: &App, ip: &str, now: Timestamp) -> u16 {
    let ev = with_caller(with_challenge(event("http-api.json"), "no-such"), ip);
    call(app, &ev, now).await.status
}

#[tokio::test]
async fn two_addresses_in_one_ipv6_64_share_a_budget_and_another_64_does_not() {
    let env = Env::new().await;
    let app = env.app(&[("RATE_LIMIT_MAX", "2")]);
    let net = random_v6_network();
    let other = random_v6_network();
    assert_eq!(status_from(&app, &format!("{net}::1"), env.now).await, 400);
    assert_eq!(
        status_from(&app, &format!("{net}:ffff:1:2:3"), env.now).await,
        400
    );
    assert_eq!(status_from(&app, &format!("{net}::2"), env.now).await, 429);
    assert_eq!(
        status_from(&app, &format!("{other}::1"), env.now).await,
        400
    );
    let window = env.now.secs() - env.now.secs().rem_euclid(60);
    let key = format!("sendEmailCode#{net}::/64#{window}");
    let counter = env.get(&tables().rate_limits, "pk", &key).await;
    assert_eq!(counter.and_then(|c| n(&c, "count")), Some(2), "{key}");
}

#[tokio::test]
async fn at_prefix_128_each_ipv6_address_is_its_own_caller() {
    let env = Env::new().await;
    let app = env.app(&[("RATE_LIMIT_MAX", "1"), ("RATE_LIMIT_IPV6_PREFIX", "128")]);
    let net = random_v6_network();
    assert_eq!(status_from(&app, &format!("{net}::1"), env.now).await, 400);
    assert_eq!(status_from(&app, &format!("{net}::2"), env.now).await, 400);
    assert_eq!(status_from(&app, &format!("{net}::1"), env.now).await, 429);
    let window = env.now.secs() - env.now.secs().rem_euclid(60);
    let key = format!("sendEmailCode#{net}::2#{window}");
    assert!(
        env.get(&tables().rate_limits, "pk", &key).await.is_some(),
        "{key}"
    );
}

#[tokio::test]
async fn a_caller_refused_in_this_window_is_answered_from_memory_without_dynamodb() {
    let env = Env::new().await;
    let (proxy, counted) = dynamodb_behind_proxy(&env, 3).await;
    let app = App::with_clients(
        config(&[("RATE_LIMIT_MAX", "1")]),
        counted,
        aws_sdk_sesv2::Client::new(&env.sdk),
    );
    let ip = random_ip();
    let ev = with_caller(with_challenge(event("http-api.json"), "no-such"), &ip);
    let calls = || proxy.requests.load(Ordering::SeqCst);
    let start = Timestamp::from_secs(env.now.secs() - env.now.secs().rem_euclid(60));

    assert_eq!(call(&app, &ev, start).await.status, 400);
    let before = calls();
    let refused = call(&app, &ev, later(start, 1_000)).await;
    assert_eq!(refused.status, 429);
    let per_refusal_from_dynamodb = calls() - before;
    assert!(per_refusal_from_dynamodb >= 1);

    let before = calls();
    let flood = 50;
    let mut last = None;
    for i in 0..flood {
        last = Some(call(&app, &ev, later(start, 2_000 + i * 100)).await);
    }
    assert_eq!(
        calls() - before,
        0,
        "no DynamoDB call for a remembered refusal"
    );
    let last = last.unwrap();
    let now_last = later(start, 2_000 + (flood - 1) * 100);
    let n_left = now_last.secs_until((start.secs() + 60).into());
    assert_error(
        &last,
        429,
        "error-too-many-requests",
        &format!(
            "Error, too many requests. Please slow down. You must wait {n_left} seconds \
             before trying this endpoint again. [error-too-many-requests]"
        ),
    );
    assert_eq!(
        last.header("retry-after"),
        Some(n_left.to_string().as_str())
    );
    assert_documented_429(&last);
    assert_eq!(last.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(last.header("x-ratelimit-limit"), Some("1"));
    assert_eq!(
        last.header("x-ratelimit-reset"),
        refused.header("x-ratelimit-reset"),
        "same window as the refusal DynamoDB gave"
    );
    println!(
        "DynamoDB calls per refused request from one flooding address: \
         {per_refusal_from_dynamodb} before it is remembered, 0 after ({flood} requests)"
    );

    // Another caller is not affected, and the next window asks DynamoDB again.
    let other = with_caller(
        with_challenge(event("http-api.json"), "no-such"),
        &random_ip(),
    );
    assert_eq!(call(&app, &other, later(start, 3_000)).await.status, 400);
    let before = calls();
    assert_eq!(call(&app, &ev, later(start, 60_000)).await.status, 400);
    assert!(calls() > before, "a new window is counted in DynamoDB");
}
