//! The embedded durable engine: hb's default backend. No server: one SQLite file.
//!
//! ```no_run
//! use hb_runtime::client::StartOptions;
//! use hb_runtime::engine::Engine;
//! use hb_runtime::prelude::*;
//!
//! #[activity(heartbeat_timeout = "10s", retry(max_attempts = 5))]
//! async fn double(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
//!     Ok(n * 2)
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::open("hb.db").await?;
//! let _worker = engine.worker().register(double).max_concurrent(64).spawn().await?;
//! let handle = engine.client().start(double, 21, StartOptions::id("double-1")).await?;
//! assert_eq!(handle.result().await?, 42);
//! # Ok(()) }
//! ```
//!
//! # Semantics
//!
//! As Temporal defines them: `start_to_close_timeout` bounds one attempt,
//! `schedule_to_close_timeout` the whole activity, `heartbeat_timeout` the silence between
//! heartbeats. A failed or timed-out attempt is retried by its [`RetryPolicy`](crate::RetryPolicy)
//! and every retry receives the last checkpoint. A cancel reaches a running attempt at once
//! (pushed, not on its next heartbeat); one not running yet is cancelled directly. Every timer
//! is driven by one scheduler thread: a deadline queue, and for heartbeat timeouts a list per
//! timeout ordered by last heartbeat (a heartbeat moves its attempt to the back; only the
//! front can be overdue).
//!
//! # Durability
//!
//! Every start and state change is written to the file before it is acknowledged
//! (`result()` returns only once the completion is stored), batched into few transactions.
//! Heartbeats are committed in groups, each within 1/40 of its heartbeat timeout (5 to 50 ms).
//! The file is in WAL mode with `synchronous = NORMAL`: it survives the process being killed
//! (`kill -9`) at any point ([`EngineOptions::power_loss_safe`] for power loss too). After such
//! a crash, reopening the file times the attempts that were running out from their last
//! heartbeat and retries them from their last checkpoint.
//!
//! A closing write that fails (a full disk) is reported to the activity's waiters as
//! [`ActivityFailure::Backend`](crate::client::ActivityFailure::Backend); the activity stays open in memory and the write is retried
//! (after 1 s, doubling to 1 min) until it is stored, so a later `result()` answers the
//! outcome. [`Engine::close`] ends the retries (waiters then get [`EngineError::Closed`]). If
//! the process ends first, the file still holds the activity as it was before, and reopening
//! recovers it from there (its attempt times out and is retried).
//!
//! Only one process may open a file for writing (a lock file beside it, `<file>.lock`, says
//! which); the `hb` command-line tool reads it meanwhile, and its `cancel` is queued in the
//! file for the engine to apply.

mod client;
mod clock;
mod core;
mod error;
mod inspect;
mod live_map;
mod ready;
mod record;
mod release;
mod silence;
#[cfg(feature = "sim")]
#[doc(hidden)]
pub mod sim;
mod store;
mod timers;
mod transport;
mod worker;

pub use client::Client;
pub use error::EngineError;
pub use inspect::Inspector;
pub use worker::WorkerHandle;

use crate::worker::Worker;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use self::core::Ack;
use self::core::{Core, Effects};
use self::store::{Reader, Writer};
use self::timers::TimerCommand;
use self::transport::EngineTransport;

/// The shared state of one engine.
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) writer: Writer,
    pub(crate) reader: Arc<Reader>,
    core: Mutex<Core>,
    pub(crate) ready: Notify,
    pub(crate) timers: mpsc::UnboundedSender<TimerCommand>,
    /// The writer thread; it holds the file's lock until it has finished.
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Cancelled by `close()` (and on drop): workers stop, starts are refused, polling stops.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// Cancelled once `close()` has drained the workers: the deadline queue stops.
    timers_stop: tokio_util::sync::CancellationToken,
    /// The workers' scheduling tasks, for `close()` to wait on.
    pub(crate) workers: tokio_util::task::TaskTracker,
    /// Timers in the deadline queue (kept by its thread, for [`Engine::stats`]).
    pending_timers: Arc<AtomicU64>,
    /// See [`EngineOptions::checkpoint_interval`].
    checkpoint_interval: Duration,
}

