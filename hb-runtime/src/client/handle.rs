//! [`Handle`]: one started activity, typed by the activity, on any backend.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::{ActivityFailure, ClientError, Description, ResetOptions};

/// How often [`Handle::watch`] describes an activity again on a backend that does not push
/// its changes (Temporal: one `describe` call a second per watch).
pub const WATCH_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
use crate::activity::Activity;
use crate::backend::ClientBackend;

/// A typed handle on one activity: from [`ActivityClient::start`](super::ActivityClient::start)
/// or [`ActivityClient::handle`](super::ActivityClient::handle), on any backend. Cheap to
/// clone; it holds the id, not the activity.
///
/// ```
/// use hb_runtime::client::{ActivityClient, ActivityStatus, StartOptions};
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
/// let handle = engine.client().start(double, 21, StartOptions::id("d")).await?;
/// assert_eq!(handle.id(), "d");
/// let output: u64 = handle.result().await?;
/// assert_eq!(output, 42);
/// assert_eq!(handle.describe().await?.status, ActivityStatus::Completed);
/// // Cancelling a closed activity changes nothing.
/// handle.cancel().await?;
/// assert_eq!(handle.result().await?, 42);
/// # Ok(()) }
/// ```
pub struct Handle<A: Activity> {
    id: Arc<str>,
    backend: Arc<dyn ClientBackend>,
    _a: PhantomData<fn() -> A>,
}

impl<A: Activity> Clone for Handle<A> {
    fn clone(&self) -> Self {
        Handle {
            id: self.id.clone(),
            backend: self.backend.clone(),
            _a: PhantomData,
        }
    }
}

impl<A: Activity> fmt::Debug for Handle<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.id)
            .field("activity_type", &A::NAME)
            .field("backend", &self.backend)
            .finish()
    }
}

impl<A: Activity> Handle<A> {
    pub(crate) fn new(id: impl Into<Arc<str>>, backend: Arc<dyn ClientBackend>) -> Self {
        Handle {
            id: id.into(),
            backend,
            _a: PhantomData,
        }
    }

    /// The activity id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the activity to close and returns its output or how it failed:
    /// [`ActivityFailure::Application`], [`ActivityFailure::Timeout`] (with the last
    /// checkpoint), [`ActivityFailure::Cancelled`], or [`ActivityFailure::RetriesExhausted`]
    /// with the last attempt's failure.
    ///
    /// ```
    /// use hb_runtime::client::{ActivityClient, ActivityFailure, StartOptions};
    /// use hb_runtime::engine::Engine;
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn parse(_ctx: ActivityContext, text: String) -> Result<u64, ActivityError> {
    ///     text.trim().parse().map_err(|e| ActivityError::non_retryable("BadNumber", e))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let _worker = engine.worker().register(parse).spawn().await?;
    /// let client = engine.client();
    ///
    /// let ok = client.start(parse, " 42 ".into(), StartOptions::id("p1")).await?;
    /// assert_eq!(ok.result().await?, 42);
    ///
    /// let bad = client.start(parse, "forty-two".into(), StartOptions::id("p2")).await?;
    /// match bad.result().await {
    ///     Err(ActivityFailure::Application { error_type, non_retryable, .. }) => {
    ///         assert_eq!(error_type, "BadNumber");
    ///         assert!(non_retryable);
    ///     }
    ///     other => panic!("expected the activity's own error, got {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn result(&self) -> Result<A::Output, ActivityFailure> {
        let output = self.backend.activity_output(&self.id).await?;
        output.decode().map_err(|e| ActivityFailure::BadOutput {
            activity_type: A::NAME.to_owned(),
            message: e.to_string(),
        })
    }

    /// Asks the activity to stop: see
    /// [`ActivityClient::cancel`](super::ActivityClient::cancel).
    pub async fn cancel(&self) -> Result<(), ClientError> {
        self.backend.cancel_activity(&self.id).await
    }

    /// Pauses the activity: see [`ActivityClient::pause`](super::ActivityClient::pause).
    pub async fn pause(&self) -> Result<(), ClientError> {
        self.backend.pause_activity(&self.id).await
    }

    /// Unpauses the activity: see [`ActivityClient::unpause`](super::ActivityClient::unpause).
    pub async fn unpause(&self) -> Result<(), ClientError> {
        self.backend.unpause_activity(&self.id).await
    }

    /// Resets the activity: see [`ActivityClient::reset`](super::ActivityClient::reset).
    pub async fn reset(&self, options: ResetOptions) -> Result<(), ClientError> {
        self.backend.reset_activity(&self.id, options).await
    }

