//! The simulator clock: wall-clock time plus an offset that tests move forward, so TTLs,
//! retention limits and time windows can be exercised without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time plus an offset tests can move forward (never back), optionally frozen so
/// several changes share one timestamp.
#[derive(Debug)]
pub struct Clock {
    offset_ms: AtomicI64,
    /// When not [`NOT_FROZEN`], the wall-clock reading the clock is pinned to.
    frozen_ms: AtomicI64,
}

const NOT_FROZEN: i64 = i64::MIN;

/// Durations beyond this are clamped: far enough for any test, far from overflowing an `i64`.
const MAX_MS: i64 = i64::MAX / 4;

impl Default for Clock {
    fn default() -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            frozen_ms: AtomicI64::new(NOT_FROZEN),
        }
    }
}

impl Clock {
    /// Milliseconds since the Unix epoch, as the simulator sees it.
    pub fn now_ms(&self) -> i64 {
        let frozen = self.frozen_ms.load(Ordering::Relaxed);
        let base = if frozen == NOT_FROZEN {
            wall_ms()
        } else {
            frozen
        };
        base + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Seconds since the Unix epoch, as the simulator sees it.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(MAX_MS).min(MAX_MS);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Stops the clock at the current wall time; only [`Clock::advance`] moves it afterwards.
    /// Freezing a frozen clock changes nothing.
    pub fn freeze(&self) {
        let _ = self.frozen_ms.compare_exchange(
            NOT_FROZEN,
            wall_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Whether [`Clock::freeze`] was called.
    pub fn is_frozen(&self) -> bool {
        self.frozen_ms.load(Ordering::Relaxed) != NOT_FROZEN
    }

    /// How far tests have moved the clock ahead, in whole seconds.
    pub fn offset_secs(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed) / 1000
    }
}

/// The real time in milliseconds since the Unix epoch.
fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(MAX_MS))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_the_clock_forward_by_that_much() {
        let clock = Clock::default();
        let before = clock.now_ms();
        clock.advance(Duration::from_secs(3600));
        let moved = clock.now_ms() - before;
        // Real time passes too, but not an hour while this test runs.
        assert!((3_600_000..3_660_000).contains(&moved), "moved {moved} ms");
        assert_eq!(clock.offset_secs(), 3600);
    }

    #[test]
    fn a_frozen_clock_stands_still_until_advanced() {
        let clock = Clock::default();
        clock.freeze();
        assert!(clock.is_frozen());
        let frozen = clock.now_ms();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now_ms(), frozen);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now_ms(), frozen + 1500);
        assert_eq!(clock.now_secs(), (frozen + 1500).div_euclid(1000));
    }

    #[test]
    fn huge_advances_do_not_overflow() {
        let clock = Clock::default();
        clock.advance(Duration::MAX);
        assert!(clock.now_ms() > 0);
    }
}