/// How many closed activities one prune write deletes: a few milliseconds of the writer.
const PRUNE_BATCH: u32 = 1_000;

/// Deletes closed activities older than `retention`, a batch at a time through the writer
/// (each batch between other writes), every `retention / 8` (at least 10 ms, at most 1 min).
async fn prune(
    weak: std::sync::Weak<Inner>,
    stop: tokio_util::sync::CancellationToken,
    retention: Duration,
) {
    let every = (retention / 8).clamp(Duration::from_millis(10), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        loop {
            let (rx, before) = {
                let Some(inner) = weak.upgrade() else { return };
                let before = inner
                    .lock()
                    .clock
                    .wall_ms()
                    .saturating_sub(clock::ms(retention));
                let (ack, rx) = Ack::reply();
                inner.writer.send(
                    core::Write::Prune {
                        closed_before: before,
                        limit: PRUNE_BATCH,
                    },
                    Some(ack),
                );
                (rx, before)
            };
            match rx.await {
                // A whole batch: there may be more.
                Ok(Ok(true)) => tokio::task::yield_now().await,
                Ok(Ok(false)) => break,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, closed_before = before, "pruning closed activities failed; trying again later");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

impl Drop for Inner {
    /// The last handle is gone: stop the background tasks, and let the writer commit what is
    /// queued, checkpoint the WAL and release the file. Outside an async runtime this waits
    /// for it, so the file can be reopened at once by any process. On a runtime's thread (or
    /// the writer's own) it does not block: the writer finishes on its own, and an
    /// `Engine::open` of the file in this process waits for it (see `release`).
    fn drop(&mut self) {
        self.stop.cancel();
        self.timers_stop.cancel();
        self.writer.send(core::Write::Stop, None);
        let thread = self
            .writer_thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let own = t.thread().id() == std::thread::current().id();
            if own || tokio::runtime::Handle::try_current().is_ok() {
                release::note(release::key(&self.path), t);
            } else {
                let _ = t.join();
            }
        }
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the deadline queue has stopped (after `close()`): nothing is retried any more.
    pub(crate) fn timers_stopped(&self) -> bool {
        self.timers_stop.is_cancelled()
    }

    /// Runs `f` on the core and applies its effects: its writes and timers queued before the
    /// lock is released (in the order of the changes), the rest after.
    pub(crate) fn change<T>(self: &Arc<Self>, f: impl FnOnce(&mut Core, &mut Effects) -> T) -> T {
        let mut fx = Effects::default();
        let out = {
            let mut core = self.lock();
            let out = f(&mut core, &mut fx);
            self.queue(&mut fx);
            out
        };
        self.apply(fx);
        out
    }

    /// Queues the effects that must keep the order of the core's changes: timers (a `Forget`
    /// before any timer a later acknowledgement arms) and writes. Called with the core's lock
    /// held: a write queued after the lock is released could be overtaken by another
    /// thread's, such as a timed-out attempt's late checkpoint overtaking the transition that
    /// timed it out.
    fn queue(&self, fx: &mut Effects) {
        for id in fx.forget.drain(..) {
            let _ = self.timers.send(TimerCommand::Forget(id));
        }
        for (timer, at) in fx.timers.drain(..) {
            let _ = self.timers.send(TimerCommand::Arm(timer, at));
        }
        if let Some(at) = fx.sweep.take() {
            let _ = self.timers.send(TimerCommand::SweepAt(at));
        }
        for (w, ack) in fx.writes.drain(..) {
            match self.writer.queue(w, ack) {
                Ok(wake) => fx.wake_writer |= wake,
                Err(Some(ack)) => fx.unsent.push(ack),
                Err(None) => {}
            }
        }
    }

    /// Applies the rest once the lock is released: push cancels (after the writes that record
    /// why), wake the writer and the workers, answer waiters and callers, and the
    /// acknowledgements of writes the writer could not take (it has stopped).
    fn apply(self: &Arc<Self>, fx: Effects) {
        for (handle, reason) in fx.cancels {
            handle.cancel(reason);
        }
        if fx.wake_writer {
            self.writer.wake();
        }
        if fx.ready {
            self.ready.notify_waiters();
        }
        for (waiter, closed) in fx.answers {
            let _ = waiter.send(closed);
        }
        for (reply, result) in fx.replies {
            let _ = reply.send(result);
        }
        if !fx.unsent.is_empty() {
            self.committed(
                fx.unsent
                    .into_iter()
                    .map(|ack| (ack, Err(EngineError::Closed)))
                    .collect(),
            )
            .send();
        }
    }

    /// Writes the core asked for were committed (or failed): their acknowledgements, applied
    /// under one lock. Returns the callers to answer (see `Writer::route`'s router).
    fn committed(self: &Arc<Self>, acks: Vec<(Ack, Result<bool, EngineError>)>) -> Answers {
        self.change(|core, fx| {
            for (ack, result) in acks {
                core.committed(ack, result, fx);
            }
            Answers {
                answers: std::mem::take(&mut fx.answers),
                replies: std::mem::take(&mut fx.replies),
            }
        })
    }

    /// A heartbeat of attempt `token` (the hot path: no effects but its write).
    pub(crate) fn heartbeat(
        &self,
        token: &crate::transport::TaskToken,
        details: Option<&crate::Payload>,
    ) -> Result<crate::transport::HeartbeatReply, crate::TransportError> {
        let mut core = self.lock();
        let (reply, write) = core.heartbeat(token, details)?;
        // Queued under the lock, like every write (see `change`).
        let wake = write.is_some_and(|w| matches!(self.writer.queue(w, None), Ok(true)));
        drop(core);
        if wake {
            self.writer.wake();
        }
        Ok(reply)
    }
}

/// Callers to answer: `result()` calls and callers of committed writes.
struct Answers {
    answers: Vec<(tokio::sync::oneshot::Sender<core::Closed>, core::Closed)>,
    replies: Vec<(core::Reply, Result<bool, EngineError>)>,
}

impl Answers {
    fn send(self) {
        for (waiter, closed) in self.answers {
            let _ = waiter.send(closed);
        }
        for (reply, result) in self.replies {
            let _ = reply.send(result);
        }
    }
}

/// Figures of an [`Engine`], from [`Engine::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Activities not closed yet (scheduled, running or backing off), all held in memory.
    pub open: usize,
    /// Timers waiting in the engine's deadline queue (start-to-close and schedule-to-close
    /// timeouts, retry backoffs; running attempts' heartbeat timeouts are watched apart). A closed
    /// activity's timers are dropped from it at once, however far their deadlines.
    pub pending_timers: usize,
}

/// How often a running attempt's changed checkpoint is stored by default (see
/// [`EngineOptions::checkpoint_interval`]).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a closed activity stays in the file by default (see [`EngineOptions::retention`]).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Options of [`Engine::open_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    max_file_size: Option<u64>,
    power_loss_safe: bool,
    checkpoint_interval: Duration,
    retention: Option<Duration>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_file_size: None,
            power_loss_safe: false,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            retention: Some(DEFAULT_RETENTION),
        }
    }
}

