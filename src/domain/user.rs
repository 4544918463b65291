//! Users, read only: where to send the code and in which language.

/// Longest address kept (RFC 5321's practical limit).
const MAX_ADDRESS_LEN: usize = 254;

/// A user, reduced to what the email needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `userId`.
    pub id: String,
    /// Verified addresses, de-duplicated (case-insensitively), in stored order.
    pub verified_addresses: Vec<String>,
    /// How to greet them: `name`, else `username`.
    pub display_name: Option<String>,
    /// Their `language` tag, if any (e.g. `pt-BR`).
    pub language: Option<String>,
}

/// One entry of Rocket.Chat's `emails` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailEntry {
    /// The address.
    pub address: String,
    /// Whether the user proved they own it.
    pub verified: bool,
}

/// A user's stored fields, as read (Rocket.Chat's names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredUser {
    /// `userId`.
    pub id: String,
    /// `emails`: the addresses, verified or not.
    pub emails: Vec<EmailEntry>,
    /// `email`: a plain address, counted as verified.
    pub email: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `language`.
    pub language: Option<String>,
}

impl From<StoredUser> for User {
    /// Only verified `emails` entries and the plain `email` attribute are
    /// kept, and only values that look like a single address.
    fn from(stored: StoredUser) -> Self {
        let StoredUser {
            id,
            emails,
            email,
            name,
            username,
            language,
        } = stored;
        let mut verified_addresses: Vec<String> = Vec::new();
        let candidates = emails
            .into_iter()
            .filter(|e| e.verified)
            .map(|e| e.address)
            .chain(email);
        for address in candidates {
            let address = address.trim().to_string();
            let duplicate = verified_addresses
                .iter()
                .any(|known| known.eq_ignore_ascii_case(&address));
            if is_single_address(&address) && !duplicate {
                verified_addresses.push(address);
            }
        }
        let clean = |s: Option<String>| {
            s.map(|v| v.chars().filter(|c| !c.is_control()).collect::<String>())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            id,
            verified_addresses,
            display_name: clean(name).or_else(|| clean(username)),
            language: clean(language),
        }
    }
}

/// A bare `local@domain`: no spaces, no control characters, no list or
/// display-name syntax that could smuggle in another recipient.
fn is_single_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && address.len() <= MAX_ADDRESS_LEN
        && !domain.contains('@')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | ';' | '<' | '>'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(address: &str, verified: bool) -> EmailEntry {
        EmailEntry {
            address: address.into(),
            verified,
        }
    }

    #[test]
    fn only_verified_entries_and_the_plain_email_are_kept() {
        let user = User::from(StoredUser {
            id: "u".into(),
            emails: vec![
                entry("a@x.test", true),
                entry("b@x.test", false),
                entry("c@x.test", true),
            ],
            email: Some("d@x.test".into()),
            ..StoredUser::default()
        });
        assert_eq!(
            user.verified_addresses,
            ["a@x.test", "c@x.test", "d@x.test"]
        );
    }

    #[test]
    fn duplicates_and_malformed_addresses_are_dropped() {
        let user = User::from(StoredUser {
            id: "u".into(),
            emails: vec![
                entry("A@x.test", true),
                entry("a@X.test", true),
                entry("no-at-sign", true),
                entry("two@@x.test", true),
                entry("a@x.test, evil@y.test", true),
                entry("x@y.test\r\nBcc: z@w.test", true),
                entry("", true),
            ],
            email: Some("a@x.test".into()),
            ..StoredUser::default()
        });
        assert_eq!(user.verified_addresses, ["A@x.test"]);
    }

    #[test]
    fn display_name_prefers_name_then_username() {
        let user = User::from(StoredUser {
            name: Some(" Ana ".into()),
            username: Some("ana1".into()),
            ..StoredUser::default()
        });
        assert_eq!(user.display_name.as_deref(), Some("Ana"));
        let user = User::from(StoredUser {
            name: Some("".into()),
            username: Some("ana1".into()),
            ..StoredUser::default()
        });
        assert_eq!(user.display_name.as_deref(), Some("ana1"));
        let user = User::from(StoredUser {
            language: Some("pt-BR".into()),
            ..StoredUser::default()
        });
        assert_eq!(user.display_name, None);
        assert_eq!(user.language.as_deref(), Some("pt-BR"));
    }
}
