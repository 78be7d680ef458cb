//! One simulated run: the real engine core, the real SQLite store (in memory, surviving
//! simulated crashes), real attempt contexts heartbeating through the real pump functions,
//! and the clients, workers and faults around them, all on a simulated clock.
//!
//! The world's parts, by what they simulate: `keys` (what each key's activities are),
//! `clients` (starts, cancels, `result()` calls and the answers they get), `attempts` (the
//! worker: attempts taken, checkpointing, heartbeating and ending), `file` (the writer's
//! commits, faults of the disk, requests through the file), `time` (time passing: pump
//! ticks, commits and timers coming due), `operators` (pause, unpause, reset and the checks
//! of their answers), `crash` (the process dying and the file reopened)
//! and `checks` (the invariants looked at after every step, and the drain at the end).

mod attempts;
mod checks;
mod clients;
mod crash;
mod file;
mod keys;
mod operators;
mod time;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Action;
use super::check::{Model, Violation};
use super::rng::Rng;
use super::shell::{Shared, Shell};
use crate::attempt::Shared as AttemptShared;
use crate::client::ActivityStatus;
use crate::context::ActivityContext;
use crate::engine::EngineError;
use crate::engine::clock::SimClock;
use crate::engine::core::{Closed, Stored, Write};
use crate::engine::store;

use keys::KeyConfig;

/// Activity ids are `k{key}-{generation}`; a start either reuses the key's current id (a
/// duplicate start) or makes the next one.
pub(crate) const KEYS: u64 = 12;

/// An attempt running in the simulated process.
struct Running {
    id: Arc<str>,
    attempt: u32,
    shared: Arc<AttemptShared>,
    key: usize,
    next_tick: Instant,
    interval: Duration,
}

impl Running {
    fn ctx(&self) -> ActivityContext {
        ActivityContext::from_shared(self.shared.clone())
    }
}

/// A client's `start()` waiting for its row to be stored.
struct Start {
    rx: oneshot::Receiver<Result<bool, EngineError>>,
}

/// A client's `cancel()` waiting for the cancel to be stored.
struct Cancel {
    id: Arc<str>,
    state: ActivityStatus,
    stored: Stored,
}

/// A reset applied.
struct Reset {
    id: Arc<str>,
    at: u32,
    stored: Option<oneshot::Receiver<Result<bool, EngineError>>>,
}

/// A client's `result()`.
struct Waiter {
    id: Arc<str>,
    rx: oneshot::Receiver<Closed>,
}

/// Counts of what happened inside the steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Events {
    /// Heartbeats the pump sent.
    pub ticks: u64,
    /// Commits of the writer.
    pub commits: u64,
    /// Timers that fired.
    pub timers: u64,
}

/// The simulated system.
pub(crate) struct World {
    pub(crate) clock: Arc<SimClock>,
    shell: Shared,
    /// "The file": an in-memory SQLite database, which simulated crashes keep.
    db: Connection,
    keys: Vec<KeyConfig>,
    generation: Vec<u32>,
    running: Vec<Running>,
    starts: Vec<Start>,
    cancels: Vec<Cancel>,
    waiters: Vec<Waiter>,
    model: Model,
    /// The next so many calls to the store fail (an I/O error).
    fail_next: u32,
    /// When a commit last failed (a crash soon after may lose more than usual).
    last_failure: Option<Instant>,
    pub(crate) step: usize,
    pub(crate) crashes: u64,
    /// Events inside the steps: pump ticks, commits, timers fired.
    pub(crate) events: Events,
    pub(crate) violation: Option<Violation>,
    /// Activities cancelled through the file (checked when their requests are gone).
    requested_cancels: Vec<Arc<str>>,
    /// Resets applied: the activity, its attempt count then (the engine's own, over its whole
    /// life), and what answers the caller (`None` once it answered that it is stored). The
    /// next attempt after one is attempt 1.
    resets: Vec<Reset>,
    /// Invariants not checked in this run (to look for other failures past a known one).
    pub(crate) ignore: Vec<String>,
    /// Prints every action and commit (`sim::replay_traced`).
    pub(crate) trace: bool,
}

