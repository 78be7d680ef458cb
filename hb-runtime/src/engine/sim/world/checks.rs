//! The invariants the world checks after every step (memory bounded by what is open, every
//! open activity with a way forward), and the drain that ends a run: every open activity
//! cancelled and every attempt ended until nothing is open.

use std::sync::Arc;
use std::time::Duration;

use super::{World, written_id};
use crate::client::ActivityStatus;
use crate::engine::core::{Ack, Stored};
use crate::engine::store;

/// How often the world looks at every open activity (every so many steps).
const FULL_CHECK_EVERY: usize = 32;
/// How often the world looks at the file's history of ended attempts.
const HISTORY_CHECK_EVERY: usize = 500;
/// What the core may hold beyond twice what is in use (ready ids, `result()` waiters) before
/// the memory check complains.
const SLACK: usize = 4;

impl World {
    pub(super) fn after_step(&mut self) {
        let problems = std::mem::take(&mut self.shell.lock().problems);
        for (kind, m) in problems {
            self.fail(kind, m);
        }
        self.note_cleared();
        self.resets_answered();
        self.callers();
        self.check_memory();
        if self.step.is_multiple_of(FULL_CHECK_EVERY) {
            self.check_open();
        }
        // Its conditions persist once broken: a check now and then (and after the drain) finds
        // them, at a fraction of the cost.
        if self.step.is_multiple_of(HISTORY_CHECK_EVERY) {
            self.check_history();
        }
    }

    /// The file's history of ended attempts stays bounded and goes with its activity: at most
    /// `HISTORY_KEPT` rows per activity, none for an activity the file no longer holds, and
    /// none of an attempt not yet started.
    pub(super) fn check_history(&mut self) {
        // A row is a violation; no row is none; a failed query is one too (a broken check
        // must not pass silently).
        let query = |sql: &str| -> Option<String> {
            let row = self
                .db
                .prepare_cached(sql)
                .and_then(|mut q| q.query_row([], |r| r.get::<_, String>(0)));
            match row {
                Ok(row) => Some(row),
                Err(rusqlite::Error::QueryReturnedNoRows) => None,
                Err(e) => Some(format!("the check's query failed: {e}")),
            }
        };
        let over = query(&format!(
            "SELECT id || ': ' || count(*) FROM attempts GROUP BY id HAVING count(*) > {}",
            store::HISTORY_KEPT
        ));
        if let Some(m) = over {
            self.fail("history-unbounded", format!("{m} ended attempts kept"));
            return;
        }
        let orphan =
            query("SELECT id FROM attempts WHERE id NOT IN (SELECT id FROM activities) LIMIT 1");
        if let Some(id) = orphan {
            self.fail(
                "history-orphan",
                format!("{id}'s ended attempts outlived its row"),
            );
            return;
        }
        let ahead = query(
            "SELECT h.id || ' #' || h.seq FROM attempts h JOIN activities a ON a.id = h.id
             WHERE h.seq > a.attempt + a.attempt_base LIMIT 1",
        );
        if let Some(m) = ahead {
            self.fail(
                "history-ahead",
                format!("{m} is kept as ended, but the activity never started it"),
            );
        }
    }

    /// What the core holds is bounded by what is open.
    pub(super) fn check_memory(&mut self) {
        let shell = self.shell.lock();
        let core = &shell.core;
        let f = core.footprint();
        let scheduled = core
            .live
            .values()
            .filter(|l| l.state == ActivityStatus::Scheduled)
            .count();
        let mut problem = None;
        if f.ready > 2 * scheduled + SLACK {
            problem = Some((
                "ready-queue-leak",
                format!(
                    "{} ids in the ready queues for {scheduled} scheduled activities",
                    f.ready
                ),
            ));
        }
        let types: std::collections::HashSet<&str> =
            core.live.values().map(|l| &*l.activity_type).collect();
        if f.options > types.len() {
            problem = Some((
                "type-leak",
                format!(
                    "options kept for {} types, {} with open activities",
                    f.options,
                    types.len()
                ),
            ));
        }
        for l in core.live.values() {
            let held = l.waiters.as_ref().map_or(0, |w| w.len());
            let waiting = self.waiters.iter().filter(|w| w.id == l.id).count()
                + self
                    .cancels
                    .iter()
                    .filter(|c| c.id == l.id && matches!(c.stored, Stored::Closed(_)))
                    .count();
            if held > 2 * waiting + SLACK {
                problem = Some((
                    "waiter-leak",
                    format!(
                        "{} holds {held} result() waiters; {waiting} are still awaited",
                        l.id
                    ),
                ));
            }
        }
        drop(shell);
        if let Some((kind, m)) = problem {
            self.fail(kind, m);
        }
    }

