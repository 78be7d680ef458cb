//! After the current attempt failed (an error, a timeout, a lost worker): a retry now, a
//! retry after the policy's backoff, or the end of the activity (not retryable, attempts used
//! up, or past its schedule-to-close deadline). A cancel requested meanwhile wins; then a
//! reset (the activity starts again at attempt 1), then a pause (the activity is paused,
//! whatever the retry policy has left).

use std::sync::Arc;
use std::time::Duration;

use super::super::clock::later;
use super::super::silence;
use super::operator::{CLEAR, CLEARED, PAUSE, RESET};
use super::write::Ended;
use super::{Closed, Core, Effects, Timer, TimerKind, Write};
use crate::client::{ActivityFailure, ActivityStatus};

impl Core {
    /// Decides between a retry and the end, after the current attempt failed.
    pub(super) fn attempt_failed(
        &mut self,
        id: &Arc<str>,
        failure: ActivityFailure,
        retryable: bool,
        immediate: bool,
        told: bool,
        fx: &mut Effects,
    ) {
        let clock = self.now();
        let Some(live) = self.live.get_mut(id) else {
            return;
        };
        live.handle = None;
        self.silence.unwatch(
            std::mem::replace(&mut live.silence, silence::NONE),
            &live.id,
        );
        // The attempt, as the file's history keeps it if the activity stays open.
        let mut ended = Box::new(Ended {
            seq: live.attempt,
            number: live.number(),
            at: clock.wall_ms,
            outcome: match &failure {
                ActivityFailure::Timeout { .. } => "timed_out",
                _ => "failed",
            },
            details: live.details(),
        });
        if live.cancel_requested {
            // Cancelled meanwhile: however the attempt ended, the activity ends as cancelled.
            let details = live.details();
            self.close(
                id,
                Closed {
                    state: ActivityStatus::Cancelled,
                    output: None,
                    failure: Some(ActivityFailure::Cancelled { details }),
                },
                fx,
            );
            return;
        }
        // Told by an operator: what it asked for, now that the attempt has stopped.
        let operator = std::mem::take(&mut live.operator);
        let reset = operator & RESET != 0;
        if reset || (operator & PAUSE != 0 && retryable) {
            let clear = reset && operator & CLEAR != 0;
            if reset {
                live.base = live.attempt;
            }
            if clear {
                live.clear_details();
                live.operator = CLEARED;
            }
            let state = if operator & PAUSE != 0 {
                ActivityStatus::Paused
            } else {
                ActivityStatus::Scheduled
            };
            ended.outcome = match (reset, clear) {
                (true, true) => "reset_cleared",
                (true, false) => "reset",
                (false, _) => "paused",
            };
            live.state = state;
            live.next_attempt_ms = None;
            live.last_failure = Some(Box::new(failure.clone()));
            fx.writes.push((
                Write::Transition {
                    fold: std::mem::take(&mut live.heartbeat_row),
                    id: id.clone(),
                    state,
                    attempt: live.number(),
                    base: live.base,
                    operator: live.stored_operator(),
                    details: live.details(),
                    clear_details: clear,
                    output: None,
                    failure: Some(failure.to_json()),
                    next_attempt_at: None,
                    closed_at: None,
                    ended: Some(ended),
                },
                None,
            ));
            if state == ActivityStatus::Scheduled {
                Self::push_ready(&mut self.ready, self.clock.wall_ms(), live, fx);
            }
            tracing::info!(activity_id = %id, attempt = live.number(), reset, %state, "attempt stopped by an operator");
            return;
        }
        let error_type = match &failure {
            ActivityFailure::Application { error_type, .. } => error_type.as_str(),
            ActivityFailure::Timeout { .. } => "Timeout",
            _ => "Error",
        };
        // An attempt an operator stopped does not use the retry policy up.
        let attempts_left = told || live.options.may_retry(live.number(), error_type);
        let delay = if immediate {
            Duration::ZERO
        } else {
            live.options.retry_delay(live.number())
        };
        // A delay beyond `FAR` (an interval near `Duration::MAX`: "never on its own") is
        // `FAR`: a time the file can hold, and a timer the deadline queue can keep.
        let delay = delay.min(super::super::clock::FAR);
        let next_ms = clock.wall_ms.saturating_add(super::super::clock::ms(delay));
        let before_deadline = live.options.schedule_to_close_ms.is_none_or(|s2c| {
            next_ms
                < live
                    .scheduled_at
                    .saturating_add(i64::try_from(s2c).unwrap_or(i64::MAX))
        });
        if retryable && attempts_left && before_deadline && delay.is_zero() {
            // Retried at once (worker shutdown, or a zero interval): ready again now.
            live.state = ActivityStatus::Scheduled;
            live.next_attempt_ms = None;
            live.last_failure = Some(Box::new(failure.clone()));
            fx.writes.push((
                Write::Transition {
                    fold: std::mem::take(&mut live.heartbeat_row),
                    id: id.clone(),
                    state: ActivityStatus::Scheduled,
                    attempt: live.number(),
                    base: live.base,
                    operator: live.stored_operator(),
                    clear_details: false,
                    details: live.details(),
                    output: None,
                    failure: Some(failure.to_json()),
                    next_attempt_at: None,
                    closed_at: None,
                    ended: Some(ended),
                },
                None,
            ));
            Self::push_ready(&mut self.ready, self.clock.wall_ms(), live, fx);
            tracing::info!(activity_id = %id, attempt = live.number(), %failure, "attempt failed; retrying now");
            return;
        }
        if retryable && attempts_left && before_deadline {
            live.state = ActivityStatus::BackingOff;
            live.next_attempt_ms = Some(next_ms);
            live.last_failure = Some(Box::new(failure.clone()));
            fx.writes.push((
                Write::Transition {
                    fold: std::mem::take(&mut live.heartbeat_row),
                    id: id.clone(),
                    state: ActivityStatus::BackingOff,
                    attempt: live.number(),
                    base: live.base,
                    operator: live.stored_operator(),
                    clear_details: false,
                    details: live.details(),
                    output: None,
                    failure: Some(failure.to_json()),
                    next_attempt_at: Some(next_ms),
                    closed_at: None,
                    ended: Some(ended),
                },
                None,
            ));
            fx.timers.push((
                Timer {
                    id: id.clone(),
                    attempt: live.attempt,
                    kind: TimerKind::Retry,
                    due: None,
                },
                later(clock.at, delay),
            ));
            tracing::info!(activity_id = %id, attempt = live.number(), ?delay, %failure, "attempt failed; retrying");
            return;
        }
        let state = if matches!(failure, ActivityFailure::Timeout { .. }) {
            ActivityStatus::TimedOut
        } else {
            ActivityStatus::Failed
        };
        let failure = if retryable && !attempts_left && live.number() > 1 {
            ActivityFailure::RetriesExhausted {
                attempts: live.number(),
                last: Box::new(failure),
            }
        } else {
            failure
        };
        tracing::info!(activity_id = %id, attempt = live.number(), %failure, "activity failed");
        self.close(
            id,
            Closed {
                state,
                output: None,
                failure: Some(failure),
            },
            fx,
        );
    }
}
