//! docs/contract.md section 2, branch by branch, through the handler, against
//! DynamoDB Local and the SES v2 stand-in. Run with ./scripts/test.sh.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use send_email_code::Timestamp;
use serde_json::json;

const FRONT_DOORS: [&str; 4] = [
    "rest-api.json",
    "http-api.json",
    "function-url.json",
    "alb.json",
];

#[tokio::test]
async fn success_through_every_front_door_sends_the_code_to_verified_addresses_only() {
    let env = Env::new().await;
    let app = env.app(&[]);
    for door in FRONT_DOORS {
        let (challenge, _user, address) = env.email_challenge().await;
        let ev = with_caller(with_challenge(event(door), &challenge), &random_ip());
        let a = call(&app, &ev, env.now).await;

        assert_eq!(a.status, 200, "{door}: {a:?}");
        assert_eq!(a.body, json!({"success": true}), "{door}");
        assert_common_headers(&a);
        assert_eq!(a.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(a.header("x-ratelimit-remaining"), Some("4"));

        let mails = emails_to(&address);
        assert_eq!(mails.len(), 1, "{door}: one email to the verified address");
        let mail = &mails[0];
        assert_eq!(
            mail["destination"]["to"],
            json!([address]),
            "never the unverified one"
        );
        assert_eq!(mail["from"], "Rocket.Chat <no-reply@chat.example.test>");
        let code = code_in(mail);
        let html = mail["body"]["html"].as_str().unwrap();
        assert!(html.contains(&code), "{door}: code in the HTML part too");

        let stored = env.challenge_item(&challenge).await;
        assert_stored(
            &stored,
            &challenge,
            mail,
            env.now.secs(),
            env.now.secs() + 600,
        );
        let hash = expected_hash(&challenge, &code);
        assert!(!a.raw.contains(&code), "no code in the answer");
        assert!(!a.raw.contains(&hash) && !a.raw.contains(&address));
    }
}

#[tokio::test]
async fn base64_bodies_without_content_type_and_form_bodies_are_read() {
    let env = Env::new().await;
    let app = env.app(&[]);
    for file in ["http-api-base64-no-content-type.json", "http-api-form.json"] {
        let (challenge, _user, address) = env.email_challenge().await;
        let mut ev = with_caller(event(file), &random_ip());
        // Re-encode the sample's body around this test's challenge.
        let body = if file.contains("form") {
            format!("challengeId={challenge}")
        } else {
            json!({"challengeId": challenge}).to_string()
        };
        ev["body"] = json!(STANDARD.encode(body.as_bytes()));
        let a = call(&app, &ev, env.now).await;
        assert_eq!(a.status, 200, "{file}: {a:?}");
        assert_eq!(emails_to(&address).len(), 1, "{file}");
    }
}

#[tokio::test]
async fn the_sample_events_as_shipped_decode_to_the_sample_challenge() {
    // Guards the sample files themselves: each must carry the demo challenge
    // id the local demo seeds, readable through its own encoding.
    let env = Env::new().await;
    let app = env.app(&[]);
    for file in [
        "rest-api.json",
        "http-api.json",
        "function-url.json",
        "alb.json",
        "http-api-base64-no-content-type.json",
        "http-api-form.json",
    ] {
        let a = call(&app, &with_caller(event(file), &random_ip()), env.now).await;
        // The demo challenge is not seeded in the test tables: reaching the
        // lookup proves the body was read.
        assert_error(&a, 400, "error-challenge-not-found", "challenge not found");
    }
}

#[tokio::test]
async fn unreadable_or_missing_challenge_id_is_parameter_required() {
    let env = Env::new().await;
    let app = env.app(&[]);
    for file in ["http-api-no-body.json", "http-api-invalid-json.json"] {
        let a = call(&app, &with_caller(event(file), &random_ip()), env.now).await;
        assert_error(
            &a,
            400,
            "error-parameter-required",
            "challengeId is required",
        );
    }
    for body in [
        json!({}),
        json!({"challengeId": null}),
        json!({"challengeId": 42}),
        json!({"challengeId": ""}),
        json!({"challengeId": "  \t "}),
        json!({"challengeId": "a".repeat(257)}),
        json!({"challengeId": "ab\u{0007}c"}),
        json!([{"challengeId": "x"}]),
    ] {
        let mut ev = with_caller(event("http-api.json"), &random_ip());
        ev["body"] = json!(body.to_string());
        let a = call(&app, &ev, env.now).await;
        assert_error(
            &a,
            400,
            "error-parameter-required",
            "challengeId is required",
        );
    }
}

#[tokio::test]
async fn any_method_but_post_is_405_with_allow_and_is_counted() {
    let env = Env::new().await;
    let app = env.app(&[]);
    let ip = random_ip();
    let ev = with_caller(event("http-api-get.json"), &ip);
    let a = call(&app, &ev, env.now).await;
    assert_error(&a, 405, "error-method-not-allowed", "method not allowed");
    assert_eq!(a.header("allow"), Some("POST"));
    assert_eq!(a.header("x-ratelimit-remaining"), Some("4"));
    let b = call(&app, &ev, env.now).await;
    assert_eq!(
        b.header("x-ratelimit-remaining"),
        Some("3"),
        "every request counts"
    );
}

#[tokio::test]
async fn unknown_challenge_is_challenge_not_found() {
    let env = Env::new().await;
    let ev = with_caller(
        with_challenge(event("http-api.json"), &unique("nope-")),
        &random_ip(),
    );
    let a = call(&env.app(&[]), &ev, env.now).await;
    assert_error(&a, 400, "error-challenge-not-found", "challenge not found");
}

#[tokio::test]
async fn expired_but_present_challenge_is_challenge_expired() {
    let env = Env::new().await;
    let (user, address) = env.user(json!({})).await;
    let challenge = env.challenge(&user, "email", -1).await;
    let ev = post(&challenge);
    let a = call(&env.app(&[]), &ev, env.now).await;
    assert_error(&a, 400, "error-challenge-expired", "challenge expired");
    // expireAt == now is expired too.
    let at_now = env.challenge(&user, "email", 0).await;
    let ev = post(&at_now);
    let a = call(&env.app(&[]), &ev, env.now).await;
    assert_eq!(a.error_type(), "error-challenge-expired");
    assert!(emails_to(&address).is_empty());
    assert!(stored_codes(&env.challenge_item(&challenge).await).is_empty());
}

#[tokio::test]
async fn totp_challenge_is_invalid_challenge_method() {
    let env = Env::new().await;
    let (user, address) = env.user(json!({})).await;
    let challenge = env.challenge(&user, "totp", 600).await;
    let ev = post(&challenge);
    let a = call(&env.app(&[]), &ev, env.now).await;
    assert_error(
        &a,
        400,
        "error-invalid-challenge-method",
        "invalid challenge method",
    );
    assert!(emails_to(&address).is_empty());
}

#[tokio::test]
async fn missing_user_is_user_not_found_and_the_challenge_is_left_as_it_was() {
    let env = Env::new().await;
    let challenge = env.challenge(&unique("ghost-"), "email", 600).await;
    let before = env.challenge_item(&challenge).await;
    let ev = post(&challenge);
    let a = call(&env.app(&[]), &ev, env.now).await;
    assert_error(&a, 400, "error-user-not-found", "user not found");
    assert_eq!(
        given_back(env.challenge_item(&challenge).await),
        before,
        "reservation given back, nothing else written"
    );
}

#[tokio::test]
async fn user_without_verified_address_is_no_verified_email() {
    let env = Env::new().await;
    let (user, address) = env
        .user(json!({"emails": [{"address": "x@example.test", "verified": false}]}))
        .await;
    let challenge = env.challenge(&user, "email", 600).await;
    let before = env.challenge_item(&challenge).await;
    let ev = post(&challenge);
    let a = call(&env.app(&[]), &ev, env.now).await;
    assert_error(
        &a,
        400,
        "error-no-verified-email",
        "user has no verified email",
    );
    assert!(emails_to(&address).is_empty() && emails_to("x@example.test").is_empty());
    assert_eq!(given_back(env.challenge_item(&challenge).await), before);
}

#[tokio::test]
async fn plain_email_attribute_counts_as_verified_and_all_addresses_get_the_same_code() {
    let env = Env::new().await;
    let (user, first) = env.user(json!({})).await;
    let second = format!("second-{user}@example.test");
    env.update_challenge_free_user(&user, &second).await;
    let challenge = env.challenge(&user, "email", 600).await;
    let ev = post(&challenge);
    let a = call(&env.app(&[]), &ev, env.now).await;
    assert_eq!(a.status, 200, "{a:?}");
    let to_first = emails_to(&first);
    let to_second = emails_to(&second);
    assert_eq!((to_first.len(), to_second.len()), (1, 1));
    assert_eq!(code_in(&to_first[0]), code_in(&to_second[0]));
}

trait UserExtras {
    async fn update_challenge_free_user(&self, user: &str, email: &str);
}

impl UserExtras for Env {
    async fn update_challenge_free_user(&self, user: &str, email: &str) {
        self.db
            .update_item()
            .table_name(&tables().users)
            .key(
                "userId",
                aws_sdk_dynamodb::types::AttributeValue::S(user.into()),
            )
            .update_expression("SET email = :e")
            .expression_attribute_values(
                ":e",
                aws_sdk_dynamodb::types::AttributeValue::S(email.into()),
            )
            .send()
            .await
            .expect("update user");
    }
}

#[tokio::test]
async fn sixth_request_in_a_window_gets_429_with_retry_after_and_counts_invalid_ones_too() {
    let env = Env::new().await;
    let app = env.app(&[]);
    let ip = random_ip();
    let now = Timestamp::from_millis(1_800_000_012_345); // 12.345 s into a window
    let bad = with_caller(event("http-api-no-body.json"), &ip);
    for left in (0..5).rev() {
        let a = call(&app, &bad, now).await;
        assert_eq!(a.status, 400);
        assert_eq!(
            a.header("x-ratelimit-remaining"),
            Some(left.to_string().as_str())
        );
    }
    let (challenge, _, address) = env.email_challenge().await;
    let a = call(
        &app,
        &with_caller(with_challenge(event("http-api.json"), &challenge), &ip),
        now,
    )
    .await;
    assert_error(
        &a,
        429,
        "error-too-many-requests",
        "Error, too many requests. Please slow down. You must wait 48 seconds before trying this \
         endpoint again. [error-too-many-requests]",
    );
    assert_eq!(a.header("retry-after"), Some("48"));
    assert_eq!(a.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(a.header("x-ratelimit-reset"), Some("1800000060000"));
    assert!(
        emails_to(&address).is_empty(),
        "a limited request sends nothing"
    );

    // The counter item: key, count never above the limit, TTL one window past the end.
    let key = format!("sendEmailCode#{ip}#1800000000");
    let counter = env
        .get(&tables().rate_limits, "pk", &key)
        .await
        .expect("counter");
    assert_eq!(n(&counter, "count"), Some(5));
    assert_eq!(n(&counter, "expireAt"), Some(1_800_000_120));

    // Another caller is unaffected; the same caller is fine in the next window.
    let other = call(
        &app,
        &with_caller(event("http-api-no-body.json"), &random_ip()),
        now,
    )
    .await;
    assert_eq!(other.status, 400);
    let later = Timestamp::from_secs(1_800_000_060);
    let next = call(&app, &bad, later).await;
    assert_eq!(
        (next.status, next.header("x-ratelimit-remaining")),
        (400, Some("4"))
    );
}

#[tokio::test]
async fn rate_limit_settings_come_from_configuration() {
    let env = Env::new().await;
    let app = env.app(&[
        ("RATE_LIMIT_MAX", "2"),
        ("RATE_LIMIT_WINDOW_SECONDS", "3600"),
    ]);
    let ip = random_ip();
    let now = Timestamp::from_secs(1_800_000_000 + 100);
    let ev = with_caller(event("http-api-no-body.json"), &ip);
    assert_eq!(call(&app, &ev, now).await.status, 400);
    assert_eq!(call(&app, &ev, now).await.status, 400);
    let a = call(&app, &ev, now).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(a.header("retry-after"), Some("3500"));
}

#[tokio::test]
async fn client_forwarded_headers_do_not_change_the_caller_behind_api_gateway() {
    let env = Env::new().await;
    let app = env.app(&[("RATE_LIMIT_MAX", "3")]);
    let ip = random_ip();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let mut ev = with_caller(event("http-api-no-body.json"), &ip);
        ev["headers"]["x-forwarded-for"] = json!(format!("192.0.2.{i}"));
        ev["headers"]["x-real-ip"] = json!(format!("192.0.2.{i}"));
        statuses.push(call(&app, &ev, env.now).await.status);
    }
    assert_eq!(statuses, [400, 400, 400, 429, 429]);
}

#[tokio::test]
async fn fifty_simultaneous_requests_from_one_caller_let_exactly_five_through() {
    let env = Env::new().await;
    let app = std::sync::Arc::new(env.app(&[]));
    let ip = random_ip();
    let now = env.now;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let app = app.clone();
        let ev = with_caller(event("http-api-no-body.json"), &ip);
        set.spawn(async move { call(&app, &ev, now).await.status });
    }
    let statuses = set.join_all().await;
    assert_eq!(
        statuses.iter().filter(|&&s| s != 429).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 45);
}

