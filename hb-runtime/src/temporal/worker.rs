//! A Temporal worker running hb activities: polls activity tasks through temporalio-sdk-core,
//! runs each attempt under hb's runner (pump, checkpoints, cancellation), reports the outcome.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use temporalio_common::telemetry::TelemetryOptions;
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::worker::WorkerTaskTypes;
use temporalio_sdk_core::{
    CoreRuntime, RuntimeOptions, TunerHolder, WorkerConfig, WorkerVersioningStrategy, init_worker,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::poll::{self, PollFailure, Poller, Running, lock};
use super::transport::CoreTransport;
use super::{Temporal, TemporalError};
use crate::runner::AttemptRunner;
use crate::worker::Worker;

impl Worker<Temporal> {
    /// Polls `queue` (default [`DEFAULT_TASK_QUEUE`](super::DEFAULT_TASK_QUEUE), where the
    /// Temporal client starts activities that name no queue).
    pub fn task_queue(mut self, queue: impl Into<String>) -> Self {
        self.config.task_queue = Some(queue.into());
        self
    }

    /// Starts polling on the current tokio runtime.
    ///
    /// # Errors
    /// [`TemporalError::Config`] when the configuration is refused (no activity, one
    /// registered twice, a `#[state]` an activity takes that the worker was not given);
    /// [`TemporalError::Worker`] when the server refuses the worker (an unknown namespace).
    pub async fn spawn(self) -> Result<WorkerHandle, TemporalError> {
        let Worker {
            backend: temporal,
            config,
        } = self;
        config.check()?;
        let connect = &temporal.options;
        let task_queue = config
            .task_queue
            .clone()
            .unwrap_or_else(|| super::DEFAULT_TASK_QUEUE.to_owned());
        let connection = temporal.connection.clone();
        // Core's own metrics (`temporal_*`) go to the recorder hb's go to.
        let telemetry = TelemetryOptions::builder()
            .metrics(Arc::new(super::meter::FacadeMeter) as Arc<dyn CoreMeter>)
            .build();
        let runtime_options = RuntimeOptions::builder()
            .telemetry_options(telemetry)
            .build()
            .map_err(|e| TemporalError::Worker(e.to_string()))?;
        let runtime = CoreRuntime::new_assume_tokio(runtime_options)
            .map_err(|e| TemporalError::Worker(e.to_string()))?;
        let core_config = WorkerConfig::builder()
            .namespace(connect.namespace.clone())
            .task_queue(task_queue.clone())
            .tuner(Arc::new(TunerHolder::fixed_size(
                1,
                config.max_concurrent,
                1,
                1,
            )))
            .task_types(WorkerTaskTypes {
                enable_workflows: false,
                enable_local_activities: false,
                enable_remote_activities: true,
                enable_nexus: false,
            })
            .graceful_shutdown_period(config.shutdown_grace)
            .versioning_strategy(WorkerVersioningStrategy::None {
                build_id: String::new(),
            })
            .build()
            .map_err(TemporalError::Worker)?;
        let core = Arc::new(
            init_worker(&runtime, core_config, connection)
                .map_err(|e| TemporalError::Worker(format!("{e:#}")))?,
        );
        core.validate().await.map_err(|e| {
            TemporalError::Worker(format!(
                "the server refused the worker (namespace {:?}): {e}",
                connect.namespace
            ))
        })?;

        // A runner per activity type, so failures are reported against its own retry policy.
        let activities: poll::Activities = config
            .activities
            .into_iter()
            .map(|(name, activity)| {
                let transport = CoreTransport {
                    core: core.clone(),
                    retry: activity.options().retry,
                };
                let mut runner = AttemptRunner::new(transport)
                    .state(config.state.clone())
                    .metric_labels(vec![::metrics::Label::new(
                        "task_queue",
                        task_queue.clone(),
                    )]);
                for i in &config.interceptors {
                    runner = runner.shared_interceptor(i.clone());
                }
                (name, (activity, runner))
            })
            .collect();
        tracing::info!(
            address = %connect.address,
            namespace = %connect.namespace,
            task_queue = %task_queue,
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
            shutdown_grace: config.shutdown_grace,
            stop: stop.clone(),
            polling: polling.clone(),
        };
        let sampled = Arc::downgrade(&running);
        tokio::spawn(crate::metrics::sample_slots(
            task_queue.clone(),
            config.max_concurrent,
            move || sampled.upgrade().map(|r| lock(&r).len()),
            stop.clone(),
        ));
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
            namespace: connect.namespace.clone(),
            task_queue,
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
    /// use hb_runtime::temporal::{ConnectOptions, Temporal};
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    ///     Ok(n * 2)
    /// }
    ///
    /// # async fn ctrl_c() {}
    /// # async fn run() -> Result<(), hb_runtime::temporal::TemporalError> {
    /// let temporal = Temporal::connect(ConnectOptions::new("localhost:7233")).await?;
    /// let worker = temporal
    ///     .worker()
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