    /// What the backend knows of the activity.
    pub async fn describe(&self) -> Result<Description, ClientError> {
        self.backend.describe_activity(&self.id).await
    }

    /// The activity's descriptions as it changes: the first at once, then one each time
    /// something it shows changes (status, attempt, checkpoint, heartbeat, ...), ending with
    /// the description of the activity closed, or with an error (`NotFound`, a backend's
    /// failure). The engine pushes its changes: the stream wakes on them, and is idle between
    /// them. Temporal is described again every [`WATCH_POLL_INTERVAL`], and what changed
    /// between two of them is seen once.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use hb_runtime::client::{ActivityClient, ActivityStatus, StartOptions};
    /// use hb_runtime::engine::Engine;
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn count_to(ctx: ActivityContext, #[checkpoint] mut next: u64, to: u64)
    ///     -> Result<u64, ActivityError>
    /// {
    ///     while next < to {
    ///         next += 1;
    ///         ctx.checkpoint(&next)?;
    ///         ctx.flush().await?; // each step a heartbeat: each one seen
    ///     }
    ///     Ok(next)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let handle = engine.client().start(count_to, 3, StartOptions::id("count")).await?;
    /// let mut changes = Box::pin(handle.watch());
    /// let first = changes.next().await.unwrap()?;
    /// assert_eq!(first.status, ActivityStatus::Scheduled);
    ///
    /// let _worker = engine.worker().register(count_to).spawn().await?;
    /// let mut last = first;
    /// while let Some(d) = changes.next().await {
    ///     last = d?;
    /// }
    /// assert_eq!(last.status, ActivityStatus::Completed); // the stream ends with it
    /// assert_eq!(last.progress.unwrap().done, 3);
    /// # Ok(()) }
    /// ```
    pub fn watch(
        &self,
    ) -> impl futures_util::Stream<Item = Result<Description, ClientError>> + Send + 'static {
        struct Watching {
            backend: Arc<dyn ClientBackend>,
            id: Arc<str>,
            signal: Option<crate::backend::ChangeSignal>,
            last: Option<Description>,
            done: bool,
        }
        let watching = Watching {
            signal: self.backend.watch_signal(&self.id),
            backend: self.backend.clone(),
            id: self.id.clone(),
            last: None,
            done: false,
        };
        futures_util::stream::unfold(watching, |mut w| async move {
            if w.done {
                return None;
            }
            loop {
                // Armed before the describe, so a change during it is not missed.
                let mut changed = w.signal.as_ref().map(|s| {
                    let mut n = Box::pin(s.notify.clone().notified_owned());
                    n.as_mut().enable();
                    n
                });
                match w.backend.describe_activity(&w.id).await {
                    Err(e) => {
                        w.done = true;
                        w.signal = None;
                        return Some((Err(e), w));
                    }
                    Ok(d) if w.last.as_ref() != Some(&d) => {
                        w.done = d.status.is_closed();
                        if w.done {
                            // Nothing more to wait for: the registration goes now, not when
                            // the stream is dropped.
                            w.signal = None;
                        }
                        w.last = Some(d.clone());
                        return Some((Ok(d), w));
                    }
                    Ok(_) => {}
                }
                match changed.as_mut() {
                    Some(n) => n.as_mut().await,
                    None => tokio::time::sleep(WATCH_POLL_INTERVAL).await,
                }
            }
        })
    }

    /// The last checkpoint, typed (`None` before the first, or when it is not of the
    /// activity's checkpoint type).
    ///
    /// ```
    /// use hb_runtime::client::{ActivityClient, StartOptions};
    /// use hb_runtime::engine::Engine;
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn count_to(ctx: ActivityContext, #[checkpoint] mut next: u64, to: u64)
    ///     -> Result<(), ActivityError>
    /// {
    ///     while next < to {
    ///         next += 1;
    ///         ctx.checkpoint(&next)?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let handle = engine.client().start(count_to, 5, StartOptions::id("count")).await?;
    /// assert_eq!(handle.checkpoint().await?, None); // no worker has run it yet
    ///
    /// let _worker = engine.worker().register(count_to).spawn().await?;
    /// handle.result().await?;
    /// assert_eq!(handle.checkpoint().await?, Some(5));
    /// # Ok(()) }
    /// ```
    pub async fn checkpoint(&self) -> Result<Option<A::Checkpoint>, ClientError> {
        Ok(self.describe().await?.checkpoint())
    }
}
