//! Cancellation: `abort` (the default) drops the body at its next await and reports
//! `Cancelled` with the last checkpoint; `cooperative` lets the body see `cancelled()` and
//! finish within `cancel_grace`, after which it is dropped; a pushed cancel needs no heartbeat;
//! a pause is a retryable stop, not a cancellation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hb_runtime::Payload;
use hb_runtime::backend::Pump;
use hb_runtime::backend::{AttemptRequest, AttemptRunner};
use hb_runtime::backend::{HeartbeatReply, TaskToken};
use hb_runtime::checkpoint::decode_payload;
use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use hb_runtime::testing::{MemoryTransport, RecordedCall};

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Step {
    #[checkpoint(done)]
    n: u64,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Sets its flag when dropped.
struct DropFlag(&'static AtomicBool);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

static ABORT_DROPPED: AtomicBool = AtomicBool::new(false);
static ABORT_LAST_STEP: AtomicU64 = AtomicU64::new(0);

/// Checkpoints step n at n - 0.5 s, forever.
#[activity(heartbeat_timeout = "10s")]
async fn endless(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<(), ActivityError> {
    let _guard = DropFlag(&ABORT_DROPPED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        s.n += 1;
        ctx.checkpoint(&s)?;
        ABORT_LAST_STEP.store(s.n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Stopped {
    at_step: u64,
    reason: Option<String>,
    was_cancelled_before: bool,
    reason_before: Option<String>,
    is_cancelled_after: bool,
}

/// Works a step a second until cancelled, then spends `cleanup_secs` cleaning up and returns
/// its own summary.
#[activity(heartbeat_timeout = "10s", cancel = "cooperative", cancel_grace = "5s")]
async fn cooperative(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    cleanup_secs: u64,
) -> Result<Stopped, ActivityError> {
    let was_cancelled_before = ctx.is_cancelled();
    let reason_before = shown(ctx.cancel_reason());
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        s.n += 1;
        ctx.checkpoint(&s)?;
        tokio::select! {
            _ = ctx.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    // Resolves at once now.
    ctx.cancelled().await;
    tokio::time::sleep(Duration::from_secs(cleanup_secs)).await;
    Ok(Stopped {
        at_step: s.n,
        reason: shown(ctx.cancel_reason()),
        was_cancelled_before,
        reason_before,
        is_cancelled_after: ctx.is_cancelled(),
    })
}

/// The same without any flags, for tests that do not look at them.
#[activity(heartbeat_timeout = "10s")]
async fn endless_plain(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<(), ActivityError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        s.n += 1;
        ctx.checkpoint(&s)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

static SLEEPER_DROPPED: AtomicBool = AtomicBool::new(false);
static SLEEPER_WOKE: AtomicBool = AtomicBool::new(false);

/// Sleeps an hour (abort mode).
#[activity(heartbeat_timeout = "10s")]
async fn sleeper(_ctx: ActivityContext, _input: ()) -> Result<(), ActivityError> {
    let _guard = DropFlag(&SLEEPER_DROPPED);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    SLEEPER_WOKE.store(true, Ordering::SeqCst);
    Ok(())
}

static STUBBORN_DROPPED: AtomicBool = AtomicBool::new(false);

/// Cooperative, but ignores the cancel and keeps checkpointing.
#[activity(heartbeat_timeout = "10s", cancel = "cooperative", cancel_grace = "5s")]
async fn stubborn(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<(), ActivityError> {
    let _guard = DropFlag(&STUBBORN_DROPPED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        s.n += 1;
        ctx.checkpoint(&s)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits for the cancel and reports when it saw it.
#[activity(heartbeat_timeout = "10s", cancel = "cooperative")]
async fn waits_for_cancel(
    ctx: ActivityContext,
    _input: (),
) -> Result<Option<String>, ActivityError> {
    ctx.cancelled().await;
    Ok(shown(ctx.cancel_reason()))
}

/// Waits for the cancel in a task of its own (a context clone), and in the body at once.
#[activity(heartbeat_timeout = "10s", cancel = "cooperative")]
async fn waits_in_a_child_task(ctx: ActivityContext, _input: ()) -> Result<String, ActivityError> {
    let child = ctx.clone();
    let task = tokio::spawn(async move {
        child.cancelled().await;
        "child saw it"
    });
    ctx.cancelled().await;
    let seen = task.await.expect("the child task ends");
    // Resolves at once when already cancelled, wherever it is awaited.
    ctx.cancelled().await;
    tokio::spawn(async move { ctx.cancelled().await })
        .await
        .expect("the second child ends");
    Ok(seen.to_string())
}

/// A cancel reason as a body reports it (`CancelReason` is not serialisable).
fn shown(reason: Option<CancelReason>) -> Option<String> {
    reason.map(|r| r.to_string())
}

fn decoded(details: &Option<Payload>) -> Option<Step> {
    details.as_ref().map(|p| decode_payload::<Step>(p).unwrap())
}

#[tokio::test(start_paused = true)]
async fn abort_drops_the_body_at_its_next_await_and_reports_cancelled_with_the_last_checkpoint() {
    let run = ActivityEnvironment::new()
        .cancel_after_heartbeats(2)
        .run(endless, ())
        .await;

    // The second heartbeat (10 s) carried the reply; the body was sleeping and never woke.
    assert_eq!(run.elapsed, secs(10.0));
    assert!(ABORT_DROPPED.load(Ordering::SeqCst), "the body's Drop ran");
    assert_eq!(ABORT_LAST_STEP.load(Ordering::SeqCst), 10);
    assert_eq!(run.cancel_reason, Some(CancelReason::Requested));
    assert!(!run.timed_out);
    match run.result.as_ref().unwrap_err() {
        e @ ActivityError::Cancelled { reason, details } => {
            assert_eq!(*reason, CancelReason::Requested);
            assert_eq!(decoded(details), Some(Step { n: 10 }));
            assert!(!e.is_retryable(), "a requested cancel is final");
            assert!(e.is_cancelled());
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    match run.calls.last() {
        Some(RecordedCall::Cancelled { details, .. }) => {
            assert_eq!(decoded(details), Some(Step { n: 10 }))
        }
        other => panic!("expected a cancellation report, got {other:?}"),
    }
    assert_eq!(
        run.heartbeats.len(),
        2,
        "nothing new to flush after the 10 s heartbeat"
    );
}

#[tokio::test(start_paused = true)]
async fn cooperative_body_sees_the_cancel_and_returns_its_own_value_within_the_grace() {
    let run = ActivityEnvironment::new()
        .cancel_after_heartbeats(2)
        .run(cooperative, 2)
        .await;
    assert_eq!(
        run.result.unwrap(),
        Stopped {
            at_step: 10,
            reason: shown(Some(CancelReason::Requested)),
            was_cancelled_before: false,
            reason_before: None,
            is_cancelled_after: true,
        }
    );
    // Cancelled at 10 s, two seconds of cleanup.
    assert_eq!(run.elapsed, secs(12.0));
    assert_eq!(run.cancel_reason, Some(CancelReason::Requested));
    assert!(matches!(
        run.calls.last(),
        Some(RecordedCall::Completed { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn cooperative_body_past_its_grace_is_dropped_and_cancelled() {
    let run = ActivityEnvironment::new()
        .cancel_after_heartbeats(2)
        .run(stubborn, ())
        .await;
    // Cancelled at 10 s, dropped when the 5 s grace ran out.
    assert_eq!(run.elapsed, secs(15.0));
    assert!(STUBBORN_DROPPED.load(Ordering::SeqCst));
    match run.result.as_ref().unwrap_err() {
        ActivityError::Cancelled { reason, details } => {
            assert_eq!(*reason, CancelReason::Requested);
            // What it checkpointed during the grace counts: step 15 at 14.5 s.
            assert_eq!(decoded(details), Some(Step { n: 15 }));
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert_eq!(run.last_checkpoint, Some(Step { n: 15 }));
    // The backend got the grace-period progress too.
    assert_eq!(
        run.heartbeats.last().and_then(|h| h.checkpoint.clone()),
        Some(Step { n: 15 })
    );
}

#[tokio::test(start_paused = true)]
async fn cooperative_body_overrunning_a_longer_cleanup_is_dropped() {
    // Ten seconds of cleanup against a five-second grace.
    let run = ActivityEnvironment::new()
        .cancel_after_heartbeats(1)
        .run(cooperative, 10)
        .await;
    assert_eq!(run.elapsed, secs(10.0));
    assert!(run.result.unwrap_err().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_pushed_cancel_reaches_the_body_without_waiting_for_a_heartbeat() {
    let run = ActivityEnvironment::new()
        .cancel_at(Duration::from_millis(2_500))
        .run(waits_for_cancel, ())
        .await;
    assert_eq!(run.result.unwrap(), shown(Some(CancelReason::Requested)));
    assert_eq!(run.elapsed, secs(2.5));
    assert!(
        run.heartbeats.is_empty(),
        "the first heartbeat would be at 5 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_context_cloned_into_another_task_sees_the_cancel_there_too() {
    let run = ActivityEnvironment::new()
        .cancel_at(Duration::from_millis(1_500))
        .run(waits_in_a_child_task, ())
        .await;
    assert_eq!(run.result.unwrap(), "child saw it");
    assert_eq!(run.elapsed, secs(1.5));
}

#[tokio::test(start_paused = true)]
async fn a_pushed_cancel_aborts_a_sleeping_body_at_once() {
    let run = ActivityEnvironment::new()
        .cancel_at(Duration::from_millis(3_200))
        .run(sleeper, ())
        .await;
    assert_eq!(run.elapsed, secs(3.2));
    assert_eq!(run.cancel_reason, Some(CancelReason::Requested));
    assert!(run.result.unwrap_err().is_cancelled());
    assert!(SLEEPER_DROPPED.load(Ordering::SeqCst));
    assert!(!SLEEPER_WOKE.load(Ordering::SeqCst));
    assert!(matches!(
        run.calls.last(),
        Some(RecordedCall::Cancelled { details: None, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_pause_stops_the_attempt_as_a_retryable_failure_not_a_cancellation() {
    let run = ActivityEnvironment::new()
        .pause_after_heartbeats(1)
        .run(endless_plain, ())
        .await;
    assert_eq!(run.elapsed, secs(5.0));
    assert_eq!(run.cancel_reason, Some(CancelReason::Paused));
    let err = run.result.as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            ActivityError::Cancelled {
                reason: CancelReason::Paused,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.is_retryable(),
        "a paused activity is retried once unpaused"
    );
    // Temporal refuses "cancelled" for an activity that was not asked to cancel: a pause is
    // reported as a failure carrying the last checkpoint.
    match run.calls.last() {
        Some(RecordedCall::Failed { last_details, .. }) => {
            assert_eq!(decoded(last_details), Some(Step { n: 5 }))
        }
        other => panic!("expected a failure report, got {other:?}"),
    }
    assert!(
        !run.calls
            .iter()
            .any(|c| matches!(c, RecordedCall::Cancelled { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn reply_flags_map_to_cancel_reasons() {
    for (reply, reason) in [
        (HeartbeatReply::cancel(), CancelReason::Requested),
        (HeartbeatReply::pause(), CancelReason::Paused),
        (HeartbeatReply::timed_out(), CancelReason::TimedOut),
        (HeartbeatReply::not_found(), CancelReason::NotFound),
    ] {
        let run = ActivityEnvironment::new()
            .reply_from(1, reply)
            .run(waits_for_cancel, ())
            .await;
        assert_eq!(run.result.unwrap(), shown(Some(reason)), "{reply:?}");
        assert_eq!(run.cancel_reason, Some(reason));
        assert_eq!(run.elapsed, secs(5.0));
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_reason_wins() {
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone()).pump(Pump::on_current_runtime());
    let request = AttemptRequest::new(
        "first-wins",
        TaskToken::new(*b"fw"),
        Payload::json(&()).unwrap(),
    );
    let running = runner.start(&waits_for_cancel(), request);
    let handle = running.handle();
    handle.cancel(CancelReason::WorkerShutdown);
    handle.cancel(CancelReason::Requested);
    let outcome = running.run().await;
    assert_eq!(outcome.cancel_reason, Some(CancelReason::WorkerShutdown));
    assert_eq!(
        outcome.result.unwrap().decode::<Option<String>>().unwrap(),
        shown(Some(CancelReason::WorkerShutdown))
    );
}

#[tokio::test(start_paused = true)]
async fn worker_shutdown_aborts_with_a_retryable_failure_carrying_the_checkpoint() {
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone()).pump(Pump::on_current_runtime());
    let request = AttemptRequest::new(
        "shutdown",
        TaskToken::new(*b"sd"),
        Payload::json(&()).unwrap(),
    );
    let running = runner.start(&endless_plain(), request);
    let handle = running.handle();
    let attempt = tokio::spawn(running.into_future());
    tokio::time::sleep(secs(3.0)).await;
    handle.cancel(CancelReason::WorkerShutdown);
    let outcome = attempt.await.unwrap();

    assert_eq!(outcome.cancel_reason, Some(CancelReason::WorkerShutdown));
    let err = outcome.result.unwrap_err();
    assert!(matches!(
        err,
        ActivityError::Cancelled {
            reason: CancelReason::WorkerShutdown,
            ..
        }
    ));
    assert!(err.is_retryable());
    assert_eq!(decoded(&outcome.details), Some(Step { n: 3 }));
    match transport.calls().last() {
        Some(RecordedCall::Failed { last_details, .. }) => {
            assert_eq!(decoded(last_details), Some(Step { n: 3 }))
        }
        other => panic!("expected a failure report, got {other:?}"),
    }
    assert!(handle.context().is_cancelled());
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct AfterFlush {
    cancelled: bool,
    reason: Option<String>,
}

/// Flushes at 1 s and reports what the reply told it.
#[activity(heartbeat_timeout = "10s", cancel = "cooperative")]
async fn flush_then_look(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<AfterFlush, ActivityError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.n = 1;
    ctx.checkpoint(&s)?;
    ctx.flush().await?;
    Ok(AfterFlush {
        cancelled: ctx.is_cancelled(),
        reason: shown(ctx.cancel_reason()),
    })
}

#[tokio::test(start_paused = true)]
async fn a_cancel_in_a_flush_reply_is_visible_as_soon_as_flush_returns() {
    let run = ActivityEnvironment::new()
        .cancel_after_heartbeats(1)
        .run(flush_then_look, ())
        .await;
    assert_eq!(
        run.result.as_ref().unwrap(),
        &AfterFlush {
            cancelled: true,
            reason: shown(Some(CancelReason::Requested)),
        }
    );
    assert_eq!(run.elapsed, secs(1.0));
    assert_eq!(run.heartbeats.len(), 1, "the flush was the only heartbeat");
}

/// Heartbeats happily (checkpointing every second) but never finishes.
#[activity(heartbeat_timeout = "10s", start_to_close_timeout = "30s")]
async fn overruns(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<bool, ActivityError> {
    assert!(
        ctx.info().deadline.is_some(),
        "start_to_close bounds the attempt"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        s.n += 1;
        ctx.checkpoint(&s)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn start_to_close_timeout_times_out_an_attempt_that_heartbeats_fine() {
    let run = ActivityEnvironment::new().run(overruns, ()).await;
    assert!(run.timed_out);
    assert_eq!(run.elapsed, secs(30.0));
    assert_eq!(run.cancel_reason, Some(CancelReason::TimedOut));
    let err = run.result.as_ref().unwrap_err();
    assert!(err.is_retryable());
    // Step 30 was stored at 29.5 s.
    assert_eq!(run.last_checkpoint, Some(Step { n: 30 }));
    assert_eq!(run.heartbeats.len(), 6);
}

/// Returns `Cancelled` although nobody asked it to cancel.
#[activity(heartbeat_timeout = "10s")]
async fn quits(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Err(ActivityError::Cancelled {
        reason: CancelReason::Requested,
        details: None,
    })
}

#[tokio::test(start_paused = true)]
async fn a_body_returning_cancelled_unasked_reports_a_failure_not_a_cancellation() {
    let run = ActivityEnvironment::new().run(quits, ()).await;
    let error = run.result.unwrap_err();
    assert!(!error.is_cancelled() && !error.is_retryable(), "{error:?}");
    assert_eq!(error.error_type(), "Cancelled");
    let reports: Vec<_> = run
        .calls
        .iter()
        .filter(|c| !matches!(c, RecordedCall::Heartbeat(_)))
        .collect();
    assert!(
        matches!(reports.as_slice(), [RecordedCall::Failed { error, .. }] if !error.is_retryable()),
        "{reports:?}"
    );
}

/// Cooperative: on any cancel, returns `Cancelled { Requested }` (it does not look at why).
#[activity(heartbeat_timeout = "10s", cancel = "cooperative", cancel_grace = "5s")]
async fn says_requested(ctx: ActivityContext) -> Result<(), ActivityError> {
    ctx.cancelled().await;
    Err(ActivityError::Cancelled {
        reason: CancelReason::Requested,
        details: None,
    })
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_result_carries_the_reason_the_attempt_was_given_not_the_bodys() {
    let run = ActivityEnvironment::new()
        .pause_after_heartbeats(1)
        .run(says_requested, ())
        .await;
    let error = run.result.unwrap_err();
    assert!(
        matches!(
            error,
            ActivityError::Cancelled {
                reason: CancelReason::Paused,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
}
