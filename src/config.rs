//! Configuration: read and validated once at start-up, then shared read-only.

use std::fmt;

use crate::email::Language;

/// Shortest `CODE_HMAC_SECRET` accepted, in bytes (HMAC-SHA256 key strength).
pub const MIN_SECRET_BYTES: usize = 32;

/// Everything the function needs from its environment.
#[derive(Clone)]
pub struct Config {
    /// Table of two-factor challenges (`CHALLENGES_TABLE`).
    pub challenges_table: String,
    /// Table of users, read only (`USERS_TABLE`).
    pub users_table: String,
    /// Table of rate-limit counters (`RATE_LIMIT_TABLE`).
    pub rate_limit_table: String,
    /// The From address of the email (`SENDER_EMAIL`).
    pub sender_email: String,
    /// Key of the stored code HMAC (`CODE_HMAC_SECRET`).
    pub code_hmac_secret: HmacSecret,
    /// SES configuration set, if any (`SES_CONFIGURATION_SET`).
    pub ses_configuration_set: Option<String>,
    /// Requests per window per caller (`RATE_LIMIT_MAX`).
    pub rate_limit_max: u32,
    /// Length of a rate-limit window in seconds (`RATE_LIMIT_WINDOW_SECONDS`).
    pub rate_limit_window_seconds: u32,
    /// Lifetime of a code in seconds (`CODE_TTL_SECONDS`).
    pub code_ttl_seconds: u32,
    /// Codes one challenge may receive (`MAX_CODES_PER_CHALLENGE`).
    pub max_codes_per_challenge: u32,
    /// Least seconds between two codes of one challenge; 0 is off
    /// (`RESEND_COOLDOWN_SECONDS`).
    pub resend_cooldown_seconds: u32,
    /// Codes one user may receive per user window; 0 is off (`MAX_CODES_PER_USER`).
    pub max_codes_per_user: u32,
    /// Length of the per-user window in seconds (`USER_WINDOW_SECONDS`).
    pub user_window_seconds: u32,
    /// IPv6 callers are counted per network of this many bits (`RATE_LIMIT_IPV6_PREFIX`).
    pub rate_limit_ipv6_prefix: u8,
    /// ALB only: which `X-Forwarded-For` entry, from the right, is the caller.
    pub trusted_proxy_hops: u32,
    /// Email language for users without one (`DEFAULT_LANGUAGE`).
    pub default_language: Language,
    /// Trust the system's root certificates besides the built-in Amazon
    /// roots, for networks that re-sign TLS (`TLS_SYSTEM_ROOTS`, off by default).
    pub tls_system_roots: bool,
    /// More roots to trust, from the PEM file `TLS_EXTRA_ROOTS_FILE` names
    /// (off by default): a private CA in front of the endpoints, such as
    /// the TLS front of the local tests and benchmark.
    pub tls_extra_roots: Option<ExtraRoots>,
    /// When the connections a cold request needs are opened (`PRECONNECT`).
    pub preconnect: Preconnect,
}

/// When a process opens the connections its first success needs beyond
/// those of round 1: DynamoDB's third (round 2 makes three calls at once)
/// and SES's (round 3). Opening one means a TCP and TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preconnect {
    /// At the first request with a challenge id, beside round 1, so the
    /// handshakes overlap its calls instead of delaying rounds 2 and 3;
    /// nothing at init (`first-request`, the default).
    #[default]
    FirstRequest,
    /// During init, all of them (round 1's too) at once, for at most the
    /// connect timeout: init is billed, and only an environment initialised
    /// before its first request (provisioned concurrency, proactive
    /// initialisation) gains the whole handshake time (`init`).
    Init,
    /// Never: each connection is opened by the call that needs it (`off`).
    Off,
}

/// Largest `TLS_EXTRA_ROOTS_FILE` read, in bytes: far more than any set of
/// roots; a bigger file is a wrong path, not a trust store.
pub const MAX_EXTRA_ROOTS_BYTES: usize = 1024 * 1024;

