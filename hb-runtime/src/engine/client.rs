//! Starting, awaiting, cancelling, describing and listing engine activities.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::clock::Now;
use super::core::{Closed, Live, Stored, Wait};
use super::record::{ActivityFailure, ActivityRow, ActivityState, StoredOptions};
use super::store::{Ack, Write};
use super::{Engine, EngineError, Inner};
use crate::checkpoint::{self, Checkpoint, Progress};
use crate::definition::{Activity, IntoActivity, RetryPolicy};
use crate::payload::Payload;
use crate::transport::{HeartbeatReply, TaskToken};

/// How to start an activity: its id (the idempotency key) and per-start overrides of the
/// activity's own options.
///
/// ```
/// use hb_runtime::engine::StartOptions;
/// use std::time::Duration;
/// let o = StartOptions::id("batch-42")
///     .heartbeat_timeout(Duration::from_secs(30))
///     .fail_if_exists();
/// assert_eq!(o.activity_id(), "batch-42");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StartOptions {
    id: String,
    heartbeat_timeout: Option<Duration>,
    start_to_close_timeout: Option<Duration>,
    schedule_to_close_timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    fail_if_exists: bool,
}

impl StartOptions {
    /// Start with activity id `id`.
    pub fn id(id: impl Into<String>) -> Self {
        StartOptions {
            id: id.into(),
            heartbeat_timeout: None,
            start_to_close_timeout: None,
            schedule_to_close_timeout: None,
            retry: None,
            fail_if_exists: false,
        }
    }

    /// The activity id.
    pub fn activity_id(&self) -> &str {
        &self.id
    }

    /// Overrides `heartbeat_timeout`.
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = Some(d);
        self
    }

    /// Overrides `start_to_close_timeout`.
    pub fn start_to_close_timeout(mut self, d: Duration) -> Self {
        self.start_to_close_timeout = Some(d);
        self
    }

    /// Overrides `schedule_to_close_timeout`.
    pub fn schedule_to_close_timeout(mut self, d: Duration) -> Self {
        self.schedule_to_close_timeout = Some(d);
        self
    }

    /// Overrides the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Refuse with [`EngineError::AlreadyStarted`] when the id exists, instead of returning
    /// the existing activity's handle (the default: starting is idempotent by id).
    pub fn fail_if_exists(mut self) -> Self {
        self.fail_if_exists = true;
        self
    }
}

/// What the engine knows of one activity: from [`Client::describe`], [`Client::list`] and
/// [`ActivityHandle::describe`].
///
/// ```
/// use hb_runtime::engine::{ActivityFailure, ActivityState, Engine, StartOptions};
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Rows {
///     #[checkpoint(done)]
///     done: u64,
///     #[checkpoint(total)]
///     total: u64,
/// }
///
/// #[activity(heartbeat_timeout = "10s", retry(max_attempts = 3))]
/// async fn import(ctx: ActivityContext, #[checkpoint] mut rows: Rows, bad_row: u64)
///     -> Result<(), ActivityError>
/// {
///     rows.total = 10;
///     while rows.done < rows.total {
///         if rows.done == bad_row {
///             return Err(ActivityError::non_retryable("BadRow", format!("row {bad_row}")));
///         }
///         rows.done += 1;
///         ctx.checkpoint(&rows)?;
///     }
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(import).spawn()?;
/// let handle = engine.client().start(import, 4, StartOptions::id("import-1")).await?;
/// assert!(handle.result().await.is_err());
///
/// let d = handle.describe().await?;
/// assert_eq!((d.id.as_str(), d.activity_type.as_str()), ("import-1", "import"));
/// assert_eq!(d.state, ActivityState::Failed);
/// assert_eq!(d.attempt, 1); // non-retryable: no second attempt
/// assert_eq!(d.progress.unwrap().to_string(), "4/10");
/// assert!(matches!(
///     d.last_failure,
///     Some(ActivityFailure::Application { ref error_type, .. }) if error_type == "BadRow"
/// ));
/// assert!(!d.cancel_requested);
/// assert!(d.closed_at.is_some() && d.next_attempt_at.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Description {
    /// The activity id.
    pub id: String,
    /// The activity type.
    pub activity_type: String,
    /// Where it is.
    pub state: ActivityState,
    /// The latest attempt started (0 before the first).
    pub attempt: u32,
    /// Done/total from the last checkpoint (`#[checkpoint(done)]`/`total` fields).
    pub progress: Option<Progress>,
    /// The last checkpoint, encoded.
    pub details: Option<Payload>,
    /// When the current attempt last heartbeated.
    pub last_heartbeat: Option<SystemTime>,
    /// When the current attempt started.
    pub attempt_started: Option<SystemTime>,
    /// The last failure (of an attempt, or the final one).
    pub last_failure: Option<ActivityFailure>,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// When it was started.
    pub scheduled_at: SystemTime,
    /// When the next attempt is due (backing off).
    pub next_attempt_at: Option<SystemTime>,
    /// When it closed.
    pub closed_at: Option<SystemTime>,
}