    /// Every open activity in the file is known to the engine and has a way forward: running
    /// (an attempt, or a timeout watched), ready for a worker, or a retry timer armed.
    pub(super) fn check_open(&mut self) {
        let Ok(rows) = store::open_rows(&self.db) else {
            return;
        };
        let shell = self.shell.lock();
        let mut problem = None;
        // Nothing open is ever pruned: every activity the engine has open and the file held
        // is still there.
        for l in shell.core.live.values() {
            let stored =
                self.model.durable.contains_key(&*l.id) || self.model.stored_open.contains(&*l.id);
            if stored && !rows.iter().any(|r| r.id == l.id) && l.closing.is_none() {
                problem = Some((
                    "pruned-open",
                    format!(
                        "{} is open ({}) but its row is gone from the file",
                        l.id, l.state
                    ),
                ));
            }
        }
        for row in rows {
            let Some(live) = shell.core.live.get(&row.id) else {
                if !shell
                    .pending
                    .iter()
                    .any(|(w, _)| written_id(w).as_deref() == Some(&*row.id))
                {
                    problem = Some((
                        "orphan",
                        format!(
                            "{} is stored {} but the engine does not know it",
                            row.id, row.state
                        ),
                    ));
                }
                continue;
            };
            let has_timer = |kind: crate::engine::core::TimerKind| {
                shell
                    .timers
                    .values()
                    .any(|t| t.id == live.id && t.kind == kind)
            };
            use crate::engine::core::TimerKind as K;
            let forward = if live.closing.is_some() {
                has_timer(K::StoreClosing)
                    || shell
                        .pending
                        .iter()
                        .any(|(_, a)| matches!(a, Some(Ack::Closed(i)) if *i == live.id))
            } else {
                match live.state {
                    ActivityStatus::Running => {
                        self.running
                            .iter()
                            .any(|r| r.id == live.id && r.attempt == live.attempt)
                            || shell.core.watched(&live.id)
                            || has_timer(K::Heartbeat)
                            || has_timer(K::StartToClose)
                    }
                    ActivityStatus::Scheduled => shell.core.is_ready(&live.id),
                    ActivityStatus::BackingOff => has_timer(K::Retry),
                    _ => true,
                }
            };
            if !forward {
                problem = Some((
                    "hang",
                    format!(
                        "{} is {} (attempt {}) with no attempt, timer or queue to move it",
                        live.id, live.state, live.attempt
                    ),
                ));
            }
        }
        drop(shell);
        if let Some((kind, m)) = problem {
            self.fail(kind, m);
        }
    }

    /// The end of a run: no more faults; every open activity is cancelled and every attempt
    /// ends, with time moving, until nothing is open. Anything left open is a hang, and every
    /// `result()` still waiting must have been answered.
    pub(crate) fn drain(&mut self) {
        self.fail_next = 0;
        self.disk_full(false);
        for round in 0..200 {
            if self.violation.is_some() {
                return;
            }
            let mut open: Vec<Arc<str>> = {
                let shell = self.shell.lock();
                shell.core.live.values().map(|l| l.id.clone()).collect()
            };
            if open.is_empty() && self.shell.lock().pending.is_empty() {
                break;
            }
            open.sort();
            for id in open {
                self.cancel_id(id);
            }
            while !self.running.is_empty() {
                self.end_for_drain(0);
            }
            self.poll_requests();
            self.commit();
            self.callers();
            let step = if round < 20 { 1_000 } else { 600_000 };
            self.advance(Duration::from_millis(step));
        }
        let left: Vec<String> = {
            let shell = self.shell.lock();
            shell
                .core
                .live
                .values()
                .map(|l| format!("{} ({}, attempt {})", l.id, l.state, l.attempt))
                .collect()
        };
        if !left.is_empty() {
            self.fail(
                "hang",
                format!("still open after the drain: {}", left.join(", ")),
            );
        }
        self.check_history();
        if let Some(w) = self.waiters.first() {
            let id = w.id.clone();
            self.fail(
                "waiter-unanswered",
                format!("a result() call on {id} was never answered"),
            );
        }
    }
}
