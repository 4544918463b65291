//! Fixed-window rate limiting, the pure half: windows, counter keys, the
//! headers every answer carries, and the memory of callers refused in their
//! current window. The counters themselves live in [`crate::aws::store`].

use std::collections::HashMap;
use std::sync::Mutex;

use super::caller::CallerIp;
use super::time::{EpochSeconds, Timestamp};

/// The route name in counter keys, so other routes can share the table.
const ROUTE: &str = "sendEmailCode";

/// One fixed window, aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateWindow {
    /// First second of the window.
    pub start: EpochSeconds,
    /// First second after the window.
    pub end: EpochSeconds,
    /// Its length in seconds.
    length_secs: u32,
}

impl RateWindow {
    /// The window of `length_secs` seconds that contains `now`.
    pub fn containing(now: Timestamp, length_secs: u32) -> Self {
        let length = length_secs.max(1);
        let start = now.secs() - now.secs().rem_euclid(i64::from(length));
        let start = EpochSeconds::from(start);
        Self {
            start,
            end: start.plus_secs(length),
            length_secs: length,
        }
    }

    /// The counter item's key: `sendEmailCode#<caller>#<window start>`.
    pub fn counter_key(&self, caller: &CallerIp) -> String {
        format!("{ROUTE}#{caller}#{}", self.start)
    }

    /// The per-user counter's key: `sendEmailCode#user#<userId>#<window start>`.
    pub fn user_counter_key(&self, user_id: &str) -> String {
        format!("{ROUTE}#user#{user_id}#{}", self.start)
    }

    /// When the counter item may be deleted by TTL: one window after its end,
    /// so a clock a little behind never finds it gone too early.
    pub fn counter_expire_at(&self) -> EpochSeconds {
        self.end.plus_secs(self.length_secs)
    }
}

/// Where a caller stands after this request was counted.
#[derive(Debug, Clone, Copy, PartialEq)]
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
        self.window.end.millis()
    }

    /// `Retry-After` for a refused request: seconds to the window end, rounded up.
    pub fn retry_after(&self, now: Timestamp) -> i64 {
        now.secs_until(self.window.end)
    }
}

/// Most callers remembered at once; past it, a refused caller is simply not
/// remembered (it is still refused, by its counter).
const MAX_REMEMBERED: usize = 10_000;

/// Callers this instance has seen refused, with the end of the window they
/// were refused in. A counter only grows within its window, so such a caller
/// stays refused until then and can be answered without a counter call.
#[derive(Debug, Default)]
pub struct RefusedCallers {
    until: Mutex<HashMap<String, EpochSeconds>>,
}

impl RefusedCallers {
    /// Whether `key` (a caller's counter key) was refused in `window`.
    pub fn is_refused(&self, key: &str, window: RateWindow) -> bool {
        self.until
            .lock()
            .map(|map| map.get(key) == Some(&window.end))
            .unwrap_or(false)
    }

    /// Remembers that `key` was refused in `window`; forgets callers whose
    /// window has ended.
    pub fn remember(&self, key: String, window: RateWindow) {
        let Ok(mut map) = self.until.lock() else {
            return;
        };
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, end| *end > window.start);
        }
        if map.len() < MAX_REMEMBERED {
            map.insert(key, window.end);
        }
    }

    /// How many callers are remembered.
    pub fn len(&self) -> usize {
        self.until.lock().map(|map| map.len()).unwrap_or(0)
    }

    /// Whether no caller is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let w = RateWindow::containing(Timestamp::from_millis(1_700_000_059_999), 60);
        assert_eq!(w.start, EpochSeconds::from(1_700_000_040));
        assert_eq!(w.end, EpochSeconds::from(1_700_000_100));
        let next = RateWindow::containing(Timestamp::from_secs(1_700_000_100), 60);
        assert_eq!(
            next.start,
            EpochSeconds::from(1_700_000_100),
            "a window's end is the next one's start"
        );
    }

    #[test]
    fn counter_key_and_expiry_follow_the_contract() {
        let w = RateWindow::containing(Timestamp::from_secs(125), 60);
        let ip = CallerIp::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(w.counter_key(&ip), "sendEmailCode#192.0.2.1#120");
        assert_eq!(
            w.counter_key(&CallerIp::Unknown),
            "sendEmailCode#unknown#120"
        );
        assert_eq!(
            w.counter_expire_at(),
            EpochSeconds::from(240),
            "window end + window length"
        );
    }

    #[test]
    fn user_counter_key_follows_the_contract() {
        let w = RateWindow::containing(Timestamp::from_secs(7_300), 3_600);
        assert_eq!(w.user_counter_key("u-1"), "sendEmailCode#user#u-1#7200");
        assert_eq!(w.counter_expire_at(), EpochSeconds::from(14_400));
    }

    #[test]
    fn a_refused_caller_is_remembered_for_its_window_only() {
        let refused = RefusedCallers::default();
        assert!(refused.is_empty());
        let w = RateWindow::containing(Timestamp::from_secs(125), 60);
        let next = RateWindow::containing(Timestamp::from_secs(180), 60);
        assert!(!refused.is_refused("a", w));
        refused.remember("a".into(), w);
        assert!(refused.is_refused("a", w));
        assert!(!refused.is_empty());
        assert!(!refused.is_refused("b", w), "only that caller");
        assert!(!refused.is_refused("a", next), "a new window starts afresh");
    }

    #[test]
    fn remembered_callers_are_bounded_and_old_windows_are_dropped() {
        let refused = RefusedCallers::default();
        let old = RateWindow::containing(Timestamp::from_secs(0), 60);
        for i in 0..MAX_REMEMBERED {
            refused.remember(format!("old{i}"), old);
        }
        assert_eq!(refused.len(), MAX_REMEMBERED);
        let now = RateWindow::containing(Timestamp::from_secs(60), 60);
        refused.remember("new".into(), now);
        assert_eq!(refused.len(), 1, "ended windows are forgotten when full");
        assert!(refused.is_refused("new", now));
        for i in 0..MAX_REMEMBERED + 5 {
            refused.remember(format!("n{i}"), now);
        }
        assert_eq!(refused.len(), MAX_REMEMBERED, "never more than the bound");
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
