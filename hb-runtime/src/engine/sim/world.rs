//! One simulated run: the real engine core, the real SQLite store (in memory, surviving
//! simulated crashes), real attempt contexts heartbeating through the real pump functions,
//! and the clients, workers and faults around them, all on a simulated clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use rusqlite::Connection;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::check::{Model, Violation};
use super::rng::Rng;
use super::shell::{Shared, Shell, SimClock};
use super::{Action, Ending};
use crate::checkpoint;
use crate::client::ActivityStatus;
use crate::context::{ActivityContext, ActivityInfo, Env, Shared as AttemptShared, Slot};
use crate::definition::{ActivityOptions, RetryPolicy};
use crate::engine::EngineError;
use crate::engine::client::new_row;
use crate::engine::core::{Ack, Write};
use crate::engine::core::{Closed, Live, Stored, Wait};
use crate::engine::record::StoredOptions;
use crate::engine::store;
use crate::error::{ActivityError, CancelReason};
use crate::payload::Payload;
use crate::runner::AttemptHandle;
use crate::state::StateMap;

/// Activity ids are `k{key}-{generation}`; a start either reuses the key's current id (a
/// duplicate start) or makes the next one.
pub(crate) const KEYS: u64 = 12;
/// The most attempts the simulated worker runs at once.
const MAX_RUNNING: usize = 6;
/// The types the worker runs; `orphan` has no worker.
const WORKER_TYPES: [&str; 2] = ["alpha", "beta"];
/// How often the world looks at every open activity (every so many steps).
const FULL_CHECK_EVERY: usize = 32;
/// What the core may hold beyond twice what is in use (ready ids, `result()` waiters) before
/// the memory check complains.
const SLACK: usize = 4;
/// The most work a crash may lose, beyond the writer's commit delay: checkpoints made this
/// long before the crash must be in the file (the engine's default checkpoint interval).
pub(crate) const CHECKPOINT_INTERVAL: Duration = crate::engine::DEFAULT_CHECKPOINT_INTERVAL;

/// What a key's activities are.
#[derive(Debug, Clone)]
struct KeyConfig {
    activity_type: &'static str,
    options: ActivityOptions,
    /// Its work is heartbeated by token from outside (its body never checkpoints)...
    external: bool,
    /// ... by another process, through the file (else by a task of the engine's process).
    through_file: bool,
}

