//! What a running attempt reports: heartbeats (the hot path: a reply and one write, nothing
//! else), its output, a cancel it obeyed, or a failure. A report of an attempt that is no
//! longer the current one is dropped (its heartbeat answers `timed_out` or `not_found`).

use super::super::clock::Now;
use super::{Closed, Core, Effects, Live, Write, parse_token};
use crate::client::{ActivityFailure, ActivityStatus};
use crate::error::{ActivityError, CancelReason, TransportError, TransportErrorKind};
use crate::payload::Payload;
use crate::transport::{HeartbeatReply, TaskToken};

impl Core {
    /// A heartbeat of attempt `token`: the reply, and the write to queue (see
    /// [`Inner::heartbeat`](super::Inner::heartbeat): a heartbeat has no other effect).
    pub(crate) fn heartbeat(
        &mut self,
        token: &TaskToken,
        details: Option<&Payload>,
    ) -> Result<(HeartbeatReply, Option<Write>), TransportError> {
        let (id, attempt) = parse_token(token).ok_or_else(|| {
            TransportError::new(TransportErrorKind::NotFound, "not an engine task token")
        })?;
        let clock = Now::of(&*self.clock);
        let Some(live) = self.live.get_mut(id) else {
            return Ok((HeartbeatReply::not_found(), None));
        };
        if !live.is_current(attempt) {
            // The last word of an attempt the engine already timed out (its final flush): the
            // retry, not started yet, resumes from it.
            // Not after a reset that cleared the checkpoint: its words are of before it.
            let awaiting_retry = matches!(
                live.state,
                ActivityStatus::BackingOff | ActivityStatus::Scheduled | ActivityStatus::Paused
            ) && live.operator & super::operator::CLEARED == 0;
            let mut write = None;
            if live.attempt == attempt
                && live.closing.is_none()
                && awaiting_retry
                && let Some(d) = details
            {
                live.set_details(d);
                live.heartbeat_row = true;
                write = Some(Write::Heartbeat {
                    id: live.id.clone(),
                    details: Some(d.clone()),
                    at: clock.wall_ms,
                    commit_within: live.options.heartbeat_commit_within(),
                });
            }
            let reply = if live.attempt == attempt {
                HeartbeatReply::timed_out()
            } else {
                HeartbeatReply::not_found()
            };
            return Ok((reply, write));
        }
        let Now {
            at: now,
            wall_ms: now_ms,
        } = clock;
        live.last_heartbeat = Some(now);
        self.silence.touch(live.silence, &live.id, now);
        if let Some(d) = details {
            live.set_details(d);
        }
        live.heartbeat_row = true;
        let write = Write::Heartbeat {
            id: live.id.clone(),
            details: details.cloned(),
            at: now_ms,
            commit_within: live.options.heartbeat_commit_within(),
        };
        let reply = if live.cancel_requested {
            HeartbeatReply::cancel()
        } else if live.operator == 0 {
            HeartbeatReply::ok()
        } else {
            match live.told() {
                Some(CancelReason::Reset) => HeartbeatReply::reset(),
                Some(_) => HeartbeatReply::pause(),
                None => HeartbeatReply::ok(),
            }
        };
        Ok((reply, Some(write)))
    }

    /// Attempt `attempt` completed with `output`.
    pub(crate) fn complete(
        &mut self,
        id: &str,
        attempt: u32,
        output: Payload,
        fx: &mut Effects,
    ) -> bool {
        let Some(live) = self.live.get(id) else {
            return false;
        };
        if !live.is_current(attempt) {
            return false;
        }
        let id = live.id.clone();
        let since_scheduled = self.clock.wall_ms().saturating_sub(live.scheduled_at);
        self.endtoend.record(
            &live.activity_type,
            std::time::Duration::from_millis(since_scheduled.max(0).unsigned_abs()),
        );
        self.close(
            &id,
            Closed {
                state: ActivityStatus::Completed,
                output: Some(output),
                failure: None,
            },
            fx,
        );
        true
    }

    /// The activity attempt `attempt` reports about, if that attempt is still the current one;
    /// its last checkpoint (if it sent one) becomes the activity's.
    fn reporting(&mut self, id: &str, attempt: u32, details: Option<Payload>) -> Option<&mut Live> {
        let live = self.live.get_mut(id)?;
        if !live.is_current(attempt) {
            return None;
        }
        if let Some(d) = &details {
            live.set_details(d);
        }
        Some(live)
    }

    /// Attempt `attempt` stopped after a cancel request.
    pub(crate) fn cancelled(
        &mut self,
        id: &str,
        attempt: u32,
        details: Option<Payload>,
        fx: &mut Effects,
    ) -> bool {
        let Some(live) = self.reporting(id, attempt, details) else {
            return false;
        };
        let id = live.id.clone();
        let details = live.details();
        self.close(
            &id,
            Closed {
                state: ActivityStatus::Cancelled,
                output: None,
                failure: Some(ActivityFailure::Cancelled { details }),
            },
            fx,
        );
        true
    }

    /// Attempt `attempt` failed: retry it or close the activity.
    pub(crate) fn failed(
        &mut self,
        id: &str,
        attempt: u32,
        error: &ActivityError,
        details: Option<Payload>,
        fx: &mut Effects,
    ) -> bool {
        let Some(live) = self.reporting(id, attempt, details) else {
            return false;
        };
        let failure = ActivityFailure::from_attempt(error, live.details());
        // A worker shutting down is not the activity's fault: retry at once. Nor is an
        // attempt an operator stopped (a pause, or a reset): retried at once, whatever the
        // retry policy has left (a pause lifted before the attempt stopped).
        let told = matches!(
            error,
            ActivityError::Cancelled {
                reason: CancelReason::Paused | CancelReason::Reset,
                ..
            }
        );
        let immediate = told
            || matches!(
                error,
                ActivityError::Cancelled {
                    reason: CancelReason::WorkerShutdown,
                    ..
                }
            );
        let id = live.id.clone();
        self.attempt_failed(&id, failure, error.is_retryable(), immediate, told, fx);
        true
    }
}
