//! Running one attempt: decode input and checkpoint, build the context, run the body (inside
//! the user's interceptors, registered with the heartbeat pump) with its cancel mode, report
//! the outcome.
//!
//! Backends (the embedded engine's worker, the Temporal adapter, the test kit) all run
//! attempts through [`AttemptRunner`].

mod attempt;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use crate::BoxFuture;
use crate::activity::Activity;
use crate::attempt::{ActivityInfo, Env, Shared, Slot};
use crate::checkpoint;
use crate::context::ActivityContext;
use crate::error::{ActivityError, CancelReason};
use crate::heartbeat::Pump;
use crate::intercept::{AttemptResult, Interceptor};
use crate::options::{ActivityOptions, BadCheckpointPolicy};
use crate::payload::Payload;

use crate::state::StateMap;
use crate::transport::{TaskToken, Transport};
#[cfg(feature = "sim")]
pub(crate) use attempt::report;

/// What a backend hands the runner to start one attempt.
///
/// ```
/// use hb_runtime::checkpoint::encode_payload;
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::backend::TaskToken;
/// use hb_runtime::{ActivityOptions, Payload};
/// use std::time::{Duration, SystemTime};
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn resume(ctx: ActivityContext, #[checkpoint] next: u64) -> Result<(u32, u64), ActivityError> {
///     Ok((ctx.info().attempt, next))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // The third attempt of "job-7", resuming from checkpoint 40, due within the hour.
/// let request = AttemptRequest::new("job-7", TaskToken::new(*b"job-7#3"), Payload::json(&()).unwrap())
///     .attempt(3)
///     .details(Some(encode_payload(&40u64).unwrap()))
///     .deadline(Some(SystemTime::now() + Duration::from_secs(3600)))
///     .options(ActivityOptions::new().heartbeat_timeout(Duration::from_secs(30)));
/// let outcome = AttemptRunner::new(MemoryTransport::new()).start(&resume(), request).run().await;
/// assert_eq!(outcome.result.unwrap().decode::<(u32, u64)>().unwrap(), (3, 40));
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AttemptRequest {
    /// The activity id (stable across attempts).
    pub activity_id: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The token identifying the attempt to the backend.
    pub task_token: TaskToken,
    /// The encoded input.
    pub input: Payload,
    /// The previous attempt's last checkpoint, if any.
    pub details: Option<Payload>,
    /// When the attempt must have ended, if bounded.
    pub deadline: Option<SystemTime>,
    /// Options overriding the activity's own (per-start overrides of a backend).
    pub options: Option<ActivityOptions>,
    /// How long the attempt waited for a worker, if the backend knows
    /// ([`hb_activity_schedule_to_start_latency`](crate::metrics::ACTIVITY_SCHEDULE_TO_START_LATENCY)).
    pub schedule_to_start: Option<std::time::Duration>,
}

impl AttemptRequest {
    /// A first attempt of `activity_id` with `input`.
    pub fn new(activity_id: impl Into<String>, task_token: TaskToken, input: Payload) -> Self {
        AttemptRequest {
            activity_id: activity_id.into(),
            attempt: 1,
            task_token,
            input,
            details: None,
            deadline: None,
            options: None,
            schedule_to_start: None,
        }
    }

    /// Sets the attempt number.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the previous attempt's checkpoint.
    pub fn details(mut self, details: Option<Payload>) -> Self {
        self.details = details;
        self
    }

    /// Sets the deadline.
    pub fn deadline(mut self, deadline: Option<SystemTime>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Overrides the activity's options.
    pub fn options(mut self, options: ActivityOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Sets how long the attempt waited for a worker (for its metric).
    pub fn schedule_to_start(mut self, waited: Option<std::time::Duration>) -> Self {
        self.schedule_to_start = waited;
        self
    }
}

/// How an attempt ended, as reported to the backend.
///
/// ```
/// use hb_runtime::checkpoint::decode_payload;
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::backend::TaskToken;
/// use hb_runtime::Payload;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn give_up(ctx: ActivityContext, #[checkpoint] done: u64) -> Result<(), ActivityError> {
///     ctx.checkpoint(&7u64)?;
///     Err(ActivityError::non_retryable("Broken", "row 8 is corrupt"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = AttemptRequest::new("g-1", TaskToken::new(*b"g1"), Payload::json(&()).unwrap());
/// let outcome = AttemptRunner::new(MemoryTransport::new()).start(&give_up(), request).run().await;
/// assert_eq!(outcome.result.unwrap_err().error_type(), "Broken");
/// assert_eq!(decode_payload::<u64>(outcome.details.as_ref().unwrap()).unwrap(), 7);
/// assert_eq!(outcome.cancel_reason, None);
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AttemptOutcome {
    /// The encoded output or the failure.
    pub result: AttemptResult,
    /// The attempt's latest checkpoint: the last one it stored that fit the size limit, else
    /// the one it resumed from. What a retry resumes from, unless the backend keeps details
    /// and received newer ones from elsewhere (a heartbeat by task token), which the report
    /// leaves in place.
    pub details: Option<Payload>,
    /// Why the attempt was asked to stop, if it was.
    pub cancel_reason: Option<CancelReason>,
}

/// Runs attempts of any activity against one [`Transport`].
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::backend::TaskToken;
/// use hb_runtime::Payload;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn greet(ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
///     Ok(format!("hello {name}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let transport = MemoryTransport::new();
/// let runner = AttemptRunner::new(transport.clone());
/// let request = AttemptRequest::new("greet-1", TaskToken::new(*b"t1"), Payload::json("hb").unwrap());
/// let outcome = runner.start(&greet(), request).run().await;
/// assert_eq!(outcome.result.unwrap().decode::<String>().unwrap(), "hello hb");
/// # }
/// ```
#[derive(Clone)]
pub struct AttemptRunner {
    /// The transport and the worker-level resources, shared by every attempt.
    env: Arc<Env>,
    pump: Pump,
    /// The user's interceptors, outermost first (the pump registration is around them all).
    chain: Arc<[Arc<dyn Interceptor>]>,
}

impl fmt::Debug for AttemptRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptRunner")
            .field("pump", &self.pump)
            .field("interceptors", &self.chain.len())
            .field("state", &self.env.state)
            .finish_non_exhaustive()
    }
}

impl AttemptRunner {
    /// A runner reporting to `transport`, heartbeating through [`Pump::global`].
    pub fn new(transport: impl Transport) -> Self {
        AttemptRunner {
            env: Arc::new(Env {
                transport: Arc::new(transport),
                state: StateMap::default(),
                pump_on_runtime: false,
                metrics: Arc::default(),
            }),
            pump: Pump::global(),
            chain: Arc::from(Vec::new()),
        }
    }

    /// Heartbeats through `pump` instead.
    pub fn pump(mut self, pump: Pump) -> Self {
        self.env = Arc::new(Env {
            transport: self.env.transport.clone(),
            state: self.env.state.clone(),
            pump_on_runtime: pump.on_runtime(),
            metrics: self.env.metrics.clone(),
        });
        self.pump = pump;
        self
    }

    /// Adds an interceptor inside the ones already added (the heartbeat pump stays outermost).
    pub fn interceptor(self, interceptor: impl Interceptor) -> Self {
        self.shared_interceptor(Arc::new(interceptor))
    }

    /// [`interceptor`](Self::interceptor) for one already shared (a worker's, given to every
    /// runner it makes).
    pub(crate) fn shared_interceptor(mut self, interceptor: Arc<dyn Interceptor>) -> Self {
        let mut chain: Vec<_> = self.chain.iter().cloned().collect();
        chain.push(interceptor);
        self.chain = Arc::from(chain);
        self
    }

    /// Sets the worker-level resources `#[state]` parameters receive.
    pub fn state(mut self, state: StateMap) -> Self {
        self.env = Arc::new(Env {
            transport: self.env.transport.clone(),
            state,
            pump_on_runtime: self.env.pump_on_runtime,
            metrics: self.env.metrics.clone(),
        });
        self
    }

    /// Adds `labels` to every metric of this runner's attempts (`task_queue` on Temporal).
    #[cfg(feature = "temporal")]
    pub(crate) fn metric_labels(mut self, labels: Vec<::metrics::Label>) -> Self {
        let mut all = self.env.metrics.labels().to_vec();
        all.extend(labels);
        self.env = Arc::new(Env {
            transport: self.env.transport.clone(),
            state: self.env.state.clone(),
            pump_on_runtime: self.env.pump_on_runtime,
            metrics: Arc::new(crate::metrics::Registry::new(all)),
        });
        self
    }

    /// The worker-level resources.
    pub fn state_map(&self) -> &StateMap {
        &self.env.state
    }

    /// The pump heartbeating this runner's attempts.
    pub fn pump_handle(&self) -> &Pump {
        &self.pump
    }

    /// Prepares attempt `request` of `activity`. Nothing runs until the returned
    /// [`RunningAttempt`] is awaited; its [`AttemptHandle`] can cancel it from anywhere.
    pub fn start<A: Activity>(&self, activity: &A, request: AttemptRequest) -> RunningAttempt {
        let options = request.options.unwrap_or_else(|| activity.options());
        let span = tracing::info_span!(
            "activity",
            activity_type = A::NAME,
            activity_id = %request.activity_id,
            attempt = request.attempt,
        );

        let stateless = std::any::TypeId::of::<A::Checkpoint>() == std::any::TypeId::of::<()>();
        let (initial, early_error) = match &request.details {
            // A checkpoint-less activity ignores details (they still pass through untouched).
            Some(_) if stateless => (None, None),
            None => (None, None),
            Some(p) => match checkpoint::decode_payload::<A::Checkpoint>(p) {
                Ok(c) => (Some(c), None),
                Err(e) => match options.on_bad_checkpoint {
                    BadCheckpointPolicy::Fail => {
                        span.in_scope(|| tracing::error!(error = %e, "bad checkpoint; failing (on_bad_checkpoint = \"fail\")"));
                        (None, Some(ActivityError::BadCheckpoint(e)))
                    }
                    _ => {
                        span.in_scope(|| tracing::warn!(error = %e, "bad checkpoint; starting from Default (on_bad_checkpoint = \"restart\")"));
                        (None, None)
                    }
                },
            },
        };

        let info = ActivityInfo {
            activity_id: request.activity_id,
            activity_type: A::NAME,
            attempt: request.attempt,
            heartbeat_timeout: options.effective_heartbeat_timeout(),
            heartbeat_interval: options.effective_heartbeat_interval(),
            deadline: request.deadline,
            task_token: request.task_token,
        };
        let attempt = info.attempt;
        let shared = Arc::new(Shared::new(
            info,
            &options,
            Box::new(Slot::<A::Checkpoint>::new(initial.clone())),
            self.env.clone(),
            request.details,
            span.clone(),
        ));
        shared.metrics.start(attempt, request.schedule_to_start);
        let ctx = ActivityContext::from_shared(shared.clone());

        let input = request
            .input
            .decode::<A::Input>()
            .map_err(|e| ActivityError::BadInput {
                activity: A::NAME.to_owned(),
                expected_type: std::any::type_name::<A::Input>(),
                message: e.where_and_why(),
            });
        let body: BoxFuture<'static, Result<A::Output, ActivityError>> = match (early_error, input)
        {
            (Some(e), _) | (None, Err(e)) => Box::pin(async move { Err(e) }),
            (None, Ok(input)) => match activity.check_state(&self.env.state) {
                Err(e) => {
                    let e = ActivityError::MissingState(e);
                    Box::pin(async move { Err(e) })
                }
                Ok(()) => activity.run(ctx.clone(), initial.unwrap_or_default(), input),
            },
        };

        let handle = AttemptHandle {
            shared: shared.clone(),
        };
        let future = attempt::Attempt::new(ctx, self.pump.clone(), self.chain.clone(), body);
        RunningAttempt {
            handle,
            future: Box::pin(future),
        }
    }
}

/// An activity behind a pointer, whatever its type (what workers keep per registered name).
#[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
pub(crate) trait DynActivity: Send + Sync {
    fn options(&self) -> ActivityOptions;
    fn check_state(&self, state: &StateMap) -> Result<(), crate::state::MissingState>;
    fn start(&self, runner: &AttemptRunner, request: AttemptRequest) -> RunningAttempt;
}

impl<A: Activity> DynActivity for A {
    fn options(&self) -> ActivityOptions {
        Activity::options(self)
    }
    fn check_state(&self, state: &StateMap) -> Result<(), crate::state::MissingState> {
        Activity::check_state(self, state)
    }
    fn start(&self, runner: &AttemptRunner, request: AttemptRequest) -> RunningAttempt {
        runner.start(self, request)
    }
}

/// A context for checkpoint type `C` that no pump heartbeats.
pub(crate) fn detached_context<C: crate::Checkpoint>(
    transport: Arc<dyn Transport>,
) -> ActivityContext {
    let options = ActivityOptions::new();
    let info = ActivityInfo {
        activity_id: "detached".to_owned(),
        activity_type: "detached",
        attempt: 1,
        heartbeat_timeout: None,
        heartbeat_interval: options.effective_heartbeat_interval(),
        deadline: None,
        task_token: TaskToken::new(*b"detached"),
    };
    let slot = Box::new(Slot::<C>::new(None));
    let shared = Shared::new(
        info,
        &options,
        slot,
        Arc::new(Env {
            transport,
            state: StateMap::default(),
            pump_on_runtime: false,
            metrics: Arc::default(),
        }),
        None,
        tracing::Span::none(),
    );
    ActivityContext::from_shared(Arc::new(shared))
}

/// An attempt ready to run; await [`run`](Self::run) to drive it, or spawn
/// [`into_future`](Self::into_future) and keep its [`handle`](Self::handle).
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
/// use hb_runtime::testing::{MemoryTransport, RecordedCall};
/// use hb_runtime::backend::TaskToken;
/// use hb_runtime::Payload;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn forever(ctx: ActivityContext) -> Result<(), ActivityError> {
///     std::future::pending().await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let transport = MemoryTransport::new();
/// let runner = AttemptRunner::new(transport.clone());
/// let request = AttemptRequest::new("f-1", TaskToken::new(*b"f1"), Payload::json(&()).unwrap());
/// let running = runner.start(&forever(), request);
/// let handle = running.handle();
/// let task = tokio::spawn(running.into_future());
///
/// handle.cancel(CancelReason::Requested);
/// let outcome = task.await.unwrap();
/// assert!(outcome.result.unwrap_err().is_cancelled());
/// assert_eq!(outcome.cancel_reason, Some(CancelReason::Requested));
/// assert!(matches!(transport.calls().last(), Some(RecordedCall::Cancelled { .. })));
/// # }
/// ```
pub struct RunningAttempt {
    handle: AttemptHandle,
    future: Pin<Box<dyn attempt::AttemptFuture>>,
}

impl RunningAttempt {
    /// A handle to cancel the attempt or read its context while it runs.
    pub fn handle(&self) -> AttemptHandle {
        self.handle.clone()
    }

    /// The metric handles of the attempt's activity type.
    #[cfg(feature = "temporal")]
    pub(crate) fn metrics(&self) -> Arc<crate::metrics::ActivityMetrics> {
        self.handle.shared.metrics.of.clone()
    }

    /// Runs the attempt to its end and returns what was reported.
    pub async fn run(self) -> AttemptOutcome {
        self.future.await
    }

    /// The attempt as a boxed future (to spawn it).
    pub fn into_future(self) -> BoxFuture<'static, AttemptOutcome> {
        Box::pin(self.future)
    }

    /// Spawns the attempt on the current runtime as a task of its own, holding `permit` until
    /// it ends. The task is as small as a tokio task gets (its future is one pointer): a
    /// worker keeps one per running attempt.
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    pub(crate) fn spawn_holding(self, permit: tokio::sync::OwnedSemaphorePermit) {
        /// The attempt, its outcome dropped (it was reported to the backend).
        struct Detached(Pin<Box<dyn attempt::AttemptFuture>>);

        impl Future for Detached {
            type Output = ();

            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.0.as_mut().poll(cx).map(drop)
            }
        }

        let mut future = self.future;
        future.as_mut().hold(permit);
        tokio::spawn(Detached(future));
    }
}