/// Root certificates read from `TLS_EXTRA_ROOTS_FILE` at start-up, each one
/// checked to be usable as a trust anchor (the SDK would panic on one that
/// is not when it builds its TLS configuration).
#[derive(Clone, PartialEq, Eq)]
pub struct ExtraRoots {
    pem: Vec<u8>,
    count: usize,
}

impl ExtraRoots {
    /// Reads and checks `path`; the error says what is wrong, never what the
    /// file holds.
    pub fn read(path: &str) -> Result<Self, String> {
        use std::io::Read;
        let file = std::fs::File::open(path)
            .map_err(|err| format!("names a file that cannot be opened ({})", err.kind()))?;
        let mut pem = Vec::new();
        file.take(MAX_EXTRA_ROOTS_BYTES as u64 + 1)
            .read_to_end(&mut pem)
            .map_err(|err| format!("names a file that cannot be read ({})", err.kind()))?;
        if pem.len() > MAX_EXTRA_ROOTS_BYTES {
            return Err(format!(
                "names a file over {MAX_EXTRA_ROOTS_BYTES} bytes, too big for root certificates"
            ));
        }
        Self::from_pem(pem)
    }

    /// Checks PEM text: at least one certificate, every one a usable root.
    pub fn from_pem(pem: Vec<u8>) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "names a file that is not PEM certificates".to_string())?;
        if certificates.is_empty() {
            return Err("names a file with no PEM certificate in it".into());
        }
        // A key has no place in a file of roots, and would stay in memory.
        const KEY: &[u8] = b"PRIVATE KEY-----";
        if pem.windows(KEY.len()).any(|w| w == KEY) {
            return Err("names a file that holds a private key: give it certificates only".into());
        }
        let mut roots = rustls::RootCertStore::empty();
        for (n, certificate) in certificates.into_iter().enumerate() {
            roots.add(certificate).map_err(|_| {
                format!(
                    "names a file whose certificate {} is not a usable X.509 certificate",
                    n + 1
                )
            })?;
        }
        Ok(Self {
            pem,
            count: roots.len(),
        })
    }

    /// The file's bytes, for the SDK's trust store.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// How many roots the file holds.
    pub fn count(&self) -> usize {
        self.count
    }
}

impl fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExtraRoots({} certificates)", self.count)
    }
}

/// The HMAC key; its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct HmacSecret(Vec<u8>);

impl HmacSecret {
    /// Wraps key bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacSecret(<{} bytes redacted>)", self.0.len())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("challenges_table", &self.challenges_table)
            .field("users_table", &self.users_table)
            .field("rate_limit_table", &self.rate_limit_table)
            .field("code_hmac_secret", &self.code_hmac_secret)
            .field("ses_configuration_set", &self.ses_configuration_set)
            .field("rate_limit_max", &self.rate_limit_max)
            .field("rate_limit_window_seconds", &self.rate_limit_window_seconds)
            .field("code_ttl_seconds", &self.code_ttl_seconds)
            .field("max_codes_per_challenge", &self.max_codes_per_challenge)
            .field("resend_cooldown_seconds", &self.resend_cooldown_seconds)
            .field("max_codes_per_user", &self.max_codes_per_user)
            .field("user_window_seconds", &self.user_window_seconds)
            .field("rate_limit_ipv6_prefix", &self.rate_limit_ipv6_prefix)
            .field("trusted_proxy_hops", &self.trusted_proxy_hops)
            .field("default_language", &self.default_language)
            .field("tls_system_roots", &self.tls_system_roots)
            .field("tls_extra_roots", &self.tls_extra_roots)
            .field("preconnect", &self.preconnect)
            .finish_non_exhaustive()
    }
}

