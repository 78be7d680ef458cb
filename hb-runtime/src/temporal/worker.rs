//! A Temporal worker running hb activities: polls activity tasks through temporalio-sdk-core,
//! runs each attempt under hb's runner (pump, checkpoints, cancellation), reports the outcome.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use temporalio_common::protos::coresdk::activity_result::ActivityExecutionResult;
use temporalio_common::protos::coresdk::activity_task::{
    activity_task, ActivityCancelReason, Start,
};
use temporalio_common::protos::coresdk::{ActivityHeartbeat, ActivityTaskCompletion};
use temporalio_common::worker::WorkerTaskTypes;
use temporalio_sdk_core::{
    init_worker, CoreRuntime, PollError, RuntimeOptions, TunerHolder, WorkerConfig,
    WorkerVersioningStrategy,
};

use super::convert::{self, failure_of, from_proto, input_of, to_proto};
use super::{ConnectOptions, TemporalError};
use crate::definition::{Activity, IntoActivity};
use crate::error::{ActivityError, CancelReason, TransportError};
use crate::intercept::Interceptor;
use crate::payload::Payload;
use crate::runner::{AttemptHandle, AttemptRequest, AttemptRunner, DynActivity};
use crate::state::StateMap;
use crate::transport::{HeartbeatReply, TaskToken, Transport};

type CoreWorker = temporalio_sdk_core::Worker;

/// Runs hb activities for one task queue of a Temporal server.
///
/// Register activities, then [`spawn`](Self::spawn); see the [module docs](super).
pub struct Worker {
    connect: ConnectOptions,
    task_queue: String,
    activities: HashMap<&'static str, Arc<dyn DynActivity>>,
    max_concurrent: usize,
    shutdown_grace: Duration,
    state: StateMap,
    interceptors: Vec<Arc<dyn Interceptor>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("address", &self.connect.address)
            .field("namespace", &self.connect.namespace)
            .field("task_queue", &self.task_queue)
            .field("activities", &self.activities.keys().collect::<Vec<_>>())
            .field("max_concurrent", &self.max_concurrent)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker for `task_queue` on the server `connect` names.
    pub fn new(connect: ConnectOptions, task_queue: impl Into<String>) -> Self {
        Worker {
            connect,
            task_queue: task_queue.into(),
            activities: HashMap::new(),
            max_concurrent: 100,
            shutdown_grace: Duration::from_secs(10),
            state: StateMap::new(),
            interceptors: Vec::new(),
        }
    }

    /// Runs `activity` (an `#[activity]` function's name) under its hb name.
    pub fn register<F: IntoActivity>(mut self, activity: F) -> Self {
        self.activities.insert(
            <F::Activity as Activity>::NAME,
            Arc::new(activity.into_activity()),
        );
        self
    }

