//! The engine's [`ActivityClient`]: starting, awaiting, cancelling, pausing, unpausing,
//! resetting, describing and listing engine activities.

use std::fmt;
use std::sync::Arc;

use super::clock::Now;
use super::core::{Closed, Live, Operated, Operation, Start, Stored, Wait};
use super::record::ActivityRow;
use super::{Engine, EngineError, Inner};
use crate::BoxFuture;
use crate::backend::{ClientBackend, StartRequest, answer_existing};
use crate::client::{
    ActivityClient, ActivityFailure, ActivityStatus, ClientError, Description, ListFilter,
    ResetOptions, time_of_ms,
};
use crate::payload::Payload;
use crate::transport::{HeartbeatReply, TaskToken};

/// A running attempt's description: the in-memory view, fresher than the committed row.
pub(crate) fn describe_live(l: &Live, now: &Now) -> Description {
    let status = l.closing.as_ref().map_or(l.state, |c| c.state);
    // A running attempt's newest checkpoint, even before the pump has stored it.
    let details = l
        .handle
        .as_ref()
        .and_then(|h| h.current_details())
        .or_else(|| l.details());
    let mut d = Description::new(l.id.to_string(), l.activity_type.to_string(), status)
        .with_details(details);
    d.attempt = l.number();
    d.last_heartbeat = l.last_heartbeat.map(|i| time_of_ms(now.ms_of(i)));
    d.attempt_started = l.started.map(|i| time_of_ms(now.ms_of(i)));
    d.last_failure = l
        .closing
        .as_ref()
        .and_then(|c| c.failure.clone())
        .or_else(|| l.last_failure.as_deref().cloned());
    d.cancel_requested = l.cancel_requested;
    d.scheduled_at = Some(time_of_ms(l.scheduled_at));
    d.next_attempt_at = l.next_attempt_ms.map(time_of_ms);
    d
}

/// A stored activity's description.
pub(crate) fn describe_row(r: ActivityRow) -> Description {
    let mut d = Description::new(r.id.to_string(), r.activity_type, r.state)
        .with_details(r.details.map(Payload::from_json_bytes));
    d.attempt = r.attempt;
    d.last_heartbeat = r.last_heartbeat_at.map(time_of_ms);
    d.attempt_started = r.attempt_started_at.map(time_of_ms);
    d.last_failure = r.failure.as_deref().and_then(ActivityFailure::from_json);
    d.cancel_requested = r.cancel_requested;
    d.scheduled_at = Some(time_of_ms(r.scheduled_at));
    d.next_attempt_at = r.next_attempt_at.map(time_of_ms);
    d.closed_at = r.closed_at.map(time_of_ms);
    d.output = r.output.map(Payload::from_json_bytes);
    d
}

/// Starts and follows activities on an [`Engine`]: from [`Engine::client`], cheap to clone.
/// Its operations are those of [`ActivityClient`] (bring the trait into scope); it adds
/// [`heartbeat`](Self::heartbeat) by task token.
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
/// let _worker = engine.worker().register(double).spawn().await?;
/// let client = engine.client();
/// let handle = client.start(double, 21, StartOptions::id("double-21")).await?;
/// assert_eq!(handle.result().await?, 42);
/// assert_eq!(client.describe("double-21").await?.status, ActivityStatus::Completed);
/// assert_eq!(client.list(ListFilter::all()).await?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    engine: Engine,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("engine", &self.engine)
            .finish()
    }
}

impl ActivityClient for Client {}

impl ClientBackend for Client {
    fn start_activity(&self, request: StartRequest) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(self.insert(request))
    }

    /// The engine pushes every change of a watched activity (see `engine::watch`).
    fn watch_signal(&self, id: &str) -> Option<crate::backend::ChangeSignal> {
        let watch = self.inner().watchers.watch(id);
        Some(crate::backend::ChangeSignal::new(watch.signal(), watch))
    }

    fn activity_output<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Payload, ActivityFailure>> {
        Box::pin(async move {
            let closed = self.wait(id).await?;
            match (closed.state, closed.output, closed.failure) {
                (ActivityStatus::Completed, Some(out), _) => Ok(out),
                (_, _, Some(f)) => Err(f),
                (state, ..) => Err(ActivityFailure::Application {
                    error_type: "Unknown".into(),
                    message: format!("the activity closed as {state} without a recorded outcome"),
                    non_retryable: true,
                    details: None,
                }),
            }
        })
    }

    fn describe_activity<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Description, ClientError>> {
        Box::pin(async move { Ok(self.describe_id(id).await?) })
    }

    fn cancel_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(self.cancel_id(id))
    }

    fn pause_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(self.operate(id, Operation::Pause))
    }

    fn unpause_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(self.operate(id, Operation::Unpause))
    }

    fn reset_activity<'a>(
        &'a self,
        id: &'a str,
        options: ResetOptions,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        let op = Operation::Reset {
            keep_checkpoint: options.keep_checkpoint,
            keep_paused: options.keep_paused,
        };
        Box::pin(self.operate(id, op))
    }

    fn list_activities(
        &self,
        filter: ListFilter,
    ) -> BoxFuture<'_, Result<Vec<Description>, ClientError>> {
        Box::pin(async move { Ok(self.list_matching(filter).await?) })
    }
}