/// A variable that is missing or invalid; names it and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable} {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it (never its value: it may be a secret).
    pub problem: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable name → its value).
    /// An empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let required = |name: &'static str| {
            get(name).ok_or_else(|| ConfigError {
                variable: name,
                problem: "is required but not set".into(),
            })
        };
        // Whole decimal numbers only: `+5`, ` 5` and `5.0` are refused.
        let ranged = |name: &'static str, default: u32, min: u32, max: u32| {
            let Some(raw) = get(name) else {
                return Ok(default);
            };
            raw.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| raw.parse::<u32>().ok())
                .flatten()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| ConfigError {
                    variable: name,
                    problem: format!("must be a whole number from {min} to {max}"),
                })
        };
        let number = |name: &'static str, default: u32| ranged(name, default, 1, u32::MAX);
        let ipv6_prefix = ranged("RATE_LIMIT_IPV6_PREFIX", 64, 48, 128)?;

        let secret = required("CODE_HMAC_SECRET")?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError {
                variable: "CODE_HMAC_SECRET",
                problem: format!("must be at least {MIN_SECRET_BYTES} bytes long"),
            });
        }
        let sender_email = required("SENDER_EMAIL")?;
        if !is_plausible_sender(&sender_email) {
            return Err(ConfigError {
                variable: "SENDER_EMAIL",
                problem: "must be an address like a@example.com or Name <a@example.com>".into(),
            });
        }
        let default_language = match get("DEFAULT_LANGUAGE") {
            None => Language::En,
            Some(tag) => Language::parse_exact(&tag).ok_or_else(|| ConfigError {
                variable: "DEFAULT_LANGUAGE",
                problem: format!(
                    "must be one of the supported languages: {}",
                    Language::ALL.map(Language::tag).join(", ")
                ),
            })?,
        };

        let tls_system_roots = match get("TLS_SYSTEM_ROOTS").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ConfigError {
                    variable: "TLS_SYSTEM_ROOTS",
                    problem: "must be true or false".into(),
                })
            }
        };

        let tls_extra_roots = get("TLS_EXTRA_ROOTS_FILE")
            .map(|path| ExtraRoots::read(&path))
            .transpose()
            .map_err(|problem| ConfigError {
                variable: "TLS_EXTRA_ROOTS_FILE",
                problem,
            })?;

        let preconnect = match get("PRECONNECT").as_deref() {
            None | Some("first-request") => Preconnect::FirstRequest,
            Some("init") => Preconnect::Init,
            Some("off") => Preconnect::Off,
            Some(_) => {
                return Err(ConfigError {
                    variable: "PRECONNECT",
                    problem: "must be first-request, init or off".into(),
                })
            }
        };

        Ok(Self {
            challenges_table: required("CHALLENGES_TABLE")?,
            users_table: required("USERS_TABLE")?,
            rate_limit_table: required("RATE_LIMIT_TABLE")?,
            sender_email,
            code_hmac_secret: HmacSecret::new(secret.into_bytes()),
            ses_configuration_set: get("SES_CONFIGURATION_SET"),
            rate_limit_max: number("RATE_LIMIT_MAX", 5)?,
            rate_limit_window_seconds: number("RATE_LIMIT_WINDOW_SECONDS", 60)?,
            code_ttl_seconds: number("CODE_TTL_SECONDS", 600)?,
            max_codes_per_challenge: number("MAX_CODES_PER_CHALLENGE", 5)?,
            resend_cooldown_seconds: ranged("RESEND_COOLDOWN_SECONDS", 0, 0, u32::MAX)?,
            max_codes_per_user: ranged("MAX_CODES_PER_USER", 10, 0, u32::MAX)?,
            user_window_seconds: number("USER_WINDOW_SECONDS", 3600)?,
            rate_limit_ipv6_prefix: u8::try_from(ipv6_prefix).unwrap_or(128),
            trusted_proxy_hops: number("TRUSTED_PROXY_HOPS", 1)?,
            default_language,
            tls_system_roots,
            tls_extra_roots,
            preconnect,
        })
    }
}

