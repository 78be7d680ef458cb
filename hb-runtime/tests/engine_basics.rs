//! The embedded engine end to end: start, run, retry from the checkpoint, time out, cancel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hb_runtime::client::{
    ActivityFailure, ActivityStatus, ClientError, ListFilter, StartOptions, TimeoutKind,
};
use hb_runtime::engine::{Engine, EngineError};
use hb_runtime::prelude::*;
use hb_runtime::worker::ConfigError;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Job {
    items: u64,
    /// Fail attempt 1 when this item is reached.
    fail_first_at: Option<u64>,
    item_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Report {
    resumed_from: u64,
    attempt: u32,
}

#[activity(
    heartbeat_timeout = "1s",
    retry(max_attempts = 3, initial_interval = "10ms")
)]
async fn batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    job: Job,
) -> Result<Report, ActivityError> {
    let resumed_from = p.next;
    p.total = job.items;
    while p.next < job.items {
        if ctx.info().attempt == 1 && Some(p.next) == job.fail_first_at {
            return Err(ActivityError::retryable("Boom", "first attempt fails"));
        }
        tokio::time::sleep(Duration::from_millis(job.item_ms)).await;
        p.next += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(Report {
        resumed_from,
        attempt: ctx.info().attempt,
    })
}

async fn engine_with_worker() -> (Engine, hb_runtime::engine::WorkerHandle) {
    let engine = Engine::in_memory().await.unwrap();
    let worker = engine
        .worker()
        .register(batch)
        .register(stuck)
        .shutdown_grace(Duration::from_millis(50))
        .spawn()
        .await
        .unwrap();
    (engine, worker)
}

#[tokio::test]
async fn an_activity_runs_and_its_result_is_typed() {
    let (engine, _w) = engine_with_worker().await;
    let h = engine
        .client()
        .start(
            batch,
            Job {
                items: 3,
                fail_first_at: None,
                item_ms: 1,
            },
            StartOptions::id("ok-1"),
        )
        .await
        .unwrap();
    assert_eq!(
        h.result().await.unwrap(),
        Report {
            resumed_from: 0,
            attempt: 1
        }
    );
    let d = h.describe().await.unwrap();
    assert_eq!(d.status, ActivityStatus::Completed);
    assert_eq!(d.progress.unwrap().done, 3);
    assert_eq!(d.progress.unwrap().total, Some(3));
}

#[tokio::test]
async fn a_retry_resumes_from_the_last_checkpoint() {
    let (engine, _w) = engine_with_worker().await;
    let h = engine
        .client()
        .start(
            batch,
            Job {
                items: 10,
                fail_first_at: Some(6),
                item_ms: 1,
            },
            StartOptions::id("retry-1"),
        )
        .await
        .unwrap();
    let report = h.result().await.unwrap();
    assert_eq!(
        report,
        Report {
            resumed_from: 6,
            attempt: 2
        }
    );
}

#[activity(heartbeat_timeout = "300ms", retry(max_attempts = 1))]
async fn stuck(ctx: ActivityContext, #[checkpoint] p: Progress) -> Result<(), ActivityError> {
    ctx.checkpoint(&Progress {
        next: p.next + 7,
        total: 9,
    })?;
    ctx.flush().await?;
    // Blocks its thread without heartbeating? No: the pump heartbeats. Stop the pump's view by
    // waiting on something that never ends while a stall would be needed; here we simply never
    // finish and let the test cancel or time out through the engine.
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test]
async fn cancelling_a_running_attempt_reaches_it_at_once() {
    let (engine, _w) = engine_with_worker().await;
    let client = engine.client();
    let h = client
        .start(stuck, (), StartOptions::id("cancel-1"))
        .await
        .unwrap();
    // Wait until it runs and has checkpointed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.describe().await.unwrap().progress.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attempt never checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.cancel().await.unwrap();
    match h.result().await {
        Err(ActivityFailure::Cancelled { details }) => {
            let p: Progress = hb_runtime::checkpoint::decode_payload(&details.unwrap()).unwrap();
            assert_eq!(p.next, 7);
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert_eq!(
        h.describe().await.unwrap().status,
        ActivityStatus::Cancelled
    );
}

#[tokio::test]
async fn an_activity_no_worker_runs_is_cancelled_directly() {
    let engine = Engine::in_memory().await.unwrap();
    let h = engine
        .client()
        .start(stuck, (), StartOptions::id("waiting"))
        .await
        .unwrap();
    assert_eq!(
        h.describe().await.unwrap().status,
        ActivityStatus::Scheduled
    );
    h.cancel().await.unwrap();
    assert_eq!(
        h.describe().await.unwrap().status,
        ActivityStatus::Cancelled
    );
    assert!(matches!(
        h.result().await,
        Err(ActivityFailure::Cancelled { .. })
    ));
}

#[tokio::test]
async fn starting_is_idempotent_by_id_unless_told_otherwise() {
    let engine = Engine::in_memory().await.unwrap();
    let c = engine.client();
    c.start(stuck, (), StartOptions::id("dup")).await.unwrap();
    c.start(stuck, (), StartOptions::id("dup")).await.unwrap();
    assert!(matches!(
        c.start(stuck, (), StartOptions::id("dup").fail_if_exists())
            .await,
        Err(ClientError::AlreadyStarted { .. })
    ));
    let job = Job {
        items: 1,
        fail_first_at: None,
        item_ms: 1,
    };
    assert!(matches!(
        c.start(batch, job, StartOptions::id("dup")).await,
        Err(ClientError::WrongType { .. })
    ));
    assert_eq!(
        c.list(ListFilter::status(ActivityStatus::Scheduled))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Blocks its executor thread for good: no heartbeat reaches the engine once the pump's view…
/// the pump is isolated, so it keeps heartbeating; use a stall to stop it.
#[activity(
    heartbeat_timeout = "200ms",
    stall_timeout = "300ms",
    retry(max_attempts = 2, initial_interval = "10ms")
)]
async fn stalls(ctx: ActivityContext, #[checkpoint] mut n: u64) -> Result<u64, ActivityError> {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    CALLS.fetch_add(1, Ordering::SeqCst);
    n += 1;
    ctx.checkpoint(&n)?;
    std::future::pending::<()>().await;
    Ok(n)
}

#[tokio::test]
async fn a_stalled_attempt_times_out_on_heartbeat_and_retries_with_its_checkpoint() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(stalls).spawn().await.unwrap();
    let h = engine
        .client()
        .start(stalls, (), StartOptions::id("stall-1"))
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 2);
            match *last {
                ActivityFailure::Timeout {
                    kind: TimeoutKind::Heartbeat,
                    last_details,
                } => {
                    // Attempt 2 resumed from attempt 1's checkpoint (1) and stored 2.
                    let n: u64 =
                        hb_runtime::checkpoint::decode_payload(&last_details.unwrap()).unwrap();
                    assert_eq!(n, 2);
                }
                other => panic!("expected a heartbeat timeout, got {other:?}"),
            }
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(h.describe().await.unwrap().status, ActivityStatus::TimedOut);
}

/// Waits (at most 10 s) until `h` reports at least `done` items done.
async fn progressed(h: &hb_runtime::client::Handle<batch>, done: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h
        .describe()
        .await
        .unwrap()
        .progress
        .is_none_or(|p| p.done < done)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {done} items done after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn worker_shutdown_cancels_with_worker_shutdown_and_the_retry_resumes() {
    let engine = Engine::in_memory().await.unwrap();
    let w = engine
        .worker()
        .register(batch)
        .shutdown_grace(Duration::from_millis(20))
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(
            batch,
            Job {
                items: 400,
                fail_first_at: None,
                item_ms: 5,
            },
            StartOptions::id("shutdown-1"),
        )
        .await
        .unwrap();
    progressed(&h, 3).await;
    w.shutdown().await;
    let d = h.describe().await.unwrap();
    assert_eq!(
        d.status,
        ActivityStatus::Scheduled,
        "retried at once, waiting for a worker"
    );
    let saved = d.checkpoint::<Progress>().unwrap().next;
    assert!(saved >= 3);
    assert!(matches!(
        d.last_failure,
        Some(ActivityFailure::Application { ref error_type, .. }) if error_type == "WorkerShutdown"
    ));
    let _w2 = engine.worker().register(batch).spawn().await.unwrap();
    let report = h.result().await.unwrap();
    assert_eq!(report.attempt, 2);
    assert_eq!(report.resumed_from, saved);
}

#[tokio::test]
async fn a_missing_state_is_refused_when_the_worker_spawns() {
    #[derive(Clone)]
    struct Pool;
    #[activity]
    async fn needs_pool(
        _ctx: ActivityContext,
        #[state] _p: Arc<Pool>,
    ) -> Result<(), ActivityError> {
        Ok(())
    }
    let engine = Engine::in_memory().await.unwrap();
    assert!(matches!(
        engine.worker().register(needs_pool).spawn().await,
        Err(EngineError::Config(ConfigError::MissingState(_)))
    ));
}

#[tokio::test]
async fn a_worker_refuses_an_activity_registered_twice_and_a_worker_with_none() {
    mod other {
        use hb_runtime::prelude::*;
        /// Another activity of the name `batch`.
        #[activity(name = "batch")]
        pub async fn batch_too(_ctx: ActivityContext) -> Result<(), ActivityError> {
            Ok(())
        }
    }
    let engine = Engine::in_memory().await.unwrap();
    for twice in [
        engine.worker().register(batch).register(batch),
        engine.worker().register(batch).register(other::batch_too),
    ] {
        match twice.spawn().await {
            Err(EngineError::Config(e @ ConfigError::Duplicate { .. })) => {
                assert!(
                    e.to_string().contains("`batch` was registered twice"),
                    "{e}"
                );
            }
            other => panic!("expected a duplicate registration, got {other:?}"),
        }
    }
    assert!(matches!(
        engine.worker().spawn().await,
        Err(EngineError::Config(ConfigError::NoActivity))
    ));
}

#[tokio::test]
async fn a_failure_names_its_type_once() {
    #[activity]
    async fn open_file(_ctx: ActivityContext) -> Result<(), ActivityError> {
        Err(ActivityError::non_retryable(
            "NotFound",
            "No such file: a.csv",
        ))
    }
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(open_file).spawn().await.unwrap();
    let h = engine
        .client()
        .start(open_file, (), StartOptions::id("f"))
        .await
        .unwrap();
    let failure = h.result().await.unwrap_err();
    assert_eq!(failure.to_string(), "NotFound: No such file: a.csv");
    let Some(ActivityFailure::Application { message, .. }) =
        h.describe().await.unwrap().last_failure
    else {
        panic!("expected the application failure");
    };
    assert_eq!(message, "No such file: a.csv");
}

/// Parks until released through `GATE`, counting how many run at once.
static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
static RUNNING: AtomicU32 = AtomicU32::new(0);
static MOST: AtomicU32 = AtomicU32::new(0);

#[activity(start_to_close_timeout = "1m")]
async fn gated(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    GATE.acquire().await.unwrap().forget();
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(n)
}

#[tokio::test]
async fn a_worker_runs_at_most_max_concurrent_attempts_at_once() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(gated)
        .max_concurrent(2)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let mut handles = Vec::new();
    for i in 0..5 {
        handles.push(
            client
                .start(gated, i, StartOptions::id(format!("gated-{i}")))
                .await
                .unwrap(),
        );
    }
    // Two run; the other three wait for a permit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while RUNNING.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let running = client
        .list(ListFilter::status(ActivityStatus::Running))
        .await
        .unwrap();
    assert_eq!(running.len(), 2);
    GATE.add_permits(5);
    for (i, h) in handles.iter().enumerate() {
        assert_eq!(h.result().await.unwrap(), i as u32);
    }
    assert_eq!(MOST.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_engine_reads_while_it_writes() {
    // Reads (list, describe of closed activities) run on their own connection while the writer
    // commits; on a shared-cache in-memory database they must not fail as "locked".
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(batch).spawn().await.unwrap();
    let client = engine.client();
    let writers = tokio::spawn({
        let client = client.clone();
        async move {
            for i in 0..300 {
                let job = Job {
                    items: 1,
                    fail_first_at: None,
                    item_ms: 0,
                };
                client
                    .start(batch, job, StartOptions::id(format!("rw-{i}")))
                    .await
                    .unwrap();
            }
        }
    });
    while !writers.is_finished() {
        client.list(ListFilter::all()).await.unwrap();
    }
    writers.await.unwrap();
}

#[tokio::test]
async fn closing_the_engine_shuts_its_workers_down_and_refuses_new_work() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(batch)
        .shutdown_grace(Duration::from_millis(20))
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let h = client
        .start(
            batch,
            Job {
                items: 10_000,
                fail_first_at: None,
                item_ms: 5,
            },
            StartOptions::id("closing-1"),
        )
        .await
        .unwrap();
    progressed(&h, 2).await;
    // close() returns once the worker has shut down: the attempt was told WorkerShutdown and
    // reported, its checkpoint flushed.
    tokio::time::timeout(Duration::from_secs(10), engine.close())
        .await
        .expect("close() did not return")
        .unwrap();
    let d = h.describe().await.unwrap();
    assert_eq!(d.status, ActivityStatus::Scheduled);
    assert!(d.checkpoint::<Progress>().unwrap().next >= 2);
    assert!(matches!(
        d.last_failure,
        Some(ActivityFailure::Application { ref error_type, .. }) if error_type == "WorkerShutdown"
    ));
    // New work is refused; reads still answer.
    let late = client
        .start(
            batch,
            Job {
                items: 1,
                fail_first_at: None,
                item_ms: 0,
            },
            StartOptions::id("closing-2"),
        )
        .await;
    assert!(matches!(late, Err(ClientError::Closed)), "{late:?}");
    assert!(matches!(
        client.cancel("closing-1").await,
        Err(ClientError::Closed)
    ));
    assert!(matches!(
        engine.worker().register(batch).spawn().await,
        Err(EngineError::Closed)
    ));
    assert_eq!(client.list(ListFilter::all()).await.unwrap().len(), 1);
}

/// Counts runs of [`fair_a`] and [`fair_b`] in order.
static FAIR_LOG: std::sync::Mutex<Vec<char>> = std::sync::Mutex::new(Vec::new());

#[activity(heartbeat_timeout = "10s")]
async fn fair_a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    FAIR_LOG.lock().unwrap().push('a');
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

#[activity(heartbeat_timeout = "10s")]
async fn fair_b(_ctx: ActivityContext) -> Result<(), ActivityError> {
    FAIR_LOG.lock().unwrap().push('b');
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

#[tokio::test]
async fn a_flood_of_one_type_does_not_starve_another() {
    let engine = Engine::in_memory().await.unwrap();
    let client = engine.client();
    // 40 of type a queued before 5 of type b; one worker runs one attempt at a time.
    let mut handles = Vec::new();
    for i in 0..40 {
        handles.push(
            client
                .start(fair_a, (), StartOptions::id(format!("a-{i}")))
                .await
                .unwrap(),
        );
    }
    let mut bs = Vec::new();
    for i in 0..5 {
        bs.push(
            client
                .start(fair_b, (), StartOptions::id(format!("b-{i}")))
                .await
                .unwrap(),
        );
    }
    let _w = engine
        .worker()
        .register(fair_a)
        .register(fair_b)
        .max_concurrent(1)
        .spawn()
        .await
        .unwrap();
    for h in &bs {
        tokio::time::timeout(Duration::from_secs(10), h.result())
            .await
            .unwrap()
            .unwrap();
    }
    // The types take turns: every b ran before the a's were half done.
    let log = FAIR_LOG.lock().unwrap().clone();
    let last_b = log.iter().rposition(|c| *c == 'b').unwrap();
    let a_before = log[..last_b].iter().filter(|c| **c == 'a').count();
    assert!(
        a_before <= 6,
        "{a_before} attempts of type a ran before the last b: {log:?}"
    );
    for h in &handles {
        h.result().await.unwrap();
    }
}

#[activity(heartbeat_timeout = "10s")]
async fn plus_one(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

/// Issue 9, failure 1: a `start()` whose future is dropped once its row is on its way to the
/// file (a `timeout`, a `select!`, a web handler whose client left) still starts the activity:
/// the engine admits it when the row is stored, not when the caller resumes. Before, it stayed
/// stored `Scheduled` but unknown to the running engine: no worker ran it and `result()` failed
/// at once with `Closed`.
#[tokio::test]
async fn a_start_whose_future_is_dropped_still_runs() {
    let engine = Engine::in_memory().await.unwrap();
    let client = engine.client();
    // Polled once: the row is queued for the writer; then the future is dropped. (The writer
    // may store the row within that one poll on a busy machine: the rest holds either way.)
    let _ = futures_util::FutureExt::now_or_never(client.start(
        plus_one,
        41,
        StartOptions::id("dropped"),
    ));
    // Stored by the writer meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.describe("dropped").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the row was never stored"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _w = engine.worker().register(plus_one).spawn().await.unwrap();
    let h = client.handle(plus_one, "dropped");
    let out = tokio::time::timeout(Duration::from_secs(10), h.result())
        .await
        .expect("a worker ran it");
    assert_eq!(out.unwrap(), 42);
    // A repeated start of the id is that activity.
    let again = client
        .start(plus_one, 0, StartOptions::id("dropped"))
        .await
        .unwrap();
    assert_eq!(again.result().await.unwrap(), 42);
}
