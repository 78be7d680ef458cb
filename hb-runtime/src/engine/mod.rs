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
//! (pushed, not on its next heartbeat); one not running yet is cancelled directly. Pause,
//! unpause and reset are Temporal's too ([`ActivityClient::pause`](crate::client::ActivityClient::pause)):
//! a running attempt is told at once (`CancelReason::Paused` or `Reset`), and what was asked
//! happens when it has stopped; a paused activity starts no attempt, and a reset one starts
//! again at attempt 1 with a fresh retry budget. Every timer
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
//! which); the `hb` command-line tool reads it meanwhile, and its `cancel`, `pause`,
//! `unpause` and `reset` are queued in the file for the engine to apply
//! ([`request_cancel`], [`request_pause`], [`request_unpause`], [`request_reset`]).

// The layout, bottom up: `clock`, `record` (what is stored of an activity) and `error` are
// leaves; `core` is the sans-IO state machine; `store` is the SQLite file that applies the
// core's writes (schema, writer thread, reads, the requests table); `inner` is the shell that
// runs the core under its lock and applies its effects, with `timers` (the deadline queue's
// thread) and `background` (request polling, pruning); `open` starts an engine; `client`,
// `worker`, `transport`, `inspect` and `requests` are how callers, workers, the `hb` tool and
// other processes reach it; `sim` drives the same core and store under random faults.

mod background;
mod client;
mod clock;
mod core;
mod error;
mod inner;
mod inspect;
mod live_map;
mod open;
mod options;
mod ready;
mod record;
mod release;
mod requests;
mod silence;
#[cfg(feature = "sim")]
#[doc(hidden)]
pub mod sim;
mod store;
mod timers;
mod transport;
mod watch;
mod worker;

pub use client::Client;
pub use error::EngineError;
pub use inspect::Inspector;
pub use options::{DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_RETENTION, EngineOptions};
pub use requests::{
    request_cancel, request_heartbeat, request_pause, request_reset, request_unpause,
};
#[cfg(feature = "dashboard")]
pub(crate) use store::{PageQuery, Summary};
pub use worker::WorkerHandle;

pub(crate) use inner::Inner;

use crate::worker::Worker;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use self::transport::EngineTransport;

/// Figures of an [`Engine`], from [`Engine::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Activities not closed yet (scheduled, running, backing off or paused), all held in
    /// memory.
    pub open: usize,
    /// Timers waiting in the engine's deadline queue (start-to-close and schedule-to-close
    /// timeouts, retry backoffs; running attempts' heartbeat timeouts are watched apart). A closed
    /// activity's timers are dropped from it at once, however far their deadlines.
    pub pending_timers: usize,
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
    /// A worker builder: register activities, then `spawn().await`.
    pub fn worker(&self) -> Worker<Engine> {
        Worker::new(self.clone())
    }

    /// A client: start, await, cancel, pause, unpause, reset, describe and list activities (its
    /// methods are those of
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

/// Entry points for the fuzz targets (`fuzz/`). Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __fuzz {
    /// Splits an engine task token into the activity id and the attempt.
    pub fn parse_task_token(token: &[u8]) -> Option<(String, u32)> {
        let token = crate::transport::TaskToken::new(token.to_vec());
        super::core::parse_token(&token).map(|(id, attempt)| (id.to_owned(), attempt))
    }
}
