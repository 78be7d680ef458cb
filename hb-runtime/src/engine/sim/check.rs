//! The simulator's reference model: what must hold of every activity, whatever the faults.

use std::collections::{HashMap, HashSet};
use std::fmt;

use tokio::time::Instant;

use crate::client::ActivityStatus;

/// An invariant the engine broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The step (0-based) after which it was seen.
    pub step: usize,
    /// Which invariant: `orphan`, `checkpoint-regressed`, `retry-older-checkpoint`,
    /// `reopened`, `closed-differently`, `waiter-unanswered`, `waiter-wrong`,
    /// `result-of-open-activity`, `cancel-not-durable`, `pruned-open`, `ready-queue-leak`, `waiter-leak`, `type-leak`,
    /// `timer-too-late`,
    /// `stored-time`, `work-lost`, `slow-recovery`, `started-while-paused`, `attempt-number`,
    /// `attempt-after-reset`, `cancel-ignored`,
    /// `not-allowed-wrong`, `panic`, `hang`.
    pub kind: &'static str,
    /// What was seen.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}: {}: {}", self.step, self.kind, self.message)
    }
}

/// A checkpoint a running body made: its number, when, and which attempt of which process
/// (counted by crashes).
pub(crate) type Made = (u64, Instant, (u32, u64));

/// What the simulator knows must be true, per activity id.
#[derive(Default)]
pub(crate) struct Model {
    /// The next checkpoint number of each activity: every checkpoint (a body's or an
    /// external heartbeat's) is numbered in the order it was made.
    next_seq: HashMap<String, u64>,
    /// The newest checkpoint number ever durably stored.
    pub(crate) durable: HashMap<String, u64>,
    /// Checkpoints made by running bodies: number, when, which attempt of which process
    /// (counted by crashes), the latest few.
    pub(crate) made: HashMap<String, Vec<Made>>,
    /// How each durably closed activity closed.
    pub(crate) closed: HashMap<String, ActivityStatus>,
    /// Activities the file has held open.
    pub(crate) stored_open: HashSet<String>,
    /// Attempts heartbeated through the file by another process (`id`, attempt).
    pub(crate) external: HashSet<(String, u32)>,
    /// Activities whose checkpoint a reset cleared, with the newest checkpoint number made
    /// before: the file may still show one of those (the clearing write failed), and it no
    /// longer counts.
    cleared: HashMap<String, u64>,
    /// Activities the file has held running with a cancel requested, with the attempt then
    /// running: it is their last.
    cancel_stored: HashMap<String, u32>,
}

/// How many of an activity's latest checkpoints are kept for the work-lost check.
const KEEP_MADE: usize = 64;

impl Model {
    /// A new checkpoint number for activity `id`.
    pub(crate) fn next_seq(&mut self, id: &str) -> u64 {
        let n = self.next_seq.entry(id.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    /// A body made checkpoint `seq` at `at`.
    pub(crate) fn made(&mut self, id: &str, seq: u64, at: Instant, attempt: (u32, u64)) {
        let made = self.made.entry(id.to_owned()).or_default();
        made.push((seq, at, attempt));
        if made.len() > KEEP_MADE {
            made.drain(..made.len() - KEEP_MADE);
        }
    }

    /// A reset cleared the checkpoint of `id`: what was made before it no longer counts.
    pub(crate) fn cleared(&mut self, id: &str) {
        let upto = self.next_seq.get(id).copied().unwrap_or(0);
        self.cleared.insert(id.to_owned(), upto);
        self.durable.remove(id);
        self.made.remove(id);
    }

    /// Activity `id` was pruned (closed and old): its id may start a new activity.
    pub(crate) fn forget(&mut self, id: &str) {
        self.cleared.remove(id);
        self.durable.remove(id);
        self.made.remove(id);
        self.closed.remove(id);
        self.stored_open.remove(id);
        self.next_seq.remove(id);
        self.cancel_stored.remove(id);
    }

    /// The file now holds checkpoint `seq` (if any) for `id`: it must not be older than one it
    /// held before.
    pub(crate) fn stored(&mut self, id: &str, seq: Option<u64>) -> Result<(), String> {
        let before_clear = |seq: u64| self.cleared.get(id).is_some_and(|upto| seq <= *upto);
        let seq = seq.filter(|s| !before_clear(*s));
        let Some(seq) = seq else {
            return match self.durable.get(id) {
                Some(old) => Err(format!("{id}: the file lost its checkpoint #{old}")),
                None => Ok(()),
            };
        };
        let newest = self.durable.entry(id.to_owned()).or_insert(seq);
        if seq < *newest {
            return Err(format!(
                "{id}: the file holds checkpoint #{seq}, older than #{newest} it held before"
            ));
        }
        *newest = seq;
        Ok(())
    }

    /// The file shows `id` in `state`.
    pub(crate) fn state(
        &mut self,
        id: &str,
        state: ActivityStatus,
    ) -> Result<(), (&'static str, String)> {
        match self.closed.get(id) {
            Some(c) if !state.is_closed() => Err((
                "reopened",
                format!("{id} closed as {c}, and the file shows it {state} again"),
            )),
            Some(c) if *c != state => Err((
                "closed-differently",
                format!("{id} closed as {c}, and the file shows it closed as {state}"),
            )),
            Some(_) => Ok(()),
            None => {
                if state.is_closed() {
                    self.closed.insert(id.to_owned(), state);
                }
                Ok(())
            }
        }
    }

    /// The file shows `id` in `state` at attempt `attempt`, its cancel requested or not. Once
    /// the file held it running with its cancel requested, that attempt is its last: the
    /// file shows it running at that attempt until it closes as cancelled, completed (the
    /// body finished first) or timed out (its schedule-to-close deadline). Never failed, and
    /// never retried, paused or waiting again, whatever the attempt returned.
    pub(crate) fn cancel(
        &mut self,
        id: &str,
        state: ActivityStatus,
        attempt: u32,
        cancel_requested: bool,
    ) -> Result<(), String> {
        use ActivityStatus::{Cancelled, Completed, Failed, Running, TimedOut};
        // A row that holds its cancel never closes as failed, whatever the file showed before
        // (the cancel's write and the attempt's end may share a commit). It may show an
        // earlier open state: the write that started the attempt may have failed.
        if cancel_requested && state == Failed {
            return Err(format!(
                "the file holds {id}'s cancel, and has it {state} at attempt {attempt}"
            ));
        }
        let Some(&at) = self.cancel_stored.get(id) else {
            if cancel_requested && state == Running {
                self.cancel_stored.insert(id.to_owned(), attempt);
            }
            return Ok(());
        };
        match state {
            Running if attempt == at => Ok(()),
            Cancelled | Completed | TimedOut => Ok(()),
            _ => Err(format!(
                "the file held {id} running attempt {at} with its cancel requested; it now has \
                 it {state} at attempt {attempt}"
            )),
        }
    }
}