#[tokio::test]
async fn per_challenge_cap_refuses_the_next_code_until_the_challenge_expires() {
    let env = Env::new().await;
    let app = env.app(&[("MAX_CODES_PER_CHALLENGE", "2")]);
    let (user, address) = env.user(json!({})).await;
    let challenge = env.challenge(&user, "email", 700).await;
    let ev = with_challenge(event("http-api.json"), &challenge);
    for _ in 0..2 {
        assert_eq!(
            call(&app, &with_caller(ev.clone(), &random_ip()), env.now)
                .await
                .status,
            200
        );
    }
    let a = call(&app, &with_caller(ev, &random_ip()), env.now).await;
    assert_error(
        &a,
        429,
        "error-too-many-requests",
        "too many codes sent for this challenge",
    );
    assert_documented_429(&a);
    assert_eq!(a.header("retry-after"), Some("700"));
    assert_eq!(
        a.header("x-ratelimit-remaining"),
        Some("4"),
        "caller's own limit is separate"
    );
    assert_eq!(emails_to(&address).len(), 2);
    assert_eq!(
        n(&env.challenge_item(&challenge).await, "codesSent"),
        Some(2)
    );
}

#[tokio::test]
async fn twenty_simultaneous_sends_for_one_challenge_with_cap_three_send_exactly_three() {
    let env = Env::new().await;
    let app = std::sync::Arc::new(env.app(&[
        ("MAX_CODES_PER_CHALLENGE", "3"),
        ("MAX_CODES_PER_USER", "0"),
    ]));
    let (challenge, _user, address) = env.email_challenge().await;
    let now = env.now;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let app = app.clone();
        let ev = post(&challenge);
        set.spawn(async move { call(&app, &ev, now).await });
    }
    let answers = set.join_all().await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let capped = answers
        .iter()
        .filter(|a| a.status == 429 && a.body["error"] == "too many codes sent for this challenge")
        .count();
    assert_eq!((ok, capped), (3, 17), "{answers:?}");
    assert_eq!(emails_to(&address).len(), 3);
    assert_eq!(
        n(&env.challenge_item(&challenge).await, "codesSent"),
        Some(3)
    );
}

