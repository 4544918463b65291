//! Two-factor challenges and the pure decisions about them (steps 2, 3, 5
//! and 6 of docs/contract.md, and the reading of a refused reservation).

use super::error::ApiError;
use super::time::{EpochSeconds, Timestamp};

/// Longest accepted `challengeId`, in UTF-8 bytes.
pub const MAX_CHALLENGE_ID_BYTES: usize = 256;

/// A `challengeId` that passed validation: non-blank, at most 256 bytes, no
/// control characters. Kept exactly as the caller sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeId(String);

impl ChallengeId {
    /// Validates a raw value (see the contract, section 2, step 2).
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let valid = !raw.trim().is_empty()
            && raw.len() <= MAX_CHALLENGE_ID_BYTES
            && !raw.chars().any(char::is_control);
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::ParameterRequired)
        }
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a challenge is to be answered. Only [`ChallengeMethod::Email`] is
/// served here; the others are Rocket.Chat's, and anything else is kept as
/// `Other` so a refusal can still name it as an invalid method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeMethod {
    /// `email`: a code by email (this endpoint).
    Email,
    /// `totp`: an authenticator app.
    Totp,
    /// `password`: the account password again.
    Password,
    /// Any other stored value.
    Other,
}

impl ChallengeMethod {
    /// The method for a stored value, compared exactly (`Email` is `Other`).
    pub fn from_stored(raw: &str) -> Self {
        match raw {
            "email" => Self::Email,
            "totp" => Self::Totp,
            "password" => Self::Password,
            _ => Self::Other,
        }
    }

    /// The stored value of [`ChallengeMethod::Email`], for conditions.
    pub const EMAIL: &'static str = "email";
}

/// A pending login challenge, as far as this function needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    /// `challengeId`.
    pub id: String,
    /// The user logging in.
    pub user_id: String,
    /// How it is answered.
    pub method: ChallengeMethod,
    /// End of the challenge.
    pub expire_at: EpochSeconds,
    /// Sends reserved for it so far (`codesSent`).
    pub codes_sent: u32,
    /// When the last committed code was sent (`lastCodeSentAt`), if ever.
    pub last_code_sent_at: Option<EpochSeconds>,
}

/// The per-challenge limits from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRules {
    /// `MAX_CODES_PER_CHALLENGE`.
    pub max_codes: u32,
    /// `RESEND_COOLDOWN_SECONDS` (0: no cooldown).
    pub cooldown_secs: u32,
}

impl Challenge {
    /// Step 3: the challenge must be unexpired and by email.
    pub fn check_usable(&self, now: Timestamp) -> Result<(), ApiError> {
        if self.expire_at.is_at_or_before(now) {
            Err(ApiError::ChallengeExpired)
        } else if self.method != ChallengeMethod::Email {
            Err(ApiError::InvalidChallengeMethod)
        } else {
            Ok(())
        }
    }

    /// Steps 5 and 6: under the cap, and outside the resend cooldown.
    pub fn check_sendable(&self, rules: SendRules, now: Timestamp) -> Result<(), ApiError> {
        if self.codes_sent >= rules.max_codes {
            return Err(ApiError::CodeLimitReached {
                retry_after: now.secs_until(self.expire_at),
            });
        }
        if rules.cooldown_secs > 0 {
            if let Some(last) = self.last_code_sent_at {
                let ends = last.plus_secs(rules.cooldown_secs);
                if !ends.is_at_or_before(now) {
                    return Err(ApiError::ResendCooldown {
                        retry_after: now.secs_until(ends),
                    });
                }
            }
        }
        Ok(())
    }

    /// When a code sent now stops working: its TTL, never past the challenge.
    /// Whole seconds, as everything this function writes.
    pub fn code_expire_at(&self, now: Timestamp, code_ttl_secs: u32) -> EpochSeconds {
        now.whole_secs()
            .plus_secs(code_ttl_secs)
            .min(self.expire_at.floor())
    }
}