impl KeyConfig {
    fn generate(rng: &mut Rng) -> Self {
        let ms = Duration::from_millis;
        let activity_type = match rng.below(10) {
            0 => "orphan",
            1..=5 => "alpha",
            _ => "beta",
        };
        let mut o = ActivityOptions::new();
        o.heartbeat_timeout = rng.pick(&[
            None,
            Some(ms(200)),
            Some(ms(1_000)),
            Some(ms(10_000)),
            Some(ms(10_000)),
            Some(ms(30_000)),
            Some(ms(3_600_000)),
        ]);
        o.start_to_close_timeout = rng.pick(&[None, None, None, Some(ms(300)), Some(ms(20_000))]);
        o.schedule_to_close_timeout =
            rng.pick(&[None, None, None, None, Some(ms(5_000)), Some(ms(120_000))]);
        let mut retry = RetryPolicy::new()
            .max_attempts(rng.pick(&[0, 1, 2, 3, 5]))
            .initial_interval(rng.pick(&[
                Duration::ZERO,
                ms(10),
                ms(1_000),
                ms(30_000),
                // "Never retry on your own": a natural sentinel.
                Duration::MAX,
            ]))
            .backoff(rng.pick(&[1.0, 2.0, 1e9]));
        if rng.one_in(3) {
            retry = retry.max_interval(rng.pick(&[ms(500), ms(3_600_000)]));
        }
        o.retry = retry;
        KeyConfig {
            activity_type,
            options: o,
            external: rng.one_in(5),
            through_file: rng.one_in(2),
        }
    }
}

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
            ignore: Vec::new(),
            trace: false,
        }
    }

    fn now(&self) -> Instant {
        use super::super::clock::Clock as _;
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

    fn id_of(&self, key: usize) -> Arc<str> {
        Arc::from(format!("k{key}-{}", self.generation[key]))
    }

    fn key_of(id: &str) -> usize {
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

    fn start(&mut self, key: usize, fresh: bool, dropped: bool) {
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
        let options = StoredOptions::from_options(&config.options);
        let input = Payload::json(&key).expect("an integer encodes");
        let row = new_row(id, config.activity_type, &input, &options, now.wall_ms);
        let live = Box::new(Live::from_row(row.clone(), &now));
        let (tx, rx) = oneshot::channel();
        shell.queue(Write::Insert(Box::new(row)), Some(Ack::Inserted(live, tx)));
        drop(shell);
        // A dropped future drops its receiver; the engine admits the activity all the same.
        if !dropped {
            self.starts.push(Start { rx });
        }
    }

    fn take(&mut self) {
        if self.running.len() >= MAX_RUNNING {
            return;
        }
        let task = self
            .shell
            .lock()
            .change(|core, fx| core.take(&WORKER_TYPES, fx));
        let Some(task) = task else { return };
        let key = Self::key_of(&task.id);
        // The retry resumes from the newest checkpoint the file held.
        let resumed = task
            .details
            .as_ref()
            .and_then(|d| checkpoint::decode_payload::<u64>(d).ok());
        if let Some(&newest) = self.model.durable.get(&*task.id)
            && resumed.is_none_or(|r| r < newest)
        {
            self.fail(
                "retry-older-checkpoint",
                format!(
                    "attempt {} of {} resumes from checkpoint {resumed:?}; the file held #{newest}",
                    task.attempt, task.id
                ),
            );
        }
        // What the worker and `AttemptRunner::start` do.
        let options = task.options.apply_to(self.keys[key].options);
        let info = ActivityInfo {
            activity_id: task.id.to_string(),
            activity_type: self.keys[key].activity_type,
            attempt: task.attempt,
            heartbeat_timeout: options.effective_heartbeat_timeout(),
            heartbeat_interval: options.effective_heartbeat_interval(),
            deadline: task.deadline,
            task_token: task.token.clone(),
        };
        let heartbeat_interval = info.heartbeat_interval;
        let env = Arc::new(Env {
            transport: Arc::new(crate::engine::transport::EngineTransport(
                self.shell.clone(),
            )),
            state: StateMap::default(),
            pump_on_runtime: false,
        });
        let shared = Arc::new(AttemptShared::new(
            info,
            &options,
            Box::new(Slot::<u64>::new(resumed)),
            env,
            task.details.clone(),
            tracing::Span::none(),
        ));
        // The period the real pump looks at the attempt with.
        let interval = crate::heartbeat::tick(heartbeat_interval, shared.options.ticks_per_beat);
        let handle = AttemptHandle::from_shared(shared.clone());
        self.shell
            .lock()
            .change(|core, fx| core.attach(&task.id, task.attempt, &handle, 1, fx));
        let now = self.now();
        self.running.push(Running {
            id: task.id,
            attempt: task.attempt,
            shared,
            key,
            next_tick: super::super::clock::later(now, interval),
            interval,
        });
    }

    fn pick(&self, pick: u8) -> Option<usize> {
        (!self.running.is_empty()).then(|| pick as usize % self.running.len())
    }

    fn checkpoint(&mut self, pick: u8) {
        let Some(i) = self.pick(pick) else { return };
        let r = &self.running[i];
        if self.keys[r.key].external {
            return;
        }
        let (id, attempt, ctx) = (r.id.clone(), r.attempt, r.ctx());
        let seq = self.model.next_seq(&id);
        if ctx.checkpoint(&seq).is_ok() {
            let now = self.now();
            self.model.made(&id, seq, now, (attempt, self.crashes));
        }
    }

    fn external(&mut self, pick: u8) {
        let Some(i) = self.pick(pick) else { return };
        let r = &self.running[i];
        if !self.keys[r.key].external {
            return;
        }
        let file = self.keys[r.key].through_file;
        let (id, attempt, token) = (r.id.clone(), r.attempt, r.shared.info.task_token.clone());
        let seq = self.model.next_seq(&id);
        let details = checkpoint::encode_payload(&seq).expect("an integer encodes");
        if file {
            // What `request_heartbeat` does from another process: committed there at once.
            let token = String::from_utf8_lossy(token.as_bytes()).into_owned();
            let wall = {
                use super::super::clock::Clock as _;
                self.clock.wall_ms()
            };
            self.db
                .execute(
                    "INSERT INTO requests (kind, activity_id, task_token, details, at) VALUES ('heartbeat', NULL, ?1, ?2, ?3)",
                    rusqlite::params![token, details.data(), wall],
                )
                .expect("a request row");
            self.model.external.insert((id.to_string(), attempt));
        } else {
            // What `Client::heartbeat` does in the engine's process.
            let mut shell = self.shell.lock();
            if let Ok((_, Some(w))) = shell.core.heartbeat(&token, Some(&details)) {
                shell.queue(w, None);
            }
        }
    }

    fn poll_requests(&mut self) {
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

    /// Attempt `i` ends with `ending` (a cancelled one ends cancelled, as the runner ends it),
    /// reported as the runner reports: final flush, then the outcome.
    fn end(&mut self, i: usize, ending: Ending) {
        let r = self.running.swap_remove(i);
        let result = match (r.shared.cancel_reason(), ending) {
            (Some(reason), _) => Err(ActivityError::Cancelled {
                reason,
                details: None,
            }),
            (None, Ending::Complete) => Ok(Payload::json(&"done").expect("a string encodes")),
            (None, Ending::Retryable) => Err(ActivityError::retryable("Flaky", "try again")),
            (None, Ending::NonRetryable) => Err(ActivityError::non_retryable("Bad", "give up")),
            (None, Ending::Panic) => Err(ActivityError::Panicked {
                message: "boom".into(),
            }),
        };
        if crate::runner::report(&r.shared, result)
            .now_or_never()
            .is_none()
        {
            self.fail(
                "hang",
                format!("the report of {} #{} waited", r.id, r.attempt),
            );
        }
    }

    fn finish(&mut self, pick: u8, ending: Ending) {
        if let Some(i) = self.pick(pick) {
            self.end(i, ending);
        }
    }

    /// Attempts told to stop report at once (`cancel = "abort"` drops the body).
    fn end_cancelled(&mut self) {
        while let Some(i) = self.running.iter().position(|r| r.shared.is_cancelled()) {
            self.end(i, Ending::Complete);
        }
    }

    /// What `request_cancel` does from another process: committed there at once.
    fn cancel_through_file(&mut self, key: usize) {
        let id = self.id_of(key);
        let wall = {
            use super::super::clock::Clock as _;
            self.clock.wall_ms()
        };
        self.db
            .execute(
                "INSERT INTO requests (kind, activity_id, task_token, details, at) VALUES ('cancel', ?1, NULL, NULL, ?2)",
                rusqlite::params![&*id, wall],
            )
            .expect("a request row");
        // Only a cancel of an activity stored by then must be applied (one not stored yet is
        // as unknown to the engine as to `hb cancel`).
        if matches!(store::get_row(&self.db, &id), Ok(Some(_))) {
            self.requested_cancels.push(id);
        }
    }

    fn cancel(&mut self, key: usize) {
        self.cancel_id(self.id_of(key));
    }

    fn cancel_id(&mut self, id: Arc<str>) {
        // What `Client::cancel` does: the change, then waiting for what stores it.
        let cancelled = self.shell.lock().change(|core, fx| core.cancel(&id, fx));
        let Some((state, stored)) = cancelled else {
            return;
        };
        self.cancels.push(Cancel { id, state, stored });
    }

    fn result(&mut self, key: usize, abandon: bool) {
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

    /// What the engine's retention does: a small batch of closed activities older than
    /// `older_ms` deleted through the writer. Committed on its own (after what is queued), so
    /// the model knows which ids it removed before any of them starts anew.
    fn prune(&mut self, older_ms: u32) {
        self.commit();
        let wall = {
            use super::super::clock::Clock as _;
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

    fn disk_full(&mut self, full: bool) {
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

    /// The writer commits everything queued, as one batch (replayed write by write if it fails).
    fn commit(&mut self) {
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
    fn forget_pruned(&mut self) {
        let closed: Vec<String> = self.model.closed.keys().cloned().collect();
        for id in closed {
            if matches!(store::get_row(&self.db, &id), Ok(None)) {
                self.model.forget(&id);
                self.requested_cancels.retain(|c| **c != *id);
            }
        }
    }

    /// A cancel request gone from the file is a cancel stored.
    fn check_requested_cancels(&mut self) {
        let mut i = 0;
        while i < self.requested_cancels.len() {
            let id = self.requested_cancels[i].clone();
            let queued: i64 = self
                .db
                .query_row(
                    "SELECT count(*) FROM requests WHERE kind = 'cancel' AND activity_id = ?1",
                    [&*id],
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

    /// Clients whose calls were answered carry on (what `start()`, `cancel()` and `result()`
    /// do after their await).
    fn callers(&mut self) {
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
    fn check_cancel_stored(&mut self, c: &Cancel) {
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
    fn check_answer(&mut self, id: &str, closed: &Closed) {
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

    /// What the file holds for the activities a commit touched.
    fn check_stored(&mut self, touched: &[Arc<str>]) {
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
    fn check_known(&mut self, touched: &[Arc<str>]) {
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

    /// Time passes to `now + d`: on the way, pump ticks, commits and timers happen when due.
    fn advance(&mut self, d: Duration) {
        let target = super::super::clock::later(self.now(), d);
        for _ in 0..100_000 {
            self.end_cancelled();
            let (timer_at, sweep_at, commit_by) = {
                let shell = self.shell.lock();
                (
                    shell.timers.keys().next().map(|(at, _)| *at),
                    shell.sweep_at,
                    shell.commit_by,
                )
            };
            let tick_at = self.running.iter().map(|r| r.next_tick).min();
            let next = [timer_at, sweep_at, commit_by, tick_at]
                .into_iter()
                .flatten()
                .min()
                .map_or(target, |t| t.min(target));
            self.clock.advance_to(next);
            let now = self.now();
            if commit_by.is_some_and(|c| c <= now) {
                self.commit();
            }
            self.fire_timers(now);
            if sweep_at.is_some_and(|s| s <= now) {
                let mut shell = self.shell.lock();
                shell.sweep_at = None;
                let next = shell.change(|core, fx| core.sweep(now, fx));
                if let Some(at) = next {
                    shell.sweep_at = Some(shell.sweep_at.map_or(at, |s| s.min(at)));
                }
            }
            self.ticks(now);
            if now >= target {
                return;
            }
        }
        self.fail(
            "hang",
            "time cannot move: events keep coming due at once".into(),
        );
    }

    fn fire_timers(&mut self, now: Instant) {
        loop {
            let mut shell = self.shell.lock();
            let Some(entry) = shell.timers.first_entry() else {
                return;
            };
            if entry.key().0 > now {
                return;
            }
            let timer = entry.remove();
            self.events.timers += 1;
            shell.change(|core, fx| core.on_timer(&timer, fx));
        }
    }

    /// The pump heartbeats the attempts due (with the real pump's per-attempt tick).
    fn ticks(&mut self, now: Instant) {
        for r in &mut self.running {
            if r.next_tick <= now {
                r.next_tick = super::super::clock::later(now, r.interval);
                self.events.ticks += 1;
                let _ = crate::heartbeat::beat(r.shared.clone()).now_or_never();
            }
        }
    }

    fn shutdown(&mut self) {
        // What a worker's shutdown does after its grace period.
        for r in &self.running {
            r.shared.cancel_with(CancelReason::WorkerShutdown);
        }
        self.end_cancelled();
    }

    /// The process dies: what was not committed is lost, with every attempt, call and timer.
    /// The engine is reopened after `down_ms`, its wall clock stepped by `step_ms`.
    fn crash(&mut self, down_ms: u32, step_ms: i32) {
        self.check_work_lost();
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
            Ok((rows, applied)) => shell.change(|core, fx| core.recover(rows, applied, fx)),
            Err(e) => self.fail("panic", format!("the reopened file cannot be read: {e}")),
        }
        *self.shell.lock() = shell;
        self.check_recovered();
    }

    /// A crash loses at most the checkpoint interval's work (and the commit delay's).
    fn check_work_lost(&mut self) {
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
    fn check_recovered(&mut self) {
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

    fn after_step(&mut self) {
        let problems = std::mem::take(&mut self.shell.lock().problems);
        for (kind, m) in problems {
            self.fail(kind, m);
        }
        self.callers();
        self.check_memory();
        if self.step.is_multiple_of(FULL_CHECK_EVERY) {
            self.check_open();
        }
    }

    /// What the core holds is bounded by what is open.
    fn check_memory(&mut self) {
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
    fn check_open(&mut self) {
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
                self.end(0, Ending::Complete);
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
        if let Some(w) = self.waiters.first() {
            let id = w.id.clone();
            self.fail(
                "waiter-unanswered",
                format!("a result() call on {id} was never answered"),
            );
        }
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
