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

    /// Whole seconds from now until a stored time, rounded up, at least 1.
    pub fn secs_until_stored(self, until: EpochSeconds) -> i64 {
        let secs = (until.0 - self.as_epoch_seconds().0).ceil();
        // `as` saturates on overflow and maps NaN to 0; the floor is 1 anyway.
        (secs as i64).max(1)
    }

    /// This instant as epoch seconds with its milliseconds, for comparing
    /// with stored times.
    pub fn as_epoch_seconds(self) -> EpochSeconds {
        EpochSeconds(self.0 as f64 / 1000.0)
    }

    /// Epoch seconds as an exact decimal (`1796002191.291`), the form a
    /// DynamoDB condition compares against stored Numbers.
    pub fn decimal_secs(self) -> String {
        format!("{}.{:03}", self.0.div_euclid(1000), self.0.rem_euclid(1000))
    }
}

/// A time read from DynamoDB, in epoch seconds. Written by others, so it may
/// be fractional (a JavaScript login flow stores `Date.now() / 1000`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct EpochSeconds(f64);

impl EpochSeconds {
    /// Parses a DynamoDB Number. `None` for anything that is not a finite number.
    pub fn parse(raw: &str) -> Option<Self> {
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Self)
    }

    /// Whole seconds, rounded down (`expireAt` 100.9 is second 100).
    pub fn floor(self) -> i64 {
        // `as` saturates, which is the right answer for absurd values.
        self.0.floor() as i64
    }

    /// `self` plus whole seconds.
    pub fn plus_secs(self, secs: u32) -> Self {
        Self(self.0 + f64::from(secs))
    }

    /// Whether this time is at or before `now`.
    pub fn is_at_or_before(self, now: Timestamp) -> bool {
        self <= now.as_epoch_seconds()
    }
}

impl From<i64> for EpochSeconds {
    fn from(secs: i64) -> Self {
        Self(secs as f64)
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
    fn stored_times_may_be_fractional_and_compare_as_numbers() {
        let expire = EpochSeconds::parse("1796002191.291").unwrap();
        assert_eq!(expire.floor(), 1_796_002_191);
        assert!(!expire.is_at_or_before(Timestamp::from_millis(1_796_002_191_290)));
        assert!(expire.is_at_or_before(Timestamp::from_millis(1_796_002_191_291)));
        assert!(expire.is_at_or_before(Timestamp::from_millis(1_796_002_191_292)));
        let now = Timestamp::from_millis(1_796_002_190_000);
        assert_eq!(now.secs_until_stored(expire), 2, "1.291 s rounds up to 2");
        assert_eq!(now.secs_until_stored(EpochSeconds::from(0)), 1, "past → 1");
        assert_eq!(EpochSeconds::parse("-3.5").unwrap().floor(), -4);
        for bad in ["", "abc", "NaN", "inf", "1e999"] {
            assert_eq!(EpochSeconds::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimal_seconds_keep_the_milliseconds() {
        assert_eq!(
            Timestamp::from_millis(1_796_002_191_005).decimal_secs(),
            "1796002191.005"
        );
        assert_eq!(Timestamp::from_secs(7).decimal_secs(), "7.000");
    }

    #[test]
    fn secs_rounds_down() {
        assert_eq!(Timestamp::from_millis(1_999).secs(), 1);
        assert_eq!(Timestamp::from_secs(7).millis(), 7_000);
    }
}
