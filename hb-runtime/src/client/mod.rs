//! Starting and following activities, written once for every backend.
//!
//! [`ActivityClient`] is implemented by the embedded engine's client
//! ([`engine::Client`](crate::engine::Engine::client)) and by the Temporal client (feature
//! `temporal`); both hand out the same [`Handle`], [`Description`], [`ActivityFailure`] and
//! [`ClientError`], so caller code written against the trait runs on either:
//!
//! ```
//! use hb_runtime::client::{ActivityClient, StartOptions};
//! use hb_runtime::prelude::*;
//!
//! #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
//! struct Done {
//!     #[checkpoint(done)]
//!     items: u64,
//!     #[checkpoint(total)]
//!     total: u64,
//! }
//!
//! #[activity(heartbeat_timeout = "10s")]
//! async fn process_batch(ctx: ActivityContext, #[checkpoint] mut p: Done, batch: Vec<u64>)
//!     -> Result<u64, ActivityError>
//! {
//!     p.total = batch.len() as u64;
//!     for _ in &batch[p.items as usize..] {
//!         p.items += 1;
//!         ctx.checkpoint(&p)?;
//!     }
//!     Ok(batch.iter().sum())
//! }
//!
//! // Written once: the engine's client and the Temporal client both run it.
//! async fn run<C: ActivityClient>(c: &C, batch: Vec<u64>) -> Result<u64, Box<dyn std::error::Error>> {
//!     let h = c.start(process_batch, batch, StartOptions::id("batch-42")).await?;
//!     println!("{:?}", h.describe().await?.progress);
//!     Ok(h.result().await?)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = hb_runtime::engine::Engine::in_memory().await?;
//! let _worker = engine.worker().register(process_batch).spawn().await?;
//! assert_eq!(run(&engine.client(), vec![1, 2, 3]).await?, 6);
//! # Ok(()) }
//! ```
//!
//! Where the backends differ by nature (Temporal has task queues and counts attempts from 1;
//! the engine has neither), the README's table of differences says so.

pub(crate) mod backend;
mod describe;
mod failure;
mod handle;
mod options;

#[cfg(feature = "engine")]
pub(crate) use describe::EndedAttempt;
pub use describe::{ActivityStatus, AttemptRecord, AttemptStatus, Description, ListFilter};
pub use failure::{ActivityFailure, ClientError, TimeoutKind};
pub use handle::{Handle, WATCH_POLL_INTERVAL};
pub use options::{IfExists, ResetOptions, StartOptions};

#[cfg(feature = "engine")]
pub(crate) use describe::time_of_ms;

use std::future::Future;
use std::sync::Arc;

use crate::activity::{Activity, IntoActivity};
use crate::payload::Payload;
use backend::{ClientBackend, StartRequest};

