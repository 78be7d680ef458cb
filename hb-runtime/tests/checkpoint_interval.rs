//! The checkpoint interval: to a backend that asks for one (the embedded engine), a changed
//! checkpoint is persisted within that interval, however long the heartbeat interval; an
//! unchanged one is not sent again until a liveness heartbeat is due, and those still come at
//! the heartbeat interval. Without one (Temporal, the default) nothing changes.
//!
//! The kit tests run on tokio's paused clock with `MemoryTransport` set to a checkpoint
//! interval, so every time is exact; the last test runs an in-memory engine in real time.

use std::time::Duration;

use hb_runtime::checkpoint::decode_payload;
use hb_runtime::client::StartOptions;
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;
use hb_runtime::testing::{ActivityEnvironment, TestRun};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Checkpoints `value` at each `(ms since start, value)`, then idles until `end_ms`.
#[activity(heartbeat_timeout = "10s")]
async fn scripted(
    ctx: ActivityContext,
    #[checkpoint] mut n: u64,
    input: (Vec<(u64, u64)>, u64),
) -> Result<u64, ActivityError> {
    let start = tokio::time::Instant::now();
    let (steps, end_ms) = input;
    for (at, value) in steps {
        tokio::time::sleep_until(start + ms(at)).await;
        n = value;
        ctx.checkpoint(&n)?;
    }
    tokio::time::sleep_until(start + ms(end_ms)).await;
    Ok(n)
}

/// Each heartbeat as (ms since start, checkpoint carried).
fn sent<A: Activity<Checkpoint = u64>>(run: &TestRun<A>) -> Vec<(u64, Option<u64>)> {
    run.heartbeats
        .iter()
        .map(|h| (h.at.as_millis() as u64, h.checkpoint))
        .collect()
}

fn env(checkpoint_interval: Option<u64>, keeps_details: bool) -> ActivityEnvironment {
    let env = ActivityEnvironment::new();
    env.transport()
        .set_checkpoint_interval(checkpoint_interval.map(ms));
    env.transport().set_keeps_details(keeps_details);
    env
}

