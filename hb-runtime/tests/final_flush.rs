//! The final flush: whatever way an attempt ends (success, error, panic, its future dropped),
//! the latest checkpoint reaches the backend, so a retry never resumes from an older one.

use std::time::Duration;

use hb_runtime::Payload;
use hb_runtime::backend::Pump;
use hb_runtime::backend::TaskToken;
use hb_runtime::backend::{AttemptRequest, AttemptRunner};
use hb_runtime::checkpoint::decode_payload;
use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use hb_runtime::testing::{MemoryTransport, RecordedCall};

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Step {
    #[checkpoint(done)]
    n: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
enum End {
    Ok,
    Fail,
    Panic,
    BlockingPanic,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn step(details: Option<&Payload>) -> Option<Step> {
    details.map(|p| decode_payload::<Step>(p).unwrap())
}

/// Checkpoints step 3 at once (long before the first 5 s tick), then ends as told.
#[activity(heartbeat_timeout = "10s")]
async fn quick(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    end: End,
) -> Result<u64, ActivityError> {
    s.n = 3;
    ctx.checkpoint(&s)?;
    match end {
        End::Ok => Ok(s.n),
        End::Fail => Err(ActivityError::retryable("Flaky", "upstream said 503")),
        End::Panic => panic!("boom at step {}", s.n),
        End::BlockingPanic => {
            ctx.run_blocking(|_ctx| -> Result<u64, ActivityError> {
                panic!("boom in a blocking closure")
            })
            .await
        }
    }
}

/// Checkpoints step 1 at 1 s (sent by the 5 s tick), step 2 at 5.5 s, fails at 6 s.
#[activity(heartbeat_timeout = "10s")]
async fn fails_between_ticks(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<(), ActivityError> {
    tokio::time::sleep(secs(1.0)).await;
    s.n = 1;
    ctx.checkpoint(&s)?;
    tokio::time::sleep(secs(4.5)).await;
    s.n = 2;
    ctx.checkpoint(&s)?;
    tokio::time::sleep(secs(0.5)).await;
    Err(ActivityError::non_retryable(
        "Invalid",
        "row 2 is malformed",
    ))
}

/// Checkpoints step n at n seconds, forever.
#[activity(heartbeat_timeout = "10s")]
async fn forever(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    _input: (),
) -> Result<(), ActivityError> {
    loop {
        tokio::time::sleep(secs(1.0)).await;
        s.n += 1;
        ctx.checkpoint(&s)?;
    }
}

/// Asserts: one heartbeat, sent at once, carrying step 3; and the report that follows it.
fn assert_flushed_before_report<A: Activity<Checkpoint = Step>>(
    run: &hb_runtime::testing::TestRun<A>,
) {
    assert_eq!(run.heartbeats.len(), 1, "{:?}", run.heartbeats);
    assert_eq!(run.heartbeats[0].at, Duration::ZERO);
    assert_eq!(run.heartbeats[0].checkpoint, Some(Step { n: 3 }));
    assert_eq!(run.last_checkpoint, Some(Step { n: 3 }));
    assert_eq!(run.calls.len(), 2, "{:?}", run.calls);
    assert!(
        matches!(run.calls[0], RecordedCall::Heartbeat(_)),
        "the flush comes before the report"
    );
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_stored_right_before_an_error_is_flushed_and_carried_by_the_failure() {
    let run = ActivityEnvironment::new().run(quick, End::Fail).await;
    let err = run.result.as_ref().unwrap_err();
    assert_eq!(err.error_type(), "Flaky");
    assert_flushed_before_report(&run);
    match &run.calls[1] {
        RecordedCall::Failed {
            error,
            last_details,
            ..
        } => {
            assert_eq!(error.error_type(), "Flaky");
            assert_eq!(step(last_details.as_ref()), Some(Step { n: 3 }));
        }
        other => panic!("expected a failure report, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_a_retryable_failure_and_still_flushes() {
    let run = ActivityEnvironment::new().run(quick, End::Panic).await;
    match run.result.as_ref().unwrap_err() {
        e @ ActivityError::Panicked { message } => {
            assert_eq!(message, "boom at step 3");
            assert!(e.is_retryable());
            assert_eq!(e.error_type(), "Panic");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_flushed_before_report(&run);
    match &run.calls[1] {
        RecordedCall::Failed {
            error,
            last_details,
            ..
        } => {
            assert!(matches!(error, ActivityError::Panicked { .. }));
            assert_eq!(step(last_details.as_ref()), Some(Step { n: 3 }));
        }
        other => panic!("expected a failure report, got {other:?}"),
    }
}

// Unpaused: a paused clock cannot follow a blocking closure (the test kit refuses it).
#[tokio::test]
async fn a_panic_in_a_blocking_closure_is_caught_the_same_way() {
    let run = ActivityEnvironment::new()
        .run(quick, End::BlockingPanic)
        .await;
    match run.result.as_ref().unwrap_err() {
        ActivityError::Panicked { message } => assert_eq!(message, "boom in a blocking closure"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(run.last_checkpoint, Some(Step { n: 3 }));
    assert!(matches!(
        run.calls.last(),
        Some(RecordedCall::Failed { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn success_flushes_the_final_checkpoint_before_completing() {
    let run = ActivityEnvironment::new().run(quick, End::Ok).await;
    assert_eq!(run.result.as_ref().unwrap(), &3);
    assert_flushed_before_report(&run);
    match &run.calls[1] {
        RecordedCall::Completed { output, .. } => assert_eq!(output.decode::<u64>().unwrap(), 3),
        other => panic!("expected a completion report, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_flush_sends_what_changed_since_the_last_tick() {
    let run = ActivityEnvironment::new()
        .run(fails_between_ticks, ())
        .await;
    let err = run.result.as_ref().unwrap_err();
    assert!(!err.is_retryable());
    let got: Vec<_> = run
        .heartbeats
        .iter()
        .map(|h| (h.at, h.checkpoint.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (secs(5.0), Some(Step { n: 1 })),
            (secs(6.0), Some(Step { n: 2 }))
        ]
    );
    assert_eq!(run.last_checkpoint, Some(Step { n: 2 }));
}

#[tokio::test(start_paused = true)]
async fn the_report_carries_the_checkpoint_even_when_the_flush_cannot_be_delivered() {
    let env = ActivityEnvironment::new();
    env.transport().set_unavailable(true);
    let run = env.run(quick, End::Fail).await;
    assert!(run.heartbeats.is_empty());
    match run.calls.last() {
        Some(RecordedCall::Failed { last_details, .. }) => {
            assert_eq!(step(last_details.as_ref()), Some(Step { n: 3 }))
        }
        other => panic!("expected a failure report, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_attempt_mid_run_still_flushes_its_checkpoint() {
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone()).pump(Pump::on_current_runtime());
    let request = AttemptRequest::new(
        "dropped",
        TaskToken::new(*b"dropped"),
        Payload::json(&()).unwrap(),
    );
    let attempt = runner.start(&forever(), request).into_future();

    // Run it for 2.5 s (steps 1 and 2, no tick yet), then drop it, as a worker shutting down
    // hard or a backend losing interest would.
    tokio::select! {
        _ = attempt => panic!("forever never ends"),
        _ = tokio::time::sleep(secs(2.5)) => {}
    }
    assert!(
        transport
            .wait_for_heartbeats(1, Duration::from_secs(1))
            .await,
        "no heartbeat after the attempt was dropped"
    );
    let heartbeats = transport.heartbeats();
    assert_eq!(heartbeats.len(), 1);
    assert_eq!(step(heartbeats[0].details.as_ref()), Some(Step { n: 2 }));
    assert_eq!(heartbeats[0].token, TaskToken::new(*b"dropped"));
    // Nobody reported an outcome: the future that would have was dropped.
    assert!(
        transport
            .calls()
            .iter()
            .all(|c| matches!(c, RecordedCall::Heartbeat(_)))
    );

    // And the pump forgot the attempt: no more heartbeats.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(transport.heartbeat_count(), 1);
}

#[tokio::test(start_paused = true)]

async fn nothing_is_sent_for_an_attempt_that_has_ended() {
    // A context can outlive its attempt: a run_blocking closure after an abort, a spawned
    // task holding a clone. Once the outcome is reported, flushing it must not heartbeat a
    // task the backend has closed.
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone()).pump(Pump::on_current_runtime());
    let request = AttemptRequest::new(
        "ended",
        TaskToken::new(*b"ended"),
        Payload::json(&End::Ok).unwrap(),
    );
    let running = runner.start(&quick(), request);
    let ctx = running.handle().context();
    running.run().await;
    let sent = transport.heartbeat_count();

    ctx.checkpoint(&Step { n: 4 }).unwrap();
    let flushed = ctx.flush().await;
    assert!(
        matches!(flushed, Err(CheckpointError::Closed)),
        "{flushed:?}"
    );
    assert_eq!(transport.heartbeat_count(), sent);
}

/// An output whose `Serialize` panics.
#[derive(Debug)]
struct Explosive;

impl serde::Serialize for Explosive {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("boom while serialising the output")
    }
}

/// (Outputs are typed for callers too.)
impl<'de> serde::Deserialize<'de> for Explosive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Explosive)
    }
}

#[activity(heartbeat_timeout = "10s")]
async fn explosive_output(
    ctx: ActivityContext,
    #[checkpoint] n: u64,
) -> Result<Explosive, ActivityError> {
    ctx.checkpoint(&(n + 1))?;
    Ok(Explosive)
}

#[tokio::test(start_paused = true)]
async fn a_panic_serialising_the_output_fails_the_attempt_and_is_reported() {
    let run = ActivityEnvironment::new().run(explosive_output, ()).await;
    match run.result.as_ref().unwrap_err() {
        ActivityError::Panicked { message } => {
            assert_eq!(message, "boom while serialising the output")
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(run.last_checkpoint, Some(1));
    assert!(
        matches!(run.calls.last(), Some(RecordedCall::Failed { error, .. }) if error.error_type() == "Panic"),
        "{:?}",
        run.calls
    );
}

/// Panics when dropped.
struct Grenade;

impl Drop for Grenade {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("boom in a destructor");
        }
    }
}

/// Holds a `Grenade` while it waits forever; dropped at once on cancel.
#[activity(heartbeat_timeout = "10s", cancel = "abort")]
async fn holds_a_grenade(_ctx: ActivityContext) -> Result<(), ActivityError> {
    let _g = Grenade;
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test]
async fn a_panic_dropping_a_cancelled_body_fails_the_attempt_and_is_reported() {
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone()).pump(Pump::on_current_runtime());
    let request = AttemptRequest::new(
        "grenade-1",
        TaskToken::new(*b"g1"),
        Payload::json(&()).unwrap(),
    );
    let running = runner.start(&holds_a_grenade(), request);
    let handle = running.handle();
    let task = tokio::spawn(running.into_future());
    tokio::task::yield_now().await;
    handle.cancel(CancelReason::Requested);
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the attempt ended")
        .expect("the attempt's task did not panic");
    match outcome.result {
        Err(ActivityError::Panicked { message }) => assert_eq!(message, "boom in a destructor"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(matches!(
        transport.calls().last(),
        Some(RecordedCall::Failed { .. })
    ));
}