impl EngineOptions {
    /// How often a running attempt's checkpoint is stored when it changed (default 1 s),
    /// whatever its heartbeat interval: what bounds the work a crash loses, and how fresh
    /// `describe()` and `hb ls` are from another process. An unchanged checkpoint is not
    /// written again; liveness heartbeats still come every heartbeat interval. An interval at
    /// least as long as an activity's heartbeat interval stores its checkpoints with its
    /// heartbeats only.
    ///
    /// ```
    /// use std::time::Duration;
    /// let o = hb_runtime::engine::EngineOptions::default()
    ///     .checkpoint_interval(Duration::from_millis(250));
    /// # let _ = o;
    /// ```
    pub fn checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_interval = every;
        self
    }

    /// Caps the file at about `bytes`: a write that would grow it further fails as a full disk
    /// would ([`EngineError::Storage`], nothing of that write stored), instead of filling the disk.
    ///
    /// ```
    /// let o = hb_runtime::engine::EngineOptions::default().max_file_size(64 << 20);
    /// # let _ = o;
    /// ```
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = Some(bytes);
        self
    }

    /// Survives power loss and operating-system crashes too, not only the process dying:
    /// every commit is flushed to the disk (`fsync` of the WAL; SQLite's
    /// `synchronous = FULL`) before what it carries is acknowledged. Off by default
    /// (`synchronous = NORMAL`: safe against `kill -9`; a power loss may take back the last
    /// commits). Each commit then costs a disk flush; the writer's batching keeps that to one
    /// flush per batch, not per activity.
    ///
    /// ```
    /// let o = hb_runtime::engine::EngineOptions::default().power_loss_safe(true);
    /// # let _ = o;
    /// ```
    pub fn power_loss_safe(mut self, on: bool) -> Self {
        self.power_loss_safe = on;
        self
    }

    /// How long a closed activity (completed, failed, cancelled, timed out) stays in the file,
    /// counted from when it closed (default 7 days), like a Temporal namespace's retention
    /// period. Older ones are deleted in the background, a thousand at a time between the
    /// engine's other writes; `describe`, `result` and `list` then no longer find them, and a
    /// start with the same id starts a new activity. Open activities are never deleted. The
    /// space they took is reused by later writes (the file stops growing; it does not shrink).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hb_runtime::engine::EngineOptions;
    /// let one_day = EngineOptions::default().retention(Duration::from_secs(24 * 3600));
    /// let forever = EngineOptions::default().keep_closed_forever();
    /// # let _ = (one_day, forever);
    /// ```
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = Some(keep);
        self
    }

    /// Never deletes closed activities (the file grows with every activity ever started).
    pub fn keep_closed_forever(mut self) -> Self {
        self.retention = None;
        self
    }
}