#[tokio::test(start_paused = true)]
async fn a_change_is_sent_within_the_checkpoint_interval_and_nothing_more_until_liveness_is_due() {
    // Heartbeat interval 5 s (half of 10 s), checkpoint interval 100 ms: a look every 100 ms.
    let steps = vec![(50, 1), (250, 2), (260, 3), (7_050, 4)];
    let run = env(Some(100), false)
        .run(scripted, (steps.clone(), 12_000))
        .await;
    assert_eq!(run.result.as_ref().unwrap(), &4);
    assert_eq!(
        sent(&run),
        [
            (100, Some(1)), // the first checkpoint, within 100 ms
            (300, Some(3)), // 2 and 3, coalesced
            // Unchanged: silence until a liveness heartbeat is due, 5 s after the last send
            // (to this backend, which wipes what a heartbeat does not carry, with details).
            (5_300, Some(3)),
            (7_100, Some(4)),
            // The next would be due at 12.1 s; the run ends at 12 s with 4 delivered already.
        ]
    );

    // A backend that keeps details gets the liveness heartbeat without them.
    let run = env(Some(100), true).run(scripted, (steps, 12_000)).await;
    assert_eq!(
        sent(&run),
        [
            (100, Some(1)),
            (300, Some(3)),
            (5_300, None),
            (7_100, Some(4))
        ]
    );
    assert_eq!(run.last_checkpoint, Some(4));
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_checkpoint_costs_only_liveness_heartbeats() {
    let run = env(Some(100), true)
        .run(scripted, (vec![(10, 7)], 16_000))
        .await;
    // One send of the change; then one heartbeat per 5 s heartbeat interval, not one per look.
    assert_eq!(
        sent(&run),
        [
            (100, Some(7)),
            (5_100, None),
            (10_100, None),
            (15_100, None)
        ]
    );
    assert!(!run.timed_out);
}

#[tokio::test(start_paused = true)]
async fn a_retry_persists_its_first_checkpoint_within_the_checkpoint_interval() {
    let run = env(Some(250), true)
        .with_checkpoint(40u64)
        .attempt(2)
        .run(scripted, (vec![(400, 41)], 1_000))
        .await;
    // Nothing for the resumed 40 (the backend has it); 41 at the next look after 400 ms.
    assert_eq!(sent(&run), [(500, Some(41))]);
}

#[tokio::test(start_paused = true)]
async fn looks_are_a_whole_fraction_of_the_heartbeat_interval() {
    // Heartbeat interval 1.6 s (0.8 × 2 s), checkpoint interval 1 s: two looks per heartbeat
    // interval, 0.8 s apart, so liveness heartbeats stay exactly 1.6 s apart, never 2 s.
    let run = env(Some(1_000), true)
        .options(|o| {
            o.heartbeat_timeout(Duration::from_secs(2))
                .heartbeat_interval(ms(1_600))
        })
        .run(scripted, (vec![(100, 1)], 5_000))
        .await;
    assert_eq!(sent(&run), [(800, Some(1)), (2_400, None), (4_000, None)]);
    assert!(run.max_heartbeat_gap() <= ms(1_600));
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_interval_at_least_the_heartbeat_interval_changes_nothing() {
    for interval in [None, Some(5_000), Some(60_000)] {
        let run = env(interval, false)
            .run(scripted, (vec![(50, 1), (6_000, 2)], 11_000))
            .await;
        assert_eq!(
            sent(&run),
            [(5_000, Some(1)), (10_000, Some(2))],
            "checkpoint interval {interval:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn flush_and_the_final_flush_work_as_before() {
    #[activity(heartbeat_timeout = "10s")]
    async fn flushes(ctx: ActivityContext, #[checkpoint] mut n: u64) -> Result<(), ActivityError> {
        n += 1;
        ctx.checkpoint(&n)?;
        ctx.flush().await?; // at once
        tokio::time::sleep(ms(30)).await;
        n += 1;
        ctx.checkpoint(&n)?;
        Ok(()) // before the first look at 100 ms: the final flush sends 2
    }
    let run = env(Some(100), true).run(flushes, ()).await;
    assert_eq!(sent(&run), [(0, Some(1)), (30, Some(2))]);
    assert_eq!(run.last_checkpoint, Some(2));
}

/// Checkpoints `n` once, tells the test, then waits for the cancel.
#[activity(heartbeat_timeout = "60s")]
async fn checkpoints_once(
    ctx: ActivityContext,
    #[checkpoint] _n: u64,
    #[state] stored: UnboundedSender<()>,
) -> Result<(), ActivityError> {
    ctx.checkpoint(&42u64)?;
    let _ = stored.send(());
    std::future::pending().await
}

#[tokio::test]
async fn the_engine_stores_a_checkpoint_long_before_the_heartbeat_interval() {
    // Heartbeat interval 30 s; the engine's checkpoint interval is 1 s.
    let engine = Engine::in_memory().await.unwrap();
    let (tx, mut stored) = unbounded_channel::<()>();
    let worker = engine
        .worker()
        .register(checkpoints_once)
        .state(tx)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let handle = client
        .start(checkpoints_once, (), StartOptions::id("ckpt-interval"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), stored.recv())
        .await
        .expect("the attempt checkpointed")
        .unwrap();
    let checkpointed = tokio::time::Instant::now();
    // Visible to describe() once the pump persisted it: within about a second (10 s of slack
    // for a loaded machine, still well inside the 30 s after which a heartbeat would have
    // carried it).
    loop {
        let d = handle.describe().await.unwrap();
        if let Some(details) = &d.details {
            assert_eq!(decode_payload::<u64>(details).unwrap(), 42);
            break;
        }
        assert!(
            checkpointed.elapsed() < Duration::from_secs(10),
            "the checkpoint was not stored within 10 s"
        );
        tokio::time::sleep(ms(20)).await;
    }
    handle.cancel().await.unwrap();
    worker.shutdown().await;
}
