//! The README's "For the login flow": the Node.js and Python snippets in
//! docs/login-flow/ must give the same answer as the library's `verify` over
//! a challenge's `codes` map, on hashes the library itself made; the README
//! must show them unchanged, and its test vector must be right. node and
//! python3 are required: when either is missing the test fails rather than
//! skips.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use send_email_code::domain::code::{Code, CodeHash};
use send_email_code::{verify, CodeEntry, EpochSeconds, Timestamp};
use serde_json::{json, Map, Value};

/// The README's test vector (hashes cross-checked with `openssl dgst -sha256
/// -hmac`): a challenge whose `codes` map holds a first code and a resent one.
/// At `VECTOR_NOW` both verify; at `VECTOR_LATER`, the first one's `expireAt`,
/// only the resent one does.
const VECTOR_SECRET: &str = "3c9f0a7d52e14b8e9a6d1f0c4b7e2a5d8c1f6b3e0a9d4c7f2e5b8a1d6c3f0e9b";
const VECTOR_CHALLENGE: &str = "8f4c2d1e9a7b6c5d3e2f1a0b";
/// The first code: (SES message id, code as emailed, codeHash, sentAt, expireAt).
const VECTOR_FIRST: VectorEntry = (
    "0100018f3a2b1c0d-7e6f5a4b-3c2d-4e1f-8a9b-0c1d2e3f4a5b-000000",
    "615-280",
    "638678d0647593887148e5bc3e07149aca89fc012e7abdb3d2a69521a4802581",
    1_799_999_500,
    1_800_000_100,
);
/// The resent code.
const VECTOR_SECOND: VectorEntry = (
    "0100018f3a2b2e4f-1a2b3c4d-5e6f-4a7b-9c8d-7e6f5a4b3c2d-000000",
    "042-917",
    "576ba0c2d95c6ab0b31af6b35831825de4f3fa2278d4ca5c027fd9c86d8bc4b6",
    1_799_999_800,
    1_800_000_400,
);
const VECTOR_WRONG: &str = "042-918";
/// The wrong code's own hash, to show that hashes tell codes apart.
const VECTOR_WRONG_HASH: &str = "5b9f31720509b583187a8d8faf88c7c3370ccf459803c0329d888f3e8d15cac0";
const VECTOR_NOW: i64 = 1_800_000_000;
const VECTOR_LATER: i64 = 1_800_000_100;

type VectorEntry = (&'static str, &'static str, &'static str, i64, i64);

const EXPIRE_AT: i64 = 2_000_000_000;
const NOW: i64 = 1_999_999_000;

/// Reads cases as JSON on stdin, prints the snippet's answers as a JSON array.
const NODE_DRIVER: &str = r#"
const { verifyCode } = require(process.argv[1]);
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map((c) =>
  verifyCode(c.secret, c.challengeId, c.typed, c.codes, c.now))));
"#;

/// Numbers arrive as Decimal, as boto3's Table resource gives them.
const PYTHON_DRIVER: &str = r#"
import json, sys
from decimal import Decimal
sys.path.insert(0, sys.argv[1])
from verify import verify_code
cases = json.load(sys.stdin, parse_float=Decimal, parse_int=Decimal)
print(json.dumps([verify_code(c["secret"], c["challengeId"], c["typed"], c["codes"],
                              float(c["now"])) for c in cases]))
"#;

fn snippets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/login-flow")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One entry of a `codes` map: its message id, `codeHash` and `expireAt` as
/// DynamoDB Number text (it may be fractional).
#[derive(Clone)]
struct Entry {
    message_id: String,
    code_hash: String,
    expire_at: String,
}

fn entry(message_id: &str, code_hash: &str, expire_at: i64) -> Entry {
    Entry {
        message_id: message_id.into(),
        code_hash: code_hash.into(),
        expire_at: expire_at.to_string(),
    }
}

/// One check for the snippets, with the answer the library gives.
struct Case {
    secret: String,
    challenge_id: String,
    typed: String,
    /// `None`: the challenge has no `codes` attribute at all.
    codes: Option<Vec<Entry>>,
    now_millis: i64,
    want: bool,
}

impl Case {
    fn new(secret: &str, challenge_id: &str, typed: &str, codes: &[Entry], want: bool) -> Self {
        Self {
            secret: secret.into(),
            challenge_id: challenge_id.into(),
            typed: typed.into(),
            codes: Some(codes.to_vec()),
            now_millis: NOW * 1000,
            want,
        }
    }

    fn at(mut self, now_secs: i64) -> Self {
        self.now_millis = now_secs * 1000;
        self
    }

    fn at_millis(mut self, now_millis: i64) -> Self {
        self.now_millis = now_millis;
        self
    }

    fn without_codes(mut self) -> Self {
        self.codes = None;
        self
    }

    /// The library's answer.
    fn verify(&self) -> bool {
        let entries = self.codes.iter().flatten().map(|e| CodeEntry {
            code_hash: &e.code_hash,
            expire_at: EpochSeconds::parse(&e.expire_at).expect("a number"),
        });
        verify(
            self.secret.as_bytes(),
            &self.challenge_id,
            &self.typed,
            entries,
            Timestamp::from_millis(self.now_millis),
        )
    }

