//! A missing or invalid variable stops the real binary at start-up, before
//! any request, with one log line naming it (and never echoing a secret).

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const SECRET: &str = "start-up-secret-start-up-secret-!!";

fn run_bootstrap(vars: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("bootstrap runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

fn valid() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CHALLENGES_TABLE", "c"),
        ("USERS_TABLE", "u"),
        ("RATE_LIMIT_TABLE", "r"),
        ("SENDER_EMAIL", "no-reply@example.com"),
        ("CODE_HMAC_SECRET", SECRET),
        ("AWS_REGION", "us-east-1"),
    ]
}

#[test]
fn each_missing_required_variable_stops_start_up_with_one_line_naming_it() {
    for missing in [
        "CHALLENGES_TABLE",
        "USERS_TABLE",
        "RATE_LIMIT_TABLE",
        "SENDER_EMAIL",
        "CODE_HMAC_SECRET",
    ] {
        let vars: Vec<_> = valid().into_iter().filter(|(k, _)| *k != missing).collect();
        let (code, out) = run_bootstrap(&vars);
        assert_ne!(code, 0, "{missing}: must not start");
        let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{missing}: one line, got {out:?}");
        assert!(lines[0].contains(missing), "{missing}: {out:?}");
        assert!(!out.contains(SECRET));
    }
}

#[test]
fn invalid_values_stop_start_up_too() {
    for (name, value) in [
        ("DEFAULT_LANGUAGE", "klingon"),
        ("RATE_LIMIT_MAX", "0"),
        ("RESEND_COOLDOWN_SECONDS", "-1"),
        ("RESEND_COOLDOWN_SECONDS", "1.5"),
        ("MAX_CODES_PER_USER", "ten"),
        ("MAX_CODES_PER_USER", "-3"),
        ("USER_WINDOW_SECONDS", "0"),
        ("RATE_LIMIT_IPV6_PREFIX", "47"),
        ("RATE_LIMIT_IPV6_PREFIX", "129"),
        ("RATE_LIMIT_IPV6_PREFIX", "/64"),
        ("CODE_HMAC_SECRET", "too-short"),
        ("CHALLENGES_TABLE", ""),
        ("TLS_EXTRA_ROOTS_FILE", "/no/such/roots.pem"),
        ("TLS_EXTRA_ROOTS_FILE", "/proc/self/status"),
    ] {
        let mut vars = valid();
        vars.retain(|(k, _)| *k != name);
        vars.push((name, value));
        let (code, out) = run_bootstrap(&vars);
        assert_ne!(code, 0, "{name}={value}");
        assert!(out.contains(name), "{name}: {out:?}");
        assert!(
            !out.contains("too-short"),
            "the secret's value is never echoed"
        );
    }
}
