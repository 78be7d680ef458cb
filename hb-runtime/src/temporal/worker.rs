//! A Temporal worker running hb activities: polls activity tasks through temporalio-sdk-core,
//! runs each attempt under hb's runner (pump, checkpoints, cancellation), reports the outcome.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use temporalio_common::worker::WorkerTaskTypes;
use temporalio_sdk_core::{
    CoreRuntime, RuntimeOptions, TunerHolder, WorkerConfig, WorkerVersioningStrategy, init_worker,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::poll::{self, PollFailure, Poller, Running, lock};
use super::transport::CoreTransport;
use super::{ConnectOptions, TemporalError};
use crate::definition::{Activity, IntoActivity};
use crate::intercept::Interceptor;
use crate::runner::{AttemptRunner, DynActivity};
use crate::state::StateMap;

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

    /// How long a stopping worker ([`WorkerHandle::shutdown`], or a poll that failed for
    /// good) lets running attempts finish before they are cancelled with
    /// [`CancelReason::WorkerShutdown`](crate::CancelReason::WorkerShutdown) (default 10 s).
    /// The server retries them, from their last checkpoint.
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
        let activities: poll::Activities = self
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
        let polling = Arc::new(AtomicBool::new(true));
        let stop = CancellationToken::new();
        let (ended_tx, ended) = watch::channel(None);
        let poller = Poller {
            core,
            activities,
            running: running.clone(),
            shutdown_grace: self.shutdown_grace,
            stop: stop.clone(),
            polling: polling.clone(),
        };
        let not_polling = NotPolling(polling.clone());
        let runtime = Arc::new(runtime);
        let keep_runtime = runtime.clone();
        tokio::spawn(async move {
            let _not_polling = not_polling;
            let _runtime = keep_runtime;
            let ended = poll::run(poller).await;
            ended_tx.send_replace(Some(ended));
        });
        Ok(WorkerHandle {
            namespace: self.connect.namespace,
            task_queue: self.task_queue,
            stop,
            ended,
            running,
            polling,
            _runtime: runtime,
        })
    }
}

/// Clears `polling` when the poll task ends, however it ends.
struct NotPolling(Arc<AtomicBool>);

impl Drop for NotPolling {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A running Temporal worker, from [`Worker::spawn`].
///
/// The worker runs until [`shutdown`](Self::shutdown), or until polling fails with an error
/// the server will not get over (the namespace was deleted, the API key lost its permission):
/// then it stops by itself, as a shutdown would, and [`wait`](Self::wait) hands the error to
/// its owner. Dropping the handle leaves the worker running.
pub struct WorkerHandle {
    namespace: String,
    task_queue: String,
    /// Cancelled to ask the poll loop to stop.
    stop: CancellationToken,
    /// How the worker ended, once it has.
    ended: watch::Receiver<Option<Result<(), PollFailure>>>,
    running: Running,
    /// Cleared once the worker stops taking tasks (shutdown, or a poll that failed).
    polling: Arc<AtomicBool>,
    /// Core's runtime (telemetry), kept while the worker runs.
    _runtime: Arc<CoreRuntime>,
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("namespace", &self.namespace)
            .field("task_queue", &self.task_queue)
            .field("polling", &self.is_polling())
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// How many attempts this worker runs now. An attempt is forgotten once its outcome is
    /// reported, so a worker that runs for months holds nothing for the attempts it finished.
    pub fn running(&self) -> usize {
        lock(&self.running).len()
    }

    /// Whether the worker still polls for tasks: `false` once it stopped taking them, after
    /// [`shutdown`](Self::shutdown) or because polling failed (see [`wait`](Self::wait)).
    pub fn is_polling(&self) -> bool {
        self.polling.load(Ordering::Relaxed)
    }

    /// Waits until the worker has ended: `Ok(())` after a [`shutdown`](Self::shutdown),
    /// [`TemporalError::Poll`] when it stopped because polling failed with an error the server
    /// will not get over (a deleted namespace, a revoked API key). Either way its attempts
    /// were given the worker's `shutdown_grace`, then cancelled with
    /// [`CancelReason::WorkerShutdown`](crate::CancelReason::WorkerShutdown) (their
    /// checkpoints flushed, so the server retries them from there), and core was shut down.
    ///
    /// An unreachable server is not such an error: the worker keeps polling and reconnects.
    /// `wait` takes `&self` and may be called again (or from several tasks); dropping its
    /// future does not stop the worker. A worker process serves until either comes first,
    /// the worker's end or Ctrl-C:
    ///
    /// ```no_run
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::temporal::{ConnectOptions, Worker};
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    ///     Ok(n * 2)
    /// }
    ///
    /// # async fn ctrl_c() {}
    /// # async fn run() -> Result<(), hb_runtime::temporal::TemporalError> {
    /// let worker = Worker::new(ConnectOptions::new("http://localhost:7233"), "hb-tasks")
    ///     .register(double)
    ///     .spawn()
    ///     .await?;
    /// tokio::select! {
    ///     // Polling failed for good (e.g. the namespace was deleted): the worker has
    ///     // stopped; exit with its error.
    ///     ended = worker.wait() => ended?,
    ///     // (`tokio::signal::ctrl_c()` in a real program)
    ///     () = ctrl_c() => worker.shutdown().await,
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`TemporalError::Poll`] with the poll error (its gRPC code and message), the
    /// namespace and the task queue; [`TemporalError::Worker`] if the worker's task
    /// panicked.
    pub async fn wait(&self) -> Result<(), TemporalError> {
        let mut ended = self.ended.clone();
        let outcome = match ended.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(failure)) => Err(TemporalError::Poll {
                namespace: self.namespace.clone(),
                task_queue: self.task_queue.clone(),
                code: failure.code,
                message: failure.message,
            }),
            None => Err(TemporalError::Worker(
                "the worker's poll task ended without saying how (it panicked)".to_owned(),
            )),
        }
    }

    /// Stops polling, lets running attempts finish within the worker's `shutdown_grace`, then
    /// cancels the rest with
    /// [`CancelReason::WorkerShutdown`](crate::CancelReason::WorkerShutdown) (their
    /// checkpoints flushed; the server retries them) and waits for every attempt to report
    /// and for core to shut down.
    ///
    /// It returns in every case, within the grace plus the activities' longest `cancel_grace`
    /// and a few seconds: an attempt that cannot report by then (its body blocks its thread,
    /// or the server does not answer) is dropped, and so is a core whose last poll never
    /// returns (a warning says which). Calling it again, or after the worker stopped by
    /// itself, just waits for the end. How the worker ended: [`wait`](Self::wait).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let _ = self.wait().await;
    }
}