impl Description {
    /// The last checkpoint, decoded as `T`; `None` when there is none or it is not a `T`.
    ///
    /// ```
    /// use hb_runtime::engine::{Engine, StartOptions};
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
    /// let _worker = engine.worker().register(count_to).spawn()?;
    /// let client = engine.client();
    /// client.start(count_to, 5, StartOptions::id("count")).await?.result().await?;
    ///
    /// let d = client.describe("count").await?;
    /// assert_eq!(d.checkpoint::<u64>(), Some(5));
    /// assert_eq!(d.checkpoint::<String>(), None);
    /// # Ok(()) }
    /// ```
    pub fn checkpoint<T: Checkpoint>(&self) -> Option<T> {
        self.details
            .as_ref()
            .and_then(|d| checkpoint::decode_payload(d).ok())
    }
}

/// The wall-clock time of stored `ms`, as stored (a hostile file's extreme values too: tools
/// show them as out of range); before 1970 reads as 1970.
fn time(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.max(0).unsigned_abs());
    UNIX_EPOCH.checked_add(d).unwrap_or(UNIX_EPOCH)
}

impl Description {
    pub(crate) fn from_live(l: &Live, now: &Now) -> Self {
        let state = l.closing.as_ref().map_or(l.state, |c| c.state);
        // A running attempt's newest checkpoint, even before the pump has stored it.
        let details = l
            .handle
            .as_ref()
            .and_then(|h| h.current_details())
            .or_else(|| l.details());
        Description {
            id: l.id.to_string(),
            activity_type: l.activity_type.to_string(),
            state,
            attempt: l.attempt,
            progress: details.as_ref().and_then(checkpoint::progress_of),
            details,
            last_heartbeat: l.last_heartbeat.map(|i| time(now.ms_of(i))),
            attempt_started: l.started.map(|i| time(now.ms_of(i))),
            last_failure: l
                .closing
                .as_ref()
                .and_then(|c| c.failure.clone())
                .or_else(|| l.last_failure.as_deref().cloned()),
            cancel_requested: l.cancel_requested,
            scheduled_at: time(l.scheduled_at),
            next_attempt_at: l.next_attempt_ms.map(time),
            closed_at: None,
        }
    }

    pub(crate) fn from_row(r: ActivityRow) -> Self {
        let details = r.details.map(Payload::from_json_bytes);
        Description {
            id: r.id.to_string(),
            activity_type: r.activity_type,
            state: r.state,
            attempt: r.attempt,
            progress: details.as_ref().and_then(checkpoint::progress_of),
            details,
            last_heartbeat: r.last_heartbeat_at.map(time),
            attempt_started: r.attempt_started_at.map(time),
            last_failure: r.failure.as_deref().and_then(ActivityFailure::from_json),
            cancel_requested: r.cancel_requested,
            scheduled_at: time(r.scheduled_at),
            next_attempt_at: r.next_attempt_at.map(time),
            closed_at: r.closed_at.map(time),
        }
    }
}