#[tokio::test]
async fn resend_adds_a_code_keeps_the_first_and_touches_no_other_attribute() {
    let env = Env::new().await;
    let app = env.app(&[("CODE_TTL_SECONDS", "300")]);
    let (challenge, _user, address) = env.email_challenge().await;
    env.update_challenge(
        &challenge,
        "SET attempts = :a, note = :n",
        json!({":a": 2, ":n": "kept"}),
    )
    .await;
    let ev = with_challenge(event("http-api.json"), &challenge);

    let t1 = env.now;
    assert_eq!(
        call(&app, &with_caller(ev.clone(), &random_ip()), t1)
            .await
            .status,
        200
    );
    let first = env.challenge_item(&challenge).await;
    assert_eq!(n(&first, "codesSent"), Some(1));
    assert_eq!(n(&first, "lastCodeSentAt"), Some(t1.secs()));
    assert_stored(
        &first,
        &challenge,
        &emails_to(&address)[0],
        t1.secs(),
        t1.secs() + 300,
    );

    let t2 = Timestamp::from_secs(t1.secs() + 30);
    assert_eq!(
        call(&app, &with_caller(ev, &random_ip()), t2).await.status,
        200
    );
    let second = env.challenge_item(&challenge).await;
    let mails = emails_to(&address);
    assert_eq!(mails.len(), 2);
    assert_eq!(n(&second, "codesSent"), Some(2));
    assert_eq!(n(&second, "lastCodeSentAt"), Some(t2.secs()));
    assert_eq!(stored_codes(&second).len(), 2);
    // The first email's code still works until its own expiry.
    assert_stored(&second, &challenge, &mails[0], t1.secs(), t1.secs() + 300);
    assert_stored(&second, &challenge, &mails[1], t2.secs(), t2.secs() + 300);
    for attr in [
        "attempts",
        "note",
        "createdAt",
        "expireAt",
        "userId",
        "method",
    ] {
        assert_eq!(first.get(attr), second.get(attr), "{attr} untouched");
    }
    assert_eq!(n(&second, "attempts"), Some(2));
}

