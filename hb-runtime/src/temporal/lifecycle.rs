//! How a Temporal worker stops: the order and the deadlines, as a sans-IO state machine.
//!
//! A worker stops when its owner asks or when polling fails for good (a deleted namespace, a
//! revoked key). Either way it stops polling, gives running attempts `shutdown_grace`, cancels
//! the rest (their checkpoints flushed), and shuts core down. Every wait is bounded: core's
//! shutdown waits for a poll to see the end of its task stream, which a failed server may never
//! answer, so the worker gives up on core (and on attempts that cannot report) instead of
//! hanging its owner. The poll loop feeds what it saw to [`Lifecycle::step`] and applies the
//! effects it returns.

use std::time::Duration;

use tokio::time::Instant;

/// How long core gets to shut down once every attempt has reported.
pub(crate) const CORE_SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// How long an attempt gets to report once it was cancelled and its cancel grace is over.
pub(crate) const REPORT_BOUND: Duration = Duration::from_secs(10);

/// What the poll loop saw, passed after every event (the machine is level-triggered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The owner asked the worker to stop, or a poll failed for good.
    pub(crate) stop: bool,
    /// Core's poll said `ShutDown`: it hands out nothing more.
    pub(crate) poll_ended: bool,
    /// Attempts whose task has not ended.
    pub(crate) running: usize,
    /// Core's shutdown returned.
    pub(crate) core_down: bool,
}

/// What the poll loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Stop taking tasks: tell core to shut down (its grace timer starts).
    BeginShutdown,
    /// The grace is over: cancel every running attempt with `WorkerShutdown`.
    CancelRunning,
    /// Every attempt has reported: shut core down (while the loop goes on polling, which is
    /// how core learns that its task stream ended).
    ShutDownCore,
    /// The worker is done.
    End(Ending),
}

/// How the worker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Every attempt reported and core shut down.
    Clean,
    /// This many attempts had not reported by the deadline: they are dropped (Temporal times
    /// them out and retries them from their last recorded checkpoint).
    AttemptsAbandoned(usize),
    /// Core's shutdown did not return within [`CORE_SHUTDOWN_BOUND`] (its last poll never
    /// came back): core is dropped as it is.
    CoreAbandoned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Polling,
    /// Stopped taking tasks at `since`; running attempts are let finish, then cancelled.
    Draining {
        since: Instant,
        cancelled: bool,
    },
    /// Every attempt reported at `since`; core is shutting down.
    CoreShutdown {
        since: Instant,
    },
    Ended,
}

/// The stop sequence of one worker.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    grace: Duration,
    /// After the grace: the longest `cancel_grace` of the worker's activities, plus
    /// [`REPORT_BOUND`].
    drain: Duration,
    phase: Phase,
}

impl Lifecycle {
    /// A polling worker whose attempts get `grace` once it stops, then up to `cancel_grace`
    /// (the longest of its activities') to end after their cancel.
    pub(crate) fn new(grace: Duration, cancel_grace: Duration) -> Self {
        Lifecycle {
            grace,
            drain: cancel_grace.saturating_add(REPORT_BOUND),
            phase: Phase::Polling,
        }
    }

    /// Whether an attempt that starts now is to be cancelled at once (the worker cancelled
    /// its attempts already, or is past waiting for them).
    pub(crate) fn cancels_new_attempts(&self) -> bool {
        matches!(
            self.phase,
            Phase::Draining {
                cancelled: true,
                ..
            } | Phase::CoreShutdown { .. }
                | Phase::Ended
        )
    }