/// The embedded engine: durable activities in one SQLite file.
///
/// Cheap to clone; clones share the engine. Background tasks stop when the last clone is
/// dropped (or at [`Engine::close`]).
///
/// [`worker`](Engine::worker) runs activities, [`client`](Engine::client) starts and follows
/// them:
///
/// ```
/// use hb_runtime::client::{ActivityStatus, StartOptions};
/// use hb_runtime::engine::Engine;
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(double).spawn().await?;
/// let client = engine.client();
/// let handle = client.start(double, 21, StartOptions::id("double-21")).await?;
/// assert_eq!(handle.result().await?, 42);
/// assert_eq!(client.describe("double-21").await?.status, ActivityStatus::Completed);
///
/// // An in-memory engine's path is a `file:` URI; its database is sound.
/// assert!(engine.path().to_string_lossy().starts_with("file:"));
/// assert_eq!(engine.integrity_check().await?, "ok");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.inner.path)
            .field("open_activities", &self.inner.lock().live.len())
            .finish()
    }
}

impl Engine {
    /// Opens (or creates, mode 0600) the engine file at `path` and recovers what was running.
    ///
    /// # Errors
    /// [`EngineError::Locked`] when another process has it open, [`EngineError::Foreign`],
    /// [`EngineError::Corrupt`] or [`EngineError::NewerSchema`] for a file hb will not touch,
    /// [`EngineError::Storage`] for I/O failures.
    ///
    /// # Examples
    ///
    /// What a file holds outlives the engine that wrote it:
    ///
    /// ```
    /// use hb_runtime::client::{ActivityStatus, StartOptions};
    /// use hb_runtime::client::ClientError;
    /// use hb_runtime::engine::{Engine, EngineError};
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    ///     Ok(n * 2)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("hb-doc-open-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("hb.db");
    ///
    /// // Started with no worker to run it; one engine at a time writes the file.
    /// let engine = Engine::open(&path).await?;
    /// assert_eq!(engine.path(), path);
    /// engine.client().start(double, 21, StartOptions::id("d")).await?;
    /// assert!(matches!(Engine::open(&path).await, Err(EngineError::Locked { .. })));
    /// drop(engine);
    ///
    /// // Reopened, the file still has it waiting; a worker runs it now.
    /// let engine = Engine::open(&path).await?;
    /// let client = engine.client();
    /// assert_eq!(client.describe("d").await?.status, ActivityStatus::Scheduled);
    /// let _worker = engine.worker().register(double).spawn().await?;
    /// assert_eq!(client.handle(double, "d").result().await?, 42);
    /// # _worker.shutdown().await;
    /// # drop((client, engine));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<Engine, EngineError> {
        Self::open_with(path, EngineOptions::default()).await
    }

    /// [`Engine::open`] with options.
    ///
    /// ```
    /// use hb_runtime::client::StartOptions;
    /// use hb_runtime::client::ClientError;
    /// use hb_runtime::engine::{Engine, EngineError, EngineOptions};
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn measure(_ctx: ActivityContext, text: String) -> Result<usize, ActivityError> {
    ///     Ok(text.len())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("hb-doc-open-with-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("hb.db");
    /// let options = EngineOptions::default().max_file_size(256 << 10);
    /// let engine = Engine::open_with(&path, options).await?;
    /// let client = engine.client();
    /// client.start(measure, "small".into(), StartOptions::id("small")).await?;
    ///
    /// // A start that does not fit under the cap is refused, and nothing of it is stored.
    /// let big = "x".repeat(1 << 20);
    /// let refused = client.start(measure, big, StartOptions::id("big")).await;
    /// assert!(matches!(refused, Err(ClientError::Engine(EngineError::Storage { .. }))));
    /// assert!(matches!(client.describe("big").await, Err(ClientError::NotFound { .. })));
    /// assert!(client.describe("small").await.is_ok());
    /// # drop((client, engine));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let path = path.as_ref().to_path_buf();
        // Everything that touches the disk runs on a blocking thread, recovery's read included.
        let opened = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
            // An engine of this process that had the file may still be releasing it.
            release::wait(&release::key(&path));
            let lock_existed = store::lock_path(&path).exists();
            let lock = store::lock(&path)?;
            let opened = (|| {
                let write = store::open_write(&path)?;
                if options.power_loss_safe {
                    store::sync_every_commit(&write, &path)?;
                }
                if let Some(max) = options.max_file_size {
                    store::limit_size(&write, &path, max)?;
                }
                let read = store::open_read(&path)?;
                let reader = Reader::new(read, path.clone());
                // Everything is read (and a damaged file refused) before the writer starts.
                let rows = reader.recovery()?;
                Ok((write, reader, rows))
            })();
            match opened {
                Ok((write, reader, rows)) => Ok((path, lock, write, reader, rows)),
                Err(e) => {
                    // Leave nothing behind beside a file we refused.
                    drop(lock);
                    if !lock_existed {
                        let _ = std::fs::remove_file(store::lock_path(&path));
                    }
                    Err(e)
                }
            }
        })
        .await
        .map_err(|_| EngineError::Closed)??;
        let (path, lock, write, reader, rows) = opened;
        Ok(Self::start(path, Some(lock), write, reader, rows, &options))
    }

    /// An engine in memory, for tests: the same engine, nothing on disk.
    ///
    /// Each call is a new, empty engine:
    ///
    /// ```
    /// use hb_runtime::client::StartOptions;
    /// use hb_runtime::client::ClientError;
    /// use hb_runtime::engine::{Engine, EngineError};
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn noop(_ctx: ActivityContext) -> Result<(), ActivityError> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let a = Engine::in_memory().await?;
    /// let b = Engine::in_memory().await?;
    /// a.client().start(noop, (), StartOptions::id("job")).await?;
    /// assert!(a.client().describe("job").await.is_ok());
    /// assert!(matches!(b.client().describe("job").await, Err(ClientError::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn in_memory() -> Result<Engine, EngineError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let uri = format!(
            "file:hb-memory-{}-{n}?mode=memory&cache=shared",
            std::process::id()
        );
        let path = PathBuf::from(&uri);
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let write = rusqlite::Connection::open_with_flags(&uri, flags)
            .map_err(|e| EngineError::sqlite(&path, e))?;
        store::init(&write, &path)?;
        let read = rusqlite::Connection::open_with_flags(&uri, flags)
            .map_err(|e| EngineError::sqlite(&path, e))?;
        // Connections to one in-memory database share its cache, where a reader would otherwise
        // fail at once (SQLITE_LOCKED, no busy wait) while the writer holds its tables.
        read.pragma_update(None, "read_uncommitted", true)
            .map_err(|e| EngineError::sqlite(&path, e))?;
        // A new database: nothing to recover.
        let reader = Reader::new(read, path.clone());
        Ok(Self::start(
            path,
            None,
            write,
            reader,
            (Vec::new(), i64::MIN),
            &EngineOptions::default(),
        ))
    }

    /// Starts the engine over an opened file: its writer, deadline queue and request polling,
    /// and what it holds open recovered. Must run on a tokio runtime.
    fn start(
        path: PathBuf,
        lock: Option<store::FileLock>,
        write: rusqlite::Connection,
        reader: Reader,
        (rows, requests_applied): (Vec<record::ActivityRow>, i64),
        options: &EngineOptions,
    ) -> Engine {
        let reader = Arc::new(reader);
        let (writer, writer_thread) = store::spawn_writer(write, path.clone(), lock);
        let (timers, timer_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            path,
            writer,
            reader,
            core: Mutex::new(Core::new(Arc::new(clock::SystemClock))),
            ready: Notify::new(),
            timers,
            writer_thread: Mutex::new(Some(writer_thread)),
            stop: tokio_util::sync::CancellationToken::new(),
            timers_stop: tokio_util::sync::CancellationToken::new(),
            workers: tokio_util::task::TaskTracker::new(),
            pending_timers: Arc::default(),
            checkpoint_interval: options.checkpoint_interval,
        });
        let weak = Arc::downgrade(&inner);
        inner.writer.route(Box::new(move |acks| {
            // Callers are answered once this thread has let go of the engine: one that drops
            // its last handle on hearing the answer then drops it itself (its file released
            // as `Drop for Inner` says), not on this thread a moment later.
            let answers = match weak.upgrade() {
                Some(inner) => inner.committed(acks),
                None => return,
            };
            answers.send();
        }));
        let recovered = rows.len();
        inner.change(|core, fx| core.recover(rows, requests_applied, fx));
        if recovered > 0 {
            tracing::info!(path = %inner.path.display(), recovered, "engine recovered open activities");
        }
        timers::spawn(
            Arc::downgrade(&inner),
            timer_rx,
            inner.pending_timers.clone(),
            inner.timers_stop.clone(),
        );
        tokio::spawn(poll_requests(Arc::downgrade(&inner), inner.stop.clone()));
        if let Some(retention) = options.retention {
            tokio::spawn(prune(Arc::downgrade(&inner), inner.stop.clone(), retention));
        }
        Engine { inner }
    }

    /// A worker builder: register activities, then `spawn().await`.
    pub fn worker(&self) -> Worker<Engine> {
        Worker::new(self.clone())
    }

    /// A client: start, await, cancel, describe and list activities (its methods are those of
    /// [`ActivityClient`](crate::client::ActivityClient)).
    pub fn client(&self) -> Client {
        Client::new(self.clone())
    }

    /// The file this engine writes (a `file:` URI for an in-memory engine).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Figures for monitoring: open activities held in memory and timers pending in the
    /// deadline queue. Neither grows with activities that have closed.
    ///
    /// ```
    /// use hb_runtime::client::StartOptions;
    /// use hb_runtime::engine::Engine;
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s", schedule_to_close_timeout = "1h")]
    /// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    ///     Ok(n * 2)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let handle = engine.client().start(double, 4, StartOptions::id("d")).await?;
    /// assert_eq!(engine.stats().open, 1); // scheduled; no worker yet
    /// let _worker = engine.worker().register(double).spawn().await?;
    /// assert_eq!(handle.result().await?, 8);
    /// assert_eq!(engine.stats().open, 0);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            open: self.inner.lock().live.len(),
            pending_timers: self.inner.pending_timers.load(Ordering::Relaxed) as usize,
        }
    }

    /// `PRAGMA integrity_check` of the file: `"ok"` when it is sound.
    pub async fn integrity_check(&self) -> Result<String, EngineError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.reader.integrity_check())
            .await
            .map_err(|_| EngineError::Closed)?
    }

    /// Closes the engine for work, and returns once it is quiet:
    ///
    /// 1. every worker of this engine shuts down as [`WorkerHandle::shutdown`] does (its
    ///    running attempts get its shutdown grace, then `WorkerShutdown`, their checkpoints
    ///    flushed), and `close` waits for them;
    /// 2. new starts and cancels fail with [`EngineError::Closed`], and the polling of
    ///    requests queued in the file (the CLI's `cancel`) stops;
    /// 3. the deadline queue stops (no timeout or retry fires any more);
    /// 4. everything written so far is committed.
    ///
    /// Reads keep answering: `describe`, `list`, and `result` of an activity that closed. The
    /// file itself is released (its lock and connections) when the last handle to the engine
    /// (`Engine`, `Client`, `WorkerHandle`, `ActivityHandle`) is dropped; reopening it then
    /// recovers what was still open, as after a crash.
    ///
    /// # Errors
    /// [`EngineError::Storage`] if the final commit failed.
    ///
    /// ```
    /// use hb_runtime::client::{ActivityStatus, StartOptions};
    /// use hb_runtime::client::ClientError;
    /// use hb_runtime::engine::{Engine, EngineError};
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    ///     Ok(n * 2)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let _worker = engine.worker().register(double).spawn().await?;
    /// let handle = engine.client().start(double, 4, StartOptions::id("last")).await?;
    /// assert_eq!(handle.result().await?, 8);
    /// engine.close().await?; // the worker shuts down with it
    /// // What was stored still answers; new work is refused.
    /// assert_eq!(handle.describe().await?.status, ActivityStatus::Completed);
    /// let refused = engine.client().start(double, 5, StartOptions::id("late")).await;
    /// assert!(matches!(refused, Err(ClientError::Closed)));
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), EngineError> {
        self.inner.stop.cancel();
        self.inner.workers.close();
        self.inner.workers.wait().await;
        self.inner.timers_stop.cancel();
        // Closing writes that failed are no longer retried: their waiters hear it now.
        self.inner.change(|core, fx| core.engine_closed(fx));
        self.inner.writer.sync().await
    }
}