    /// Runs at most `n` attempts at once (default 100).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// How long [`WorkerHandle::shutdown`] lets running attempts finish before they are
    /// cancelled with [`CancelReason::WorkerShutdown`] (default 10 s). The server retries
    /// them, from their last checkpoint.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Provides a resource activities take as a `#[state]` parameter.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Adds an interceptor around every attempt.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Connects and starts polling on the current tokio runtime.
    ///
    /// # Errors
    /// [`TemporalError::Connect`] when the server cannot be reached;
    /// [`TemporalError::Worker`] when no activity is registered or the server refuses the
    /// worker (an unknown namespace); [`TemporalError::MissingState`] when an activity takes
    /// a `#[state]` the worker was not given.
    pub async fn spawn(self) -> Result<WorkerHandle, TemporalError> {
        if self.activities.is_empty() {
            return Err(TemporalError::Worker(
                "no activity registered: call .register(..) first".to_owned(),
            ));
        }
        for a in self.activities.values() {
            a.check_state(&self.state)?;
        }
        let connection = self.connect.connect().await?;
        let runtime_options = RuntimeOptions::builder()
            .build()
            .map_err(|e| TemporalError::Worker(e.to_string()))?;
        let runtime = CoreRuntime::new_assume_tokio(runtime_options)
            .map_err(|e| TemporalError::Worker(e.to_string()))?;
        let config = WorkerConfig::builder()
            .namespace(self.connect.namespace.clone())
            .task_queue(self.task_queue.clone())
            .tuner(Arc::new(TunerHolder::fixed_size(
                1,
                self.max_concurrent,
                1,
                1,
            )))
            .task_types(WorkerTaskTypes {
                enable_workflows: false,
                enable_local_activities: false,
                enable_remote_activities: true,
                enable_nexus: false,
            })
            .graceful_shutdown_period(self.shutdown_grace)
            .versioning_strategy(WorkerVersioningStrategy::None {
                build_id: String::new(),
            })
            .build()
            .map_err(TemporalError::Worker)?;
        let core = Arc::new(
            init_worker(&runtime, config, connection)
                .map_err(|e| TemporalError::Worker(format!("{e:#}")))?,
        );
        core.validate().await.map_err(|e| {
            TemporalError::Worker(format!(
                "the server refused the worker (namespace {:?}): {e}",
                self.connect.namespace
            ))
        })?;

        // A runner per activity type, so failures are reported against its own retry policy.
        let activities: Activities = self
            .activities
            .into_iter()
            .map(|(name, activity)| {
                let transport = CoreTransport {
                    core: core.clone(),
                    retry: activity.options().retry,
                };
                let mut runner = AttemptRunner::new(transport).state(self.state.clone());
                for i in &self.interceptors {
                    runner = runner.shared_interceptor(i.clone());
                }
                (name, (activity, runner))
            })
            .collect();
        tracing::info!(
            address = %self.connect.address,
            namespace = %self.connect.namespace,
            task_queue = %self.task_queue,
            activities = ?activities.keys().collect::<Vec<_>>(),
            "Temporal worker started"
        );
        let running = Running::default();
        let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let join = tokio::spawn(poll(
            core.clone(),
            activities,
            running.clone(),
            self.shutdown_grace,
            polling.clone(),
        ));
        Ok(WorkerHandle {
            core,
            join,
            running,
            polling,
            _runtime: Arc::new(runtime),
        })
    }
}

/// A running Temporal worker, from [`Worker::spawn`].
pub struct WorkerHandle {
    core: Arc<CoreWorker>,
    join: tokio::task::JoinHandle<()>,
    running: Running,
    /// Cleared when the poll loop ends (shutdown, or a poll that failed).
    polling: Arc<std::sync::atomic::AtomicBool>,
    /// Core's runtime (telemetry), kept while the worker runs.
    _runtime: Arc<CoreRuntime>,
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle").finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// How many attempts this worker runs now. An attempt is forgotten once its outcome is
    /// reported, so a worker that runs for months holds nothing for the attempts it finished.
    pub fn running(&self) -> usize {
        lock(&self.running).len()
    }

    /// Whether the worker still polls for tasks: `false` once it stopped taking them, after
    /// [`shutdown`](Self::shutdown) or because polling failed (an unreachable server, a
    /// revoked API key; the error is logged, and running attempts get `shutdown_grace`, then
    /// are cancelled with [`CancelReason::WorkerShutdown`]).
    pub fn is_polling(&self) -> bool {
        self.polling.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops polling, lets running attempts finish within the worker's `shutdown_grace`, then
    /// cancels the rest with [`CancelReason::WorkerShutdown`] (their checkpoints flushed; the
    /// server retries them) and waits for every attempt to report.
    pub async fn shutdown(self) {
        self.core.initiate_shutdown();
        let _ = self.join.await;
    }
}

/// Takes an attempt out of the running map when its task ends, however it ends.
struct Forget {
    running: Running,
    token: Vec<u8>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.token);
    }
}

