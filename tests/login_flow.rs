//! The README's "For the login flow": the Node.js and Python snippets in
//! docs/login-flow/ must give the same answer as the library's `verify` on
//! hashes the library itself made, the README must show them unchanged, and
//! its test vector must be right. node and python3 are required: when either
//! is missing the test fails rather than skips.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use send_email_code::domain::code::{Code, CodeHash};
use send_email_code::verify;
use serde_json::{json, Value};

/// The README's test vector (cross-checked with `openssl dgst -sha256 -hmac`).
const VECTOR_SECRET: &str = "3c9f0a7d52e14b8e9a6d1f0c4b7e2a5d8c1f6b3e0a9d4c7f2e5b8a1d6c3f0e9b";
const VECTOR_CHALLENGE: &str = "8f4c2d1e9a7b6c5d3e2f1a0b";
const VECTOR_CODE: &str = "042-917";
const VECTOR_HASH: &str = "576ba0c2d95c6ab0b31af6b35831825de4f3fa2278d4ca5c027fd9c86d8bc4b6";

const EXPIRE_AT: i64 = 2_000_000_000;
const NOW: i64 = 1_999_999_000;

/// Reads cases as JSON on stdin, prints the snippet's answers as a JSON array.
const NODE_DRIVER: &str = r#"
const { verifyCode } = require(process.argv[1]);
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map((c) =>
  verifyCode(c.secret, c.challengeId, c.typed, c.codeHash, c.codeExpireAt, c.now))));
"#;

const PYTHON_DRIVER: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
from verify import verify_code
cases = json.load(sys.stdin)
print(json.dumps([verify_code(c["secret"], c["challengeId"], c["typed"], c["codeHash"],
                              c["codeExpireAt"], c["now"]) for c in cases]))
"#;

fn snippets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/login-flow")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One check for the snippets, with the answer the library gives.
struct Case {
    secret: String,
    challenge_id: String,
    typed: String,
    code_hash: String,
    code_expire_at: i64,
    now: i64,
    want: bool,
}

impl Case {
    fn new(secret: &str, challenge_id: &str, typed: &str, hash: &str, want: bool) -> Self {
        Self {
            secret: secret.into(),
            challenge_id: challenge_id.into(),
            typed: typed.into(),
            code_hash: hash.into(),
            code_expire_at: EXPIRE_AT,
            now: NOW,
            want,
        }
    }

    fn with_hash(mut self, hash: &str) -> Self {
        self.code_hash = hash.into();
        self
    }

    fn at(mut self, now: i64) -> Self {
        self.now = now;
        self
    }

    fn json(&self) -> Value {
        json!({
            "secret": self.secret, "challengeId": self.challenge_id, "typed": self.typed,
            "codeHash": self.code_hash, "codeExpireAt": self.code_expire_at, "now": self.now,
        })
    }
}

/// Cases over codes the library drew and hashed, plus the README's vector.
fn cases() -> Vec<Case> {
    let mut cases = vec![Case::new(
        VECTOR_SECRET,
        VECTOR_CHALLENGE,
        VECTOR_CODE,
        VECTOR_HASH,
        true,
    )];
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
        let code = Code::generate().expect("random source");
        let hash = CodeHash::new(secret.as_bytes(), &challenge, &code);
        let h = hash.as_str();
        let digits = code.digits();
        let n: u32 = digits.parse().expect("six digits");
        let wrong = format!("{:06}", (n + 1) % 1_000_000);
        let fullwidth: String = digits
            .chars()
            .map(|c| char::from_u32(0xFF10 + c.to_digit(10).unwrap_or(0)).unwrap_or('x'))
            .collect();
        let c = |typed: &str, want| Case::new(secret, &challenge, typed, h, want);
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
            Case::new(secret, &format!("{challenge}x"), &digits, h, false),
            Case::new(&format!("{secret}x"), &challenge, &digits, h, false),
            c(&digits, true).with_hash(&h.to_uppercase()),
            c(&digits, false).with_hash(&h[..62]),
            c(&digits, false).with_hash("not-hex"),
            c(&digits, false).with_hash(""),
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
        let got = verify(
            case.secret.as_bytes(),
            &case.challenge_id,
            &case.typed,
            &case.code_hash,
            case.code_expire_at,
            case.now,
        );
        assert_eq!(got, case.want, "verify on {}", case.json());
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
fn readme_test_vector_is_the_library_hash() {
    // The README gives the code dashed, as the email shows it.
    let digits = VECTOR_CODE.replace('-', "");
    assert!(verify(
        VECTOR_SECRET.as_bytes(),
        VECTOR_CHALLENGE,
        &digits,
        VECTOR_HASH,
        EXPIRE_AT,
        NOW
    ));
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    for value in [VECTOR_SECRET, VECTOR_CHALLENGE, VECTOR_CODE, VECTOR_HASH] {
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