/// Applies requests other processes queued in the file (the CLI's `cancel`, heartbeats by task
/// token), a few times a second.
async fn poll_requests(weak: std::sync::Weak<Inner>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // Only the reader is held across the read: the engine may go away meanwhile.
        let Some(reader) = weak.upgrade().map(|i| i.reader.clone()) else {
            return;
        };
        let requests = match tokio::task::spawn_blocking(move || reader.requests()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read queued requests");
                continue;
            }
            Err(_) => return,
        };
        if requests.is_empty() {
            continue;
        }
        let Some(inner) = weak.upgrade() else { return };
        inner.change(|core, fx| {
            core.requests_stored(fx);
            for request in requests {
                core.request(request, fx);
            }
        });
    }
}

/// Queues a cancel of activity `id` in the engine file at `path`, for the engine that has it
/// open (or the next to open it) to apply. What `hb cancel` does.
///
/// ```
/// use hb_runtime::client::{ActivityFailure, StartOptions};
/// use hb_runtime::engine::{request_cancel, Engine};
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("hb-doc-request-cancel-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("hb.db");
/// let engine = Engine::open(&path).await?;
/// // No worker runs it: it waits.
/// let handle = engine.client().start(double, 1, StartOptions::id("queued")).await?;
///
/// // From any process; the engine applies it within a fraction of a second.
/// request_cancel(&path, "queued")?;
/// assert!(matches!(handle.result().await, Err(ActivityFailure::Cancelled { .. })));
/// # drop((handle, engine));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn request_cancel(path: impl AsRef<Path>, id: &str) -> Result<(), EngineError> {
    store::insert_request(
        path.as_ref(),
        "cancel",
        Some(id),
        None,
        None,
        clock::now_ms(),
    )
}

