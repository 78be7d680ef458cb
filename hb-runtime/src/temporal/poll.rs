//! The poll loop of a Temporal worker: takes activity tasks from core, starts and cancels
//! attempts, and stops the worker along its [`Lifecycle`] when its owner asks or polling
//! fails, then says which of the two it was.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::OptionFuture;
use temporalio_common::protos::coresdk::activity_result::ActivityExecutionResult;
use temporalio_common::protos::coresdk::activity_task::{
    ActivityCancelReason, ActivityTask, Start, activity_task,
};
use temporalio_sdk_core::PollError;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::convert::{self, failure_of, from_proto, input_of};
use super::lifecycle::{CORE_SHUTDOWN_BOUND, Effect, Ending, Lifecycle, Seen};
use super::transport::{CoreWorker, complete};
use crate::error::{ActivityError, CancelReason};
use crate::runner::{AttemptHandle, AttemptRequest, AttemptRunner, DynActivity};
use crate::transport::TaskToken;

/// The registered activities by name, each with the runner its attempts run under.
pub(crate) type Activities = HashMap<&'static str, (Arc<dyn DynActivity>, AttemptRunner)>;

/// The running attempts by task token, for cancels to find them.
pub(crate) type Running = Arc<Mutex<HashMap<Vec<u8>, AttemptHandle>>>;

/// A poll error core does not retry, which stopped the worker.
#[derive(Clone, Debug)]
pub(crate) struct PollFailure {
    /// The gRPC status code (`NotFound`, `PermissionDenied`, ...).
    pub(crate) code: String,
    /// The server's message.
    pub(crate) message: String,
}

/// What the poll loop runs on.
pub(crate) struct Poller {
    pub(crate) core: Arc<CoreWorker>,
    pub(crate) activities: Activities,
    pub(crate) running: Running,
    pub(crate) shutdown_grace: Duration,
    /// Cancelled when the owner asks the worker to stop.
    pub(crate) stop: CancellationToken,
    /// Cleared once the worker stops taking tasks.
    pub(crate) polling: Arc<AtomicBool>,
}

/// Polls until the worker is asked to stop or polling fails for good, then stops it: running
/// attempts get the grace, are cancelled with [`CancelReason::WorkerShutdown`] (their
/// checkpoints flushed) and report; core shuts down. Every wait is bounded (see
/// [`Lifecycle`]). Returns the poll error that stopped the worker, if one did.
pub(crate) async fn run(poller: Poller) -> Result<(), PollFailure> {
    let Poller {
        core,
        activities,
        running,
        shutdown_grace,
        stop,
        polling,
    } = poller;
    let cancel_grace = activities
        .values()
        .map(|(activity, _)| activity.options().cancel_grace)
        .max()
        .unwrap_or_default();
    let mut lifecycle = Lifecycle::new(shutdown_grace, cancel_grace);
    let mut seen = Seen::default();
    let mut failure: Option<PollFailure> = None;
    // Whether the owner asked the worker to stop (then a failed poll is not an error of it).
    let mut requested = false;
    let mut attempts = JoinSet::new();
    // Kept across loop turns (not made anew in `select!`), so a task core hands out is never
    // dropped with an unfinished poll.
    let mut poll = Box::pin(core.poll_activity_task());
    // Core's shutdown, once every attempt reported. It returns only after a poll saw the end
    // of core's task stream, so the loop keeps polling meanwhile.
    let mut core_shutdown = OptionFuture::from(None);
    let mut wake: Option<Instant> = None;
    let ending = 'run: loop {
        tokio::select! {
            biased;
            () = stop.cancelled(), if !seen.stop => {
                seen.stop = true;
                requested = true;
            }
            () = sleep_until(wake), if wake.is_some() => {}
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            Some(()) = &mut core_shutdown, if !seen.core_down => seen.core_down = true,
            polled = &mut poll, if !seen.poll_ended => {
                match polled {
                    Ok(task) => {
                        let cancel_at_once = lifecycle.cancels_new_attempts();
                        dispatch(&core, task, &activities, &running, &mut attempts, cancel_at_once);
                    }
                    Err(PollError::ShutDown) => seen.poll_ended = true,
                    Err(PollError::TonicError(status)) => {
                        let code = format!("{:?}", status.code());
                        // The first error of a worker that was not asked to stop is what
                        // stopped it; the owner hears of it once, from `wait`.
                        if failure.is_none() && !requested {
                            tracing::error!(
                                code = %code,
                                message = %status.message(),
                                "polling Temporal for activity tasks failed with an error that is not retried; the worker stops"
                            );
                            failure = Some(PollFailure {
                                code,
                                message: status.message().to_owned(),
                            });
                        } else {
                            tracing::debug!(code = %code, "a poll failed while the worker stops");
                        }
                        seen.stop = true;
                    }
                }
                if !seen.poll_ended {
                    poll = Box::pin(core.poll_activity_task());
                }
            }
        }
        while attempts.try_join_next().is_some() {}
        seen.running = attempts.len();
        let (effects, next) = lifecycle.step(Instant::now(), seen);
        wake = next;
        for effect in effects {
            match effect {
                Effect::BeginShutdown => {
                    polling.store(false, Ordering::Relaxed);
                    core.initiate_shutdown();
                    tracing::info!(
                        running = seen.running,
                        grace = ?shutdown_grace,
                        "Temporal worker stopping"
                    );
                }
                Effect::CancelRunning => {
                    for attempt in lock(&running).values() {
                        attempt.cancel(CancelReason::WorkerShutdown);
                    }
                }
                Effect::ShutDownCore => {
                    core_shutdown = Some(Box::pin(core.shutdown())).into();
                }
                Effect::End(ending) => break 'run ending,
            }
        }
    };
    match ending {
        Ending::Clean => tracing::info!("Temporal worker stopped"),
        Ending::AttemptsAbandoned(n) => tracing::warn!(
            attempts = n,
            "Temporal worker stopped with attempts that did not report in time; they are \
             dropped, and the server retries them from their last recorded checkpoint"
        ),
        Ending::CoreAbandoned => tracing::warn!(
            bound = ?CORE_SHUTDOWN_BOUND,
            "Temporal worker stopped; core did not finish shutting down in time (a poll never \
             returned) and is dropped"
        ),
    }
    match failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts an attempt for a start task, or cancels one for a cancel task.