    /// The case as the snippets get it: `codes` unmarshalled, as the
    /// DocumentClient and boto3 return it.
    fn json(&self) -> Value {
        let codes = self.codes.as_ref().map(|codes| {
            let map: Map<String, Value> = codes
                .iter()
                .map(|e| {
                    let expire_at: f64 = e.expire_at.parse().expect("a number");
                    let value = json!({
                        "codeHash": e.code_hash, "expireAt": expire_at,
                        "sentAt": expire_at.floor() as i64 - 600,
                    });
                    (e.message_id.clone(), value)
                })
                .collect();
            Value::Object(map)
        });
        json!({
            "secret": self.secret, "challengeId": self.challenge_id, "typed": self.typed,
            "codes": codes, "now": self.now_millis as f64 / 1000.0,
        })
    }
}

/// The README's vector as cases: both codes at `VECTOR_NOW`, the first one
/// expired at `VECTOR_LATER`, and a wrong code.
fn vector_cases() -> Vec<Case> {
    let codes: Vec<Entry> = [VECTOR_FIRST, VECTOR_SECOND]
        .iter()
        .map(|&(id, _, hash, _, expire_at)| entry(id, hash, expire_at))
        .collect();
    let c = |typed: &str, want| Case::new(VECTOR_SECRET, VECTOR_CHALLENGE, typed, &codes, want);
    let (first, second) = (VECTOR_FIRST.1, VECTOR_SECOND.1);
    vec![
        c(first, true).at(VECTOR_NOW),
        c(second, true).at(VECTOR_NOW),
        c(VECTOR_WRONG, false).at(VECTOR_NOW),
        c(first, false).at(VECTOR_LATER),
        c(second, true).at(VECTOR_LATER),
        c(VECTOR_WRONG, false).at(VECTOR_LATER),
        c(second, false).at(VECTOR_SECOND.4),
    ]
}

/// Cases over codes the library drew and hashed, plus the README's vector.
fn cases() -> Vec<Case> {
    let mut cases = vector_cases();
    let secrets = [
        VECTOR_SECRET,
        "clé secrète, pas en ASCII: ünïcødé ✓ 0123456789",
    ];
    for i in 0..20 {
        let secret = secrets[i % secrets.len()];
        let challenge = if i % 3 == 0 {
            format!("défi-✓-{i}")
        } else {
            format!("{:064x}", i * 7919)
        };
        let hash_of = |code: &Code| {
            CodeHash::new(secret.as_bytes(), &challenge, code)
                .as_str()
                .to_string()
        };
        let code = Code::generate().expect("random source");
        let other = loop {
            let other = Code::generate().expect("random source");
            if other != code {
                break other;
            }
        };
        let (h, h2) = (hash_of(&code), hash_of(&other));
        let digits = code.digits();
        let n: u32 = digits.parse().expect("six digits");
        let wrong = format!("{:06}", (n + 1) % 1_000_000);
        let fullwidth: String = digits
            .chars()
            .map(|c| char::from_u32(0xFF10 + c.to_digit(10).unwrap_or(0)).unwrap_or('x'))
            .collect();
        let one = |hash: &str| vec![entry("m-1", hash, EXPIRE_AT)];
        let c = |typed: &str, want| Case::new(secret, &challenge, typed, &one(&h), want);
        let with =
            |codes: &[Entry], typed: &str, want| Case::new(secret, &challenge, typed, codes, want);
        // A resend: the first code (h) and the second (h2), both unexpired
        // until the first expires at EXPIRE_AT.
        let resend = [
            entry("m-1", &h, EXPIRE_AT),
            entry("m-2", &h2, EXPIRE_AT + 300),
        ];
        let mut several: Vec<Entry> = (0..4)
            .map(|k| {
                entry(
                    &format!("m-{k}"),
                    &hash_of(&Code::generate().unwrap()),
                    EXPIRE_AT,
                )
            })
            .collect();
        several.push(entry("m-bad", "not-hex", EXPIRE_AT));
        let first_of_several = [&[entry("m-x", &h, EXPIRE_AT)], several.as_slice()].concat();
        let last_of_several = [several.as_slice(), &[entry("m-x", &h, EXPIRE_AT)]].concat();
        let fractional = [Entry {
            expire_at: format!("{EXPIRE_AT}.5"),
            ..entry("m-1", &h, 0)
        }];
        cases.extend([
            c(&digits, true),
            c(&code.display(), true),
            c(&format!(" {digits}\n"), true),
            c(&wrong, false),
            c(&digits, false).at(EXPIRE_AT),
            c(&digits, true).at(EXPIRE_AT - 1),
            c(&digits[..5], false),
            c(&format!("{digits}0"), false),
            c(&format!("{} {}", &digits[..3], &digits[3..]), false),
            c(&format!("{}--{}", &digits[..3], &digits[3..]), false),
            c(&fullwidth, false),
            c("", false),
            Case::new(secret, &format!("{challenge}x"), &digits, &one(&h), false),
            Case::new(&format!("{secret}x"), &challenge, &digits, &one(&h), false),
            with(&one(&h.to_uppercase()), &digits, true),
            with(&one(&h[..62]), &digits, false),
            with(&one(&format!("{h}00")), &digits, false),
            with(&one(&format!("{} {}", &h[..32], &h[32..])), &digits, false),
            with(&one("not-hex"), &digits, false),
            with(&one(""), &digits, false),
            with(&[], &digits, false),
            c(&digits, false).without_codes(),
            with(&fractional, &digits, true).at_millis(EXPIRE_AT * 1000 + 499),
            with(&fractional, &digits, false).at_millis(EXPIRE_AT * 1000 + 500),
            with(&resend, &digits, true),
            with(&resend, &other.display(), true),
            with(&resend, &wrong, false),
            with(&resend, &digits, false).at(EXPIRE_AT),
            with(&resend, &other.digits(), true).at(EXPIRE_AT),
            with(&first_of_several, &digits, true),
            with(&last_of_several, &digits, true),
            with(&several, &digits, false),
        ]);
    }
    cases
}

