//! Closing an activity for good: its closing write (retried with backoff while it fails),
//! and the `result()` calls waiting for it, answered only once that write is committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::super::EngineError;
use super::super::silence;
use super::{Ack, Closed, Core, Effects, Live, Write};
use crate::client::{ActivityFailure, ActivityStatus};

/// The longest wait between two tries of a closing write that keeps failing.
pub(super) const CLOSING_RETRY_MAX: Duration = Duration::from_secs(60);

/// The write that closes `live` as `closed` (its acknowledgement comes back to
/// `Core::committed`); `fold`: a heartbeat of it may sit in the `heartbeats` table.
pub(super) fn closing_write(live: &Live, closed: &Closed, fold: bool, now_ms: i64) -> Write {
    Write::Transition {
        fold,
        id: live.id.clone(),
        state: closed.state,
        attempt: live.number(),
        base: live.base,
        operator: live.stored_operator(),
        clear_details: false,
        details: live.details(),
        output: closed.output.clone(),
        failure: closed.failure.as_ref().map(ActivityFailure::to_json),
        next_attempt_at: None,
        closed_at: Some(now_ms),
        ended: None,
    }
}

impl Core {
    /// Closes activity `id` for good.
    pub(super) fn close(&mut self, id: &Arc<str>, closed: Closed, fx: &mut Effects) {
        let Some(live) = self.live.get_mut(id) else {
            return;
        };
        let waited = live.state == ActivityStatus::Scheduled;
        live.handle = None;
        self.silence.unwatch(
            std::mem::replace(&mut live.silence, silence::NONE),
            &live.id,
        );
        live.state = closed.state;
        fx.forget.push(id.clone());
        let fold = std::mem::take(&mut live.heartbeat_row);
        let write = closing_write(live, &closed, fold, self.clock.wall_ms());
        fx.writes.push((write, Some(Ack::Closed(id.clone()))));
        live.closing = Some(Box::new(closed));
        if waited {
            // Its id stays in the ready queue, stale, until the queue is compacted.
            let ty = live.activity_type.clone();
            let live = &self.live;
            self.ready.left(&ty, |i| {
                live.get(i)
                    .is_some_and(|l| l.state == ActivityStatus::Scheduled && l.closing.is_none())
            });
        }
    }

    /// A new waiter of `live`'s closing.
    pub(super) fn waiter(live: &mut Live) -> oneshot::Receiver<Closed> {
        let (tx, rx) = oneshot::channel();
        let waiters = live.waiters.get_or_insert_with(Box::default);
        // Calls abandoned meanwhile (a `timeout` around `result()`) go, so the list holds at
        // most about twice the calls still waiting: pruned each time it reaches a power of two.
        if waiters.len() >= 4 && waiters.len().is_power_of_two() {
            waiters.retain(|w| !w.is_closed());
        }
        waiters.push(tx);
        rx
    }

    /// Registers a `result()` call waiting for activity `id` to close.
    pub(crate) fn wait(&mut self, id: &str, engine_stopped: bool) -> Wait {
        match self.live.get_mut(id) {
            // Its closing write failed and will not be retried (the engine is closed).
            Some(live) if live.closing_failures > 0 && engine_stopped => Wait::EngineClosed,
            Some(live) => Wait::Pending(Self::waiter(live)),
            None => Wait::NotOpen,
        }
    }

    /// The engine was closed: closing writes that failed are no longer retried, so their
    /// waiters hear it now.
    pub(crate) fn engine_closed(&mut self, fx: &mut Effects) {
        for live in self.live.values_mut().filter(|l| l.closing_failures > 0) {
            let closed = Closed {
                state: live.state,
                output: None,
                failure: Some(ActivityFailure::from(EngineError::Closed)),
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

/// What [`Core::wait`] found.
pub(crate) enum Wait {
    /// Open: the receiver gets how it closed.
    Pending(oneshot::Receiver<Closed>),
    /// Not open (closed, or unknown): the file has the answer.
    NotOpen,
    /// Its closing write failed and the engine is closed: it will not be answered.
    EngineClosed,
}
