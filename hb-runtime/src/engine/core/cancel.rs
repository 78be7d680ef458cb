//! A cancel request: an activity waiting to run or to retry (or paused) closes as cancelled at once; a
//! running attempt is told (pushed to its handle) and the request is stored, so its outcome
//! and a reopen both end the activity as cancelled.

use tokio::sync::oneshot;

use super::super::EngineError;
use super::{Ack, Closed, Core, Effects, Write};
use crate::client::{ActivityFailure, ActivityStatus};
use crate::error::CancelReason;

impl Core {
    /// A cancel request. Returns the state the activity is in afterwards and what to await
    /// before telling the caller the cancel is stored (`None`: the activity is not open).
    pub(crate) fn cancel(
        &mut self,
        id: &str,
        fx: &mut Effects,
    ) -> Option<(ActivityStatus, Stored)> {
        let live = self.live.get_mut(id)?;
        if let Some(c) = &live.closing {
            // Closing already: stored once its closing write is.
            let state = c.state;
            return Some((state, Stored::Closed(Self::waiter(live))));
        }
        match live.state {
            ActivityStatus::Scheduled | ActivityStatus::BackingOff | ActivityStatus::Paused => {
                let id = live.id.clone();
                let details = live.details();
                let rx = Self::waiter(live);
                self.close(
                    &id,
                    Closed {
                        state: ActivityStatus::Cancelled,
                        output: None,
                        failure: Some(ActivityFailure::Cancelled { details }),
                    },
                    fx,
                );
                Some((ActivityStatus::Cancelled, Stored::Closed(rx)))
            }
            ActivityStatus::Running => {
                live.cancel_requested = true;
                // Written again by every cancel (it is idempotent): the caller waits for its own
                // write, whatever became of an earlier one.
                let (ack, rx) = Ack::reply();
                fx.writes.push((
                    Write::CancelRequested {
                        id: live.id.clone(),
                    },
                    Some(ack),
                ));
                if let Some(h) = &live.handle {
                    fx.cancels.push((h.clone(), CancelReason::Requested));
                }
                Some((ActivityStatus::Running, Stored::Written(rx)))
            }
            s => Some((s, Stored::Now)),
        }
    }
}

/// What a cancel awaits before it is stored.
pub(crate) enum Stored {
    /// Its closing write: the waiter hears how it closed (or that the write failed).
    Closed(oneshot::Receiver<Closed>),
    /// The write recording the request.
    Written(oneshot::Receiver<Result<bool, EngineError>>),
    /// Nothing: the state it is in is stored already.
    Now,
}
