//! The file and its writer: commits of what the engine queued (failing on demand, or on a
//! full disk), pruning, requests other processes leave in it, and the checks of what each
//! commit stored.

use std::sync::Arc;

use super::{World, written_id};
use crate::checkpoint;
use crate::engine::EngineError;
use crate::engine::core::{Ack, Request, Write};
use crate::engine::store;
use crate::payload::Payload;

impl World {
    pub(super) fn poll_requests(&mut self) {
        let Ok(requests) = store::read_requests(&self.db) else {
            return;
        };
        self.shell.lock().change(|core, fx| {
            core.requests_stored(fx);
            for r in requests {
                core.request(r, fx);
            }
        });
    }

    /// What `request_cancel` does from another process: committed there at once.
    pub(super) fn cancel_through_file(&mut self, key: usize) {
        let id = self.id_of(key);
        let wall = {
            use crate::engine::clock::Clock as _;
            self.clock.wall_ms()
        };
        let request = Request::Cancel { id: id.to_string() };
        store::requests::insert(&self.db, &request, wall).expect("a request row");
        // Only a cancel of an activity stored by then must be applied (one not stored yet is
        // as unknown to the engine as to `hb cancel`).
        if matches!(store::get_row(&self.db, &id), Ok(Some(_))) {
            self.requested_cancels.push(id);
        }
    }

    /// What the engine's retention does: a small batch of closed activities older than
    /// `older_ms` deleted through the writer. Committed on its own (after what is queued), so
    /// the model knows which ids it removed before any of them starts anew.
    pub(super) fn prune(&mut self, older_ms: u32) {
        self.commit();
        let wall = {
            use crate::engine::clock::Clock as _;
            self.clock.wall_ms()
        };
        self.shell.lock().queue(
            Write::Prune {
                closed_before: wall - i64::from(older_ms),
                limit: 3,
            },
            None,
        );
        self.commit();
    }

    pub(super) fn disk_full(&mut self, full: bool) {
        let pages = if full {
            self.db
                .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                .unwrap_or(1)
        } else {
            1 << 30
        };
        let _ = self
            .db
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()));
    }

    /// A reset cleared these activities' checkpoints: what the model held of them goes (their
    /// next checkpoints are newer all the same: numbers only grow).
    pub(super) fn note_cleared(&mut self) {
        let cleared = std::mem::take(&mut self.shell.lock().cleared);
        for id in cleared {
            self.model.cleared(&id);
        }
    }

    /// The writer commits everything queued, as one batch (replayed write by write if it fails).
    pub(super) fn commit(&mut self) {
        self.note_cleared();
        let mut batch = {
            let mut shell = self.shell.lock();
            shell.commit_by = None;
            std::mem::take(&mut shell.pending)
        };
        if batch.is_empty() {
            return;
        }
        let touched: Vec<Arc<str>> = batch.iter().filter_map(|(w, _)| written_id(w)).collect();
        let pruning = batch.iter().any(|(w, _)| matches!(w, Write::Prune { .. }));
        if self.trace {
            for (w, _) in &batch {
                eprintln!("    commit {w:?}");
            }
        }
        let (db, fail_next) = (&mut self.db, &mut self.fail_next);
        let mut failed = false;
        let mut apply = |b: &mut [(Write, Option<Ack>)]| {
            if *fail_next > 0 {
                *fail_next -= 1;
                failed = true;
                return Err(EngineError::Storage {
                    path: ":memory:".into(),
                    message: "simulated I/O error".into(),
                });
            }
            store::apply(db, b).map_err(|e| {
                failed = true;
                EngineError::sqlite(std::path::Path::new(":memory:"), e)
            })
        };
        let acks = store::commit(&mut batch, &mut apply);
        self.events.commits += 1;
        if failed {
            self.last_failure = Some(self.now());
        }
        // What the writer thread does with acknowledgements: replies to their callers, the
        // rest to the core under one lock.
        let mut core_acks = Vec::new();
        for (ack, r) in acks {
            match ack {
                Ack::Reply(tx) => {
                    let _ = tx.send(r);
                }
                other => core_acks.push((other, r)),
            }
        }
        if !core_acks.is_empty() {
            self.shell.lock().change(|core, fx| {
                for (ack, r) in core_acks {
                    core.committed(ack, r, fx);
                }
            });
        }
        if pruning {
            self.forget_pruned();
        }
        self.check_stored(&touched);
        self.callers();
        self.check_known(&touched);
        self.check_requested_cancels();
    }

    /// Closed activities pruned from the file are forgotten: their ids may start anew.
    pub(super) fn forget_pruned(&mut self) {
        let closed: Vec<String> = self.model.closed.keys().cloned().collect();
        for id in closed {
            if matches!(store::get_row(&self.db, &id), Ok(None)) {
                self.model.forget(&id);
                self.requested_cancels.retain(|c| **c != *id);
            }
        }
    }

    /// A cancel request gone from the file is a cancel stored.
    pub(super) fn check_requested_cancels(&mut self) {
        let mut i = 0;
        while i < self.requested_cancels.len() {
            let id = self.requested_cancels[i].clone();
            let queued: i64 = self
                .db
                .query_row(
                    "SELECT count(*) FROM requests WHERE kind = ?1 AND activity_id = ?2",
                    rusqlite::params![store::requests::CANCEL, &*id],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if queued > 0 {
                i += 1;
                continue;
            }
            self.requested_cancels.retain(|c| *c != id);
            if let Ok(Some(row)) = store::get_row(&self.db, &id)
                && !row.cancel_requested
                && !row.state.is_closed()
            {
                self.fail(
                        "cancel-not-durable",
                        format!(
                            "the cancel request of {id} left the file, which has it {} without a cancel",
                            row.state
                        ),
                    );
            }
        }
    }

    /// What the file holds for the activities a commit touched.
    pub(super) fn check_stored(&mut self, touched: &[Arc<str>]) {
        let mut seen = std::collections::HashSet::new();
        for id in touched {
            if !seen.insert(id.clone()) {
                continue;
            }
            let Ok(Some(row)) = store::get_row(&self.db, id) else {
                continue;
            };
            if let Err((kind, m)) = self.model.state(id, row.state) {
                self.fail(kind, m);
            }
            if let Err(m) = self
                .model
                .cancel(id, row.state, row.attempt, row.cancel_requested)
            {
                self.fail("cancel-ignored", m);
            }
            if !row.state.is_closed() {
                self.model.stored_open.insert(id.to_string());
            }
            let seq = row.details.as_ref().and_then(|d| {
                checkpoint::decode_payload::<u64>(&Payload::from_json_bytes(d.clone())).ok()
            });
            if let Err(m) = self.model.stored(id, seq) {
                self.fail("checkpoint-regressed", m);
            }
        }
    }

    /// Every activity a commit stored open is known to the running engine (once the callers
    /// of the commit have carried on).
    pub(super) fn check_known(&mut self, touched: &[Arc<str>]) {
        for id in touched {
            let Ok(Some(row)) = store::get_row(&self.db, id) else {
                continue;
            };
            if !row.state.is_closed() && self.shell.lock().core.live.get(id).is_none() {
                self.fail(
                    "orphan",
                    format!(
                        "{id} is stored {} but the running engine does not know it",
                        row.state
                    ),
                );
            }
        }
    }
}