impl World {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5eed_c0de_0000_0001);
        let keys = (0..KEYS).map(|_| KeyConfig::generate(&mut rng)).collect();
        let db = Connection::open_in_memory().expect("an in-memory SQLite database");
        store::init(&db, std::path::Path::new(":memory:")).expect("the engine's schema");
        // A simulated wall clock somewhere in 2026.
        let clock = Arc::new(SimClock::new(1_780_000_000_000));
        let shell = Shared(Arc::new(Mutex::new(Shell::new(clock.clone()))));
        World {
            clock,
            shell,
            db,
            keys,
            generation: vec![0; KEYS as usize],
            running: Vec::new(),
            starts: Vec::new(),
            cancels: Vec::new(),
            waiters: Vec::new(),
            model: Model::default(),
            fail_next: 0,
            last_failure: None,
            step: 0,
            crashes: 0,
            events: Events::default(),
            violation: None,
            requested_cancels: Vec::new(),
            resets: Vec::new(),
            ignore: Vec::new(),
            trace: false,
        }
    }

    pub(super) fn now(&self) -> Instant {
        use crate::engine::clock::Clock as _;
        self.clock.now()
    }

    pub(crate) fn fail(&mut self, kind: &'static str, message: String) {
        if self.violation.is_none() && !self.ignore.iter().any(|k| k == kind) {
            self.violation = Some(Violation {
                step: self.step,
                kind,
                message,
            });
        }
    }

    pub(super) fn id_of(&self, key: usize) -> Arc<str> {
        Arc::from(format!("k{key}-{}", self.generation[key]))
    }

    pub(super) fn key_of(id: &str) -> usize {
        id[1..]
            .split('-')
            .next()
            .and_then(|k| k.parse().ok())
            .unwrap_or(0)
    }

    /// Runs one action, then the invariants that must hold after every step.
    pub(crate) fn act(&mut self, action: &Action) {
        if self.trace {
            eprintln!("[{}] {action:?}", self.step);
        }
        match *action {
            Action::Start { key, fresh, drop } => {
                self.start(key as usize % KEYS as usize, fresh, drop)
            }
            Action::Take => self.take(),
            Action::Checkpoint { pick } => self.checkpoint(pick),
            Action::External { pick } => self.external(pick),
            Action::PollRequests => self.poll_requests(),
            Action::Finish { pick, ending } => self.finish(pick, ending),
            Action::Cancel { key, file } => {
                let key = key as usize % KEYS as usize;
                if file {
                    self.cancel_through_file(key);
                } else {
                    self.cancel(key);
                }
            }
            Action::Operate { key, op, file } => {
                self.operate(key as usize % KEYS as usize, op, file)
            }
            Action::Result { key, drop } => self.result(key as usize % KEYS as usize, drop),
            Action::Advance { ms } => self.advance(Duration::from_millis(ms.into())),
            Action::Commit => self.commit(),
            Action::Prune { older_ms } => self.prune(older_ms),
            Action::FailCommits { n } => self.fail_next = n.into(),
            Action::DiskFull { full } => self.disk_full(full),
            Action::Shutdown => self.shutdown(),
            Action::Crash { down_ms, step_ms } => self.crash(down_ms, step_ms),
            Action::ClockStep { ms } => self.clock.step_wall(ms.into()),
        }
        self.after_step();
        self.step += 1;
    }

    pub(super) fn pick(&self, pick: u8) -> Option<usize> {
        (!self.running.is_empty()).then(|| pick as usize % self.running.len())
    }
}

/// The activity a write is about.
fn written_id(w: &Write) -> Option<Arc<str>> {
    match w {
        Write::Insert(row) => Some(row.id.clone()),
        Write::Started { id, .. }
        | Write::Heartbeat { id, .. }
        | Write::Transition { id, .. }
        | Write::CancelRequested { id }
        | Write::RequestHeartbeat { id, .. } => Some(id.clone()),
        _ => None,
    }
}