/// Queues a heartbeat of attempt `token` with `details` in the engine file at `path`: how a
/// process other than the engine's heartbeats an attempt.
///
/// ```
/// use hb_runtime::client::{ActivityFailure, StartOptions};
/// use hb_runtime::engine::{request_cancel, request_heartbeat, Engine};
/// use hb_runtime::prelude::*;
/// use hb_runtime::transport::TaskToken;
/// use hb_runtime::Payload;
/// use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
///
/// /// Hands its task token to whoever does the work, and waits for the cancel.
/// #[activity(heartbeat_timeout = "30s")]
/// async fn external(
///     ctx: ActivityContext,
///     #[state] tokens: UnboundedSender<TaskToken>,
/// ) -> Result<(), ActivityError> {
///     tokens.send(ctx.info().task_token.clone()).ok();
///     std::future::pending().await // until the cancel drops it
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("hb-doc-request-heartbeat-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("hb.db");
/// let engine = Engine::open(&path).await?;
/// let (tx, mut tokens) = unbounded_channel();
/// let _worker = engine.worker().register(external).state(tx).spawn().await?;
/// let handle = engine.client().start(external, (), StartOptions::id("ext")).await?;
/// let token = tokens.recv().await.unwrap();
///
/// // What the other process does: report progress, later cancel. The engine applies both,
/// // in order.
/// let step = Payload::json(&serde_json::json!({ "step": 1 }))?;
/// request_heartbeat(&path, &token, Some(&step))?;
/// request_cancel(&path, "ext")?;
/// match handle.result().await {
///     Err(ActivityFailure::Cancelled { details }) => assert_eq!(details, Some(step)),
///     other => panic!("expected Cancelled, got {other:?}"),
/// }
/// # _worker.shutdown().await;
/// # drop((handle, engine));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn request_heartbeat(
    path: impl AsRef<Path>,
    token: &crate::transport::TaskToken,
    details: Option<&crate::Payload>,
) -> Result<(), EngineError> {
    let token = String::from_utf8_lossy(token.as_bytes()).into_owned();
    store::insert_request(
        path.as_ref(),
        "heartbeat",
        None,
        Some(&token),
        details.map(|d| d.data()),
        clock::now_ms(),
    )
}

/// Entry points for the fuzz targets (`fuzz/`). Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __fuzz {
    /// Splits an engine task token into the activity id and the attempt.
    pub fn parse_task_token(token: &[u8]) -> Option<(String, u32)> {
        let token = crate::transport::TaskToken::new(token.to_vec());
        super::core::parse_token(&token).map(|(id, attempt)| (id.to_owned(), attempt))
    }
}

impl transport::Shell for Arc<Inner> {
    fn change<T>(&self, f: impl FnOnce(&mut Core, &mut Effects) -> T) -> T {
        Inner::change(self, f)
    }

    fn heartbeat(
        &self,
        token: &crate::transport::TaskToken,
        details: Option<&crate::Payload>,
    ) -> Result<crate::transport::HeartbeatReply, crate::TransportError> {
        Inner::heartbeat(self, token, details)
    }

    fn checkpoint_interval(&self) -> Duration {
        self.checkpoint_interval
    }
}