#[tokio::test]
async fn code_expiry_never_outlives_the_challenge() {
    let env = Env::new().await;
    let (user, _) = env.user(json!({})).await;
    let challenge = env.challenge(&user, "email", 120).await;
    let ev = post(&challenge);
    assert_eq!(call(&env.app(&[]), &ev, env.now).await.status, 200);
    let item = env.challenge_item(&challenge).await;
    let codes = stored_codes(&item);
    let entry = codes.values().next().expect("one entry");
    assert_eq!(Some(entry.expire_at), n(&item, "expireAt"));
}

#[tokio::test]
async fn email_is_in_the_users_language_with_the_code_in_both_parts() {
    let env = Env::new().await;
    let (user, address) = env
        .user(json!({"language": "pt-BR", "name": "<Ana & Bia>"}))
        .await;
    let challenge = env.challenge(&user, "email", 600).await;
    let ev = post(&challenge);
    assert_eq!(call(&env.app(&[]), &ev, env.now).await.status, 200);
    let mail = &emails_to(&address)[0];
    let code = code_in(mail);
    let html = mail["body"]["html"].as_str().unwrap();
    let text = mail["body"]["text"].as_str().unwrap();
    assert!(html.contains(&code) && text.contains(&code));
    assert!(text.contains("Olá, <Ana & Bia>"), "{text}");
    assert!(
        html.contains("&#60;Ana &#38; Bia&#62;") && !html.contains("<Ana"),
        "escaped in HTML"
    );
    assert_eq!(mail["subject"], "Seu código de verificação para entrar");
}

