//! The operator controls, as Temporal defines them: pause, unpause and reset. An activity
//! waiting to run or to retry changes at once; a running attempt is told (pushed to its
//! handle, and in its heartbeat replies) and the request is stored with it, so the attempt's
//! end, or a reopen, carries it out (`Core::attempt_failed`).

use tokio::sync::oneshot;

use super::super::EngineError;
use super::{Ack, Core, Effects, Live, Write};
use crate::client::ActivityStatus;
use crate::error::CancelReason;

/// The running attempt was told to pause: when it stops, the activity is paused.
pub(crate) const PAUSE: u8 = 1;
/// The running attempt was told of a reset: when it stops, the activity starts again at
/// attempt 1 (paused instead if `PAUSE` is set too: a reset that kept the pause).
pub(crate) const RESET: u8 = 2;
/// The reset asked for the checkpoint to go, once the attempt has stopped.
pub(crate) const CLEAR: u8 = 4;
/// A reset cleared the checkpoint: the last words of attempts before it (a final flush
/// arriving late) are dropped, until the next attempt starts.
pub(crate) const CLEARED: u8 = 8;

/// An operator control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Pause,
    Unpause,
    Reset {
        keep_checkpoint: bool,
        keep_paused: bool,
    },
}

impl Operation {
    /// Its name, as `ClientError::NotAllowed` and the logs give it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Operation::Pause => "pause",
            Operation::Unpause => "unpause",
            Operation::Reset { .. } => "reset",
        }
    }
}

/// What [`Core::operate`] did.
pub(crate) enum Operated {
    /// Not open (closed, or unknown): the file says which.
    NotOpen,
    /// Refused: the operation does not apply to the activity in this status.
    NotAllowed(ActivityStatus),
    /// Done; stored once the receiver hears.
    Stored(oneshot::Receiver<Result<bool, EngineError>>),
}

impl Live {
    /// Why the running attempt was told to stop by an operator, if it was.
    pub(crate) fn told(&self) -> Option<CancelReason> {
        if self.operator & RESET != 0 {
            Some(CancelReason::Reset)
        } else if self.operator & PAUSE != 0 {
            Some(CancelReason::Paused)
        } else {
            None
        }
    }

    /// The write of a change to `state` made by an operator (nothing of the attempt changes).
    fn operated(&mut self, state: ActivityStatus, clear_details: bool) -> Write {
        Write::Transition {
            fold: std::mem::take(&mut self.heartbeat_row),
            id: self.id.clone(),
            state,
            attempt: self.number(),
            base: self.base,
            operator: self.stored_operator(),
            details: None,
            clear_details,
            output: None,
            failure: None,
            next_attempt_at: None,
            closed_at: None,
            ended: None,
        }
    }
}

impl Live {
    /// Carries out what a reopened file says a running attempt was told, when the file has no
    /// attempt running (its start, or its end, was not stored): as if it had stopped.
    pub(super) fn carry_out(&mut self, fx: &mut Effects) {
        let told = std::mem::take(&mut self.operator);
        if told & (PAUSE | RESET) == 0 {
            return;
        }
        let clear = told & RESET != 0 && told & CLEAR != 0;
        if told & RESET != 0 {
            self.base = self.attempt;
        }
        if clear {
            self.clear_details();
            self.operator = CLEARED;
        }
        if told & PAUSE != 0 {
            self.state = ActivityStatus::Paused;
        } else if self.state != ActivityStatus::Paused {
            self.state = ActivityStatus::Scheduled;
        }
        self.next_attempt_ms = None;
        let write = self.operated(self.state, clear);
        fx.writes.push((write, None));
    }
}

impl Core {
    /// Applies operator control `op` to activity `id`.
    pub(crate) fn operate(&mut self, id: &str, op: Operation, fx: &mut Effects) -> Operated {
        let Some(live) = self.live.get_mut(id) else {
            return Operated::NotOpen;
        };
        if let Some(c) = &live.closing {
            return Operated::NotAllowed(c.state);
        }
        let state = live.state;
        let write = match (op, state) {
            (Operation::Pause, ActivityStatus::Scheduled | ActivityStatus::BackingOff) => {
                // A retry timer armed meanwhile finds it paused, and does nothing.
                live.state = ActivityStatus::Paused;
                live.next_attempt_ms = None;
                let write = live.operated(ActivityStatus::Paused, false);
                if state == ActivityStatus::Scheduled {
                    // Its id stays in the ready queue, stale, until the queue is compacted.
                    let ty = live.activity_type.clone();
                    let all = &self.live;
                    self.ready.left(&ty, |i| {
                        all.get(i).is_some_and(|l| {
                            l.state == ActivityStatus::Scheduled && l.closing.is_none()
                        })
                    });
                }
                write
            }
            // Paused already, its attempt still stopping: refused, as Temporal refuses a pause
            // while the pause is requested ("non-pausable state").
            (Operation::Pause, ActivityStatus::Running) if live.operator & PAUSE != 0 => {
                return Operated::NotAllowed(state);
            }
            (Operation::Pause, ActivityStatus::Running) => {
                live.operator |= PAUSE;
                Self::tell(live, fx)
            }
            (Operation::Unpause, ActivityStatus::Paused) => {
                live.state = ActivityStatus::Scheduled;
                let write = live.operated(ActivityStatus::Scheduled, false);
                Self::push_ready(&mut self.ready, self.clock.wall_ms(), live, fx);
                write
            }
            // The attempt told to pause has not stopped yet: it is followed by the next one
            // at once (`Core::failed`).
            (Operation::Unpause, ActivityStatus::Running) if live.operator & PAUSE != 0 => {
                live.operator &= !PAUSE;
                Self::tell(live, fx)
            }
            (
                Operation::Reset {
                    keep_checkpoint,
                    keep_paused,
                },
                ActivityStatus::Running,
            ) => {
                live.operator |= RESET;
                if !keep_checkpoint {
                    live.operator |= CLEAR;
                }
                if !keep_paused {
                    live.operator &= !PAUSE;
                }
                Self::tell(live, fx)
            }
            (
                Operation::Reset {
                    keep_checkpoint,
                    keep_paused,
                },
                ActivityStatus::Scheduled | ActivityStatus::BackingOff | ActivityStatus::Paused,
            ) => {
                live.base = live.attempt;
                if !keep_checkpoint {
                    live.clear_details();
                    live.operator |= CLEARED;
                }
                let next = if state == ActivityStatus::Paused && keep_paused {
                    ActivityStatus::Paused
                } else {
                    ActivityStatus::Scheduled
                };
                live.state = next;
                live.next_attempt_ms = None;
                let write = live.operated(next, !keep_checkpoint);
                if next == ActivityStatus::Scheduled && state != ActivityStatus::Scheduled {
                    Self::push_ready(&mut self.ready, self.clock.wall_ms(), live, fx);
                }
                write
            }
            (_, state) => return Operated::NotAllowed(state),
        };
        let (ack, rx) = Ack::reply();
        fx.writes.push((write, Some(ack)));
        tracing::info!(activity_id = %id, operation = op.name(), from = %state, "operator control applied");
        Operated::Stored(rx)
    }

    /// Tells the running attempt of `live` why it must stop (the operator requests in force), and
    /// returns the write that stores them.
    fn tell(live: &Live, fx: &mut Effects) -> Write {
        if let (Some(h), Some(reason)) = (&live.handle, live.told()) {
            fx.cancels.push((h.clone(), reason));
        }
        Write::Operator {
            id: live.id.clone(),
            operator: live.stored_operator(),
        }
    }
}
