//! Two-factor challenges and the pure decisions about them.

use crate::error::{ApiError, DependencyError, FaultKind};
use crate::time::Timestamp;

/// The only method this endpoint serves.
pub const EMAIL_METHOD: &str = "email";

/// A pending login challenge, as far as this function needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `challengeId`.
    pub id: String,
    /// The user logging in.
    pub user_id: String,
    /// `email` or `totp`.
    pub method: String,
    /// End of the challenge, epoch seconds.
    pub expire_at: i64,
    /// Codes already sent for it.
    pub codes_sent: u32,
}

impl Challenge {
    /// Step 3 of the contract: the challenge must be unexpired and by email.
    pub fn check_usable(&self, now: Timestamp) -> Result<(), ApiError> {
        if self.expire_at <= now.secs() {
            Err(ApiError::ChallengeExpired)
        } else if self.method != EMAIL_METHOD {
            Err(ApiError::InvalidChallengeMethod)
        } else {
            Ok(())
        }
    }

    /// Step 5: at most `max_codes` codes per challenge.
    pub fn check_cap(&self, max_codes: u32, now: Timestamp) -> Result<(), ApiError> {
        if self.codes_sent >= max_codes {
            Err(ApiError::CodeLimitReached {
                retry_after: now.secs_until(self.expire_at),
            })
        } else {
            Ok(())
        }
    }

    /// When a code sent now stops working: its TTL, never past the challenge.
    pub fn code_expire_at(&self, now: Timestamp, code_ttl_secs: u32) -> i64 {
        (now.secs() + i64::from(code_ttl_secs)).min(self.expire_at)
    }
}

/// Why a conditional code rotation was refused, judged from the item as it
/// was when the condition failed (`None`: it no longer exists).
pub fn rotation_refusal(
    current: Option<&Challenge>,
    expected_user: &str,
    max_codes: u32,
    now: Timestamp,
) -> ApiError {
    let Some(current) = current else {
        return ApiError::ChallengeNotFound;
    };
    if let Err(err) = current.check_usable(now) {
        return err;
    }
    if current.user_id != expected_user {
        // Replaced by a different challenge under the same id since we read it.
        return ApiError::ChallengeNotFound;
    }
    if let Err(err) = current.check_cap(max_codes, now) {
        return err;
    }
    ApiError::Dependency(DependencyError {
        service: "DynamoDB",
        operation: "UpdateItem",
        kind: FaultKind::Internal,
        detail: "code rotation refused although the challenge looks usable".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(method: &str, expire_at: i64, codes_sent: u32) -> Challenge {
        Challenge {
            id: "c".into(),
            user_id: "u".into(),
            method: method.into(),
            expire_at,
            codes_sent,
        }
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
        assert_eq!(challenge("email", 400, 2).check_cap(3, now), Ok(()));
        assert_eq!(
            challenge("email", 400, 3).check_cap(3, now),
            Err(ApiError::CodeLimitReached { retry_after: 300 })
        );
    }

    #[test]
    fn code_expiry_is_capped_by_the_challenge() {
        let now = Timestamp::from_secs(1_000);
        assert_eq!(challenge("email", 5_000, 0).code_expire_at(now, 600), 1_600);
        assert_eq!(challenge("email", 1_200, 0).code_expire_at(now, 600), 1_200);
    }

    #[test]
    fn refusal_reason_follows_the_order_of_checks() {
        let now = Timestamp::from_secs(100);
        assert_eq!(
            rotation_refusal(None, "u", 3, now),
            ApiError::ChallengeNotFound
        );
        let c = challenge("email", 50, 9);
        assert_eq!(
            rotation_refusal(Some(&c), "u", 3, now),
            ApiError::ChallengeExpired
        );
        let c = challenge("totp", 500, 9);
        assert_eq!(
            rotation_refusal(Some(&c), "u", 3, now),
            ApiError::InvalidChallengeMethod
        );
        let c = challenge("email", 500, 0);
        assert_eq!(
            rotation_refusal(Some(&c), "other", 3, now),
            ApiError::ChallengeNotFound
        );
        let c = challenge("email", 500, 3);
        assert_eq!(
            rotation_refusal(Some(&c), "u", 3, now),
            ApiError::CodeLimitReached { retry_after: 400 }
        );
        let c = challenge("email", 500, 0);
        assert_eq!(
            rotation_refusal(Some(&c), "u", 3, now).status().as_u16(),
            500
        );
    }
}