/// Why a conditional reservation was refused, judged on the item as it was
/// when the condition failed (`None`: it no longer exists), in the order of
/// the checks. `None` back means the item looks sendable, which a refused
/// condition should make impossible.
pub fn reservation_refusal(
    current: Option<&Challenge>,
    expected_user: &str,
    rules: SendRules,
    now: Timestamp,
) -> Option<ApiError> {
    let Some(current) = current else {
        return Some(ApiError::ChallengeNotFound);
    };
    if current.user_id != expected_user {
        // Replaced by a challenge of another user under the same id.
        return Some(ApiError::ChallengeNotFound);
    }
    current
        .check_usable(now)
        .and_then(|()| current.check_sendable(rules, now))
        .err()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: SendRules = SendRules {
        max_codes: 3,
        cooldown_secs: 0,
    };

    fn challenge(method: &str, expire_at: i64, codes_sent: u32) -> Challenge {
        Challenge {
            id: "c".into(),
            user_id: "u".into(),
            method: ChallengeMethod::from_stored(method),
            expire_at: EpochSeconds::from(expire_at),
            codes_sent,
            last_code_sent_at: None,
        }
    }

    fn sent_at(mut c: Challenge, secs: &str) -> Challenge {
        c.last_code_sent_at = EpochSeconds::parse(secs);
        c
    }

    #[test]
    fn expired_means_expire_at_at_or_before_now() {
        let now = Timestamp::from_millis(100_500);
        assert_eq!(
            challenge("email", 100, 0).check_usable(now),
            Err(ApiError::ChallengeExpired)
        );
        assert_eq!(
            challenge("email", 99, 0).check_usable(now),
            Err(ApiError::ChallengeExpired)
        );
        assert_eq!(challenge("email", 101, 0).check_usable(now), Ok(()));
        let at = Timestamp::from_secs(101);
        assert_eq!(
            challenge("email", 101, 0).check_usable(at),
            Err(ApiError::ChallengeExpired),
            "expireAt == now is expired"
        );
    }

    #[test]
    fn fractional_expiry_is_compared_to_the_millisecond() {
        let mut c = challenge("email", 0, 0);
        c.expire_at = EpochSeconds::parse("100.25").unwrap();
        assert_eq!(c.check_usable(Timestamp::from_millis(100_249)), Ok(()));
        assert_eq!(
            c.check_usable(Timestamp::from_millis(100_250)),
            Err(ApiError::ChallengeExpired)
        );
        assert_eq!(
            c.code_expire_at(Timestamp::from_secs(50), 600),
            EpochSeconds::from(100)
        );
        assert_eq!(
            c.check_sendable(
                SendRules {
                    max_codes: 0,
                    cooldown_secs: 0
                },
                Timestamp::from_millis(99_000)
            ),
            Err(ApiError::CodeLimitReached { retry_after: 2 })
        );
    }

    #[test]
    fn methods_are_read_exactly() {
        assert_eq!(
            ChallengeMethod::from_stored("email"),
            ChallengeMethod::Email
        );
        assert_eq!(ChallengeMethod::from_stored("totp"), ChallengeMethod::Totp);
        assert_eq!(
            ChallengeMethod::from_stored("password"),
            ChallengeMethod::Password
        );
        for other in ["Email", " email", "email ", "", "sms"] {
            assert_eq!(
                ChallengeMethod::from_stored(other),
                ChallengeMethod::Other,
                "{other:?}"
            );
        }
    }

    #[test]
    fn expiry_is_checked_before_method() {
        let now = Timestamp::from_secs(100);
        assert_eq!(
            challenge("totp", 50, 0).check_usable(now),
            Err(ApiError::ChallengeExpired)
        );
        assert_eq!(
            challenge("totp", 150, 0).check_usable(now),
            Err(ApiError::InvalidChallengeMethod)
        );
        assert_eq!(
            challenge("Email", 150, 0).check_usable(now),
            Err(ApiError::InvalidChallengeMethod),
            "method is compared exactly"
        );
    }

    #[test]
    fn cap_allows_max_codes_then_refuses_until_expiry() {
        let now = Timestamp::from_secs(100);
        assert_eq!(
            challenge("email", 400, 2).check_sendable(RULES, now),
            Ok(())
        );
        assert_eq!(
            challenge("email", 400, 3).check_sendable(RULES, now),
            Err(ApiError::CodeLimitReached { retry_after: 300 })
        );
        assert_eq!(
            challenge("email", 400, 4).check_sendable(RULES, now),
            Err(ApiError::CodeLimitReached { retry_after: 300 })
        );
    }

    #[test]
    fn cooldown_counts_from_the_last_committed_code() {
        let rules = SendRules {
            max_codes: 5,
            cooldown_secs: 30,
        };
        let c = sent_at(challenge("email", 1_000, 1), "100");
        assert_eq!(
            c.check_sendable(rules, Timestamp::from_millis(110_200)),
            Err(ApiError::ResendCooldown { retry_after: 20 }),
            "19.8 s left rounds up to 20"
        );
        assert_eq!(
            c.check_sendable(rules, Timestamp::from_millis(129_999)),
            Err(ApiError::ResendCooldown { retry_after: 1 })
        );
        assert_eq!(c.check_sendable(rules, Timestamp::from_secs(130)), Ok(()));
        assert_eq!(
            c.check_sendable(RULES, Timestamp::from_secs(101)),
            Ok(()),
            "no cooldown when it is 0"
        );
        assert_eq!(
            challenge("email", 1_000, 1).check_sendable(rules, Timestamp::from_secs(101)),
            Ok(()),
            "never sent: no cooldown"
        );
        let capped = sent_at(challenge("email", 1_000, 5), "100");
        assert_eq!(
            capped.check_sendable(rules, Timestamp::from_secs(110)),
            Err(ApiError::CodeLimitReached { retry_after: 890 }),
            "the cap is step 5, before the cooldown"
        );
    }

    #[test]
    fn no_cooldown_means_none_even_after_a_send_stamped_later() {
        // A lastCodeSentAt ahead of this instance's clock (another one ran
        // fast) must not start a cooldown when the cooldown is off.
        let ahead = sent_at(challenge("email", 1_000, 1), "200");
        assert_eq!(
            ahead.check_sendable(RULES, Timestamp::from_secs(100)),
            Ok(())
        );
        let rules = SendRules {
            max_codes: 5,
            cooldown_secs: 1,
        };
        assert_eq!(
            ahead.check_sendable(rules, Timestamp::from_secs(100)),
            Err(ApiError::ResendCooldown { retry_after: 101 })
        );
    }

    #[test]
    fn code_expiry_is_capped_by_the_challenge() {
        let now = Timestamp::from_millis(1_000_700);
        let at = EpochSeconds::from;
        assert_eq!(
            challenge("email", 5_000, 0).code_expire_at(now, 600),
            at(1_600)
        );
        assert_eq!(
            challenge("email", 1_200, 0).code_expire_at(now, 600),
            at(1_200)
        );
    }

    #[test]
    fn refusal_reason_follows_the_order_of_checks() {
        let now = Timestamp::from_secs(100);
        let refusal = |c: &Challenge, user: &str| reservation_refusal(Some(c), user, RULES, now);
        assert_eq!(
            reservation_refusal(None, "u", RULES, now),
            Some(ApiError::ChallengeNotFound)
        );
        assert_eq!(
            refusal(&challenge("email", 50, 9), "u"),
            Some(ApiError::ChallengeExpired)
        );
        assert_eq!(
            refusal(&challenge("totp", 500, 9), "u"),
            Some(ApiError::InvalidChallengeMethod)
        );
        assert_eq!(
            refusal(&challenge("email", 500, 0), "other"),
            Some(ApiError::ChallengeNotFound)
        );
        assert_eq!(
            refusal(&challenge("email", 50, 0), "other"),
            Some(ApiError::ChallengeNotFound),
            "another user's challenge is not found, expired or not"
        );
        assert_eq!(
            refusal(&challenge("email", 500, 3), "u"),
            Some(ApiError::CodeLimitReached { retry_after: 400 })
        );
        let cooling = sent_at(challenge("email", 500, 1), "95");
        assert_eq!(
            reservation_refusal(
                Some(&cooling),
                "u",
                SendRules {
                    max_codes: 3,
                    cooldown_secs: 10
                },
                now
            ),
            Some(ApiError::ResendCooldown { retry_after: 5 })
        );
        assert_eq!(refusal(&challenge("email", 500, 0), "u"), None);
    }
}