/// The registered activities by name, each with the runner its attempts run under.
type Activities = HashMap<&'static str, (Arc<dyn DynActivity>, AttemptRunner)>;

/// The running attempts by task token, for cancels to find them.
type Running = Arc<Mutex<HashMap<Vec<u8>, AttemptHandle>>>;

async fn poll(
    core: Arc<CoreWorker>,
    activities: Activities,
    running: Running,
    shutdown_grace: Duration,
    polling: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut attempts = tokio::task::JoinSet::new();
    loop {
        let task = match core.poll_activity_task().await {
            Ok(task) => task,
            Err(PollError::ShutDown) => break,
            Err(e) => {
                tracing::error!(error = %e, "polling Temporal for activity tasks failed; the worker stops");
                core.initiate_shutdown();
                // Core hands out its WorkerShutdown cancels through the poll that just failed:
                // cancel what still runs after the grace period here instead.
                let running = running.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(shutdown_grace).await;
                    for attempt in lock(&running).values() {
                        attempt.cancel(CancelReason::WorkerShutdown);
                    }
                });
                break;
            }
        };
        // Reap the attempts that ended.
        while attempts.try_join_next().is_some() {}
        match task.variant {
            Some(activity_task::Variant::Start(start)) => {
                let token = task.task_token;
                let Some((activity, runner)) = activities.get(start.activity_type.as_str()) else {
                    unknown_type(&core, token, &start, &activities).await;
                    continue;
                };
                let request = request_of(&token, start, activity.options());
                let attempt = activity.start(runner, request);
                lock(&running).insert(token.clone(), attempt.handle());
                let forget = Forget {
                    running: running.clone(),
                    token,
                };
                attempts.spawn(async move {
                    let _forget = forget;
                    attempt.run().await;
                });
            }
            Some(activity_task::Variant::Cancel(cancel)) => {
                let reason = match cancel.reason() {
                    ActivityCancelReason::Cancelled => CancelReason::Requested,
                    ActivityCancelReason::Paused => CancelReason::Paused,
                    ActivityCancelReason::WorkerShutdown => CancelReason::WorkerShutdown,
                    ActivityCancelReason::TimedOut => CancelReason::TimedOut,
                    // The server restarts the activity: this attempt reports a retryable
                    // `ActivityReset` failure, as the other SDKs do.
                    ActivityCancelReason::Reset => CancelReason::Reset,
                    ActivityCancelReason::NotFound => CancelReason::NotFound,
                };
                if let Some(handle) = lock(&running).get(&task.task_token) {
                    handle.cancel(reason);
                }
            }
            None => {}
        }
    }
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    // Shutting down: core cancels what still runs after the grace period; each reports.
    while attempts.join_next().await.is_some() {}
    core.shutdown().await;
    tracing::info!("Temporal worker stopped");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the runner needs for one attempt of an activity task.
fn request_of(token: &[u8], start: Start, options: crate::ActivityOptions) -> AttemptRequest {
    let mut options = options;
    // The server's heartbeat timeout governs (the caller set it); the pump's interval stays
    // within 0.8 of it, core's throttle.
    if let Some(ht) = start
        .heartbeat_timeout
        .as_ref()
        .and_then(|d| convert::duration(d.seconds, d.nanos))
    {
        options = options.heartbeat_timeout(ht);
    }
    let started = start
        .started_time
        .as_ref()
        .and_then(|t| convert::time(t.seconds, t.nanos));
    let scheduled = start
        .scheduled_time
        .as_ref()
        .and_then(|t| convert::time(t.seconds, t.nanos));
    let stc = start
        .start_to_close_timeout
        .as_ref()
        .and_then(|d| convert::duration(d.seconds, d.nanos));
    let s2c = start
        .schedule_to_close_timeout
        .as_ref()
        .and_then(|d| convert::duration(d.seconds, d.nanos));
    let deadline = [
        started.zip(stc).map(|(t, d)| t + d),
        scheduled.zip(s2c).map(|(t, d)| t + d),
    ]
    .into_iter()
    .flatten()
    .min();
    let details = start.heartbeat_details.into_iter().next().map(from_proto);
    AttemptRequest::new(
        start.activity_id,
        TaskToken::new(token.to_vec()),
        input_of(start.input),
    )
    .attempt(start.attempt.max(1))
    .details(details)
    .deadline(deadline)
    .options(options)
}