/// Which activities [`Client::list`] (and [`Inspector::list`](super::Inspector::list)) return.
///
/// ```
/// use hb_runtime::engine::{ActivityState, ListFilter};
///
/// assert!(ListFilter::all().states.is_empty()); // every state
/// assert_eq!(ListFilter::state(ActivityState::Running).states, [ActivityState::Running]);
///
/// let mut open = ListFilter::all();
/// open.states = vec![ActivityState::Scheduled, ActivityState::Running];
/// open.limit = Some(20); // the 20 newest
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only these states (all when empty).
    pub states: Vec<ActivityState>,
    /// At most this many, newest first (default 1,000).
    pub limit: Option<usize>,
}

impl ListFilter {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only activities in `state`.
    pub fn state(state: ActivityState) -> Self {
        ListFilter {
            states: vec![state],
            limit: None,
        }
    }
}

/// Starts and follows activities on an [`Engine`]: from [`Engine::client`], cheap to clone.
///
/// ```
/// use hb_runtime::engine::{ActivityState, Engine, ListFilter, StartOptions};
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(double).spawn()?;
/// let client = engine.client();
/// let handle = client.start(double, 21, StartOptions::id("double-21")).await?;
/// assert_eq!(handle.result().await?, 42);
///
/// // Anyone with the id can follow it.
/// let again = client.handle::<double>("double-21");
/// assert_eq!(again.result().await?, 42);
/// assert_eq!(client.describe("double-21").await?.state, ActivityState::Completed);
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

impl Client {
    pub(crate) fn new(engine: Engine) -> Self {
        Client { engine }
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.engine.inner
    }

