//! The email: language choice and rendering of the subject, text and HTML
//! parts. The layouts in `templates/` are compiled into the binary by
//! askama (HTML-escaped in the HTML part), and the words are Rust tables
//! ([`phrases`]): nothing is read or parsed at start-up.

mod phrases;

use std::fmt;

use askama::Template;

use crate::domain::code::Code;
use crate::domain::time::{EpochSeconds, Timestamp};
use phrases::Phrases;

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

    fn phrases(self) -> &'static Phrases {
        match self {
            Self::En => &phrases::EN,
            Self::PtBr => &phrases::PT_BR,
            Self::Es => &phrases::ES,
            Self::De => &phrases::DE,
            Self::Fr => &phrases::FR,
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

/// The email templates. They are compiled into the binary, so there is
/// nothing to load or check at run time (a broken template is a build error).
#[derive(Debug, Clone, Copy, Default)]
pub struct Templates;

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
    /// When it stops working.
    pub code_expire_at: EpochSeconds,
    /// The user's name, if known (escaped in HTML).
    pub display_name: Option<&'a str>,
    /// The language to write in.
    pub language: Language,
    /// The time of sending.
    pub now: Timestamp,
}

/// What both parts show, ready to be placed by a layout.
struct Parts<'a> {
    lang: &'static str,
    phrases: &'static Phrases,
    greeting: Greeting<'a>,
    code: String,
    expiry: Expiry,
}

/// The plain-text part (`templates/email.txt`, nothing escaped).
#[derive(Template)]
#[template(path = "email.txt")]
struct TextPart<'a> {
    parts: &'a Parts<'a>,
}

/// The HTML part (`templates/email.html`: every value is HTML-escaped).
#[derive(Template)]
#[template(path = "email.html")]
struct HtmlPart<'a> {
    parts: &'a Parts<'a>,
}

/// The greeting, with the name written as given (never read as markup or
/// as a placeholder; the HTML layout escapes it).
struct Greeting<'a> {
    phrases: &'static Phrases,
    name: Option<&'a str>,
}

impl fmt::Display for Greeting<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => (self.phrases.greeting)(f, name),
            None => f.write_str(self.phrases.greeting_anonymous),
        }
    }
}

/// Until when the code works.
struct Expiry {
    phrases: &'static Phrases,
    time: String,
    minutes: i64,
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.phrases.expiry)(f, &self.time, self.minutes)
    }
}

impl Templates {
    /// Renders the email in the requested language.
    pub fn render(&self, input: &EmailInput<'_>) -> RenderedEmail {
        let phrases = input.language.phrases();
        let parts = Parts {
            lang: input.language.tag(),
            phrases,
            greeting: Greeting {
                phrases,
                name: input.display_name,
            },
            code: input.code.display(),
            expiry: Expiry {
                phrases,
                time: clock_time_utc(input.code_expire_at.floor_i64()),
                minutes: ((input.code_expire_at.floor_i64() - input.now.secs() + 59) / 60).max(1),
            },
        };
        // Rendering fails only if a value's `Display` does, and none of
        // these can; the code alone would still let the user sign in.
        let render =
            |part: Result<String, askama::Error>| part.unwrap_or_else(|_| parts.code.clone());
        RenderedEmail {
            subject: phrases.subject.to_string(),
            text: render(TextPart { parts: &parts }.render()),
            html: render(HtmlPart { parts: &parts }.render()),
        }
    }
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
        let templates = Templates;
        let email = templates.render(&EmailInput {
            code: &code,
            code_expire_at: EpochSeconds::from(1_700_000_600), // 22:23:20 UTC
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
        assert!(email
            .html
            .contains("&#60;b&#62;Eve&#60;/b&#62; &#38; {{code}}"));
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
    fn every_markup_character_of_a_name_is_escaped_in_html_only() {
        let name = r#"<a href="x">O'Hara & co</a>"#;
        let (email, _) = render(Language::Fr, Some(name));
        assert!(
            email
                .html
                .contains("Bonjour &#60;a href=&#34;x&#34;&#62;O&#39;Hara &#38; co&#60;/a&#62;,"),
            "{}",
            email.html
        );
        assert!(email.text.starts_with(&format!("Bonjour {name},")));
    }

    #[test]
    fn minutes_round_up() {
        let code = Code::generate().unwrap();
        let email = Templates.render(&EmailInput {
            code: &code,
            code_expire_at: EpochSeconds::from(1_000 + 61),
            display_name: None,
            language: Language::En,
            now: Timestamp::from_secs(1_000),
        });
        assert!(email.text.contains("for 2 min"), "{}", email.text);
    }
}
