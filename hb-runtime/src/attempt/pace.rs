//! When the pump sends, and what: the decision of one tick, sans I/O.
//!
//! The pump looks at an attempt once per *tick*: its heartbeat interval, or, when the backend
//! persists checkpoints on an interval of its own ([`Transport::checkpoint_interval`]), a whole
//! fraction of the heartbeat interval no longer than that. A tick sends when the attempt holds
//! a checkpoint the backend has not received, or when a liveness heartbeat is due (a whole
//! heartbeat interval of ticks without a send); otherwise it sends nothing. Whether an
//! unchanged checkpoint rides along depends on the backend ([`Transport::keeps_details`]).
//!
//! [`Transport::checkpoint_interval`]: crate::transport::Transport::checkpoint_interval
//! [`Transport::keeps_details`]: crate::transport::Transport::keeps_details

use std::time::Duration;

/// The shortest tick: a checkpoint interval below it is taken as it.
const MIN_TICK: Duration = Duration::from_millis(1);

/// How many ticks make one heartbeat interval: 1 without a checkpoint interval (or one at
/// least as long as the heartbeat interval), else enough that a tick is no longer than the
/// checkpoint interval. A whole number, so liveness heartbeats fall on ticks and are never
/// later than the heartbeat interval.
pub(crate) fn ticks_per_beat(heartbeat: Duration, checkpoint: Option<Duration>) -> u16 {
    let Some(checkpoint) = checkpoint.map(|c| c.max(MIN_TICK)) else {
        return 1;
    };
    if checkpoint >= heartbeat {
        return 1;
    }
    let n = heartbeat.as_nanos().div_ceil(checkpoint.as_nanos());
    u16::try_from(n).unwrap_or(u16::MAX).max(1)
}

/// The period the pump looks at an attempt with: the heartbeat interval, or a whole fraction
/// of it rounded down to whole [`slot`]s, so that looks stay on the pump's wake-up grid
/// instead of drifting by up to a slot each (a heartbeat interval of them would come up to 5%
/// late). The `ticks_per_beat` looks then take at most the heartbeat interval.
pub(crate) fn tick(heartbeat: Duration, ticks_per_beat: u16) -> Duration {
    if ticks_per_beat <= 1 {
        return heartbeat;
    }
    let tick = heartbeat / u32::from(ticks_per_beat);
    let step = slot(tick);
    let whole = (tick.as_nanos() / step.as_nanos()).max(1);
    step * u32::try_from(whole).unwrap_or(u32::MAX)
}

/// The step the pump rounds the due times of attempts looked at every `period` up to: 1/20 of
/// the period, between 1 and 10 ms, so that thousands of attempts wake the pump a hundred
/// times a second, not a thousand.
pub(crate) fn slot(period: Duration) -> Duration {
    (period / 20).clamp(Duration::from_millis(1), Duration::from_millis(10))
}

/// What one tick does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Nothing new and no liveness heartbeat due.
    Skip,
    /// A heartbeat without details: the backend keeps the ones it holds.
    Liveness,
    /// A heartbeat with the latest checkpoint (none if the attempt never had one).
    Details,
}

/// The decision of a tick. `pending`: the latest checkpoint has not been delivered;
/// `quiet_ticks`: ticks since the pump last sent, this one included.
pub(crate) fn on_tick(pending: bool, quiet_ticks: u16, ticks_per_beat: u16, keeps: bool) -> Beat {
    if pending {
        Beat::Details
    } else if quiet_ticks < ticks_per_beat {
        Beat::Skip
    } else {
        on_demand(pending, keeps)
    }
}

/// What a heartbeat sent on demand (`flush()`, a liveness heartbeat) carries: details unless the
/// backend keeps the ones the attempt already delivered. Never re-sends, to a backend that keeps
/// details, a checkpoint it already has: a newer one from elsewhere would be overwritten.
pub(crate) fn on_demand(pending: bool, keeps: bool) -> Beat {
    if pending || !keeps {
        Beat::Details
    } else {
        Beat::Liveness
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ticks_divide_the_heartbeat_interval_and_are_no_longer_than_the_checkpoint_interval() {
        // (heartbeat interval, checkpoint interval) → ticks per heartbeat interval
        let table: &[(u64, Option<u64>, u16)] = &[
            (5_000, None, 1),
            (5_000, Some(5_000), 1),
            (5_000, Some(60_000), 1),
            (5_000, Some(1_000), 5),
            (5_000, Some(999), 6),
            (1_600, Some(1_000), 2),
            (7_000, Some(2_000), 4),
            (30_000, Some(1_000), 30),
            (100, Some(0), 100),
            (3_600_000_000, Some(1), u16::MAX),
            (15_000, Some(999), 16),
        ];
        for &(hb, ci, want) in table {
            let n = ticks_per_beat(ms(hb), ci.map(ms));
            assert_eq!(n, want, "heartbeat {hb} ms, checkpoint {ci:?} ms");
            let t = tick(ms(hb), n);
            if let Some(ci) = ci.filter(|_| n < u16::MAX) {
                assert!(t <= ms(ci).max(MIN_TICK), "{t:?} > {ci} ms");
            }
            // Whole ticks make at most the heartbeat interval, and no less than 95% of it.
            let beat = t * u32::from(n);
            assert!(beat <= ms(hb), "{n} × {t:?} > {hb} ms");
            if n < u16::MAX {
                assert!(beat * 20 >= ms(hb) * 19, "{n} × {t:?} ≪ {hb} ms");
            }
            // On the pump's grid.
            assert!(
                n == 1 || t.as_nanos().is_multiple_of(slot(t).as_nanos()),
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_tick_sends_news_at_once_and_otherwise_only_a_due_liveness_heartbeat() {
        use Beat::*;
        // (pending, quiet ticks, ticks per beat, backend keeps details) → beat
        let table = [
            (true, 1, 5, true, Details),
            (true, 1, 5, false, Details),
            (false, 1, 5, true, Skip),
            (false, 4, 5, false, Skip),
            (false, 5, 5, true, Liveness),
            (false, 5, 5, false, Details),
            (false, 9, 5, true, Liveness),
            // Without a checkpoint interval every tick is a heartbeat, as before.
            (false, 1, 1, false, Details),
            (false, 1, 1, true, Liveness),
            (true, 1, 1, true, Details),
        ];
        for (pending, quiet, every, keeps, want) in table {
            assert_eq!(
                on_tick(pending, quiet, every, keeps),
                want,
                "pending {pending}, quiet {quiet}/{every}, keeps {keeps}"
            );
        }
        assert_eq!(on_demand(false, true), Liveness);
        assert_eq!(on_demand(true, true), Details);
        assert_eq!(on_demand(false, false), Details);
    }
}
