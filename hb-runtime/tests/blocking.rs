//! CPU-bound bodies: run through `ctx.run_blocking`, they keep heartbeating (the production
//! pump has its own thread) for many heartbeat timeouts, checkpoint from the blocking thread and
//! observe cancellation there. A body that blocks its executor thread without `run_blocking`
//! still heartbeats (the pump is isolated) and gets a warning.
//!
//! These tests run in real time on real runtimes with the production pump: about 5 s for the
//! long one. The only timing they assert is the heartbeat-gap bound the backend enforces.
//!
//! Under a paused clock the test kit's pump cannot follow a blocking closure (tokio holds the
//! clock still while one runs): the kit refuses the combination rather than let the test pass
//! with no heartbeat, cancel or timeout during the closure; on an unpaused runtime its own pump
//! follows real time.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use hb_runtime::prelude::*;
use hb_runtime::testing::{ActivityEnvironment, TestRun};
use tokio::sync::Notify;
use tracing::Level;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Crunch {
    #[checkpoint(done)]
    rounds: u64,
    acc: u64,
    saw_cancel: bool,
}

/// One round of busy work.
fn round(c: &mut Crunch) {
    let mut acc = c.acc;
    for _ in 0..20_000 {
        acc = acc
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    c.acc = std::hint::black_box(acc);
    c.rounds += 1;
}

/// Busy work for `millis` of wall time (or until cancelled), checkpointing every round.
fn crunch_for(ctx: &ActivityContext, c: &mut Crunch, millis: u64) -> Result<(), ActivityError> {
    let until = Instant::now() + Duration::from_millis(millis);
    while Instant::now() < until {
        round(c);
        ctx.checkpoint(&*c)?;
        if ctx.is_cancelled() {
            c.saw_cancel = true;
            return Ok(());
        }
    }
    Ok(())
}

#[activity(heartbeat_timeout = "1s")]
async fn crunch(
    ctx: ActivityContext,
    #[checkpoint] mut c: Crunch,
    millis: u64,
) -> Result<Crunch, ActivityError> {
    ctx.run_blocking(move |ctx| {
        crunch_for(&ctx, &mut c, millis)?;
        Ok(c)
    })
    .await
}

#[activity(heartbeat_timeout = "1s", cancel = "cooperative")]
async fn crunch_cooperative(
    ctx: ActivityContext,
    #[checkpoint] mut c: Crunch,
    millis: u64,
) -> Result<Crunch, ActivityError> {
    ctx.run_blocking(move |ctx| {
        crunch_for(&ctx, &mut c, millis)?;
        Ok(c)
    })
    .await
}

static ABORTED_AT_ROUND: AtomicU64 = AtomicU64::new(0);
static ABORTED_CLOSURE_STOPPED: Notify = Notify::const_new();
/// Set by the test once the attempt has ended, to let the closure finish.
static ATTEMPT_ENDED: Mutex<bool> = Mutex::new(false);
static ATTEMPT_ENDED_CV: Condvar = Condvar::new();

/// Abort mode: the attempt ends at once; the closure stops at its next `is_cancelled()` and,
/// to prove the attempt did not wait for it, returns only after the test saw the attempt end.
#[activity(heartbeat_timeout = "1s")]
async fn crunch_abort(
    ctx: ActivityContext,
    #[checkpoint] mut c: Crunch,
    millis: u64,
) -> Result<Crunch, ActivityError> {
    ctx.run_blocking(move |ctx| {
        crunch_for(&ctx, &mut c, millis)?;
        if c.saw_cancel {
            ABORTED_AT_ROUND.store(c.rounds, Ordering::SeqCst);
            ABORTED_CLOSURE_STOPPED.notify_one();
            let ended = ATTEMPT_ENDED.lock().unwrap();
            let _ended = ATTEMPT_ENDED_CV
                .wait_timeout_while(ended, Duration::from_secs(10), |ended| !*ended)
                .unwrap();
        }
        Ok(c)
    })
    .await
}

/// Blocks its executor thread with busy work, never yielding: what `run_blocking` is for.
#[activity(heartbeat_timeout = "1s")]
async fn hog(
    ctx: ActivityContext,
    #[checkpoint] mut c: Crunch,
    millis: u64,
) -> Result<Crunch, ActivityError> {
    crunch_for(&ctx, &mut c, millis)?;
    Ok(c)
}

fn rounds<A: Activity<Checkpoint = Crunch>>(run: &TestRun<A>) -> Vec<u64> {
    run.heartbeats
        .iter()
        .map(|h| {
            h.checkpoint
                .as_ref()
                .expect("heartbeats carry the checkpoint")
                .rounds
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_bound_body_in_run_blocking_heartbeats_for_five_heartbeat_timeouts() {
    let run = ActivityEnvironment::new()
        .production_pump()
        .run(crunch, 5_000)
        .await;
    let done = run.result.as_ref().expect("not timed out");
    assert!(!run.timed_out);
    assert!(!done.saw_cancel);
    assert!(run.elapsed >= Duration::from_secs(5));

    // Heartbeats every 0.5 s throughout: never a gap the backend (1 s) would time out on.
    assert!(
        run.heartbeats.len() >= 5,
        "{} heartbeats",
        run.heartbeats.len()
    );
    assert!(
        run.max_heartbeat_gap() < Duration::from_secs(1),
        "max gap {:?}",
        run.max_heartbeat_gap()
    );
    // Each carries progress made on the blocking thread since the one before.
    let seen = rounds(&run);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(run.last_checkpoint.map(|c| c.rounds), Some(done.rounds));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_cancel_reaches_the_blocking_closure() {
    // 60 s of work, cancelled after 1.5 s: the closure sees it and returns its own value.
    let run = ActivityEnvironment::new()
        .production_pump()
        .cancel_at(Duration::from_millis(1_500))
        .run(crunch_cooperative, 60_000)
        .await;
    let done = run
        .result
        .as_ref()
        .expect("the closure returned within the grace");
    assert!(done.saw_cancel);
    assert_eq!(run.cancel_reason, Some(CancelReason::Requested));
    assert_eq!(run.last_checkpoint.map(|c| c.rounds), Some(done.rounds));
}

/// Stops with `check_cancelled()?`: the body's own answer to a cancel is the cancellation.
#[activity(heartbeat_timeout = "1s")]
async fn crunch_until_cancelled(
    ctx: ActivityContext,
    #[checkpoint] mut c: Crunch,
) -> Result<Crunch, ActivityError> {
    ctx.run_blocking(move |ctx| {
        loop {
            ctx.check_cancelled()?;
            round(&mut c);
            ctx.checkpoint(&c)?;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closure_stopping_with_check_cancelled_ends_the_attempt_cancelled_whoever_sees_it_first()
{
    // The closure returns on the cancel while the runner may be waking to abort on it: the
    // attempt ends as Cancelled either way. (A closure returning `Ok` on `is_cancelled()` ends
    // it as completed when it wins; a doc example that did so failed in CI once.)
    for run_no in 0..20 {
        let run = ActivityEnvironment::new()
            .production_pump()
            .options(|o| o.heartbeat_timeout(Duration::from_millis(200)))
            .cancel_after_heartbeats(1)
            .run(crunch_until_cancelled, ())
            .await;
        match run.result.as_ref() {
            Err(ActivityError::Cancelled { reason, .. }) => {
                assert_eq!(*reason, CancelReason::Requested, "run {run_no}");
            }
            other => panic!("run {run_no}: expected Cancelled, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_a_heartbeat_reply_aborts_the_attempt_and_stops_the_closure() {
    let run = ActivityEnvironment::new()
        .production_pump()
        .cancel_after_heartbeats(2)
        .run(crunch_abort, 60_000)
        .await;
    *ATTEMPT_ENDED.lock().unwrap() = true;
    ATTEMPT_ENDED_CV.notify_all();
    match run.result.as_ref().unwrap_err() {
        ActivityError::Cancelled { reason, .. } => assert_eq!(*reason, CancelReason::Requested),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    // The second heartbeat's reply cancelled it (the final flush may add one more).
    assert!(run.heartbeats.len() >= 2);
    // The thread cannot be interrupted, but it stops at its next check.
    tokio::time::timeout(Duration::from_secs(5), ABORTED_CLOSURE_STOPPED.notified())
        .await
        .expect("the blocking closure never saw the cancel");
    let last = run.last_checkpoint.expect("a checkpoint").rounds;
    assert!(ABORTED_AT_ROUND.load(Ordering::SeqCst) >= last);
}

#[tokio::test]
async fn a_body_blocking_its_executor_still_heartbeats_and_is_warned_about() {
    let logs = support::logs();
    // Current-thread runtime, no run_blocking: the executor thread is stuck for 2.5 s.
    let run = ActivityEnvironment::new()
        .production_pump()
        .activity_id("hog-1")
        .run(hog, 2_500)
        .await;
    let done = run.result.as_ref().expect("not timed out");
    assert!(!run.timed_out);

    // The pump, on its own thread, heartbeated while the executor was blocked.
    assert!(
        run.heartbeats.len() >= 3,
        "{} heartbeats",
        run.heartbeats.len()
    );
    assert!(
        run.max_heartbeat_gap() < Duration::from_secs(1),
        "{:?}",
        run.max_heartbeat_gap()
    );
    let seen = rounds(&run);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(seen.first() < seen.last(), "{seen:?}");
    assert_eq!(run.last_checkpoint.map(|c| c.rounds), Some(done.rounds));

    let warns: Vec<_> = logs
        .for_activity("hog-1")
        .into_iter()
        .filter(|e| e.level == Level::WARN && e.message.contains("run_blocking"))
        .collect();
    assert_eq!(
        warns.len(),
        1,
        "one warning per blocked stretch: {warns:#?}"
    );
    assert!(warns[0].field("blocked_for").is_some());
}

#[tokio::test]
async fn a_well_behaved_body_gets_no_blocked_executor_warning() {
    let logs = support::logs();
    let run = ActivityEnvironment::new()
        .production_pump()
        .activity_id("crunch-quiet")
        .run(crunch, 1_500)
        .await;
    run.result.as_ref().unwrap();
    assert!(
        !logs
            .for_activity("crunch-quiet")
            .iter()
            .any(|e| e.level == Level::WARN)
    );
}

/// What a test written as the README suggests for other activities did before: under a paused
/// clock, `cancel_after_heartbeats(2)` never fired (time stood still while the closure ran),
/// the 2 s of work completed with a single heartbeat (the final flush), and the test passed
/// without testing the cancel. Now the kit refuses, and says why.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "ctx.run_blocking was called while tokio's clock is paused")]
async fn a_paused_clock_with_a_blocking_body_is_refused_not_passed_silently() {
    let run = ActivityEnvironment::new()
        .activity_id("paused-blocking")
        .cancel_after_heartbeats(2)
        .run(crunch, 2_000)
        .await;
    // Never reached: this is what used to pass.
    let done = run.result.as_ref().unwrap();
    assert!(!done.saw_cancel);
    assert_eq!(run.heartbeats.len(), 1);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "ctx.run_blocking was called while tokio's clock is paused")]
async fn the_refusal_stands_even_when_the_body_swallows_the_error() {
    #[activity(heartbeat_timeout = "1s")]
    async fn swallows(ctx: ActivityContext) -> Result<(), ActivityError> {
        let inner = ctx.clone();
        // In a task of its own, whose panic the body ignores.
        let _ = tokio::spawn(async move { inner.run_blocking(|_| Ok(())).await }).await;
        Ok(())
    }
    let run = ActivityEnvironment::new().run(swallows, ()).await;
    run.result.unwrap();
}

#[tokio::test]
async fn on_an_unpaused_runtime_the_kits_own_pump_follows_a_blocking_body() {
    // The test kit's default pump (on the test's runtime, not the production thread): the
    // closure runs on the blocking pool, so the runtime's thread is free to heartbeat, and the
    // second heartbeat's reply cancels the 60 s of work.
    let run = ActivityEnvironment::new()
        .cancel_after_heartbeats(2)
        .run(crunch_cooperative, 60_000)
        .await;
    let done = run.result.as_ref().expect("returned within the grace");
    assert!(done.saw_cancel);
    assert_eq!(run.cancel_reason, Some(CancelReason::Requested));
    assert!(run.heartbeats.len() >= 2);
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
}
