//! Acknowledgements of the writes the core asked for, committed or failed: a start's row
//! stored admits the activity, a closing write committed answers its waiters and forgets it,
//! and a failed write is tried again (a lost checkpoint, a closing write) with backoff.

use std::sync::Arc;
use std::time::Duration;

use super::super::EngineError;
use super::super::clock::later;
use super::close::CLOSING_RETRY_MAX;
use super::{Ack, Closed, Core, Effects, Timer, TimerKind};
use crate::client::ActivityFailure;

impl Core {
    /// A write the core asked for was committed (or failed): its acknowledgement comes back.
    pub(crate) fn committed(
        &mut self,
        ack: Ack,
        result: Result<bool, EngineError>,
        fx: &mut Effects,
    ) {
        match ack {
            Ack::Reply(reply) => fx.replies.push((reply, result)),
            Ack::Closed(id) => self.closed_committed(&id, result, fx),
            Ack::Lost(id) => self.checkpoint_lost(&id, fx),
            Ack::Unfolded(id) => {
                if let Some(live) = self.live.get_mut(&id) {
                    live.heartbeat_row = true;
                }
            }
            Ack::Inserted(live, reply) => {
                // Admitted here, not by the caller: a start whose future was dropped after
                // its row was written still runs.
                if matches!(result, Ok(true)) {
                    self.admit(*live, fx);
                }
                fx.replies.push((reply, result));
            }
        }
    }

    /// A heartbeat write of `id` failed (a full disk): the pump will not send that checkpoint
    /// again (the engine accepted it), so the engine stores it again itself, 1 s later,
    /// doubling to 1 min while writes keep failing.
    fn checkpoint_lost(&mut self, id: &Arc<str>, fx: &mut Effects) {
        let now = self.clock.now();
        let Some(live) = self.live.get_mut(id) else {
            return;
        };
        if live.closing.is_some() {
            return; // its closing write carries the checkpoint
        }
        live.checkpoint_failures = live.checkpoint_failures.saturating_add(1);
        if std::mem::replace(&mut live.checkpoint_retry, true) {
            return; // a retry is armed already
        }
        let retry_in = Duration::from_secs(1 << live.checkpoint_failures.saturating_sub(1).min(6))
            .min(CLOSING_RETRY_MAX);
        fx.timers.push((
            Timer {
                id: live.id.clone(),
                attempt: live.attempt,
                kind: TimerKind::StoreCheckpoint,
                due: None,
            },
            later(now, retry_in),
        ));
        tracing::warn!(activity_id = %id, ?retry_in, "a checkpoint could not be stored; storing it again");
    }

    /// The closing write of `id` was committed, or failed.
    ///
    /// Committed: answer the waiters and forget the activity. Failed (a full disk): nothing of
    /// it was stored, so the file still holds the activity as it was; the waiters get the
    /// storage error now, and the activity stays in memory, closing, while the write is
    /// retried with backoff (1 s doubling to 1 min). If the process ends first, reopening the
    /// file recovers the activity from what it holds.
    fn closed_committed(
        &mut self,
        id: &Arc<str>,
        result: Result<bool, EngineError>,
        fx: &mut Effects,
    ) {
        match result {
            Ok(_) => {
                let Some(live) = self.live.remove(id) else {
                    return;
                };
                // The options shared by its type go with the last activity that used them.
                if Arc::strong_count(&live.options) == 2
                    && let Some((_, shared)) = self.options.get_key_value(&*live.activity_type)
                    && Arc::ptr_eq(shared, &live.options)
                {
                    self.options.remove(&*live.activity_type);
                }
                let closed = live.closing.map(|c| *c).unwrap_or(Closed {
                    state: live.state,
                    output: None,
                    failure: None,
                });
                for w in live.waiters.into_iter().flat_map(|w| *w) {
                    fx.answers.push((w, closed.clone()));
                }
            }
            Err(e) => {
                let now = self.clock.now();
                let Some(live) = self.live.get_mut(id) else {
                    return;
                };
                if live.closing.is_none() {
                    return;
                }
                let retry_in =
                    Duration::from_secs(1 << live.closing_failures.min(6)).min(CLOSING_RETRY_MAX);
                live.closing_failures = live.closing_failures.saturating_add(1);
                fx.timers.push((
                    Timer {
                        id: live.id.clone(),
                        attempt: live.attempt,
                        kind: TimerKind::StoreClosing,
                        due: None,
                    },
                    later(now, retry_in),
                ));
                tracing::error!(
                    activity_id = %id,
                    error = %e,
                    ?retry_in,
                    "the activity's closing write failed; it stays open and the write is retried"
                );
                let closed = Closed {
                    state: live.state,
                    output: None,
                    failure: Some(ActivityFailure::from(e)),
                };
                for w in std::mem::take(&mut live.waiters)
                    .into_iter()
                    .flat_map(|w| *w)
                {
                    fx.answers.push((w, closed.clone()));
                }
            }
        }
    }
}