#[tokio::test]
async fn users_without_a_language_get_the_default_language() {
    let env = Env::new().await;
    let (challenge, _, address) = env.email_challenge().await;
    let ev = post(&challenge);
    let app = env.app(&[("DEFAULT_LANGUAGE", "de")]);
    assert_eq!(call(&app, &ev, env.now).await.status, 200);
    assert_eq!(
        emails_to(&address)[0]["subject"],
        "Ihr Bestätigungscode für die Anmeldung"
    );
}

#[tokio::test]
async fn a_challenge_deleted_during_the_request_gets_no_code() {
    // The rotation's condition re-checks existence: simulate the race by
    // deleting between a read (a first successful request) and a write.
    let env = Env::new().await;
    let (challenge, _user, address) = env.email_challenge().await;
    let app = env.app(&[]);
    env.delete_challenge(&challenge).await;
    let ev = post(&challenge);
    let a = call(&app, &ev, env.now).await;
    assert_error(&a, 400, "error-challenge-not-found", "challenge not found");
    assert!(emails_to(&address).is_empty());
    assert!(
        env.get(&tables().challenges, "challengeId", &challenge)
            .await
            .is_none(),
        "not recreated"
    );
}

/// A challenge item whose reservation was given back: `codesSent` is 0,
/// which is the same as never having been counted.
/// The item as if the reservation had never been made: a given-back
/// `codesSent` of 0 and the empty `codes` map a reservation may leave.
fn given_back(mut item: Item) -> Item {
    if n(&item, "codesSent") == Some(0) {
        item.remove("codesSent");
    }
    if item.contains_key("codes") && stored_codes(&item).is_empty() {
        item.remove("codes");
    }
    item
}