/// Fails a task whose activity type this worker does not run (retryable: another worker of
/// the task queue may).
async fn unknown_type(core: &CoreWorker, token: Vec<u8>, start: &Start, activities: &Activities) {
    let mut known: Vec<_> = activities.keys().copied().collect();
    known.sort_unstable();
    let error = ActivityError::retryable(
        "NotFoundError",
        format!(
            "activity type {:?} is not registered on this worker (it runs: {})",
            start.activity_type,
            known.join(", ")
        ),
    );
    tracing::warn!(activity_type = %start.activity_type, "activity task of an unregistered type");
    complete(
        core,
        token,
        ActivityExecutionResult::fail(failure_of(&error, None, false)),
    )
    .await;
}

async fn complete(core: &CoreWorker, token: Vec<u8>, result: ActivityExecutionResult) {
    let completion = ActivityTaskCompletion {
        task_token: token,
        result: Some(result),
    };
    if let Err(e) = core.complete_activity_task(completion).await {
        tracing::warn!(error = %e, "could not report an activity task's outcome to Temporal");
    }
}

/// Heartbeats and outcomes through temporalio-sdk-core. Cancels reach attempts as tasks of
/// their own (see [`poll`]), so a heartbeat's reply is always "carry on".
struct CoreTransport {
    core: Arc<CoreWorker>,
    /// The activity's retry policy: its `non_retryable` types are reported as such, since the
    /// caller's policy decides the retries on Temporal.
    retry: crate::RetryPolicy,
}

impl CoreTransport {
    fn record(&self, token: &TaskToken, details: Option<&Payload>) {
        self.core.record_activity_heartbeat(ActivityHeartbeat {
            task_token: token.as_bytes().to_vec(),
            details: details.map(to_proto).into_iter().collect(),
        });
    }
}

impl Transport for CoreTransport {
    fn heartbeat<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        self.record(token, details);
        Box::pin(std::future::ready(Ok(HeartbeatReply::ok())))
    }

    fn complete<'a>(
        &'a self,
        token: &'a TaskToken,
        output: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            complete(
                &self.core,
                token.as_bytes().to_vec(),
                ActivityExecutionResult::ok(to_proto(&output)),
            )
            .await;
            Ok(())
        })
    }

    fn fail<'a>(
        &'a self,
        token: &'a TaskToken,
        error: &'a ActivityError,
        last_details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            // Core attaches the last *recorded* details to a failure: record the final
            // checkpoint first.
            if last_details.is_some() {
                self.record(token, last_details);
            }
            let result = match error {
                // Core reports these itself (a retryable "WorkerShutdown" failure with the
                // last details) when told the attempt was cancelled.
                ActivityError::Cancelled {
                    reason: CancelReason::WorkerShutdown,
                    ..
                } => ActivityExecutionResult::cancel_from_details(last_details.map(to_proto)),
                e => ActivityExecutionResult::fail(failure_of(
                    e,
                    last_details,
                    !self.retry.may_retry(e),
                )),
            };
            complete(&self.core, token.as_bytes().to_vec(), result).await;
            Ok(())
        })
    }

    fn cancelled<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            if details.is_some() {
                self.record(token, details);
            }
            complete(
                &self.core,
                token.as_bytes().to_vec(),
                ActivityExecutionResult::cancel_from_details(details.map(to_proto)),
            )
            .await;
            Ok(())
        })
    }
}