impl Client {
    pub(crate) fn new(engine: Engine) -> Self {
        Client { engine }
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.engine.inner
    }

    /// Stores a start (idempotent by id unless the request says to fail).
    async fn insert(&self, request: StartRequest) -> Result<(), ClientError> {
        let StartRequest {
            activity_type,
            id,
            input,
            options,
            if_exists,
            ..
        } = request;
        if self.inner().stop.is_cancelled() {
            return Err(ClientError::Closed);
        }
        let existing = |found: String| answer_existing(&id, activity_type, if_exists, found);
        let (found, now) = {
            let core = self.inner().lock();
            (core.type_of(&id), core.now())
        };
        if let Some(t) = found {
            return existing(t);
        }
        let key: Arc<str> = Arc::from(id.as_str());
        let start = Start::new(key.clone(), activity_type, &input, &options, &now);
        // The primary key decides between concurrent starts of one id (no read first): the
        // activity becomes runnable once its row is stored, admitted by the engine itself
        // (this future may be dropped meanwhile; the activity runs all the same).
        self.inner().writer.send(start.write, Some(start.ack));
        let inserted = start.stored.await.unwrap_or(Err(EngineError::Closed))?;
        if inserted {
            return Ok(());
        }
        if let Some(t) = self.inner().lock().type_of(&key) {
            return existing(t);
        }
        let stored = self.read_row(&id).await?;
        match stored {
            Some(row) => existing(row.activity_type),
            None => Err(EngineError::Storage {
                path: self.inner().path.clone(),
                message: format!("activity `{id}` was neither inserted nor found"),
            }
            .into()),
        }
    }

    /// Activity `id`'s stored row.
    async fn read_row(&self, id: &str) -> Result<Option<ActivityRow>, EngineError> {
        let inner = self.inner().clone();
        let key = id.to_owned();
        tokio::task::spawn_blocking(move || inner.reader.get(&key))
            .await
            .map_err(|_| EngineError::Closed)?
    }

