//! Fixed-window rate limiting, the pure half: windows, counter keys and the
//! headers every answer carries. The counter itself lives in [`crate::store`].

use crate::caller::CallerIp;
use crate::time::Timestamp;

/// The route name in counter keys, so other routes can share the table.
const ROUTE: &str = "sendEmailCode";

/// One fixed window, aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    /// First second of the window (epoch seconds).
    pub start: i64,
    /// First second after the window (epoch seconds).
    pub end: i64,
}

impl RateWindow {
    /// The window of `length_secs` seconds that contains `now`.
    pub fn containing(now: Timestamp, length_secs: u32) -> Self {
        let length = i64::from(length_secs.max(1));
        let start = now.secs() - now.secs().rem_euclid(length);
        Self {
            start,
            end: start + length,
        }
    }

    /// The counter item's key: `sendEmailCode#<caller>#<window start>`.
    pub fn counter_key(&self, caller: &CallerIp) -> String {
        format!("{ROUTE}#{caller}#{}", self.start)
    }

    /// When the counter item may be deleted by TTL: one window after its end,
    /// so a clock a little behind never finds it gone too early.
    pub fn counter_expire_at(&self) -> i64 {
        self.end + (self.end - self.start)
    }
}

/// Where a caller stands after this request was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    /// `RATE_LIMIT_MAX`.
    pub limit: u32,
    /// Requests left in this window after this one.
    pub remaining: u32,
    /// The window this request fell in.
    pub window: RateWindow,
    /// False when the request was over the limit (and not counted).
    pub allowed: bool,
}

impl RateStatus {
    /// Status from the counter's value after a successful increment.
    pub fn counted(limit: u32, count: u32, window: RateWindow) -> Self {
        Self {
            limit,
            remaining: limit.saturating_sub(count),
            window,
            allowed: true,
        }
    }

    /// Status of a request refused because the counter was already full.
    pub fn exceeded(limit: u32, window: RateWindow) -> Self {
        Self {
            limit,
            remaining: 0,
            window,
            allowed: false,
        }
    }

    /// `X-RateLimit-Reset`: the window end in epoch milliseconds.
    pub fn reset_millis(&self) -> i64 {
        self.window.end * 1000
    }

    /// `Retry-After` for a refused request: seconds to the window end, rounded up.
    pub fn retry_after(&self, now: Timestamp) -> i64 {
        now.secs_until(self.window.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let w = RateWindow::containing(Timestamp::from_millis(1_700_000_059_999), 60);
        assert_eq!(w.start, 1_700_000_040);
        assert_eq!(w.end, 1_700_000_100);
        let next = RateWindow::containing(Timestamp::from_secs(1_700_000_100), 60);
        assert_eq!(
            next.start, 1_700_000_100,
            "a window's end is the next one's start"
        );
    }

    #[test]
    fn counter_key_and_expiry_follow_the_contract() {
        let w = RateWindow::containing(Timestamp::from_secs(125), 60);
        let ip = CallerIp::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(w.counter_key(&ip), "sendEmailCode#192.0.2.1#120");
        assert_eq!(
            w.counter_key(&CallerIp::Unknown),
            "sendEmailCode#unknown#120"
        );
        assert_eq!(w.counter_expire_at(), 240, "window end + window length");
    }

    #[test]
    fn headers_values_are_derived_from_the_window() {
        let w = RateWindow::containing(Timestamp::from_secs(125), 60);
        let status = RateStatus::counted(5, 2, w);
        assert_eq!((status.remaining, status.allowed), (3, true));
        assert_eq!(status.reset_millis(), 180_000);
        let refused = RateStatus::exceeded(5, w);
        assert_eq!((refused.remaining, refused.allowed), (0, false));
        assert_eq!(refused.retry_after(Timestamp::from_millis(125_001)), 55);
        assert_eq!(refused.retry_after(Timestamp::from_millis(179_999)), 1);
    }
}
