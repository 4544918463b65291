//! Wall-clock time as the handler sees it: one reading per request, passed down.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time from the system clock.
    pub fn now() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(millis)
    }

    /// A timestamp from epoch milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// A timestamp from whole epoch seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs * 1000)
    }

    /// Epoch milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whole epoch seconds, rounded down (the unit of every stored time).
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Whole seconds from now until `until_secs`, rounded up, at least 1.
    pub fn secs_until(self, until_secs: i64) -> i64 {
        let millis = until_secs.saturating_mul(1000).saturating_sub(self.0);
        (millis + 999).div_euclid(1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_until_rounds_up_and_is_at_least_one() {
        let now = Timestamp::from_millis(10_200);
        assert_eq!(now.secs_until(20), 10); // 9.8 s → 10
        assert_eq!(now.secs_until(11), 1); // 0.8 s → 1
        assert_eq!(now.secs_until(10), 1); // already past → 1
        assert_eq!(Timestamp::from_secs(10).secs_until(20), 10);
    }

    #[test]
    fn secs_rounds_down() {
        assert_eq!(Timestamp::from_millis(1_999).secs(), 1);
        assert_eq!(Timestamp::from_secs(7).millis(), 7_000);
    }
}
