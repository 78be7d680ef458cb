//! The engine's two clocks, and conversions between them.
//!
//! Timers run on the monotonic clock (a tokio `Instant`); the file keeps wall-clock
//! milliseconds, which a restart, a VM restore or NTP may step in either direction. The core
//! reads both through [`Clock`], so the simulator (`engine::sim`) and the core's unit tests
//! can drive it on a simulated clock ([`SimClock`]), stepping the wall clock on its own.

#[cfg(any(test, feature = "sim"))]
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Where the engine reads the time.
pub(crate) trait Clock: Send + Sync + 'static {
    /// The monotonic clock, for timers.
    fn now(&self) -> Instant;
    /// Wall-clock milliseconds since the Unix epoch, for what is stored.
    fn wall_ms(&self) -> i64;
}

/// The clocks of the machine (tokio's `Instant`, so it follows a paused test clock).
#[derive(Debug, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_ms(&self) -> i64 {
        now_ms()
    }
}

/// Milliseconds since the Unix epoch, of the machine's clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The furthest ahead any deadline is kept: further ones (a retry interval near
/// `Duration::MAX` is a natural "never retry on your own") are this far, which is never.
pub(crate) const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, saturating at [`FAR`] ahead of `at` (never overflows).
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FAR)).unwrap_or(at)
}

/// `d` in whole milliseconds, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One reading of both clocks, to convert between them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) at: Instant,
    pub(crate) wall_ms: i64,
}

impl Now {
    pub(crate) fn of(clock: &dyn Clock) -> Self {
        Now {
            at: clock.now(),
            wall_ms: clock.wall_ms(),
        }
    }

    /// The wall-clock time in ms of instant `i` (to the millisecond).
    pub(crate) fn ms_of(&self, i: Instant) -> i64 {
        if i <= self.at {
            self.wall_ms.saturating_sub(ms(self.at - i))
        } else {
            self.wall_ms.saturating_add(ms(i - self.at))
        }
    }

    /// The instant of wall-clock time `ms`, kept within [`FAR`] of now either way.
    pub(crate) fn instant_of(&self, ms: i64) -> Instant {
        let delta = ms.saturating_sub(self.wall_ms);
        let d = Duration::from_millis(delta.unsigned_abs()).min(FAR);
        if delta >= 0 {
            later(self.at, d)
        } else {
            self.at.checked_sub(d).unwrap_or(self.at)
        }
    }

    /// The instant of a stored time that should lie in the past (a heartbeat, an attempt's
    /// start, a schedule): a time in the future, left by a clock that stepped back since it
    /// was stored, counts as now, so nothing waits for the wall clock to catch up.
    pub(crate) fn instant_of_past(&self, ms: i64) -> Instant {
        self.instant_of(ms.min(self.wall_ms))
    }
}

/// Simulated time: a monotonic clock that only the simulator moves, and a wall clock that it
/// may also step either way.
#[derive(Debug)]
#[cfg(any(test, feature = "sim"))]
pub(crate) struct SimClock {
    base: std::time::Instant,
    mono_ns: AtomicU64,
    wall_ms: AtomicI64,
}

#[cfg(any(test, feature = "sim"))]
impl SimClock {
    pub(crate) fn new(wall_ms: i64) -> Self {
        SimClock {
            // Ahead of the real clock, so no simulated instant lies before what the core's
            // structures took as their epoch when they were made.
            base: std::time::Instant::now() + Duration::from_secs(3600),
            mono_ns: AtomicU64::new(0),
            wall_ms: AtomicI64::new(wall_ms),
        }
    }

    /// Both clocks move by `d`.
    pub(crate) fn advance(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.mono_ns.fetch_add(ns, Ordering::Relaxed);
        self.wall_ms.fetch_add(ms(d), Ordering::Relaxed);
    }

    /// The wall clock steps by `ms`.
    pub(crate) fn step_wall(&self, ms: i64) {
        self.wall_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Moves both clocks to monotonic instant `to` (if it is ahead).
    pub(crate) fn advance_to(&self, to: Instant) {
        let now = self.now();
        if to > now {
            self.advance(to - now);
        }
    }
}

#[cfg(any(test, feature = "sim"))]
impl Clock for SimClock {
    fn now(&self) -> Instant {
        Instant::from_std(self.base + Duration::from_nanos(self.mono_ns.load(Ordering::Relaxed)))
    }

    fn wall_ms(&self) -> i64 {
        self.wall_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_saturate() {
        let now = Now {
            at: Instant::now(),
            wall_ms: 1_000_000,
        };
        let later_ms = now.wall_ms + 2_500;
        assert_eq!(now.ms_of(now.instant_of(later_ms)), later_ms);
        assert_eq!(
            now.ms_of(now.instant_of(now.wall_ms - 700)),
            now.wall_ms - 700
        );
        // Far times in either direction neither panic nor go beyond FAR.
        assert!(now.instant_of(i64::MAX) <= later(now.at, FAR));
        let _ = now.instant_of(i64::MIN);
        assert_eq!(now.instant_of_past(later_ms), now.at);
        assert_eq!(later(now.at, Duration::MAX), later(now.at, FAR));
    }
}
