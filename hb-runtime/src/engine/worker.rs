//! The engine's workers: [`Worker::spawn`] polls the engine for attempts and runs them under
//! a concurrency limit, with a graceful shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, EngineTransport};
use crate::error::CancelReason;
use crate::runner::{AttemptHandle, AttemptRequest, AttemptRunner, DynActivity};
use crate::worker::Worker;

impl Worker<Engine> {
    /// Starts polling for attempts on the current tokio runtime.
    ///
    /// # Errors
    /// [`EngineError::Config`] when the configuration is refused (no activity, one registered
    /// twice, a `#[state]` an activity takes that the worker was not given);
    /// [`EngineError::Closed`] after [`Engine::close`](super::Engine::close).
    pub async fn spawn(self) -> Result<WorkerHandle, EngineError> {
        let Worker {
            backend: engine,
            config,
        } = self;
        config.check()?;
        let mut runner =
            AttemptRunner::new(EngineTransport(engine.inner.clone())).state(config.state);
        for i in config.interceptors {
            runner = runner.shared_interceptor(i);
        }
        if engine.inner.stop.is_cancelled() {
            return Err(EngineError::Closed);
        }
        // Closing the engine shuts its workers down too.
        let stop = engine.inner.stop.child_token();
        let workers = engine.inner.workers.clone();
        let join = workers.spawn(poll(
            engine,
            config.activities,
            runner,
            config.max_concurrent,
            stop.clone(),
            config.shutdown_grace,
        ));
        Ok(WorkerHandle { stop, join })
    }
}

/// A running worker, from [`Worker::spawn`]. Dropping the handle leaves the worker running (it
/// holds the engine, and a file engine's lock, until its runtime ends): call
/// [`shutdown`](Self::shutdown) to stop it.
///
/// ```
/// use hb_runtime::client::StartOptions;
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
/// let worker = engine.worker().register(double).spawn().await?;
/// assert_eq!(client.start(double, 1, StartOptions::id("a")).await?.result().await?, 2);
/// worker.shutdown().await;
///
/// // Started with no worker: it waits for the next one.
/// let later = client.start(double, 2, StartOptions::id("b")).await?;
/// let _worker = engine.worker().register(double).spawn().await?;
/// assert_eq!(later.result().await?, 4);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WorkerHandle {
    stop: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops taking attempts, lets running ones finish within the worker's `shutdown_grace`,
    /// then cancels the rest with [`CancelReason::WorkerShutdown`] and waits for them to report
    /// (their last checkpoints flushed). The wait is bounded: a cancelled body gets its
    /// activity's `cancel_grace` (`cancel = "cooperative"`, the default) and is then dropped,
    /// so shutdown takes at most `shutdown_grace` + the longest `cancel_grace` — unless a body
    /// blocks its executor thread outright (run such code with `ctx.run_blocking`, whose
    /// closure is abandoned, not waited for).
    ///
    /// A shutdown consumes the attempt it interrupts, like Temporal's: the retry follows at
    /// once (no backoff), resumes from the flushed checkpoint, and counts against
    /// `max_attempts`.
    ///
    /// ```
    /// use hb_runtime::client::{ActivityFailure, ActivityStatus, StartOptions};
    /// use hb_runtime::engine::Engine;
    /// use hb_runtime::prelude::*;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tokio::sync::Notify;
    ///
    /// /// Saves step 1, then waits; a retry resumes from step 1 and returns it.
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn resumable(
    ///     ctx: ActivityContext,
    ///     #[state] started: Arc<Notify>,
    ///     #[checkpoint] mut step: u64,
    /// ) -> Result<u64, ActivityError> {
    ///     if step == 0 {
    ///         step = 1;
    ///         ctx.checkpoint(&step)?;
    ///         started.notify_one();
    ///         std::future::pending::<()>().await; // until the shutdown drops this attempt
    ///     }
    ///     Ok(step)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let started = Arc::new(Notify::new());
    /// let worker = engine
    ///     .worker()
    ///     .register(resumable)
    ///     .state(started.clone())
    ///     .shutdown_grace(Duration::from_millis(20))
    ///     .spawn().await?;
    /// let handle = engine.client().start(resumable, (), StartOptions::id("r")).await?;
    /// started.notified().await;
    /// worker.shutdown().await; // 20 ms of grace, then the attempt is cancelled
    ///
    /// let d = handle.describe().await?;
    /// assert_eq!(d.status, ActivityStatus::Scheduled); // the retry is due at once
    /// let Some(ActivityFailure::Application { error_type, .. }) = d.last_failure else {
    ///     panic!("expected the attempt's failure");
    /// };
    /// assert_eq!(error_type, "WorkerShutdown");
    ///
    /// // The next worker resumes it from the flushed checkpoint.
    /// let _worker = engine.worker().register(resumable).state(started).spawn().await?;
    /// assert_eq!(handle.result().await?, 1);
    /// assert_eq!(handle.describe().await?.attempt, 2);
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.join.await;
    }
}