/// Starts and follows activities on a backend: the engine's client and the Temporal client
/// implement it, so callers written against it run on either.
///
/// Bring it into scope (`use hb_runtime::client::ActivityClient;`, or the prelude) to call
/// its methods. Backends implement [`ClientBackend`]; this trait's methods are all provided.
pub trait ActivityClient: ClientBackend + Clone {
    /// Starts `activity` with `input`; returns once the backend has stored the start.
    ///
    /// Idempotent by id by default ([`IfExists::UseExisting`]): when an activity with this id
    /// exists, running or closed, its handle is returned and `input` is ignored;
    /// [`StartOptions::fail_if_exists`] refuses with [`ClientError::AlreadyStarted`]
    /// instead. An existing id of another type is [`ClientError::WrongType`].
    ///
    /// ```
    /// use hb_runtime::client::{ActivityClient, ClientError, StartOptions};
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
    /// let client = engine.client();
    /// client.start(double, 1, StartOptions::id("d")).await?;
    /// // The same id again: the same activity, and this input is ignored.
    /// let handle = client.start(double, 2, StartOptions::id("d")).await?;
    /// let _worker = engine.worker().register(double).spawn().await?;
    /// assert_eq!(handle.result().await?, 2);
    ///
    /// let strict = StartOptions::id("d").fail_if_exists();
    /// let refused = client.start(double, 3, strict).await;
    /// assert!(matches!(refused, Err(ClientError::AlreadyStarted { .. })));
    /// # Ok(()) }
    /// ```
    fn start<F: IntoActivity>(
        &self,
        activity: F,
        input: <F::Activity as Activity>::Input,
        options: StartOptions,
    ) -> impl Future<Output = Result<Handle<F::Activity>, ClientError>> + Send {
        let activity = activity.into_activity();
        let activity_type = <F::Activity as Activity>::NAME;
        // Encoded here, so the future does not hold the input.
        let input = Payload::json(&input).map_err(|e| ClientError::InputNotSerializable {
            activity_type: activity_type.to_owned(),
            message: e.to_string(),
        });
        let resolved = options.apply_to(activity.options());
        async move {
            let id: Arc<str> = Arc::from(options.id.as_str());
            self.start_activity(StartRequest {
                activity_type,
                id: options.id,
                input: input?,
                options: resolved,
                task_queue: options.task_queue,
                if_exists: options.if_exists,
            })
            .await?;
            Ok(Handle::new(id, Arc::new(self.clone())))
        }
    }

    /// A handle on activity `id`, started elsewhere (no check that it exists: its calls say
    /// so).
    ///
    /// ```
    /// use hb_runtime::client::{ActivityClient, StartOptions};
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
    /// client.start(double, 21, StartOptions::id("double-21")).await?;
    ///
    /// // Anyone with the id can follow it.
    /// assert_eq!(client.handle(double, "double-21").result().await?, 42);
    /// # Ok(()) }
    /// ```
    fn handle<F: IntoActivity>(&self, activity: F, id: impl Into<String>) -> Handle<F::Activity> {
        let _ = activity;
        Handle::new(id.into(), Arc::new(self.clone()))
    }

