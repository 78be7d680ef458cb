//! The process dying: what was not committed is lost with every attempt, call and timer; the
//! file is reopened later (its wall clock maybe stepped) and recovered as `Engine::open`
//! does; and the checks that a crash lost no more than it may and recovery left nothing
//! waiting on a dead process.

use std::time::Duration;

use super::super::shell::Shell;
use super::World;
use crate::client::ActivityStatus;
use crate::engine::store;

/// The most work a crash may lose, beyond the writer's commit delay: checkpoints made this
/// long before the crash must be in the file (the engine's default checkpoint interval).
const CHECKPOINT_INTERVAL: Duration = crate::engine::DEFAULT_CHECKPOINT_INTERVAL;

impl World {
    /// The process dies: what was not committed is lost, with every attempt, call and timer.
    /// The engine is reopened after `down_ms`, its wall clock stepped by `step_ms`.
    pub(super) fn crash(&mut self, down_ms: u32, step_ms: i32) {
        self.check_work_lost();
        self.resets_crashed();
        self.running.clear();
        self.starts.clear();
        self.cancels.clear();
        self.waiters.clear();
        self.fail_next = 0;
        self.crashes += 1;
        self.clock.advance(Duration::from_millis(down_ms.into()));
        self.clock.step_wall(step_ms.into());
        let mut shell = Shell::new(self.clock.clone());
        // What `Engine::start` does: read what is open, admit it.
        let read = store::open_rows(&self.db)
            .and_then(|rows| Ok((rows, store::requests_applied(&self.db)?)));
        match read {
            Ok((rows, applied)) => {
                shell.change(|core, fx| core.recover(rows, applied, fx));
                shell.recovered();
            }
            Err(e) => self.fail("panic", format!("the reopened file cannot be read: {e}")),
        }
        *self.shell.lock() = shell;
        self.resets_recovered();
        self.check_recovered();
    }

    /// A crash loses at most the checkpoint interval's work (and the commit delay's).
    pub(super) fn check_work_lost(&mut self) {
        let now = self.now();
        if self
            .last_failure
            .is_some_and(|f| now.saturating_duration_since(f) < Duration::from_secs(65))
        {
            // The disk refused writes: checkpoints may be lost until it takes them again and
            // the engine has stored them again (retried 1 s after, doubling to 1 min).
            return;
        }
        for r in &self.running {
            if r.shared.is_cancelled() || self.keys[r.key].external {
                continue;
            }
            let within =
                crate::engine::store::heartbeat_commit_within(r.shared.info.heartbeat_timeout);
            let bound = CHECKPOINT_INTERVAL + within + Duration::from_millis(10);
            let Some(made) = self.model.made.get(&*r.id) else {
                continue;
            };
            let due = made
                .iter()
                .filter(|(_, at, attempt)| {
                    *attempt == (r.attempt, self.crashes) && *at + bound <= now
                })
                .map(|(seq, ..)| *seq)
                .max();
            let stored = self.model.durable.get(&*r.id).copied();
            if let Some(due) = due
                && stored.is_none_or(|s| s < due)
            {
                let message = format!(
                    "crash of attempt {} of {}: checkpoint #{due} was made more than {bound:?} before, the file holds {stored:?}",
                    r.attempt, r.id
                );
                self.fail("work-lost", message);
                return;
            }
        }
    }

    /// After a reopen, no attempt waits for its timeout: the process that ran it is gone
    /// (unless another process heartbeats its work by token).
    pub(super) fn check_recovered(&mut self) {
        let shell = self.shell.lock();
        let waiting: Vec<String> = shell
            .core
            .live
            .values()
            .filter(|l| l.state == ActivityStatus::Running)
            .filter(|l| !self.model.external.contains(&(l.id.to_string(), l.attempt)))
            .map(|l| format!("{} #{}", l.id, l.attempt))
            .collect();
        drop(shell);
        if !waiting.is_empty() {
            self.fail(
                "slow-recovery",
                format!(
                    "after a reopen, attempts of a dead process wait for their timeout: {}",
                    waiting.join(", ")
                ),
            );
        }
    }
}