fn dispatch(
    core: &Arc<CoreWorker>,
    task: ActivityTask,
    activities: &Activities,
    running: &Running,
    attempts: &mut JoinSet<()>,
    cancel_at_once: bool,
) {
    match task.variant {
        Some(activity_task::Variant::Start(start)) => {
            let token = task.task_token;
            let Some((activity, runner)) = activities.get(start.activity_type.as_str()) else {
                let fail = unknown_type(&start, activities);
                let core = core.clone();
                attempts.spawn(async move { complete(&core, token, fail).await });
                return;
            };
            let scheduled = start
                .scheduled_time
                .as_ref()
                .and_then(|t| convert::time(t.seconds, t.nanos));
            let request = request_of(&token, start, activity.options());
            let attempt = activity.start(runner, request);
            let metrics = attempt.metrics();
            let handle = attempt.handle();
            lock(running).insert(token.clone(), handle.clone());
            let forget = Forget {
                running: running.clone(),
                token,
            };
            attempts.spawn(async move {
                let _forget = forget;
                let outcome = attempt.run().await;
                if let (Ok(_), Some(scheduled)) = (&outcome.result, scheduled) {
                    metrics.succeeded_since(scheduled);
                }
            });
            if cancel_at_once {
                // The worker is past its grace: the server retries the task elsewhere, from
                // the checkpoint it started with.
                handle.cancel(CancelReason::WorkerShutdown);
            }
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
            if let Some(handle) = lock(running).get(&task.task_token) {
                handle.cancel(reason);
            }
        }
        None => {}
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        // A server's value too far out to add is no deadline.
        started.zip(stc).and_then(|(t, d)| t.checked_add(d)),
        scheduled.zip(s2c).and_then(|(t, d)| t.checked_add(d)),
    ]
    .into_iter()
    .flatten()
    .min();
    let details = start.heartbeat_details.into_iter().next().map(from_proto);
    // Both times are the server's.
    let waited = start
        .current_attempt_scheduled_time
        .as_ref()
        .and_then(|t| convert::time(t.seconds, t.nanos))
        .zip(started)
        .and_then(|(scheduled, started)| started.duration_since(scheduled).ok());
    AttemptRequest::new(
        start.activity_id,
        TaskToken::new(token.to_vec()),
        input_of(start.input),
    )
    .attempt(start.attempt.max(1))
    .details(details)
    .deadline(deadline)
    .options(options)
    .schedule_to_start(waited)
}

/// The failure of a task whose activity type this worker does not run (retryable: another
/// worker of the task queue may).
fn unknown_type(start: &Start, activities: &Activities) -> ActivityExecutionResult {
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
    ActivityExecutionResult::fail(failure_of(&error, None, false))
}
