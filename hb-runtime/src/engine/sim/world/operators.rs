//! The operator: pauses, unpauses and resets, from the engine's process (a client) or from
//! another (through the file's request queue), and the check that a refusal agrees with the
//! status the activity was in.

use super::super::Operator;
use super::{Reset, World};
use crate::client::ActivityStatus;
use crate::engine::core::{Operated, Operation, PAUSE, Request};
use crate::engine::store;

impl World {
    pub(super) fn operate(&mut self, key: usize, op: Operator, file: bool) {
        let id = self.id_of(key);
        let op = match op {
            Operator::Pause => Operation::Pause,
            Operator::Unpause => Operation::Unpause,
            Operator::Reset { clear, keep_paused } => Operation::Reset {
                keep_checkpoint: !clear,
                keep_paused,
            },
        };
        if file {
            // What `request_pause` (and the others) do from another process: committed there
            // at once, applied at the engine's next poll.
            let wall = {
                use crate::engine::clock::Clock as _;
                self.clock.wall_ms()
            };
            let request = Request::Operate {
                id: id.to_string(),
                op,
            };
            store::requests::insert(&self.db, &request, wall).expect("a request row");
            return;
        }
        // What `Client::pause` (and the others) do: the change, under the engine's lock, with
        // the status it saw.
        let (before, operated) = self.shell.lock().change(|core, fx| {
            let before = core.live.get(&id).map(|l| {
                let status = l.closing.as_ref().map_or(l.state, |c| c.state);
                (status, l.operator & PAUSE != 0, l.attempt)
            });
            (before, core.operate(&id, op, fx))
        });
        let before = match (operated, before) {
            (Operated::Stored(rx), Some((_, _, at))) => {
                if matches!(op, Operation::Reset { .. }) {
                    self.resets.push(Reset {
                        id: id.clone(),
                        at,
                        stored: Some(rx),
                    });
                }
                return;
            }
            (operated, before) => (operated, before.map(|(s, p, _)| (s, p))),
        };
        match before {
            (Operated::NotAllowed(status), Some((seen, pause_told))) => {
                let refusable = match op {
                    Operation::Pause => {
                        status == ActivityStatus::Paused
                            || status.is_closed()
                            || (status == ActivityStatus::Running && pause_told)
                    }
                    Operation::Unpause => {
                        status != ActivityStatus::Paused
                            && !(status == ActivityStatus::Running && pause_told)
                    }
                    Operation::Reset { .. } => status.is_closed(),
                };
                if status != seen || !refusable {
                    self.fail(
                        "not-allowed-wrong",
                        format!(
                            "{} of {id} refused as {status}; it was {seen} (told to pause: {pause_told})",
                            op.name()
                        ),
                    );
                }
            }
            (Operated::NotAllowed(status), None) => self.fail(
                "not-allowed-wrong",
                format!(
                    "{} of {id} refused as {status}; the engine does not hold it",
                    op.name()
                ),
            ),
            (Operated::NotOpen, Some((seen, _))) => self.fail(
                "not-allowed-wrong",
                format!("{} of {id} found it not open; it was {seen}", op.name()),
            ),
            // Not open: the client reads the file, which agrees with the model
            // (`check_stored`).
            _ => {}
        }
    }

    /// The resets whose callers heard: one the store refused is forgotten (it may be lost in
    /// a crash; the engine applied it all the same until then).
    pub(super) fn resets_answered(&mut self) {
        self.resets
            .retain_mut(|r| match r.stored.as_mut().map(|rx| rx.try_recv()) {
                Some(Ok(Ok(_))) => {
                    r.stored = None;
                    true
                }
                Some(Err(tokio::sync::oneshot::error::TryRecvError::Empty)) | None => true,
                Some(_) => false,
            });
    }

    /// The first attempt after a reset is attempt 1.
    pub(super) fn check_reset_attempt(&mut self, id: &str, attempt: u32, number: u32) {
        let before = self.resets.len();
        self.resets.retain(|r| !(&*r.id == id && r.at < attempt));
        if self.resets.len() < before && number != 1 {
            self.fail(
                "attempt-after-reset",
                format!("the first attempt of {id} after a reset is attempt {number}, not 1"),
            );
        }
    }

    /// A crash loses the resets not stored yet.
    pub(super) fn resets_crashed(&mut self) {
        self.resets_answered();
        self.resets.retain(|r| r.stored.is_none());
    }

    /// After a reopen, attempts are counted from what the file held: a reset stored is in
    /// effect from the attempt recovered (the next one is attempt 1).
    pub(super) fn resets_recovered(&mut self) {
        let shell = self.shell.lock();
        let live = &shell.core.live;
        self.resets.retain_mut(|r| match live.get(&r.id) {
            Some(l) => {
                r.at = l.attempt;
                true
            }
            None => false,
        });
    }

    /// A new activity of `id` (a pruned id started again): resets of the old one are gone.
    pub(super) fn resets_forget(&mut self, id: &str) {
        self.resets.retain(|r| &*r.id != id);
    }
}
