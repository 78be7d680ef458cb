//! Engine semantics beyond the basics: start-to-close and schedule-to-close timeouts,
//! non-retryable errors, retry backoff, heartbeats by task token from outside the activity.

use std::time::{Duration, SystemTime};

use hb_runtime::engine::{
    request_heartbeat, ActivityFailure, ActivityState, Engine, StartOptions, TimeoutKind,
};
use hb_runtime::prelude::*;
use hb_runtime::Payload;

#[activity(
    start_to_close_timeout = "150ms",
    heartbeat_timeout = "100ms",
    heartbeat_interval = "20ms",
    retry(max_attempts = 2, initial_interval = "10ms")
)]
async fn too_slow(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
    ctx.checkpoint(&(n + 1))?;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[tokio::test]
async fn start_to_close_times_each_attempt_out_and_retries_from_the_checkpoint() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(too_slow).spawn().unwrap();
    let h = engine
        .client()
        .start(too_slow, (), StartOptions::id("s2c"))
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::RetriesExhausted { attempts: 2, last }) => match *last {
            ActivityFailure::Timeout {
                kind: TimeoutKind::StartToClose,
                last_details,
            } => {
                // Attempt 2 resumed from attempt 1's 1 and saved 2.
                let n: u64 =
                    hb_runtime::checkpoint::decode_payload(&last_details.unwrap()).unwrap();
                assert_eq!(n, 2);
            }
            other => panic!("expected a start-to-close timeout, got {other:?}"),
        },
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
}

#[tokio::test]
async fn schedule_to_close_ends_the_whole_activity() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(too_slow).spawn().unwrap();
    let h = engine
        .client()
        .start(
            too_slow,
            (),
            StartOptions::id("sched2c")
                .start_to_close_timeout(Duration::from_secs(3600))
                .schedule_to_close_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::Timeout {
            kind: TimeoutKind::ScheduleToClose,
            ..
        }) => {}
        other => panic!("expected a schedule-to-close timeout, got {other:?}"),
    }
    assert_eq!(h.describe().await.unwrap().state, ActivityState::TimedOut);
}

#[activity(retry(max_attempts = 5, initial_interval = "10ms", non_retryable = ["BadRow"]))]
async fn strict(_ctx: ActivityContext, kind: String) -> Result<(), ActivityError> {
    Err(ActivityError::retryable(
        kind,
        "this row cannot be imported",
    ))
}

#[tokio::test]
async fn a_non_retryable_error_type_ends_the_activity_at_once() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(strict).spawn().unwrap();
    let h = engine
        .client()
        .start(strict, "BadRow".to_string(), StartOptions::id("strict-1"))
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::Application { error_type, .. }) => assert_eq!(error_type, "BadRow"),
        other => panic!("expected the application error itself, got {other:?}"),
    }
    assert_eq!(h.describe().await.unwrap().attempt, 1);

    // Another type is retried until the attempts run out.
    let h = engine
        .client()
        .start(strict, "Flaky".to_string(), StartOptions::id("strict-2"))
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::RetriesExhausted { attempts: 5, last }) => {
            assert!(matches!(*last, ActivityFailure::Application { .. }))
        }
        other => panic!("expected RetriesExhausted after 5 attempts, got {other:?}"),
    }
}

#[activity(retry(max_attempts = 2, initial_interval = "30s"))]
async fn fails_once(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Err(ActivityError::retryable("Flaky", "try later"))
}

