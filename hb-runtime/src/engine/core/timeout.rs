//! Timers coming due: start-to-close and schedule-to-close timeouts, retry backoffs, and the
//! retries of writes that failed; and the sweep of running attempts silent for their whole
//! heartbeat timeout. A timer of an attempt that is no longer current does nothing.

use std::time::Duration;

use tokio::time::Instant;

use super::super::clock::later;
use super::super::silence;
use super::close::closing_write;
use super::{Ack, Closed, Core, Effects, Timer, TimerKind, Write};
use crate::client::{ActivityFailure, ActivityStatus, TimeoutKind};
use crate::error::CancelReason;

impl Core {
    /// A timer fired.
    pub(crate) fn on_timer(&mut self, t: &Timer, fx: &mut Effects) {
        let now = self.clock.now();
        if let Some(due) = t.due
            && now < due
        {
            fx.timers.push((
                Timer {
                    due: None,
                    ..t.clone()
                },
                due,
            ));
            return;
        }
        let Some(live) = self.live.get_mut(&t.id) else {
            return;
        };
        if let Some(closed) = &live.closing {
            if t.kind == TimerKind::StoreClosing {
                // The failed write's fold was not stored either.
                let write = closing_write(live, closed, true, self.clock.wall_ms());
                fx.writes.push((write, Some(Ack::Closed(live.id.clone()))));
            }
            return;
        }
        match t.kind {
            TimerKind::Heartbeat | TimerKind::StartToClose => {
                if !live.is_current(t.attempt) {
                    return;
                }
                let kind = if t.kind == TimerKind::Heartbeat {
                    if let (Some(ht), Some(since)) = (
                        live.options.heartbeat_timeout(),
                        live.last_heartbeat.or(live.started),
                    ) {
                        let deadline = later(since, ht);
                        if now < deadline {
                            // A heartbeat arrived since the timer was armed: re-arm at the
                            // new deadline instead of resetting on every heartbeat.
                            fx.timers.push((t.clone(), deadline));
                            return;
                        }
                    }
                    if live.options.heartbeat_timeout().is_some() {
                        TimeoutKind::Heartbeat
                    } else {
                        TimeoutKind::StartToClose
                    }
                } else {
                    TimeoutKind::StartToClose
                };
                if let Some(h) = live.handle.take() {
                    fx.cancels.push((h, CancelReason::TimedOut));
                }
                let failure = ActivityFailure::Timeout {
                    kind,
                    last_details: live.details(),
                };
                tracing::warn!(activity_id = %t.id, attempt = t.attempt, %kind, "attempt timed out");
                crate::metrics::timed_out(&live.activity_type, kind_label(kind));
                let id = t.id.clone();
                self.attempt_failed(&id, failure, true, false, false, fx);
            }
            TimerKind::ScheduleToClose => {
                crate::metrics::timed_out(
                    &live.activity_type,
                    kind_label(TimeoutKind::ScheduleToClose),
                );
                if let Some(h) = live.handle.take() {
                    fx.cancels.push((h, CancelReason::TimedOut));
                }
                let failure = ActivityFailure::Timeout {
                    kind: TimeoutKind::ScheduleToClose,
                    last_details: live.details(),
                };
                let id = t.id.clone();
                self.close(
                    &id,
                    Closed {
                        state: ActivityStatus::TimedOut,
                        output: None,
                        failure: Some(failure),
                    },
                    fx,
                );
            }
            TimerKind::Retry => {
                if live.state != ActivityStatus::BackingOff || live.attempt != t.attempt {
                    return;
                }
                live.state = ActivityStatus::Scheduled;
                live.next_attempt_ms = None;
                fx.writes.push((
                    Write::Transition {
                        fold: std::mem::take(&mut live.heartbeat_row),
                        id: live.id.clone(),
                        state: ActivityStatus::Scheduled,
                        attempt: live.number(),
                        base: live.base,
                        operator: live.stored_operator(),
                        clear_details: false,
                        details: None,
                        output: None,
                        failure: None,
                        next_attempt_at: None,
                        closed_at: None,
                        ended: None,
                    },
                    None,
                ));
                Self::push_ready(&mut self.ready, self.clock.wall_ms(), live, fx);
            }
            // Only meaningful while the activity is closing (handled above).
            TimerKind::StoreClosing => {}
            TimerKind::StoreCheckpoint => {
                // Stored again; a failure reports back (`Ack::Lost`) and re-arms this timer.
                live.checkpoint_retry = false;
                live.heartbeat_row = true;
                fx.writes.push((
                    Write::Heartbeat {
                        id: live.id.clone(),
                        details: live.details(),
                        at: self.clock.wall_ms(),
                        commit_within: Duration::ZERO,
                    },
                    None,
                ));
            }
        }
    }

    /// Times out the running attempts silent for their whole heartbeat timeout at `now`;
    /// returns when the next one would be.
    pub(crate) fn sweep(&mut self, now: Instant, fx: &mut Effects) -> Option<Instant> {
        for (id, attempt, node) in self.silence.overdue(now) {
            let Some(live) = self.live.get_mut(&id) else {
                continue;
            };
            if live.silence != node {
                continue;
            }
            live.silence = silence::NONE;
            if !live.is_current(attempt) {
                continue;
            }
            if let Some(h) = live.handle.take() {
                fx.cancels.push((h, CancelReason::TimedOut));
            }
            let failure = ActivityFailure::Timeout {
                kind: TimeoutKind::Heartbeat,
                last_details: live.details(),
            };
            tracing::warn!(activity_id = %id, attempt, kind = %TimeoutKind::Heartbeat, "attempt timed out");
            crate::metrics::timed_out(&live.activity_type, kind_label(TimeoutKind::Heartbeat));
            self.attempt_failed(&id, failure, true, false, false, fx);
        }
        self.silence.next_deadline()
    }
}

/// The `kind` label of a timeout's metric.
fn kind_label(kind: TimeoutKind) -> &'static str {
    match kind {
        TimeoutKind::Heartbeat => "heartbeat",
        TimeoutKind::StartToClose => "start_to_close",
        TimeoutKind::ScheduleToClose => "schedule_to_close",
        TimeoutKind::ScheduleToStart => "schedule_to_start",
    }
}