    /// Takes in what the loop saw at `now`; returns what to do, in order, and when to call
    /// again if nothing else happens first.
    pub(crate) fn step(&mut self, now: Instant, seen: Seen) -> (Vec<Effect>, Option<Instant>) {
        let mut effects = Vec::new();
        if self.phase == Phase::Polling && (seen.stop || seen.poll_ended) {
            effects.push(Effect::BeginShutdown);
            self.phase = Phase::Draining {
                since: now,
                cancelled: false,
            };
        }
        if let Phase::Draining { since, cancelled } = self.phase {
            let cancel_at = since + self.grace;
            let give_up_at = cancel_at + self.drain;
            if seen.running == 0 {
                effects.push(Effect::ShutDownCore);
                self.phase = Phase::CoreShutdown { since: now };
            } else if now >= give_up_at {
                effects.push(Effect::End(Ending::AttemptsAbandoned(seen.running)));
                self.phase = Phase::Ended;
            } else if !cancelled && now >= cancel_at {
                effects.push(Effect::CancelRunning);
                self.phase = Phase::Draining {
                    since,
                    cancelled: true,
                };
                return (effects, Some(give_up_at));
            } else {
                return (
                    effects,
                    Some(if cancelled { give_up_at } else { cancel_at }),
                );
            }
        }
        if let Phase::CoreShutdown { since } = self.phase {
            let give_up_at = since + CORE_SHUTDOWN_BOUND;
            if seen.core_down && seen.running == 0 {
                effects.push(Effect::End(Ending::Clean));
                self.phase = Phase::Ended;
            } else if now >= give_up_at {
                effects.push(Effect::End(if seen.running > 0 {
                    Ending::AttemptsAbandoned(seen.running)
                } else {
                    Ending::CoreAbandoned
                }));
                self.phase = Phase::Ended;
            } else {
                return (effects, Some(give_up_at));
            }
        }
        (effects, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(2);
    const CANCEL_GRACE: Duration = Duration::from_secs(1);

    fn seen(stop: bool, poll_ended: bool, running: usize, core_down: bool) -> Seen {
        Seen {
            stop,
            poll_ended,
            running,
            core_down,
        }
    }

    /// Runs `steps` (seconds after the start, what was seen, the effects expected) through a
    /// fresh lifecycle.
    fn check(steps: &[(u64, Seen, &[Effect])]) {
        let start = Instant::now();
        let mut l = Lifecycle::new(GRACE, CANCEL_GRACE);
        for (i, (at, seen, expected)) in steps.iter().enumerate() {
            let (effects, _) = l.step(start + Duration::from_secs(*at), *seen);
            assert_eq!(&effects, expected, "step {i} at {at} s: {seen:?}");
        }
    }

    #[test]
    fn a_polling_worker_does_nothing_until_it_is_stopped() {
        let start = Instant::now();
        let mut l = Lifecycle::new(GRACE, CANCEL_GRACE);
        assert_eq!(l.step(start, seen(false, false, 3, false)), (vec![], None));
        assert!(!l.cancels_new_attempts());
    }

    #[test]
    fn a_stop_with_nothing_running_shuts_core_down_at_once_and_ends_when_it_is_down() {
        use Effect::*;
        check(&[
            (
                0,
                seen(true, false, 0, false),
                &[BeginShutdown, ShutDownCore],
            ),
            (1, seen(true, true, 0, false), &[]),
            (1, seen(true, true, 0, true), &[End(Ending::Clean)]),
        ]);
    }

    #[test]
    fn running_attempts_get_the_grace_then_are_cancelled_then_core_shuts_down() {
        use Effect::*;
        check(&[
            (0, seen(true, false, 2, false), &[BeginShutdown]),
            (1, seen(true, false, 1, false), &[]),
            (2, seen(true, false, 1, false), &[CancelRunning]),
            (3, seen(true, false, 1, false), &[]),
            (4, seen(true, false, 0, false), &[ShutDownCore]),
            (5, seen(true, true, 0, true), &[End(Ending::Clean)]),
        ]);
    }

    #[test]
    fn a_failed_poll_stops_the_worker_like_a_request() {
        use Effect::*;
        // Core says ShutDown after a poll error (it shut itself down): the same sequence.
        check(&[
            (0, seen(false, true, 1, false), &[BeginShutdown]),
            (2, seen(false, true, 1, false), &[CancelRunning]),
            (2, seen(false, true, 0, false), &[ShutDownCore]),
            (2, seen(false, true, 0, true), &[End(Ending::Clean)]),
        ]);
    }

    #[test]
    fn attempts_that_never_report_are_abandoned_after_grace_cancel_grace_and_the_report_bound() {
        use Effect::*;
        let give_up = (GRACE + CANCEL_GRACE + REPORT_BOUND).as_secs();
        check(&[
            (0, seen(true, false, 1, false), &[BeginShutdown]),
            (2, seen(true, false, 1, false), &[CancelRunning]),
            (give_up - 1, seen(true, false, 1, false), &[]),
            (
                give_up,
                seen(true, false, 1, false),
                &[End(Ending::AttemptsAbandoned(1))],
            ),
            (give_up + 1, seen(true, false, 0, true), &[]),
        ]);
    }

    #[test]
    fn a_core_that_never_shuts_down_is_abandoned_after_its_bound() {
        use Effect::*;
        let bound = CORE_SHUTDOWN_BOUND.as_secs();
        check(&[
            (
                0,
                seen(true, false, 0, false),
                &[BeginShutdown, ShutDownCore],
            ),
            (bound - 1, seen(true, false, 0, false), &[]),
            (
                bound,
                seen(true, false, 0, false),
                &[End(Ending::CoreAbandoned)],
            ),
        ]);
    }

    #[test]
    fn the_loop_is_woken_at_the_next_deadline() {
        let start = Instant::now();
        let mut l = Lifecycle::new(GRACE, CANCEL_GRACE);
        let (_, wake) = l.step(start, seen(true, false, 1, false));
        assert_eq!(wake, Some(start + GRACE));
        let (_, wake) = l.step(start + GRACE, seen(true, false, 1, false));
        assert_eq!(wake, Some(start + GRACE + CANCEL_GRACE + REPORT_BOUND));
        assert!(l.cancels_new_attempts());
        let at = start + GRACE + Duration::from_millis(1);
        let (_, wake) = l.step(at, seen(true, false, 0, false));
        assert_eq!(wake, Some(at + CORE_SHUTDOWN_BOUND));
    }

    #[test]
    fn an_attempt_that_starts_while_core_shuts_down_is_cancelled_and_waited_for_within_the_bound() {
        use Effect::*;
        let bound = CORE_SHUTDOWN_BOUND.as_secs();
        let start = Instant::now();
        let mut l = Lifecycle::new(GRACE, CANCEL_GRACE);
        l.step(start, seen(true, false, 0, false));
        assert!(l.cancels_new_attempts());
        // A task core had buffered arrives: it runs (cancelled at once) and holds the end.
        check(&[
            (
                0,
                seen(true, false, 0, false),
                &[BeginShutdown, ShutDownCore],
            ),
            (1, seen(true, true, 1, true), &[]),
            (
                bound,
                seen(true, true, 1, true),
                &[End(Ending::AttemptsAbandoned(1))],
            ),
        ]);
    }
}