    /// Asks activity `id` to stop: a running attempt is told at once (on Temporal, with its
    /// next heartbeat, or at once when the server pushes cancels), an activity waiting to run
    /// or to retry is cancelled directly. Returns once the request is stored; the handle's
    /// `result` says when it stopped. Cancelling a closed activity changes nothing.
    ///
    /// ```
    /// use hb_runtime::client::{ActivityClient, ActivityFailure, ActivityStatus, StartOptions};
    /// use hb_runtime::engine::Engine;
    /// use hb_runtime::prelude::*;
    /// use std::sync::Arc;
    /// use tokio::sync::Notify;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn wait(_ctx: ActivityContext, #[state] started: Arc<Notify>)
    ///     -> Result<(), ActivityError>
    /// {
    ///     started.notify_one();
    ///     std::future::pending().await // until the cancel drops it
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let client = engine.client();
    ///
    /// // Not running (no worker yet): cancelled at once.
    /// client.start(wait, (), StartOptions::id("queued")).await?;
    /// client.cancel("queued").await?;
    /// assert_eq!(client.describe("queued").await?.status, ActivityStatus::Cancelled);
    ///
    /// // Running: the attempt is told at once, and the activity closes when it has stopped.
    /// let started = Arc::new(Notify::new());
    /// let _worker = engine.worker().register(wait).state(started.clone()).spawn().await?;
    /// let handle = client.start(wait, (), StartOptions::id("running")).await?;
    /// started.notified().await;
    /// client.cancel("running").await?;
    /// assert!(matches!(handle.result().await, Err(ActivityFailure::Cancelled { .. })));
    /// # Ok(()) }
    /// ```
    fn cancel<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'a {
        self.cancel_activity(id)
    }

    /// Pauses activity `id`, as Temporal's activity pause does: a running attempt is told
    /// (it stops with [`CancelReason::Paused`](crate::CancelReason::Paused), its checkpoint
    /// kept), and no attempt starts until [`unpause`](Self::unpause). An activity waiting to
    /// run or to retry is paused at once. Its schedule-to-close timeout keeps running; a
    /// cancel still cancels it.
    ///
    /// Refused with [`ClientError::NotAllowed`] when the activity is paused already or
    /// closed.
    ///
    /// On Temporal, `pause`, [`unpause`](Self::unpause) and [`reset`](Self::reset) are the
    /// server's `PauseActivityExecution`, `UnpauseActivityExecution` and
    /// `ResetActivityExecution` on the standalone activity (server 1.32 has all three; the
    /// `temporal activity pause|unpause|reset` commands send the same). A server without them
    /// answers [`ClientError::Unsupported`].
    ///
    /// ```
    /// use hb_runtime::client::{ActivityClient, ActivityStatus, ClientError, StartOptions};
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
    /// let client = engine.client();
    /// let handle = client.start(double, 21, StartOptions::id("d")).await?;
    /// client.pause("d").await?;
    /// assert_eq!(handle.describe().await?.status, ActivityStatus::Paused);
    /// assert!(matches!(client.pause("d").await, Err(ClientError::NotAllowed { .. })));
    ///
    /// let _worker = engine.worker().register(double).spawn().await?;
    /// client.unpause("d").await?; // now it runs
    /// assert_eq!(handle.result().await?, 42);
    /// # Ok(()) }
    /// ```
    fn pause<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'a {
        self.pause_activity(id)
    }

    /// Unpauses activity `id`: its next attempt is scheduled at once, from its checkpoint
    /// (the attempt count goes on). Refused with [`ClientError::NotAllowed`] when it is not
    /// paused.
    fn unpause<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'a {
        self.unpause_activity(id)
    }

    /// Resets activity `id`, as Temporal's activity reset does: it starts again at attempt 1,
    /// from its last checkpoint unless [`ResetOptions::clear_checkpoint`]. A running attempt
    /// is told (it stops with [`CancelReason::Reset`](crate::CancelReason::Reset)); an
    /// activity backing off runs at once; a paused one is unpaused unless
    /// [`ResetOptions::keep_paused`]. Refused with [`ClientError::NotAllowed`] when it is
    /// closed.
    ///
    /// A reset attempt may start with no checkpoint: the option says so, and newer Temporal
    /// servers clear the details on every reset. The body then starts from the default.
    fn reset<'a>(
        &'a self,
        id: &'a str,
        options: ResetOptions,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'a {
        self.reset_activity(id, options)
    }

    /// What the backend knows of activity `id`: [`ClientError::NotFound`] when no activity
    /// has this id.
    fn describe<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Future<Output = Result<Description, ClientError>> + Send + 'a {
        self.describe_activity(id)
    }

    /// Activities matching `filter`, newest first.
    ///
    /// ```
    /// use hb_runtime::client::{ActivityClient, ActivityStatus, ListFilter, StartOptions};
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
    /// let client = engine.client();
    /// for n in 0..3 {
    ///     client.start(double, n, StartOptions::id(format!("d{n}"))).await?;
    /// }
    /// let first = client.handle(double, "d0");
    /// first.cancel().await?;
    /// assert!(first.result().await.is_err()); // cancelled, and stored
    ///
    /// assert_eq!(client.list(ListFilter::all()).await?.len(), 3);
    /// let waiting = client.list(ListFilter::status(ActivityStatus::Scheduled)).await?;
    /// let mut ids: Vec<_> = waiting.iter().map(|d| d.id.as_str()).collect();
    /// ids.sort();
    /// assert_eq!(ids, ["d1", "d2"]);
    ///
    /// let mut newest = ListFilter::all();
    /// newest.limit = Some(1);
    /// assert_eq!(client.list(newest).await?.len(), 1);
    /// # Ok(()) }
    /// ```
    fn list(
        &self,
        filter: ListFilter,
    ) -> impl Future<Output = Result<Vec<Description>, ClientError>> + Send {
        self.list_activities(filter)
    }
}