    /// Starts `activity` with `input`; returns once the start is stored.
    ///
    /// Idempotent by id: when an activity with this id exists (running or closed), its handle
    /// is returned and `input` is ignored — unless [`StartOptions::fail_if_exists`] was set
    /// ([`EngineError::AlreadyStarted`]). An existing id of another type is
    /// [`EngineError::WrongType`]; after [`Engine::close`](super::Engine::close), every start
    /// is [`EngineError::Closed`].
    ///
    /// ```
    /// use hb_runtime::engine::{Engine, EngineError, StartOptions};
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
    /// let _worker = engine.worker().register(double).spawn()?;
    /// assert_eq!(handle.result().await?, 2);
    ///
    /// let strict = StartOptions::id("d").fail_if_exists();
    /// let refused = client.start(double, 3, strict).await;
    /// assert!(matches!(refused, Err(EngineError::AlreadyStarted { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn start<F: IntoActivity>(
        &self,
        activity: F,
        input: <F::Activity as Activity>::Input,
        options: StartOptions,
    ) -> Result<ActivityHandle<F::Activity>, EngineError> {
        let activity = activity.into_activity();
        let name = <F::Activity as Activity>::NAME;
        let input = Payload::json(&input).map_err(|e| EngineError::BadInput {
            activity_type: name.to_owned(),
            message: e.to_string(),
        })?;
        let mut o = Activity::options(&activity);
        if let Some(d) = options.heartbeat_timeout {
            o.heartbeat_timeout = Some(d);
        }
        if let Some(d) = options.start_to_close_timeout {
            o.start_to_close_timeout = Some(d);
        }
        if let Some(d) = options.schedule_to_close_timeout {
            o.schedule_to_close_timeout = Some(d);
        }
        if let Some(r) = options.retry {
            o.retry = r;
        }
        let stored = StoredOptions::from_options(&o);
        self.start_raw(name, &options.id, input, stored, options.fail_if_exists)
            .await?;
        Ok(self.handle(options.id))
    }

    async fn start_raw(
        &self,
        activity_type: &str,
        id: &str,
        input: Payload,
        options: StoredOptions,
        fail_if_exists: bool,
    ) -> Result<(), EngineError> {
        if self.inner().stop.is_cancelled() {
            return Err(EngineError::Closed);
        }
        let existing = |found: String| {
            if fail_if_exists {
                Err(EngineError::AlreadyStarted {
                    id: id.to_owned(),
                    activity_type: found,
                })
            } else if found != activity_type {
                Err(EngineError::WrongType {
                    id: id.to_owned(),
                    found,
                    expected: activity_type.to_owned(),
                })
            } else {
                Ok(())
            }
        };
        let (found, now) = {
            let core = self.inner().lock();
            (core.type_of(id), core.now())
        };
        if let Some(t) = found {
            return existing(t);
        }
        let id: Arc<str> = Arc::from(id);
        let row = new_row(id.clone(), activity_type, &input, &options, now.wall_ms);
        let live = Box::new(Live::from_row(row.clone(), &now));
        // The primary key decides between concurrent starts of one id (no read first): the
        // activity becomes runnable once its row is stored, admitted by the engine itself
        // (this future may be dropped meanwhile; the activity runs all the same).
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner()
            .writer
            .send(Write::Insert(Box::new(row)), Some(Ack::Inserted(live, tx)));
        let inserted = rx.await.unwrap_or(Err(EngineError::Closed))?;
        if inserted {
            return Ok(());
        }
        if let Some(t) = self.inner().lock().type_of(&id) {
            return existing(t);
        }
        let inner = self.inner().clone();
        let key = id.to_string();
        let stored = tokio::task::spawn_blocking(move || inner.reader.get(&key))
            .await
            .map_err(|_| EngineError::Closed)??;
        match stored {
            Some(row) => existing(row.activity_type),
            None => Err(EngineError::Storage {
                path: self.inner().path.clone(),
                message: format!("activity `{id}` was neither inserted nor found"),
            }),
        }
    }

    /// A handle to activity `id` (no check that it exists: its calls say so).
    pub fn handle<A: Activity>(&self, id: impl Into<String>) -> ActivityHandle<A> {
        ActivityHandle {
            id: id.into(),
            client: self.clone(),
            _a: PhantomData,
        }
    }

    /// Asks activity `id` to stop: a running attempt is cancelled at once (pushed to it), an
    /// activity waiting to run or to retry is cancelled directly. Returns its state afterwards
    /// ([`EngineError::Closed`] after [`Engine::close`](super::Engine::close)).
    ///
    /// ```
    /// use hb_runtime::engine::{ActivityFailure, ActivityState, Engine, StartOptions};
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
    /// assert_eq!(client.cancel("queued").await?, ActivityState::Cancelled);
    ///
    /// // Running: the attempt is told at once, and the activity closes when it has stopped.
    /// let started = Arc::new(Notify::new());
    /// let _worker = engine.worker().register(wait).state(started.clone()).spawn()?;
    /// let handle = client.start(wait, (), StartOptions::id("running")).await?;
    /// started.notified().await;
    /// assert_eq!(client.cancel("running").await?, ActivityState::Running);
    /// assert!(matches!(handle.result().await, Err(ActivityFailure::Cancelled { .. })));
    /// assert_eq!(client.cancel("running").await?, ActivityState::Cancelled);
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, id: &str) -> Result<ActivityState, EngineError> {
        if self.inner().stop.is_cancelled() {
            return Err(EngineError::Closed);
        }
        let Some((state, stored)) = self.inner().change(|core, fx| core.cancel(id, fx)) else {
            return self.describe(id).await.map(|d| d.state);
        };
        // Answered once the cancel is stored, so a crash right after cannot lose it; a write
        // that failed (a full disk) is the caller's error, not an `Ok`.
        match stored {
            Stored::Closed(rx) => match rx.await {
                Ok(Closed {
                    failure: Some(ActivityFailure::Engine(e)),
                    ..
                }) => Err(e),
                Ok(_) => Ok(state),
                Err(_) => Err(EngineError::Closed),
            },
            Stored::Written(rx) => rx.await.unwrap_or(Err(EngineError::Closed)).map(|_| state),
            Stored::Now => Ok(state),
        }
    }

    /// What the engine knows of activity `id`.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] when no activity has this id.
    ///
    /// ```
    /// use hb_runtime::engine::{ActivityState, Engine, EngineError, StartOptions};
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
    /// let d = client.describe("d").await?;
    /// assert_eq!((d.state, d.attempt), (ActivityState::Scheduled, 0)); // no worker yet
    ///
    /// let _worker = engine.worker().register(double).spawn()?;
    /// client.handle::<double>("d").result().await?;
    /// let d = client.describe("d").await?;
    /// assert_eq!((d.state, d.attempt), (ActivityState::Completed, 1));
    ///
    /// assert!(matches!(client.describe("nope").await, Err(EngineError::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn describe(&self, id: &str) -> Result<Description, EngineError> {
        let live = {
            let core = self.inner().lock();
            let now = core.now();
            core.live.get(id).map(|l| Description::from_live(l, &now))
        };
        if let Some(d) = live {
            return Ok(d);
        }
        let inner = self.inner().clone();
        let key = id.to_owned();
        let row = tokio::task::spawn_blocking(move || inner.reader.get(&key))
            .await
            .map_err(|_| EngineError::Closed)??;
        row.map(Description::from_row)
            .ok_or_else(|| EngineError::NotFound { id: id.to_owned() })
    }

    /// Activities matching `filter`, newest first.
    ///
    /// ```
    /// use hb_runtime::engine::{ActivityState, Engine, ListFilter, StartOptions};
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
    /// let first = client.handle::<double>("d0");
    /// first.cancel().await?;
    /// assert!(first.result().await.is_err()); // cancelled, and stored
    ///
    /// assert_eq!(client.list(ListFilter::all()).await?.len(), 3);
    /// let waiting = client.list(ListFilter::state(ActivityState::Scheduled)).await?;
    /// let mut ids: Vec<_> = waiting.iter().map(|d| d.id.as_str()).collect();
    /// ids.sort();
    /// assert_eq!(ids, ["d1", "d2"]);
    ///
    /// let mut newest = ListFilter::all();
    /// newest.limit = Some(1);
    /// assert_eq!(client.list(newest).await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<Description>, EngineError> {
        let inner = self.inner().clone();
        let limit = filter.limit.unwrap_or(1000);
        let states = filter.states.clone();
        let rows = tokio::task::spawn_blocking(move || inner.reader.list(&states, limit))
            .await
            .map_err(|_| EngineError::Closed)??;
        // Open activities: the in-memory view is fresher than the last committed row (a state
        // change may still be on its way to the file), so it decides what matches.
        let wanted = |s: ActivityState| filter.states.is_empty() || filter.states.contains(&s);
        let core = self.inner().lock();
        let now = core.now();
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<Description> = rows
            .into_iter()
            .map(|r| {
                seen.insert(r.id.clone());
                match core.live.get(&r.id) {
                    Some(l) => Description::from_live(l, &now),
                    None => Description::from_row(r),
                }
            })
            .filter(|d| wanted(d.state))
            .collect();
        out.extend(
            core.live
                .values()
                .filter(|l| !seen.contains(&l.id))
                .map(|l| Description::from_live(l, &now))
                .filter(|d| wanted(d.state)),
        );
        out.sort_by(|a, b| b.scheduled_at.cmp(&a.scheduled_at).then(a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
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
    /// use hb_runtime::engine::{Engine, EngineError, StartOptions};
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
    /// let engine = Engine::in_memory().await?;
    /// let (tx, mut tokens) = unbounded_channel();
    /// let _worker = engine.worker().register(external).state(tx).spawn()?;
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
        let d = self.describe(id).await?;
        if !d.state.is_closed() {
            // Committed as open but not in memory: only while the engine shuts down.
            return Err(EngineError::Closed);
        }
        let inner = self.inner().clone();
        let key = id.to_owned();
        let row = tokio::task::spawn_blocking(move || inner.reader.get(&key))
            .await
            .map_err(|_| EngineError::Closed)??
            .ok_or_else(|| EngineError::NotFound { id: id.to_owned() })?;
        Ok(Closed {
            state: row.state,
            output: row.output.map(Payload::from_json_bytes),
            failure: row.failure.as_deref().and_then(ActivityFailure::from_json),
        })
    }
}