/// Runs a driver with the cases on stdin; its answers, one per case.
fn run(program: &str, args: &[&str], cases: &[Case]) -> Vec<bool> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is required to test the login-flow snippets and could not start: {e}")
        });
    let input = Value::Array(cases.iter().map(Case::json).collect()).to_string();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write cases");
    let out = child.wait_with_output().expect("driver output");
    assert!(out.status.success(), "{program} failed: {}", out.status);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{program} printed no list of answers ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn check_snippet(name: &str, answers: &[bool], cases: &[Case]) {
    assert_eq!(answers.len(), cases.len(), "{name}: one answer per case");
    let wrong: Vec<String> = cases
        .iter()
        .zip(answers)
        .filter(|(case, answer)| case.want != **answer)
        .map(|(case, answer)| format!("{} answered {answer} for {}", name, case.json()))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn library_verify_gives_the_expected_answer_for_every_case() {
    for case in cases() {
        assert_eq!(case.verify(), case.want, "verify on {}", case.json());
    }
}

#[test]
fn node_snippet_agrees_with_the_library() {
    let cases = cases();
    let module = snippets().join("verify.js");
    let module = module.to_str().expect("UTF-8 path");
    let answers = run("node", &["-e", NODE_DRIVER, module], &cases);
    check_snippet("verify.js", &answers, &cases);
}

#[test]
fn python_snippet_agrees_with_the_library() {
    let cases = cases();
    let dir = snippets();
    let dir = dir.to_str().expect("UTF-8 path");
    let answers = run("python3", &["-c", PYTHON_DRIVER, dir], &cases);
    check_snippet("verify.py", &answers, &cases);
}

#[test]
fn test_vector_hashes_are_the_library_hashes_and_entries_are_as_the_function_writes() {
    for (_, typed, hash, sent_at, expire_at) in [VECTOR_FIRST, VECTOR_SECOND] {
        let alone = |hash| {
            let entry = CodeEntry {
                code_hash: hash,
                expire_at: EpochSeconds::from(expire_at),
            };
            verify(
                VECTOR_SECRET.as_bytes(),
                VECTOR_CHALLENGE,
                typed,
                [entry],
                Timestamp::from_secs(sent_at),
            )
        };
        assert!(alone(hash), "{typed}'s hash is {hash}");
        assert!(
            !alone(VECTOR_WRONG_HASH),
            "the wrong code's hash is another"
        );
        assert_eq!(expire_at - sent_at, 600, "CODE_TTL_SECONDS' default");
    }
    assert_eq!(VECTOR_FIRST.4, VECTOR_LATER, "the first code expires then");
    assert!(VECTOR_SECOND.3 < VECTOR_NOW && VECTOR_NOW < VECTOR_LATER);
    let wrong = VECTOR_WRONG;
    let entry = CodeEntry {
        code_hash: VECTOR_WRONG_HASH,
        expire_at: EpochSeconds::from(VECTOR_LATER),
    };
    let now = Timestamp::from_secs(VECTOR_NOW);
    assert!(verify(
        VECTOR_SECRET.as_bytes(),
        VECTOR_CHALLENGE,
        wrong,
        [entry],
        now
    ));
}

#[test]
fn readme_gives_the_test_vector() {
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    for value in [
        VECTOR_SECRET,
        VECTOR_CHALLENGE,
        VECTOR_FIRST.1,
        VECTOR_FIRST.2,
        VECTOR_SECOND.1,
        VECTOR_SECOND.2,
    ] {
        assert!(readme.contains(value), "README's test vector lacks {value}");
    }
}

#[test]
fn readme_shows_the_snippets_exactly_as_tested() {
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    for (file, fence) in [("verify.js", "```js\n"), ("verify.py", "```python\n")] {
        let body = read(&snippets().join(file));
        assert!(
            readme.contains(&format!("{fence}{body}```")),
            "README.md must show docs/login-flow/{file} verbatim in a {fence:?} block"
        );
    }
}
