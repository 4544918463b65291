//! The email: language choice and rendering of the subject, text and HTML
//! parts from the files under `templates/`.

use std::collections::HashMap;

use serde::Deserialize;

use crate::domain::code::Code;
use crate::domain::time::Timestamp;

/// A language the email is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// English.
    En,
    /// Portuguese (Brazil); also used for other Portuguese tags.
    PtBr,
    /// Spanish.
    Es,
    /// German.
    De,
    /// French.
    Fr,
}

impl Language {
    /// Every supported language.
    pub const ALL: [Language; 5] = [Self::En, Self::PtBr, Self::Es, Self::De, Self::Fr];

    /// Its tag, as used in `DEFAULT_LANGUAGE` and users' `language`.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::PtBr => "pt-BR",
            Self::Es => "es",
            Self::De => "de",
            Self::Fr => "fr",
        }
    }

    /// The base language a tag falls back to (`pt-BR` → `pt`).
    fn base(self) -> &'static str {
        match self {
            Self::PtBr => "pt",
            other => other.tag(),
        }
    }

    fn messages_file(self) -> &'static str {
        match self {
            Self::En => include_str!("../templates/messages/en.json"),
            Self::PtBr => include_str!("../templates/messages/pt-BR.json"),
            Self::Es => include_str!("../templates/messages/es.json"),
            Self::De => include_str!("../templates/messages/de.json"),
            Self::Fr => include_str!("../templates/messages/fr.json"),
        }
    }

    /// A supported tag, any case, `-` or `_` (`pt_br`, `EN`); nothing else.
    pub fn parse_exact(tag: &str) -> Option<Self> {
        let tag = tag.trim().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(&tag))
    }

    /// The language for a user's tag: exact match, else by base language
    /// (`pt-PT` → Portuguese, `en-US` → English), else none.
    pub fn resolve(tag: &str) -> Option<Self> {
        Self::parse_exact(tag).or_else(|| {
            let normalized = tag.trim().replace('_', "-");
            let base = normalized.split('-').next().unwrap_or_default();
            Self::ALL
                .into_iter()
                .find(|l| l.base().eq_ignore_ascii_case(base))
        })
    }
}

/// The phrases of one language, from `templates/messages/<tag>.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Messages {
    subject: String,
    greeting: String,
    greeting_anonymous: String,
    intro: String,
    expiry: String,
    do_not_share: String,
    ignore: String,
}

/// All templates, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Templates {
    messages: HashMap<Language, Messages>,
    text_layout: &'static str,
    html_layout: &'static str,
}

/// A template file that does not parse (a build defect; stops start-up).
#[derive(Debug, thiserror::Error)]
#[error("email template for {language} is invalid: {reason}")]
pub struct TemplateError {
    language: &'static str,
    reason: String,
}

/// A rendered email, ready for SES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// Subject line.
    pub subject: String,
    /// Plain-text part.
    pub text: String,
    /// HTML part.
    pub html: String,
}

/// What goes into one email.
#[derive(Debug, Clone, Copy)]
pub struct EmailInput<'a> {
    /// The fresh code.
    pub code: &'a Code,
    /// When it stops working (epoch seconds).
    pub code_expire_at: i64,
    /// The user's name, if known (escaped in HTML).
    pub display_name: Option<&'a str>,
    /// The language to write in.
    pub language: Language,
    /// The time of sending.
    pub now: Timestamp,
}

impl Templates {
    /// Parses every language's phrases and checks each has its placeholders.
    pub fn load() -> Result<Self, TemplateError> {
        let mut messages = HashMap::new();
        for language in Language::ALL {
            let fail = |reason: String| TemplateError {
                language: language.tag(),
                reason,
            };
            let parsed: Messages =
                serde_json::from_str(language.messages_file()).map_err(|e| fail(e.to_string()))?;
            for (field, text, needed) in [
                ("greeting", &parsed.greeting, &["name"][..]),
                ("expiry", &parsed.expiry, &["time", "minutes"][..]),
            ] {
                if let Some(missing) = needed
                    .iter()
                    .find(|p| !text.contains(&format!("{{{{{p}}}}}")))
                {
                    return Err(fail(format!("{field} lacks {{{{{missing}}}}}")));
                }
            }
            messages.insert(language, parsed);
        }
        Ok(Self {
            messages,
            text_layout: include_str!("../templates/email.txt"),
            html_layout: include_str!("../templates/email.html"),
        })
    }

    /// Renders the email in the requested language.
    pub fn render(&self, input: &EmailInput<'_>) -> RenderedEmail {
        let m = self
            .messages
            .get(&input.language)
            .or_else(|| self.messages.get(&Language::En))
            .or_else(|| self.messages.values().next());
        let Some(m) = m else {
            // `load` always fills every language; this keeps render total.
            return RenderedEmail {
                subject: String::new(),
                text: input.code.display(),
                html: input.code.display(),
            };
        };
        let code = input.code.display();
        let minutes = ((input.code_expire_at - input.now.secs() + 59) / 60)
            .max(1)
            .to_string();
        let time = clock_time_utc(input.code_expire_at);

        let part = |escape: fn(&str) -> String| {
            let greeting = match input.display_name {
                Some(name) => fill(&m.greeting, &[("name", &escape(name))]),
                None => escape(&m.greeting_anonymous),
            };
            let expiry = fill(
                &escape(&m.expiry),
                &[("time", &time), ("minutes", &minutes)],
            );
            vec![
                ("lang", input.language.tag().to_string()),
                ("subject", escape(&m.subject)),
                ("greeting", greeting),
                ("intro", escape(&m.intro)),
                ("code", code.clone()),
                ("expiry", expiry),
                ("do_not_share", escape(&m.do_not_share)),
                ("ignore", escape(&m.ignore)),
            ]
        };
        RenderedEmail {
            subject: m.subject.clone(),
            text: fill_owned(self.text_layout, &part(str::to_string)),
            html: fill_owned(self.html_layout, &part(escape_html)),
        }
    }
}

