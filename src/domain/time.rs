//! Time, in two units: the request's clock reading in milliseconds
//! ([`Timestamp`], one per request, passed down) and stored times in epoch
//! seconds ([`EpochSeconds`], every time read from or written to a table).

use std::fmt;
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

    /// Whole epoch seconds, rounded down.
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant's second, rounded down, as a time to store (what this
    /// function writes is always whole seconds).
    pub fn whole_secs(self) -> EpochSeconds {
        EpochSeconds::from(self.secs())
    }

    /// Whole seconds from now until `until`, rounded up, at least 1 (the
    /// unit of `Retry-After`).
    pub fn secs_until(self, until: EpochSeconds) -> i64 {
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
    pub fn floor(self) -> Self {
        Self(self.0.floor())
    }

    /// `self` plus whole seconds.
    pub fn plus_secs(self, secs: u32) -> Self {
        Self(self.0 + f64::from(secs))
    }

    /// Whole seconds as an integer, rounded down (for printing a clock time).
    pub fn floor_i64(self) -> i64 {
        // `as` saturates, which is the right answer for absurd values.
        self.0.floor() as i64
    }

    /// The earlier of two times.
    pub fn min(self, other: Self) -> Self {
        Self(self.0.min(other.0))
    }

    /// Epoch milliseconds, rounded down (`X-RateLimit-Reset`'s unit).
    pub fn millis(self) -> i64 {
        // `as` saturates, which is the right answer for absurd values.
        (self.0 * 1000.0).floor() as i64
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

/// As a DynamoDB Number and in counter keys: `1796002191`, `1796002191.291`
/// (the shortest decimal that reads back as the same value, never an
/// exponent).
impl fmt::Display for EpochSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_until_rounds_up_and_is_at_least_one() {
        let now = Timestamp::from_millis(10_200);
        let at = EpochSeconds::from;
        assert_eq!(now.secs_until(at(20)), 10); // 9.8 s → 10
        assert_eq!(now.secs_until(at(11)), 1); // 0.8 s → 1
        assert_eq!(now.secs_until(at(10)), 1); // already past → 1
        assert_eq!(Timestamp::from_secs(10).secs_until(at(20)), 10);
    }

    #[test]
    fn stored_times_print_as_plain_decimals() {
        assert_eq!(EpochSeconds::from(1_796_002_191).to_string(), "1796002191");
        assert_eq!(
            EpochSeconds::parse("1796002191.291").unwrap().to_string(),
            "1796002191.291"
        );
        assert_eq!(EpochSeconds::parse("1e21").unwrap().to_string().len(), 22);
        assert_eq!(Timestamp::from_millis(7_999).whole_secs().to_string(), "7");
        assert_eq!(EpochSeconds::parse("100.2509").unwrap().millis(), 100_250);
        assert_eq!(
            EpochSeconds::from(5).min(EpochSeconds::parse("4.5").unwrap()),
            EpochSeconds::parse("4.5").unwrap()
        );
    }

    #[test]
    fn stored_times_may_be_fractional_and_compare_as_numbers() {
        let expire = EpochSeconds::parse("1796002191.291").unwrap();
        assert_eq!(expire.floor(), EpochSeconds::from(1_796_002_191));
        assert!(!expire.is_at_or_before(Timestamp::from_millis(1_796_002_191_290)));
        assert!(expire.is_at_or_before(Timestamp::from_millis(1_796_002_191_291)));
        assert!(expire.is_at_or_before(Timestamp::from_millis(1_796_002_191_292)));
        let now = Timestamp::from_millis(1_796_002_190_000);
        assert_eq!(now.secs_until(expire), 2, "1.291 s rounds up to 2");
        assert_eq!(now.secs_until(EpochSeconds::from(0)), 1, "past → 1");
        assert_eq!(
            EpochSeconds::parse("-3.5").unwrap().floor(),
            EpochSeconds::from(-4)
        );
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
