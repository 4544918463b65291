//! Prints the HTML part of the code email as the function renders it, for a
//! language given as the first argument (default `en`). Used to make the
//! screenshot in docs/ (scripts/screenshot-email.sh); sends nothing.

// In a developer tool, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use send_email_code::domain::code::Code;
use send_email_code::email::{EmailInput, Language, Templates};
use send_email_code::Timestamp;

fn main() -> Result<(), String> {
    let tag = std::env::args().nth(1).unwrap_or_else(|| "en".into());
    let language = Language::parse_exact(&tag).ok_or(format!("unsupported language {tag}"))?;
    let templates = Templates;
    let code = Code::generate().map_err(|e| e.to_string())?;
    let now = Timestamp::now();
    let email = templates.render(&EmailInput {
        code: &code,
        code_expire_at: now.whole_secs().plus_secs(600),
        display_name: Some("Ana Souza"),
        language,
        now,
    });
    print!("{}", email.html);
    Ok(())
}
