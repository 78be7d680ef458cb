//! Attempt history on the embedded engine: `describe` lists an activity's attempts, oldest
//! first, each with its times, how it ended, why, and the checkpoint it resumed from; the file
//! keeps the newest 100 ended attempts of an activity, and they go when it is pruned.

use std::time::Duration;

use hb_runtime::client::{
    ActivityClient, ActivityFailure, ActivityStatus, AttemptStatus, ResetOptions, StartOptions,
};
use hb_runtime::engine::{Engine, EngineOptions};
use hb_runtime::prelude::*;

/// A fresh scratch directory for one test, removed when it drops (even if the test fails).
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-history-{name}-"))
        .tempdir()
        .unwrap()
}

/// Waits (up to 10 s) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Attempt 1 stores 10 and fails; attempt 2 stores 20 and goes quiet (its heartbeats stop,
/// the engine times it out); attempt 3 stores 30 and waits for `go`, then completes.
#[activity(
    heartbeat_timeout = "300ms",
    heartbeat_interval = "20ms",
    stall_timeout = "100ms",
    retry(max_attempts = 3, initial_interval = "1ms")
)]
async fn three_ways(
    ctx: ActivityContext,
    #[checkpoint] done: u64,
    #[state] go: std::sync::Arc<tokio::sync::Notify>,
) -> Result<u64, ActivityError> {
    ctx.checkpoint(&(done + 10))?;
    ctx.flush().await?;
    match ctx.info().attempt {
        1 => Err(ActivityError::retryable("DiskFull", "no space left")),
        2 => std::future::pending().await,
        _ => {
            go.notified().await;
            Ok(done)
        }
    }
}

#[tokio::test]
async fn each_attempt_is_listed_with_how_it_ended_and_where_it_resumed_from() {
    let dir = scratch("three");
    let engine = Engine::open(dir.path().join("hb.db")).await.unwrap();
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let _w = engine
        .worker()
        .state(go.clone())
        .register(three_ways)
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(three_ways, (), StartOptions::id("three"))
        .await
        .unwrap();

    // The third attempt runs: two ended before it, and it is the last, running.
    eventually("attempt 3 runs with both before it listed", async || {
        let d = h.describe().await.unwrap();
        d.attempts.len() == 3 && d.attempts[2].status == AttemptStatus::Running
    })
    .await;
    let d = h.describe().await.unwrap();
    let [one, two, three] = &d.attempts[..] else {
        panic!("{:?}", d.attempts)
    };
    assert_eq!((one.attempt, one.status), (1, AttemptStatus::Failed));
    assert!(matches!(
        &one.failure,
        Some(ActivityFailure::Application { error_type, .. }) if error_type == "DiskFull"
    ));
    assert_eq!((two.attempt, two.status), (2, AttemptStatus::TimedOut));
    assert!(matches!(two.failure, Some(ActivityFailure::Timeout { .. })));
    assert_eq!((three.attempt, three.ended_at), (3, None));
    assert_eq!(three.failure, None, "a running attempt has not failed");
    let resumed: Vec<_> = d
        .attempts
        .iter()
        .map(|a| a.resumed_from.map(|p| p.done))
        .collect();
    assert_eq!(resumed, [None, Some(10), Some(20)]);
    // Times in order: each started after the one before ended.
    for pair in d.attempts.windows(2) {
        assert!(pair[0].started_at.unwrap() <= pair[0].ended_at.unwrap());
        assert!(pair[0].ended_at.unwrap() <= pair[1].started_at.unwrap());
    }

    go.notify_one();
    assert_eq!(h.result().await.unwrap(), 20);
    let d = h.describe().await.unwrap();
    let outcomes: Vec<_> = d.attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        outcomes,
        [
            AttemptStatus::Failed,
            AttemptStatus::TimedOut,
            AttemptStatus::Completed
        ]
    );
    assert!(d.attempts[2].ended_at.is_some());
    // The same from the file, as another process reads it (the CLI).
    let stored = hb_runtime::engine::Inspector::open(dir.path().join("hb.db"))
        .unwrap()
        .get("three")
        .unwrap();
    assert_eq!(stored.attempts, d.attempts);
    // A listing leaves them out.
    let listed = engine
        .client()
        .list(hb_runtime::client::ListFilter::all())
        .await
        .unwrap();
    assert!(listed.iter().all(|d| d.attempts.is_empty()));
}