    /// Asks activity `id` to stop: a running attempt is cancelled at once (pushed to it), an
    /// activity waiting to run or to retry is cancelled directly. Answers once the cancel is
    /// stored.
    async fn cancel_id(&self, id: &str) -> Result<(), ClientError> {
        if self.inner().stop.is_cancelled() {
            return Err(ClientError::Closed);
        }
        let Some((_, stored)) = self.inner().change(|core, fx| core.cancel(id, fx)) else {
            // Not open: closed already (nothing to do), or unknown.
            return self.describe_id(id).await.map(|_| ()).map_err(Into::into);
        };
        // Answered once the cancel is stored, so a crash right after cannot lose it; a write
        // that failed (a full disk) is the caller's error, not an `Ok`.
        match stored {
            Stored::Closed(rx) => match rx.await {
                Ok(Closed {
                    failure: Some(ActivityFailure::Backend(e)),
                    ..
                }) => Err(e),
                Ok(_) => Ok(()),
                Err(_) => Err(ClientError::Closed),
            },
            Stored::Written(rx) => match rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(ClientError::Closed),
            },
            Stored::Now => Ok(()),
        }
    }

    /// Applies operator control `op` to activity `id` (see `core::operator`); answers once
    /// what it did is stored.
    async fn operate(&self, id: &str, op: Operation) -> Result<(), ClientError> {
        if self.inner().stop.is_cancelled() {
            return Err(ClientError::Closed);
        }
        let status = match self.inner().change(|core, fx| core.operate(id, op, fx)) {
            Operated::Stored(rx) => {
                return match rx.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(ClientError::Closed),
                };
            }
            Operated::NotAllowed(status) => status,
            // Closed (the file says how), or unknown (`NotFound`).
            Operated::NotOpen => self.describe_id(id).await?.status,
        };
        Err(ClientError::NotAllowed {
            id: id.to_owned(),
            operation: op.name(),
            status,
        })
    }

    /// What the engine knows of activity `id`.
    async fn describe_id(&self, id: &str) -> Result<Description, EngineError> {
        /// What the engine holds of the activity, and what its history needs.
        enum Held {
            /// Open: its description, and whether it may have ended attempts (`Some`), with
            /// the newest one's `seq` when it is between attempts (that one must be listed).
            Open(Box<Description>, Option<Option<u32>>),
            /// Closed, its closing write not yet committed.
            Closing,
        }
        let held = {
            let core = self.inner().lock();
            let now = core.now();
            core.live.get(id).map(|l| {
                if l.closing.is_some() {
                    return Held::Closing;
                }
                let between = l.state != ActivityStatus::Running;
                let history = match l.attempt {
                    0 => None,
                    // Its first attempt, running: nothing has ended yet.
                    1 if !between => None,
                    seq => Some(between.then_some(seq)),
                };
                Held::Open(Box::new(describe_live(l, &now)), history)
            })
        };
        let inner = self.inner().clone();
        let key = id.to_owned();
        let history = || {
            let (inner, key) = (inner.clone(), key.clone());
            async move {
                tokio::task::spawn_blocking(move || inner.reader.history(&key))
                    .await
                    .map_err(|_| EngineError::Closed)?
            }
        };
        match held {
            Some(Held::Open(d, None)) => return Ok(d.with_attempts(Vec::new())),
            Some(Held::Open(d, Some(newest))) => {
                let mut ended = history().await?;
                if let Some(seq) = newest
                    && ended.last().map(|e| e.seq) != Some(seq)
                {
                    // The attempt that just ended is on its way to the file: once it is there,
                    // read again (a closed engine has stored all it will).
                    let _ = self.inner().writer.sync().await;
                    ended = history().await?;
                }
                return Ok(d.with_attempts(ended));
            }
            // Described from its row once that is complete (its output, when it closed).
            Some(Held::Closing) => {
                let _ = self.inner().writer.sync().await;
            }
            None => {}
        }
        tokio::task::spawn_blocking(move || inner.reader.get_with_history(&key))
            .await
            .map_err(|_| EngineError::Closed)??
            .map(|(row, ended)| describe_row(row).with_attempts(ended))
            .ok_or_else(|| EngineError::NotFound { id: id.to_owned() })
    }

    /// Activities matching `filter`, newest first.
    async fn list_matching(&self, filter: ListFilter) -> Result<Vec<Description>, EngineError> {
        let inner = self.inner().clone();
        let limit = filter.effective_limit();
        let statuses = filter.statuses.clone();
        let rows = tokio::task::spawn_blocking(move || inner.reader.list(&statuses, limit))
            .await
            .map_err(|_| EngineError::Closed)??;
        // Open activities: the in-memory view is fresher than the last committed row (a state
        // change may still be on its way to the file), so it decides what matches.
        let core = self.inner().lock();
        let now = core.now();
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<Description> = rows
            .into_iter()
            .map(|r| {
                seen.insert(r.id.clone());
                match core.live.get(&r.id) {
                    Some(l) => describe_live(l, &now),
                    None => {
                        let mut d = describe_row(r);
                        d.output = None; // a list leaves outputs out
                        d
                    }
                }
            })
            .filter(|d| filter.wants(d.status))
            .collect();
        out.extend(
            core.live
                .values()
                .filter(|l| !seen.contains(&l.id))
                .map(|l| describe_live(l, &now))
                .filter(|d| filter.wants(d.status)),
        );
        out.sort_by(|a, b| b.scheduled_at.cmp(&a.scheduled_at).then(a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    /// One page of a listing (the dashboard's): the committed rows, each open one replaced by
    /// the fresher in-memory view. A row whose state changed since its commit stays on the
    /// page it was read for (dropping it would end the paging early); the next read moves it.
    #[cfg(feature = "dashboard")]
    pub(crate) async fn page(
        &self,
        q: super::store::PageQuery,
    ) -> Result<Vec<Description>, EngineError> {
        let inner = self.inner().clone();
        let rows = tokio::task::spawn_blocking(move || inner.reader.page(&q))
            .await
            .map_err(|_| EngineError::Closed)??;
        let core = self.inner().lock();
        let now = core.now();
        Ok(rows
            .into_iter()
            .map(|r| match core.live.get(&r.id) {
                Some(l) => describe_live(l, &now),
                None => describe_row(r),
            })
            .collect())
    }

    /// A token cancelled when its engine shuts down (cancelling it does not stop the engine).
    #[cfg(feature = "dashboard")]
    pub(crate) fn engine_stopped(&self) -> tokio_util::sync::CancellationToken {
        self.inner().stop.child_token()
    }

    /// Whether its engine has shut down.
    #[cfg(feature = "dashboard")]
    pub(crate) fn engine_closed(&self) -> bool {
        self.inner().stop.is_cancelled()
    }

    /// The file of its engine.
    #[cfg(feature = "dashboard")]
    pub(crate) fn engine_path(&self) -> &std::path::Path {
        self.engine.path()
    }

    /// The row of `id` as committed, its input included (the dashboard's activity page).
    #[cfg(feature = "dashboard")]
    pub(crate) async fn row(&self, id: &str) -> Result<Option<ActivityRow>, EngineError> {
        let inner = self.inner().clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || inner.reader.get(&id))
            .await
            .map_err(|_| EngineError::Closed)?
    }

    /// How many rows each status has, and the types (at most `types`).
    #[cfg(feature = "dashboard")]
    pub(crate) async fn summary(&self, types: usize) -> Result<super::Summary, EngineError> {
        let inner = self.inner().clone();
        tokio::task::spawn_blocking(move || inner.reader.summary(types))
            .await
            .map_err(|_| EngineError::Closed)?
    }

    /// Heartbeats attempt `token` from outside the activity (another thread or task), with
    /// `details` as its new checkpoint. From another process, use
    /// [`request_heartbeat`](super::request_heartbeat).
    ///
    /// The reply says whether the work should go on: it [`stops`](HeartbeatReply::stops) once
    /// a cancel was requested or the attempt has ended.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] for a token that is not one of this engine's.
    ///
    /// ```
    /// use hb_runtime::client::StartOptions;
    /// use hb_runtime::engine::{Engine, EngineError};
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::backend::TaskToken;
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
    /// let engine = Engine::in_memory().await?;
    /// let (tx, mut tokens) = unbounded_channel();
    /// let _worker = engine.worker().register(external).state(tx).spawn().await?;
    /// let client = engine.client();
    /// let handle = client.start(external, (), StartOptions::id("ext")).await?;
    /// let token = tokens.recv().await.unwrap();
    ///
    /// let step = Payload::json(&serde_json::json!({ "step": 1 }))?;
    /// assert!(!client.heartbeat(&token, Some(&step))?.stops());
    /// let d = handle.describe().await?;
    /// assert_eq!(d.details, Some(step));
    /// assert!(d.last_heartbeat.is_some());
    ///
    /// handle.cancel().await?;
    /// let _ = handle.result().await;
    /// assert!(client.heartbeat(&token, None)?.stops()); // the attempt has ended
    /// let stranger = TaskToken::new(*b"not-a-token");
    /// assert!(matches!(client.heartbeat(&stranger, None), Err(EngineError::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub fn heartbeat(
        &self,
        token: &TaskToken,
        details: Option<&Payload>,
    ) -> Result<HeartbeatReply, EngineError> {
        self.inner()
            .heartbeat(token, details)
            .map_err(|e| EngineError::NotFound { id: e.message })
    }

    /// Waits for activity `id` to close.
    async fn wait(&self, id: &str) -> Result<Closed, EngineError> {
        let stopped = self.inner().timers_stopped();
        let wait = self.inner().lock().wait(id, stopped);
        match wait {
            Wait::Pending(rx) => return rx.await.map_err(|_| EngineError::Closed),
            Wait::EngineClosed => return Err(EngineError::Closed),
            Wait::NotOpen => {}
        }
        let d = self.describe_id(id).await?;
        if !d.status.is_closed() {
            // Committed as open but not in memory: only while the engine shuts down.
            return Err(EngineError::Closed);
        }
        Ok(Closed {
            state: d.status,
            output: d.output,
            failure: d.last_failure,
        })
    }
}