async fn poll(
    engine: Engine,
    activities: HashMap<&'static str, Arc<dyn DynActivity>>,
    runner: AttemptRunner,
    max_concurrent: usize,
    stop: CancellationToken,
    grace: Duration,
) {
    // Tags the attempts this worker runs in the engine (which holds their handles), for the
    // shutdown to find them.
    static NEXT_WORKER: AtomicU32 = AtomicU32::new(1);
    let worker = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
    // Tried in turn from the one after the type taken last, so a flood of one type does not
    // starve the others.
    let mut types: Vec<&str> = activities.keys().copied().collect();
    // A permit per running attempt: all of them back means none is running.
    let permits = Arc::new(tokio::sync::Semaphore::new(max_concurrent));
    let mut names = types.clone();
    names.sort_unstable();
    let sampled = Arc::downgrade(&permits);
    tokio::spawn(crate::metrics::sample_slots(
        names.join(","),
        max_concurrent,
        move || {
            sampled
                .upgrade()
                .map(|p| max_concurrent.saturating_sub(p.available_permits()))
        },
        stop.clone(),
    ));
    let inner = engine.inner.clone();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.cancelled() => break,
        };
        let task = loop {
            let notified = inner.ready.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let task = inner.change(|core, fx| core.take(&types, fx));
            if let Some(t) = task {
                if let Some(i) = types.iter().position(|n| *n == &*t.activity_type) {
                    types.rotate_left(i + 1);
                }
                break Some(t);
            }
            tokio::select! {
                _ = notified => {}
                _ = stop.cancelled() => break None,
            }
        };
        let Some(task) = task else { break };
        let Some(activity) = activities.get(&*task.activity_type) else {
            continue;
        };
        let options = task.options.apply_to(activity.options());
        let request = AttemptRequest::new(task.id.to_string(), task.token, task.input)
            .attempt(task.number)
            .details(task.details)
            .deadline(task.deadline)
            .options(options)
            .schedule_to_start(Some(task.waited));
        let attempt = activity.start(&runner, request);
        let handle = attempt.handle();
        inner.change(|core, fx| core.attach(&task.id, task.attempt, &handle, worker, fx));
        attempt.spawn_holding(permit);
    }
    // Shutdown: a grace period for running attempts, then WorkerShutdown for the rest.
    let all = u32::try_from(max_concurrent).unwrap_or(u32::MAX);
    if permits.available_permits() < max_concurrent {
        let drained = tokio::time::timeout(grace, permits.acquire_many(all)).await;
        if drained.is_err() {
            let handles: Vec<AttemptHandle> = inner.lock().handles_of(worker);
            tracing::info!(
                attempts = handles.len(),
                "worker shutdown: cancelling attempts still running after the grace period"
            );
            for h in handles {
                h.cancel(CancelReason::WorkerShutdown);
            }
            let _ = permits.acquire_many(all).await;
        }
    }
}