impl fmt::Debug for RunningAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningAttempt")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// Cancels a running attempt from outside: what backends call to push a cancel.
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::backend::TaskToken;
/// use hb_runtime::Payload;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn forever(ctx: ActivityContext) -> Result<(), ActivityError> {
///     std::future::pending().await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let runner = AttemptRunner::new(MemoryTransport::new());
/// let request = AttemptRequest::new("f-1", TaskToken::new(*b"f1"), Payload::json(&()).unwrap());
/// let running = runner.start(&forever(), request);
/// let handle = running.handle();
/// assert_eq!(handle.context().info().activity_id, "f-1");
///
/// handle.cancel(CancelReason::WorkerShutdown);
/// assert_eq!(handle.context().cancel_reason(), Some(CancelReason::WorkerShutdown));
/// let err = running.run().await.result.unwrap_err();
/// assert!(err.is_retryable()); // a shutdown is retried on another worker
/// # }
/// ```
#[derive(Clone)]
pub struct AttemptHandle {
    shared: Arc<Shared>,
}

impl AttemptHandle {
    #[cfg(feature = "sim")]
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        AttemptHandle { shared }
    }

    /// Asks the attempt to stop; the first reason given wins. Reaches the body at once.
    pub fn cancel(&self, reason: CancelReason) {
        self.shared.cancel_with(reason)
    }

    /// The attempt's context (info, progress, cancellation state).
    pub fn context(&self) -> ActivityContext {
        ActivityContext::from_shared(self.shared.clone())
    }

    /// The attempt's latest checkpoint, encoded, when it is newer than what the attempt has
    /// delivered to the backend; `None` when the backend already holds the attempt's latest
    /// (or the attempt has no checkpoint of its own yet). For a backend's live view of a
    /// running attempt (the embedded engine's `describe()`): show this, else the details the
    /// backend holds, which may be newer still (a heartbeat by task token from elsewhere).
    ///
    /// It encodes only what changed since the pump last encoded (and the pump's next tick then
    /// sends that without encoding it again); a checkpoint over the size limit is not
    /// returned (the last one that fit is, if undelivered). It never waits, so a backend may
    /// call it under its own lock.
    ///
    /// ```
    /// use hb_runtime::checkpoint::decode_payload;
    /// use hb_runtime::backend::Pump;
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
    /// use hb_runtime::testing::MemoryTransport;
    /// use hb_runtime::backend::TaskToken;
    /// use hb_runtime::Payload;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn step(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
    ///     ctx.checkpoint(&(n + 1))?;
    ///     std::future::pending().await
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let runner = AttemptRunner::new(MemoryTransport::new()).pump(Pump::on_current_runtime());
    /// let request = AttemptRequest::new("s-1", TaskToken::new(*b"s1"), Payload::json(&()).unwrap());
    /// let running = runner.start(&step(), request);
    /// let handle = running.handle();
    /// assert_eq!(handle.current_details(), None); // nothing stored yet
    ///
    /// let task = tokio::spawn(running.into_future());
    /// while handle.context().last_checkpoint::<u64>().is_none() {
    ///     tokio::task::yield_now().await; // the body stores checkpoint 1
    /// }
    /// // Not heartbeated yet (the first heartbeat is 5 s away), but visible.
    /// let live = handle.current_details().unwrap();
    /// assert_eq!(decode_payload::<u64>(&live).unwrap(), 1);
    ///
    /// handle.context().flush().await.unwrap();
    /// assert_eq!(handle.current_details(), None); // the backend holds it now
    /// handle.cancel(CancelReason::Requested);
    /// task.await.unwrap();
    /// # }
    /// ```
    pub fn current_details(&self) -> Option<Payload> {
        crate::attempt::send::undelivered(&self.shared)
    }
}

impl fmt::Debug for AttemptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptHandle")
            .field("activity_id", &self.shared.info.activity_id)
            .field("attempt", &self.shared.info.attempt)
            .finish_non_exhaustive()
    }
}
