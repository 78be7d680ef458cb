//! The operator: pauses, unpauses and resets, from the engine's process (a client) or from
//! another (through the file's request queue), and the check that a refusal agrees with the
//! status the activity was in.

use super::super::Operator;
use super::World;
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
            let before = core.live.get(&*id).map(|l| {
                let status = l.closing.as_ref().map_or(l.state, |c| c.state);
                (status, l.operator & PAUSE != 0)
            });
            (before, core.operate(&id, op, fx))
        });
        match (operated, before) {
            (Operated::NotAllowed(status), Some((seen, pause_told))) => {
                let refusable = match op {
                    Operation::Pause => status == ActivityStatus::Paused || status.is_closed(),
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
            // Applied (its write answers the caller once stored), or not open: the client reads
            // the file, which agrees with the model (`check_stored`).
            _ => {}
        }
    }
}