fn fill_owned(template: &str, values: &[(&'static str, String)]) -> String {
    let borrowed: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fill(template, &borrowed)
}

/// Replaces each `{{key}}` in one left-to-right pass; inserted values are
/// never scanned again, so a name like `{{code}}` stays literal text.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let value = after.find("}}").and_then(|close| {
            let key = &after[..close];
            values
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v, close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `HH:MM` of an epoch-seconds instant, in UTC.
fn clock_time_utc(epoch_secs: i64) -> String {
    let of_day = epoch_secs.rem_euclid(86_400);
    format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(language: Language, name: Option<&str>) -> (RenderedEmail, Code) {
        let code = Code::generate().unwrap();
        let templates = Templates::load().expect("templates parse");
        let email = templates.render(&EmailInput {
            code: &code,
            code_expire_at: 1_700_000_600, // 22:23:20 UTC
            display_name: name,
            language,
            now: Timestamp::from_secs(1_700_000_000),
        });
        (email, code)
    }

    #[test]
    fn every_language_renders_code_and_expiry_in_both_parts() {
        for language in Language::ALL {
            let (email, code) = render(language, Some("Ana"));
            for part in [&email.text, &email.html] {
                assert!(part.contains(&code.display()), "{language:?}: code missing");
                assert!(part.contains("22:23"), "{language:?}: expiry time missing");
                assert!(
                    part.to_lowercase().contains("10 min"),
                    "{language:?}: minutes missing"
                );
                assert!(part.contains("Ana"), "{language:?}: name missing");
                assert!(!part.contains("{{"), "{language:?}: unfilled placeholder");
            }
            assert!(!email.subject.is_empty());
            assert!(
                !email.subject.contains(&code.display()),
                "no code on lock screens"
            );
            assert!(email.html.contains(&format!("lang=\"{}\"", language.tag())));
        }
    }

    #[test]
    fn languages_differ() {
        let subjects: std::collections::HashSet<String> = Language::ALL
            .into_iter()
            .map(|l| render(l, None).0.subject)
            .collect();
        assert_eq!(subjects.len(), Language::ALL.len());
    }

    #[test]
    fn names_are_escaped_in_html_and_never_expanded() {
        let (email, code) = render(Language::En, Some("<b>Eve</b> & {{code}}"));
        assert!(email.html.contains("&lt;b&gt;Eve&lt;/b&gt; &amp; {{code}}"));
        assert!(!email.html.contains("<b>Eve"));
        assert!(
            email.text.contains("<b>Eve</b> & {{code}}"),
            "text part keeps it literal"
        );
        assert_eq!(email.text.matches(&code.display()).count(), 1);
    }

    #[test]
    fn anonymous_greeting_when_no_name() {
        let (email, _) = render(Language::De, None);
        assert!(email.text.starts_with("Hallo,"));
    }

    #[test]
    fn language_resolution_falls_back_by_base_language() {
        assert_eq!(Language::resolve("pt-BR"), Some(Language::PtBr));
        assert_eq!(Language::resolve("pt_br"), Some(Language::PtBr));
        assert_eq!(Language::resolve("pt"), Some(Language::PtBr));
        assert_eq!(Language::resolve("pt-PT"), Some(Language::PtBr));
        assert_eq!(Language::resolve("es-MX"), Some(Language::Es));
        assert_eq!(Language::resolve("EN-us"), Some(Language::En));
        assert_eq!(Language::resolve("fr-CA"), Some(Language::Fr));
        assert_eq!(Language::resolve("de"), Some(Language::De));
        assert_eq!(Language::resolve("ja"), None);
        assert_eq!(Language::resolve(""), None);
        assert_eq!(
            Language::parse_exact("pt"),
            None,
            "config takes only supported tags"
        );
    }

    #[test]
    fn fill_replaces_known_keys_once_and_keeps_unknown_ones() {
        assert_eq!(
            fill("a {{x}} b {{y}} {{x}}", &[("x", "1"), ("y", "{{x}}")]),
            "a 1 b {{x}} 1"
        );
        assert_eq!(fill("{{nope}} {{", &[("x", "1")]), "{{nope}} {{");
    }

    #[test]
    fn minutes_round_up() {
        let code = Code::generate().unwrap();
        let email = Templates::load().unwrap().render(&EmailInput {
            code: &code,
            code_expire_at: 1_000 + 61,
            display_name: None,
            language: Language::En,
            now: Timestamp::from_secs(1_000),
        });
        assert!(email.text.contains("for 2 min"), "{}", email.text);
    }
}
