//! The clients: starts (some dropped before they return), cancels, `result()` calls kept or
//! abandoned, and the checks of what each is answered against the file.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Cancel, Start, Waiter, World};
use crate::client::ActivityStatus;
use crate::engine::core::{self, Closed, Stored, Wait};
use crate::engine::store;
use crate::payload::Payload;

impl World {
    pub(super) fn start(&mut self, key: usize, fresh: bool, dropped: bool) {
        if fresh {
            self.generation[key] += 1;
        }
        let id = self.id_of(key);
        let config = &self.keys[key];
        // What `Client::start_raw` does.
        let mut shell = self.shell.lock();
        if shell.core.type_of(&id).is_some() {
            return; // the existing activity's handle
        }
        let now = shell.core.now();
        let input = Payload::json(&key).expect("an integer encodes");
        let start = core::Start::new(
            id.clone(),
            config.activity_type,
            &input,
            &config.options,
            &now,
        );
        shell.queue(start.write, Some(start.ack));
        drop(shell);
        self.resets_forget(&id);
        // A dropped future drops its receiver; the engine admits the activity all the same.
        if !dropped {
            self.starts.push(Start { rx: start.stored });
        }
    }

    pub(super) fn cancel(&mut self, key: usize) {
        self.cancel_id(self.id_of(key));
    }

    pub(super) fn cancel_id(&mut self, id: Arc<str>) {
        // What `Client::cancel` does: the change, then waiting for what stores it.
        let cancelled = self.shell.lock().change(|core, fx| core.cancel(&id, fx));
        let Some((state, stored)) = cancelled else {
            return;
        };
        self.cancels.push(Cancel { id, state, stored });
    }

    pub(super) fn result(&mut self, key: usize, abandon: bool) {
        let id = self.id_of(key);
        // What `Client::wait` does.
        let wait = self.shell.lock().core.wait(&id, false);
        match wait {
            Wait::Pending(rx) if abandon => drop(rx),
            Wait::Pending(rx) => self.waiters.push(Waiter { id, rx }),
            Wait::EngineClosed => self.fail(
                "waiter-wrong",
                format!("result() of {id}: engine closed while it runs"),
            ),
            Wait::NotOpen => match store::get_row(&self.db, &id) {
                Ok(Some(row)) if !row.state.is_closed() => self.fail(
                    "result-of-open-activity",
                    format!(
                        "result() of {id} fails with Closed: the file has it {} but the engine does not know it",
                        row.state
                    ),
                ),
                Ok(Some(row)) => {
                    if let Err((kind, m)) = self.model.state(&id, row.state) {
                        self.fail(kind, m);
                    }
                }
                _ => {}
            },
        }
    }

    /// Clients whose calls were answered carry on (what `start()`, `cancel()` and `result()`
    /// do after their await).
    pub(super) fn callers(&mut self) {
        self.starts
            .retain_mut(|s| matches!(s.rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        let mut i = 0;
        while i < self.cancels.len() {
            // What `Client::cancel` answers, once it can: `Ok` only once the cancel is stored.
            let answer = match &mut self.cancels[i].stored {
                Stored::Now => Some(true),
                Stored::Written(rx) => match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => None,
                    r => Some(matches!(r, Ok(Ok(_)))),
                },
                Stored::Closed(rx) => match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => None,
                    Ok(closed) => Some(!matches!(
                        closed.failure,
                        Some(crate::client::ActivityFailure::Backend(_))
                    )),
                    Err(_) => Some(false),
                },
            };
            match answer {
                None => i += 1,
                Some(ok) => {
                    let c = self.cancels.swap_remove(i);
                    if ok {
                        self.check_cancel_stored(&c);
                    }
                }
            }
        }
        let mut i = 0;
        while i < self.waiters.len() {
            match self.waiters[i].rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => i += 1,
                Ok(closed) => {
                    let w = self.waiters.swap_remove(i);
                    self.check_answer(&w.id, &closed);
                }
                Err(_) => {
                    let w = self.waiters.swap_remove(i);
                    self.fail(
                        "waiter-unanswered",
                        format!("a result() call on {} was dropped without an answer", w.id),
                    );
                }
            }
        }
    }

    /// An acknowledged cancel is in the file.
    pub(super) fn check_cancel_stored(&mut self, c: &Cancel) {
        let Ok(Some(row)) = store::get_row(&self.db, &c.id) else {
            self.fail(
                "cancel-not-durable",
                format!(
                    "cancel() of {} answered Ok; the file has no such activity",
                    c.id
                ),
            );
            return;
        };
        let stored = match c.state {
            ActivityStatus::Running => row.cancel_requested || row.state.is_closed(),
            s if s.is_closed() => row.state == s,
            _ => true,
        };
        if !stored {
            self.fail(
                "cancel-not-durable",
                format!(
                    "cancel() of {} answered Ok({}); the file has it {} (cancel requested: {})",
                    c.id, c.state, row.state, row.cancel_requested
                ),
            );
        }
    }

    /// A `result()` answer agrees with the file.
    pub(super) fn check_answer(&mut self, id: &str, closed: &Closed) {
        if matches!(
            closed.failure,
            Some(crate::client::ActivityFailure::Backend(_))
        ) {
            return; // a storage error: the activity is still open, retried by the engine
        }
        match self.model.closed.get(id) {
            Some(s) if *s == closed.state => {}
            other => self.fail(
                "waiter-wrong",
                format!(
                    "result() of {id} answered {}, the file has it {:?}",
                    closed.state, other
                ),
            ),
        }
    }
}