/// The row a start of activity `id` inserts.
pub(crate) fn new_row(
    id: Arc<str>,
    activity_type: &str,
    input: &Payload,
    options: &StoredOptions,
    scheduled_at: i64,
) -> ActivityRow {
    ActivityRow {
        id,
        activity_type: activity_type.to_owned(),
        state: ActivityState::Scheduled,
        attempt: 0,
        input: input.data().to_vec(),
        options: serde_json::to_string(options).unwrap_or_default(),
        details: None,
        output: None,
        failure: None,
        cancel_requested: false,
        scheduled_at,
        attempt_started_at: None,
        last_heartbeat_at: None,
        next_attempt_at: None,
        closed_at: None,
        external_attempt: None,
    }
}

/// A typed handle to one activity: from [`Client::start`] or [`Client::handle`]. Cheap to
/// clone; it holds the id, not the activity.
///
/// ```
/// use hb_runtime::engine::{ActivityState, Engine, StartOptions};
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(double).spawn()?;
/// let handle = engine.client().start(double, 21, StartOptions::id("d")).await?;
/// assert_eq!(handle.id(), "d");
/// let output: u64 = handle.result().await?;
/// assert_eq!(output, 42);
/// assert_eq!(handle.describe().await?.state, ActivityState::Completed);
/// // Cancelling a closed activity changes nothing.
/// assert_eq!(handle.cancel().await?, ActivityState::Completed);
/// # Ok(()) }
/// ```
pub struct ActivityHandle<A: Activity> {
    id: String,
    client: Client,
    _a: PhantomData<fn() -> A>,
}