/// `a@b.c` or `Display Name <a@b.c>`, no line breaks (they would forge headers).
fn is_plausible_sender(value: &str) -> bool {
    if value.chars().any(char::is_control) {
        return false;
    }
    let address = match (value.rfind('<'), value.ends_with('>')) {
        (Some(open), true) => &value[open + 1..value.len() - 1],
        (None, false) => value,
        _ => return false,
    };
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("CHALLENGES_TABLE", "challenges".to_string()),
            ("USERS_TABLE", "users".to_string()),
            ("RATE_LIMIT_TABLE", "limits".to_string()),
            (
                "SENDER_EMAIL",
                "Rocket.Chat <no-reply@example.com>".to_string(),
            ),
            ("CODE_HMAC_SECRET", "s".repeat(32)),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_optional_variables_are_unset() {
        let config = load(&base()).expect("valid");
        assert_eq!(config.rate_limit_max, 5);
        assert_eq!(config.rate_limit_window_seconds, 60);
        assert_eq!(config.code_ttl_seconds, 600);
        assert_eq!(config.max_codes_per_challenge, 5);
        assert_eq!(config.trusted_proxy_hops, 1);
        assert_eq!(config.resend_cooldown_seconds, 0);
        assert_eq!(config.max_codes_per_user, 10);
        assert_eq!(config.user_window_seconds, 3600);
        assert_eq!(config.rate_limit_ipv6_prefix, 64);
        assert_eq!(config.default_language, Language::En);
        assert_eq!(config.ses_configuration_set, None);
        assert!(!config.tls_system_roots);
        assert_eq!(config.tls_extra_roots, None);
        assert_eq!(config.preconnect, Preconnect::FirstRequest);
    }

    #[test]
    fn preconnect_takes_its_three_words_only() {
        let mut vars = base();
        for (word, want) in [
            ("first-request", Preconnect::FirstRequest),
            ("init", Preconnect::Init),
            ("off", Preconnect::Off),
        ] {
            vars.insert("PRECONNECT", word.into());
            assert_eq!(load(&vars).unwrap().preconnect, want);
        }
        vars.insert("PRECONNECT", String::new());
        assert_eq!(
            load(&vars).unwrap().preconnect,
            Preconnect::FirstRequest,
            "empty counts as unset"
        );
        for bad in ["INIT", "true", "first_request", " off"] {
            vars.insert("PRECONNECT", bad.into());
            assert_eq!(load(&vars).unwrap_err().variable, "PRECONNECT", "{bad}");
        }
    }

    #[test]
    fn system_roots_are_opted_into_with_true_only() {
        let mut vars = base();
        vars.insert("TLS_SYSTEM_ROOTS", "true".into());
        assert!(load(&vars).unwrap().tls_system_roots);
        vars.insert("TLS_SYSTEM_ROOTS", "false".into());
        assert!(!load(&vars).unwrap().tls_system_roots);
        for bad in ["1", "yes", "TRUE", " true"] {
            vars.insert("TLS_SYSTEM_ROOTS", bad.into());
            assert_eq!(
                load(&vars).unwrap_err().variable,
                "TLS_SYSTEM_ROOTS",
                "{bad}"
            );
        }
    }

    #[test]
    fn each_required_variable_missing_or_empty_is_named() {
        for name in [
            "CHALLENGES_TABLE",
            "USERS_TABLE",
            "RATE_LIMIT_TABLE",
            "SENDER_EMAIL",
            "CODE_HMAC_SECRET",
        ] {
            let mut vars = base();
            vars.remove(name);
            assert_eq!(load(&vars).unwrap_err().variable, name);
            vars.insert(name, String::new());
            assert_eq!(
                load(&vars).unwrap_err().variable,
                name,
                "empty counts as unset"
            );
        }
    }

    #[test]
    fn short_secret_is_rejected_without_echoing_it() {
        let mut vars = base();
        vars.insert("CODE_HMAC_SECRET", "x".repeat(31));
        let err = load(&vars).unwrap_err();
        assert_eq!(err.variable, "CODE_HMAC_SECRET");
        assert!(!err.to_string().contains(&"x".repeat(31)));
        vars.insert("CODE_HMAC_SECRET", "x".repeat(32));
        assert!(load(&vars).is_ok());
    }

    #[test]
    fn numbers_must_be_positive_integers() {
        for name in [
            "RATE_LIMIT_MAX",
            "RATE_LIMIT_WINDOW_SECONDS",
            "CODE_TTL_SECONDS",
            "MAX_CODES_PER_CHALLENGE",
            "TRUSTED_PROXY_HOPS",
            "USER_WINDOW_SECONDS",
        ] {
            for bad in ["0", "-1", "five", "1.5", " 5", "+5", "99999999999"] {
                let mut vars = base();
                vars.insert(name, bad.to_string());
                assert_eq!(load(&vars).unwrap_err().variable, name, "{name}={bad}");
            }
            let mut vars = base();
            vars.insert(name, "7".to_string());
            assert!(load(&vars).is_ok());
        }
    }

    #[test]
    fn zero_turns_off_the_cooldown_and_the_user_budget() {
        for name in ["RESEND_COOLDOWN_SECONDS", "MAX_CODES_PER_USER"] {
            for bad in ["-1", "x", "1.5", " 0", "+1", "99999999999"] {
                let mut vars = base();
                vars.insert(name, bad.to_string());
                assert_eq!(load(&vars).unwrap_err().variable, name, "{name}={bad}");
            }
        }
        let mut vars = base();
        vars.insert("RESEND_COOLDOWN_SECONDS", "0".into());
        vars.insert("MAX_CODES_PER_USER", "0".into());
        let config = load(&vars).unwrap();
        assert_eq!(
            (config.resend_cooldown_seconds, config.max_codes_per_user),
            (0, 0)
        );
        vars.insert("RESEND_COOLDOWN_SECONDS", "30".into());
        vars.insert("MAX_CODES_PER_USER", "3".into());
        let config = load(&vars).unwrap();
        assert_eq!(
            (config.resend_cooldown_seconds, config.max_codes_per_user),
            (30, 3)
        );
    }

    #[test]
    fn ipv6_prefix_is_48_to_128() {
        for bad in ["47", "129", "0", "64.0", "x", "-64"] {
            let mut vars = base();
            vars.insert("RATE_LIMIT_IPV6_PREFIX", bad.into());
            assert_eq!(
                load(&vars).unwrap_err().variable,
                "RATE_LIMIT_IPV6_PREFIX",
                "{bad}"
            );
        }
        for good in [48u8, 56, 64, 128] {
            let mut vars = base();
            vars.insert("RATE_LIMIT_IPV6_PREFIX", good.to_string());
            assert_eq!(load(&vars).unwrap().rate_limit_ipv6_prefix, good);
        }
    }

    #[test]
    fn unsupported_default_language_is_invalid() {
        let mut vars = base();
        vars.insert("DEFAULT_LANGUAGE", "xx".into());
        assert_eq!(load(&vars).unwrap_err().variable, "DEFAULT_LANGUAGE");
        vars.insert("DEFAULT_LANGUAGE", "pt-BR".into());
        assert_eq!(load(&vars).unwrap().default_language, Language::PtBr);
    }

    #[test]
    fn sender_must_look_like_an_address() {
        for bad in [
            "nobody",
            "a@",
            "@b",
            "Name <a@b",
            "a@b\r\nBcc: x@y",
            "a b@c",
        ] {
            assert!(!is_plausible_sender(bad), "{bad:?}");
        }
        for good in [
            "a@b.c",
            "Rocket.Chat <no-reply@example.com>",
            "\"A, B\" <a@b.c>",
        ] {
            assert!(is_plausible_sender(good), "{good:?}");
        }
    }

    #[test]
    fn debug_output_redacts_the_secret() {
        let config = load(&base()).unwrap();
        assert!(!format!("{config:?}").contains(&"s".repeat(32)));
    }

    fn roots_file(name: &str, bytes: &[u8]) -> String {
        let dir = std::env::temp_dir().join(format!(
            "send-email-code-config-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("roots.pem");
        std::fs::write(&path, bytes).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn extra_roots_problem(path: &str) -> String {
        let mut vars = base();
        vars.insert("TLS_EXTRA_ROOTS_FILE", path.into());
        let err = load(&vars).unwrap_err();
        assert_eq!(err.variable, "TLS_EXTRA_ROOTS_FILE");
        assert!(!err.to_string().contains(path), "the path is not echoed");
        err.problem
    }

    fn test_ca_pem() -> String {
        harness::tls_front::TestCa::new().pem().to_string()
    }

    #[test]
    fn extra_roots_are_read_from_the_file_the_variable_names() {
        let mut vars = base();
        let one = roots_file("one", test_ca_pem().as_bytes());
        vars.insert("TLS_EXTRA_ROOTS_FILE", one);
        let roots = load(&vars).unwrap().tls_extra_roots.unwrap();
        assert_eq!(roots.count(), 1);
        assert_eq!(format!("{roots:?}"), "ExtraRoots(1 certificates)");
        // The built-in bundle, with its comment lines, reads as five roots.
        let amazon = roots_file("amazon", crate::aws::AMAZON_TRUST_SERVICES_PEM);
        vars.insert("TLS_EXTRA_ROOTS_FILE", amazon);
        let roots = load(&vars).unwrap().tls_extra_roots.unwrap();
        assert_eq!(roots.count(), 5);
        assert_eq!(roots.pem(), crate::aws::AMAZON_TRUST_SERVICES_PEM);
    }

    #[test]
    fn an_unusable_extra_roots_file_stops_start_up_and_says_why() {
        let missing = std::env::temp_dir().join("send-email-code-no-such-dir/roots.pem");
        assert!(extra_roots_problem(&missing.to_string_lossy()).contains("cannot be opened"));
        let dir = std::env::temp_dir();
        assert!(extra_roots_problem(&dir.to_string_lossy()).contains("cannot be read"));
        let empty = roots_file("empty", b"");
        assert!(extra_roots_problem(&empty).contains("no PEM certificate"));
        let key_only = roots_file(
            "key",
            rcgen::KeyPair::generate()
                .unwrap()
                .serialize_pem()
                .as_bytes(),
        );
        assert!(extra_roots_problem(&key_only).contains("no PEM certificate"));
        let broken = roots_file(
            "broken",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        assert!(extra_roots_problem(&broken).contains("not PEM certificates"));
        // Well-formed PEM and base64, but not a certificate: the SDK would
        // panic on it when building its TLS configuration.
        let good = test_ca_pem();
        let not_x509 = format!(
            "{good}-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n"
        );
        let not_x509 = roots_file("not-x509", not_x509.as_bytes());
        assert!(extra_roots_problem(&not_x509).contains("certificate 2 is not a usable"));
        let with_key = format!(
            "{good}{}",
            rcgen::KeyPair::generate().unwrap().serialize_pem()
        );
        let with_key = roots_file("with-key", with_key.as_bytes());
        assert!(extra_roots_problem(&with_key).contains("private key"));
        let huge = roots_file("huge", &vec![b'#'; MAX_EXTRA_ROOTS_BYTES + 1]);
        assert!(extra_roots_problem(&huge).contains("too big"));
        let just_fits = format!("{good}{}", "#".repeat(MAX_EXTRA_ROOTS_BYTES - good.len()));
        let just_fits = roots_file("fits", just_fits.as_bytes());
        let mut vars = base();
        vars.insert("TLS_EXTRA_ROOTS_FILE", just_fits);
        assert_eq!(load(&vars).unwrap().tls_extra_roots.unwrap().count(), 1);
    }
}
