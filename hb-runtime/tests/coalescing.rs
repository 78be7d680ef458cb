//! Coalescing: however often the body checkpoints, the pump sends one heartbeat per interval
//! carrying the newest checkpoint at that moment; an unchanged checkpoint is re-sent; no
//! heartbeat ever carries an older checkpoint than one before it.

use std::time::Duration;

use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Counter {
    #[checkpoint(done)]
    n: u64,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Bursts of 1,000 checkpoints at 0.5 s, 1.5 s, ..., (bursts - 0.5) s; returns at `bursts + 0.5` s.
#[activity(heartbeat_timeout = "10s")]
async fn bursts(
    ctx: ActivityContext,
    #[checkpoint] mut c: Counter,
    bursts: u64,
) -> Result<u64, ActivityError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..bursts {
        for _ in 0..1_000 {
            c.n += 1;
            ctx.checkpoint(&c)?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(c.n)
}

/// Checkpoints once, then does nothing visible for `secs` seconds.
#[activity(heartbeat_timeout = "10s")]
async fn checkpoint_once(
    ctx: ActivityContext,
    #[checkpoint] mut c: Counter,
    secs: u64,
) -> Result<(), ActivityError> {
    c.n = 7;
    ctx.checkpoint(&c)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

/// Checkpoints an increasing counter at irregular times, flushing now and then.
#[activity(heartbeat_timeout = "2s")]
async fn irregular(
    ctx: ActivityContext,
    #[checkpoint] mut c: Counter,
    steps: u64,
) -> Result<u64, ActivityError> {
    for i in 0..steps {
        c.n += 1;
        ctx.checkpoint(&c)?;
        if i % 17 == 0 {
            ctx.flush().await?;
        }
        tokio::time::sleep(Duration::from_millis(i * 37 % 251)).await;
    }
    Ok(c.n)
}

/// A tight checkpoint loop on a multi-threaded runtime for about `millis` of real time, with
/// the production pump heartbeating every 20 ms from its own thread, and flushes racing it.
#[activity(heartbeat_timeout = "1s", heartbeat_interval = "20ms")]
async fn racing(
    ctx: ActivityContext,
    #[checkpoint] mut c: Counter,
    millis: u64,
) -> Result<u64, ActivityError> {
    let until = std::time::Instant::now() + Duration::from_millis(millis);
    while std::time::Instant::now() < until {
        for _ in 0..100 {
            c.n += 1;
            ctx.checkpoint(&c)?;
        }
        if c.n.is_multiple_of(10_000) {
            ctx.flush().await?;
        }
        tokio::task::yield_now().await;
    }
    Ok(c.n)
}

fn counters<A: Activity<Checkpoint = Counter>>(run: &hb_runtime::testing::TestRun<A>) -> Vec<u64> {
    run.heartbeats
        .iter()
        .map(|h| {
            h.checkpoint
                .as_ref()
                .expect("every heartbeat carries the counter")
                .n
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn thousands_of_checkpoints_make_one_heartbeat_per_interval_with_the_newest_value() {
    let run = ActivityEnvironment::new().run(bursts, 12).await;
    assert_eq!(run.result.as_ref().unwrap(), &12_000);

    let at: Vec<_> = run.heartbeats.iter().map(|h| h.at).collect();
    // Two pump ticks, then the final flush when the body returns at 12.5 s.
    assert_eq!(at, [secs(5.0), secs(10.0), secs(12.5)]);
    // At 5 s the last burst was the one at 4.5 s: 5,000 checkpoints; at 10 s, 10,000.
    assert_eq!(counters(&run), [5_000, 10_000, 12_000]);
    assert_eq!(run.last_checkpoint, Some(Counter { n: 12_000 }));
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_checkpoint_is_resent_on_every_heartbeat() {
    let run = ActivityEnvironment::new().run(checkpoint_once, 21).await;
    run.result.as_ref().unwrap();

    let at: Vec<_> = run.heartbeats.iter().map(|h| h.at).collect();
    // No extra final heartbeat: the backend already holds the latest checkpoint.
    assert_eq!(at, [secs(5.0), secs(10.0), secs(15.0), secs(20.0)]);
    assert_eq!(counters(&run), [7, 7, 7, 7]);
    let first = run.heartbeats[0].details.as_ref().unwrap();
    for h in &run.heartbeats {
        assert_eq!(h.details.as_ref().unwrap().data(), first.data());
    }
    assert_eq!(run.final_details.as_ref().unwrap().data(), first.data());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_and_flushes_never_go_back_in_time() {
    let run = ActivityEnvironment::new().run(irregular, 400).await;
    assert_eq!(run.result.as_ref().unwrap(), &400);
    let seen = counters(&run);
    assert!(seen.len() > 20, "pump ticks and flushes: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "went backwards: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_stay_monotonic_when_the_pump_races_the_body_on_other_threads() {
    let run = ActivityEnvironment::new()
        .production_pump()
        .run(racing, 300)
        .await;
    let total = *run.result.as_ref().unwrap();
    let seen = counters(&run);
    assert!(seen.len() >= 3, "heartbeats: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "went backwards: {seen:?}"
    );
    // The final flush leaves the backend with the very last checkpoint.
    assert_eq!(seen.last(), Some(&total));
    assert_eq!(run.last_checkpoint, Some(Counter { n: total }));
}