#[tokio::test]
async fn a_failed_attempt_backs_off_for_the_policy_interval() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(fails_once).spawn().unwrap();
    let before = SystemTime::now();
    let h = engine
        .client()
        .start(fails_once, (), StartOptions::id("backoff"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let d = loop {
        let d = h.describe().await.unwrap();
        if d.state == ActivityState::BackingOff {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "never backed off");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let next = d.next_attempt_at.unwrap();
    assert!(next >= before + Duration::from_secs(30) - Duration::from_millis(1));
    assert!(matches!(
        d.last_failure,
        Some(ActivityFailure::Application { ref error_type, .. }) if error_type == "Flaky"
    ));
    // Cancelled directly while waiting for its retry.
    assert_eq!(h.cancel().await.unwrap(), ActivityState::Cancelled);
}

#[activity(heartbeat_timeout = "30s", heartbeat_interval = "20s")]
async fn waits_for_outside_heartbeats(ctx: ActivityContext) -> Result<String, ActivityError> {
    // Hands its task token out, then waits to be cancelled.
    let token = ctx.info().task_token.clone();
    TOKEN.lock().unwrap().replace(token);
    ctx.cancelled().await;
    Ok(String::new())
}

static TOKEN: std::sync::Mutex<Option<hb_runtime::transport::TaskToken>> =
    std::sync::Mutex::new(None);

#[tokio::test]
async fn an_attempt_is_heartbeated_by_task_token_from_another_thread_and_process() {
    let dir = std::env::temp_dir().join(format!("hb-semantics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let _w = engine
        .worker()
        .register(waits_for_outside_heartbeats)
        .spawn()
        .unwrap();
    let client = engine.client();
    let h = client
        .start(
            waits_for_outside_heartbeats,
            (),
            StartOptions::id("outside"),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let token = loop {
        if let Some(t) = TOKEN.lock().unwrap().clone() {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    // Another thread.
    let c2 = client.clone();
    let t2 = token.clone();
    let reply = std::thread::spawn(move || {
        c2.heartbeat(
            &t2,
            Some(&Payload::json(&serde_json::json!({"step": 1})).unwrap()),
        )
    })
    .join()
    .unwrap()
    .unwrap();
    assert!(!reply.stops());
    let d = h.describe().await.unwrap();
    assert_eq!(d.details.unwrap().data(), br#"{"step":1}"#);
    assert!(d.last_heartbeat.is_some());

    // Another process would do this: queue it in the file; the engine applies it shortly.
    request_heartbeat(
        &path,
        &token,
        Some(&Payload::json(&serde_json::json!({"step": 2})).unwrap()),
    )
    .unwrap();
    loop {
        let d = h.describe().await.unwrap();
        if d.details.as_ref().map(|p| p.data().to_vec()) == Some(br#"{"step":2}"#.to_vec()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued heartbeat never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.cancel().await.unwrap();
    let _ = h.result().await;
    drop(engine);
    std::fs::remove_dir_all(&dir).ok();
}

#[activity(retry(max_attempts = 3, initial_interval = "20ms"))]
async fn fails_first(ctx: ActivityContext) -> Result<u32, ActivityError> {
    if ctx.info().attempt == 1 {
        return Err(ActivityError::retryable("Flaky", "first attempt fails"));
    }
    Ok(ctx.info().attempt)
}

#[tokio::test]
async fn a_deadline_years_away_does_not_stop_the_engines_timers() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(too_slow)
        .register(fails_first)
        .spawn()
        .unwrap();
    let client = engine.client();
    let _far = client
        .start(
            too_slow,
            (),
            StartOptions::id("far")
                .start_to_close_timeout(Duration::from_secs(3 * 365 * 24 * 3600))
                .schedule_to_close_timeout(Duration::from_secs(3 * 365 * 24 * 3600)),
        )
        .await
        .unwrap();
    // Its retry needs the timer task alive.
    let h = client
        .start(fails_first, (), StartOptions::id("near"))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), h.result())
            .await
            .expect("the retry timer fired")
            .unwrap(),
        2
    );
}

#[activity(
    heartbeat_timeout = "10s",
    cancel = "cooperative",
    cancel_grace = "5s",
    retry(max_attempts = 5, initial_interval = "10ms")
)]
async fn fails_when_cancelled(ctx: ActivityContext) -> Result<(), ActivityError> {
    ctx.cancelled().await;
    Err(ActivityError::retryable("Interrupted", "gave up on cancel"))
}

#[tokio::test]
async fn an_attempt_that_fails_after_a_cancel_request_ends_the_activity_as_cancelled() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(fails_when_cancelled)
        .spawn()
        .unwrap();
    let h = engine
        .client()
        .start(fails_when_cancelled, (), StartOptions::id("fail-on-cancel"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.describe().await.unwrap().state != ActivityState::Running {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    h.cancel().await.unwrap();
    assert!(matches!(
        h.result().await,
        Err(ActivityFailure::Cancelled { .. })
    ));
    assert_eq!(h.describe().await.unwrap().attempt, 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_does_not_fit_fails_alone() {
    let dir = std::env::temp_dir().join(format!("hb-isolation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let engine = Engine::open_with(
        dir.join("hb.db"),
        hb_runtime::engine::EngineOptions::default().max_file_size(512 * 1024),
    )
    .await
    .unwrap();
    let client = engine.client();
    let big = "x".repeat(2 * 1024 * 1024);
    let mut small = tokio::task::JoinSet::new();
    for i in 0..50 {
        let client = client.clone();
        small.spawn(async move {
            client
                .start(
                    strict,
                    format!("s{i}"),
                    StartOptions::id(format!("small-{i}")),
                )
                .await
        });
    }
    let big_start = client.start(strict, big, StartOptions::id("too-big")).await;
    assert!(matches!(
        big_start,
        Err(hb_runtime::engine::EngineError::Storage { .. })
    ));
    while let Some(r) = small.join_next().await {
        r.unwrap()
            .expect("a small start batched with the big one still succeeds");
    }
    drop(engine);
    std::fs::remove_dir_all(&dir).ok();
}