impl<A: Activity> Clone for ActivityHandle<A> {
    fn clone(&self) -> Self {
        ActivityHandle {
            id: self.id.clone(),
            client: self.client.clone(),
            _a: PhantomData,
        }
    }
}

impl<A: Activity> fmt::Debug for ActivityHandle<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityHandle")
            .field("id", &self.id)
            .field("activity_type", &A::NAME)
            .finish()
    }
}

impl<A: Activity> ActivityHandle<A> {
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
    /// use hb_runtime::engine::{ActivityFailure, Engine, StartOptions};
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn parse(_ctx: ActivityContext, text: String) -> Result<u64, ActivityError> {
    ///     text.trim().parse().map_err(|e| ActivityError::non_retryable("BadNumber", e))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let _worker = engine.worker().register(parse).spawn()?;
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
        let closed = self.client.wait(&self.id).await?;
        match (closed.state, closed.output, closed.failure) {
            (ActivityState::Completed, Some(out), _) => {
                out.decode().map_err(|e| ActivityFailure::BadOutput {
                    message: e.to_string(),
                })
            }
            (_, _, Some(f)) => Err(f),
            (state, ..) => Err(ActivityFailure::Application {
                error_type: "Unknown".into(),
                message: format!("the activity closed as {state} without a recorded outcome"),
                non_retryable: true,
                details: None,
            }),
        }
    }

    /// Asks the activity to stop; see [`Client::cancel`].
    pub async fn cancel(&self) -> Result<ActivityState, EngineError> {
        self.client.cancel(&self.id).await
    }

    /// What the engine knows of the activity.
    pub async fn describe(&self) -> Result<Description, EngineError> {
        self.client.describe(&self.id).await
    }

    /// The last checkpoint, typed.
    ///
    /// ```
    /// use hb_runtime::engine::{Engine, StartOptions};
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
    /// let _worker = engine.worker().register(count_to).spawn()?;
    /// handle.result().await?;
    /// assert_eq!(handle.checkpoint().await?, Some(5));
    /// # Ok(()) }
    /// ```
    pub async fn checkpoint(&self) -> Result<Option<A::Checkpoint>, EngineError> {
        Ok(self.describe().await?.checkpoint())
    }
}
