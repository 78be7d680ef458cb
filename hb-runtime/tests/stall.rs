//! Stall detection: with `stall_timeout`, an attempt that stops checkpointing stops
//! heartbeating, so the backend times it out (and a retry resumes from its last checkpoint):
//! alive is not the same as progressing. A slow body that keeps checkpointing is never stalled.

mod support;

use std::time::Duration;

use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use hb_runtime::testing::RecordedCall;
use tracing::Level;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Step {
    #[checkpoint(done)]
    n: u64,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Checkpoints at 0 s and 3 s, then hangs without checkpointing.
#[activity(heartbeat_timeout = "10s", stall_timeout = "12s")]
async fn hangs(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<(), ActivityError> {
    s.n = 1;
    ctx.checkpoint(&s)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.n = 2;
    ctx.checkpoint(&s)?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Checkpoints every 11 s (slower than the 5 s heartbeat interval, faster than the stall timeout).
#[activity(heartbeat_timeout = "10s", stall_timeout = "12s")]
async fn slow_but_steady(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    steps: u64,
) -> Result<u64, ActivityError> {
    while s.n < steps {
        tokio::time::sleep(Duration::from_secs(11)).await;
        s.n += 1;
        ctx.checkpoint(&s)?;
    }
    Ok(s.n)
}

/// Without a stall timeout, a quiet body is kept alive.
#[activity(heartbeat_timeout = "10s")]
async fn quiet(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    secs: u64,
) -> Result<(), ActivityError> {
    s.n = 1;
    ctx.checkpoint(&s)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

/// Checkpoints at 0.5 s, goes quiet until 9.5 s, then checkpoints every second until 15.5 s.
#[activity(
    heartbeat_timeout = "10s",
    heartbeat_interval = "2s",
    stall_timeout = "5s"
)]
async fn pauses_then_resumes(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<u64, ActivityError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.n = 1;
    ctx.checkpoint(&s)?;
    tokio::time::sleep(Duration::from_secs(9)).await;
    for _ in 0..7 {
        s.n += 1;
        ctx.checkpoint(&s)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(s.n)
}

#[tokio::test(start_paused = true)]
async fn a_stalled_attempt_stops_heartbeating_and_times_out_with_its_last_checkpoint() {
    let logs = support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("stall-1")
        .run(hangs, ())
        .await;

    // The pump noticed the last checkpoint at its 5 s tick; by the 20 s tick 15 s had passed
    // without one (>= 12 s), so it stopped; the backend timed out 10 s after the 15 s heartbeat.
    let at: Vec<_> = run.heartbeats.iter().map(|h| h.at).collect();
    assert_eq!(at, [secs(5.0), secs(10.0), secs(15.0)]);
    assert!(run.timed_out);
    assert_eq!(run.elapsed, secs(25.0));
    assert_eq!(run.cancel_reason, Some(CancelReason::TimedOut));
    let err = run.result.as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            ActivityError::Cancelled {
                reason: CancelReason::TimedOut,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable(), "a timed-out attempt is retried");
    assert_eq!(run.last_checkpoint, Some(Step { n: 2 }));
    match run.calls.last() {
        Some(RecordedCall::Failed {
            error,
            last_details,
            ..
        }) => {
            assert!(matches!(
                error,
                ActivityError::Cancelled {
                    reason: CancelReason::TimedOut,
                    ..
                }
            ));
            assert_eq!(last_details, &run.final_details);
        }
        other => panic!("expected a failure report, got {other:?}"),
    }

    let warns: Vec<_> = logs
        .for_activity("stall-1")
        .into_iter()
        .filter(|e| e.level == Level::WARN && e.message.contains("stall_timeout"))
        .collect();
    assert_eq!(warns.len(), 1, "warned once, not on every tick: {warns:#?}");
    assert_eq!(warns[0].field("stall_timeout"), Some("12s"));
    assert_eq!(warns[0].span_field("activity_type"), Some("hangs"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_that_keeps_checkpointing_is_never_stalled() {
    let logs = support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("stall-2")
        .run(slow_but_steady, 6)
        .await;
    assert_eq!(run.result.as_ref().unwrap(), &6);
    assert!(!run.timed_out);
    assert_eq!(run.elapsed, secs(66.0));
    // A heartbeat every 5 s throughout.
    assert_eq!(run.heartbeats.len(), 13 + 1, "13 ticks and the final flush");
    assert_eq!(run.max_heartbeat_gap(), secs(5.0));
    assert!(
        !logs
            .for_activity("stall-2")
            .iter()
            .any(|e| e.message.contains("stall_timeout"))
    );
}

#[tokio::test(start_paused = true)]
async fn without_stall_timeout_a_quiet_body_keeps_heartbeating() {
    let run = ActivityEnvironment::new().run(quiet, 61).await;
    run.result.as_ref().unwrap();
    assert!(!run.timed_out);
    assert_eq!(run.heartbeats.len(), 12);
    assert!(
        run.heartbeats
            .iter()
            .all(|h| h.checkpoint == Some(Step { n: 1 }))
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_resume_when_checkpoints_resume_before_the_backend_gives_up() {
    let logs = support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("stall-3")
        .run(pauses_then_resumes, ())
        .await;
    assert_eq!(run.result.as_ref().unwrap(), &8);
    assert!(!run.timed_out);
    let at: Vec<_> = run.heartbeats.iter().map(|h| h.at).collect();
    // Noticed at 2 s; quiet for 6 s at the 8 s tick (>= 5 s): skipped; the checkpoint at 9.5 s
    // is noticed at 10 s and heartbeats go on (the 16 s one already carries the last
    // checkpoint, stored at 15.5 s, so the return at 16.5 s has nothing left to flush).
    assert_eq!(
        at,
        [
            secs(2.0),
            secs(4.0),
            secs(6.0),
            secs(10.0),
            secs(12.0),
            secs(14.0),
            secs(16.0),
        ]
    );
    let events = logs.for_activity("stall-3");
    assert!(
        events
            .iter()
            .any(|e| e.level == Level::WARN && e.message.contains("stall_timeout"))
    );
    assert!(
        events
            .iter()
            .any(|e| e.level == Level::INFO && e.message.contains("checkpoints resumed"))
    );
}