/// Stores one more step and waits to be stopped.
#[activity(heartbeat_timeout = "30s", retry(max_attempts = 1))]
async fn steps(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<u64, ActivityError> {
    ctx.checkpoint(&(n + 1))?;
    ctx.flush().await?;
    std::future::pending().await
}

#[tokio::test]
async fn a_pause_and_a_reset_that_clears_the_checkpoint_are_attempts_ended_by_an_operator() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(steps).spawn().await.unwrap();
    let client = engine.client();
    let h = client
        .start(steps, (), StartOptions::id("ops"))
        .await
        .unwrap();
    let running_with = async |attempts: usize| {
        eventually("the attempt runs and has stored its step", async || {
            let d = h.describe().await.unwrap();
            d.status == ActivityStatus::Running
                && d.attempts.len() == attempts
                && d.progress.is_some_and(|p| p.done > 0)
        })
        .await;
    };
    running_with(1).await;
    client.pause("ops").await.unwrap();
    eventually("paused", async || {
        h.describe().await.unwrap().status == ActivityStatus::Paused
    })
    .await;
    // Paused, the attempt it stopped is listed at once (the first attempt, too).
    let paused = h.describe().await.unwrap();
    let seen: Vec<_> = paused
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.ended_at.is_some()))
        .collect();
    assert_eq!(seen, [(1, AttemptStatus::Paused, true)]);
    client.unpause("ops").await.unwrap();
    running_with(2).await;
    client
        .reset("ops", ResetOptions::new().clear_checkpoint())
        .await
        .unwrap();
    running_with(3).await;

    let d = h.describe().await.unwrap();
    let seen: Vec<_> = d
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.resumed_from.map(|p| p.done)))
        .collect();
    assert_eq!(
        seen,
        [
            (1, AttemptStatus::Paused, None),
            // Resumed from the paused attempt's step.
            (2, AttemptStatus::Reset, Some(1)),
            // After the reset: attempt 1 again, from no checkpoint.
            (1, AttemptStatus::Running, None),
        ]
    );
    h.cancel().await.unwrap();
}

/// Always fails, retried at once.
#[activity(retry(max_attempts = 150, initial_interval = "1ms", max_interval = "1ms"))]
async fn always_fails(ctx: ActivityContext) -> Result<(), ActivityError> {
    Err(ActivityError::retryable(
        "Nope",
        format!("attempt {}", ctx.info().attempt),
    ))
}

#[tokio::test]
async fn the_file_keeps_the_newest_100_ended_attempts_and_prunes_them_with_the_activity() {
    let dir = scratch("bounded");
    let path = dir.path().join("hb.db");
    let options = EngineOptions::default().retention(Duration::from_millis(200));
    let engine = Engine::open_with(&path, options).await.unwrap();
    let _w = engine
        .worker()
        .register(always_fails)
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(always_fails, (), StartOptions::id("many"))
        .await
        .unwrap();
    assert!(matches!(
        h.result().await,
        Err(ActivityFailure::RetriesExhausted { attempts: 150, .. })
    ));
    let d = h.describe().await.unwrap();
    // The newest 100 that ended while it stayed open (50 to 149), and the last one (150).
    assert_eq!(d.attempts.len(), 101);
    assert_eq!(d.attempts[0].attempt, 50);
    assert_eq!(d.attempts[100].attempt, 150);
    assert!(d.attempts.iter().all(|a| a.status == AttemptStatus::Failed));

    let rows = || {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row("SELECT count(*) FROM attempts", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!(rows(), 100);
    eventually("the activity is pruned with its attempts", async || {
        rows() == 0
    })
    .await;
    assert!(engine.client().describe("many").await.is_err());
}
