//! The metrics hb reports through the `metrics` facade, read back as a Prometheus scrape from
//! the real exporter (`metrics-exporter-prometheus`) installed as this process's recorder.
//!
//! Each test runs its own activity types, so the tests of this file (one process, one
//! recorder) tell their series apart by the `activity_type` label.

use std::sync::OnceLock;
use std::time::Duration;

use hb_runtime::client::{ActivityFailure, StartOptions};
use hb_runtime::engine::Engine;
use hb_runtime::metrics as m;
use hb_runtime::prelude::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process's recorder, installed on first use.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this process");
        handle
    })
}

/// The value of the sample `name{labels...}` (labels in any order, all of them given) in
/// a scrape.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let rest = rest.strip_suffix('}')?;
        let have: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split(',').collect()
        };
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        (have.len() == wanted.len() && wanted.iter().all(|w| have.contains(&w.as_str())))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// Waits (up to 10 s) until `check` holds for a scrape; panics with the last scrape if not.
async fn scrape_until(what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = prometheus().render();
        if check(&scrape) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within 10 s; the scrape:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh scratch directory for one test, removed when it drops (even if the test fails).
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-metrics-{name}-"))
        .tempdir()
        .unwrap()
}

/// Stores three checkpoints (flushed: each a heartbeat); its first attempt then fails.
#[activity(
    heartbeat_timeout = "10s",
    retry(max_attempts = 3, initial_interval = "10ms")
)]
async fn flaky_copy(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<u64, ActivityError> {
    for i in n..n + 3 {
        ctx.checkpoint(&(i + 1))?;
        ctx.flush().await?;
    }
    if ctx.info().attempt == 1 {
        return Err(ActivityError::retryable("DiskFull", "no space left"));
    }
    Ok(n)
}

#[tokio::test]
async fn a_retried_activity_counts_its_attempts_failures_heartbeats_and_latencies() {
    prometheus();
    let dir = scratch("retried");
    let engine = Engine::open(dir.path().join("hb.db")).await.unwrap();
    let _w = engine.worker().register(flaky_copy).spawn().await.unwrap();
    let h = engine
        .client()
        .start(flaky_copy, (), StartOptions::id("flaky-1"))
        .await
        .unwrap();
    assert_eq!(h.result().await.unwrap(), 3, "the retry resumed from 3");

    let ty = [("activity_type", "flaky_copy")];
    let scrape = scrape_until("engine gauges", |s| {
        sample(s, m::ENGINE_OPEN_ACTIVITIES, &[]).is_some()
            && sample(s, m::ENGINE_FILE_SIZE, &[]).is_some_and(|b| b > 0.0)
            && sample(
                s,
                m::WORKER_TASK_SLOTS_AVAILABLE,
                &[("worker", "flaky_copy")],
            )
            .is_some()
    })
    .await;
    assert_eq!(sample(&scrape, m::ACTIVITY_STARTED, &ty), Some(2.0));
    assert_eq!(sample(&scrape, m::ACTIVITY_RETRIED, &ty), Some(1.0));
    assert_eq!(sample(&scrape, m::ACTIVITY_COMPLETED, &ty), Some(1.0));
    assert_eq!(
        sample(
            &scrape,
            m::ACTIVITY_EXECUTION_FAILED,
            &[("activity_type", "flaky_copy"), ("error_type", "DiskFull")]
        ),
        Some(1.0)
    );
    // Three flushes per attempt, each a heartbeat carrying a checkpoint.
    let beats = sample(&scrape, m::HEARTBEATS_SENT, &ty).unwrap();
    assert!(beats >= 6.0, "{beats} heartbeats");
    assert_eq!(
        sample(&scrape, &format!("{}_count", m::CHECKPOINT_BYTES), &ty),
        Some(beats),
        "every heartbeat carried a checkpoint"
    );
    assert_eq!(
        sample(
            &scrape,
            &format!("{}_count", m::ACTIVITY_EXECUTION_LATENCY),
            &ty
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &scrape,
            &format!("{}_count", m::ACTIVITY_SCHEDULE_TO_START_LATENCY),
            &ty
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &scrape,
            &format!("{}_count", m::ACTIVITY_SUCCEED_ENDTOEND_LATENCY),
            &ty
        ),
        Some(1.0)
    );
    // The end-to-end latency spans the retry's backoff: at least the 10 ms interval.
    let e2e = sample(
        &scrape,
        &format!("{}_sum", m::ACTIVITY_SUCCEED_ENDTOEND_LATENCY),
        &ty,
    );
    assert!(e2e.unwrap() >= 0.010, "{e2e:?}");
    let commits = sample(&scrape, &format!("{}_count", m::ENGINE_COMMIT_LATENCY), &[]);
    assert!(commits.unwrap() >= 1.0, "{commits:?}");
    engine.close().await.unwrap();
}

/// Flushes one checkpoint and waits for its cancel.
#[activity(heartbeat_timeout = "10s")]
async fn waits_for_cancel(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
    ctx.checkpoint(&(n + 1))?;
    ctx.flush().await?;
    std::future::pending().await
}

#[tokio::test]
async fn a_cancel_is_counted_by_reason_with_its_delivery_latency() {
    prometheus();
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(waits_for_cancel)
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(waits_for_cancel, (), StartOptions::id("cancel-1"))
        .await
        .unwrap();
    let ty = [("activity_type", "waits_for_cancel")];
    scrape_until("a heartbeat", |s| {
        sample(s, m::HEARTBEATS_SENT, &ty).is_some_and(|n| n >= 1.0)
    })
    .await;
    h.cancel().await.unwrap();
    assert!(matches!(
        h.result().await,
        Err(ActivityFailure::Cancelled { .. })
    ));
    let scrape = scrape_until("the cancel", |s| {
        sample(
            s,
            m::ACTIVITY_CANCELLED,
            &[
                ("activity_type", "waits_for_cancel"),
                ("reason", "requested"),
            ],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(
            &scrape,
            &format!("{}_count", m::CANCEL_DELIVERY_LATENCY),
            &ty
        ),
        Some(1.0)
    );
    // Registered with the type's other handles, never incremented.
    assert_eq!(sample(&scrape, m::ACTIVITY_COMPLETED, &ty), Some(0.0));
}

/// Stores nothing: its heartbeats stop after `stall_timeout`, and the engine times it out.
#[activity(
    heartbeat_timeout = "300ms",
    heartbeat_interval = "20ms",
    stall_timeout = "100ms",
    retry(max_attempts = 1)
)]
async fn goes_quiet(_ctx: ActivityContext) -> Result<(), ActivityError> {
    std::future::pending().await
}

#[tokio::test]
async fn a_stall_and_the_heartbeat_timeout_it_causes_are_counted() {
    prometheus();
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(goes_quiet).spawn().await.unwrap();
    let h = engine
        .client()
        .start(goes_quiet, (), StartOptions::id("quiet-1"))
        .await
        .unwrap();
    assert!(matches!(
        h.result().await,
        Err(ActivityFailure::Timeout { .. } | ActivityFailure::RetriesExhausted { .. })
    ));
    let scrape = scrape_until("the timeout", |s| {
        sample(
            s,
            m::ACTIVITY_CANCELLED,
            &[("activity_type", "goes_quiet"), ("reason", "timed_out")],
        ) == Some(1.0)
    })
    .await;
    let ty = [("activity_type", "goes_quiet")];
    assert_eq!(sample(&scrape, m::STALLS_DETECTED, &ty), Some(1.0));
    assert_eq!(
        sample(
            &scrape,
            m::ACTIVITY_TIMED_OUT,
            &[("activity_type", "goes_quiet"), ("kind", "heartbeat")]
        ),
        Some(1.0)
    );
}

/// Fails for good with its input in the message.
#[activity(retry(max_attempts = 1))]
async fn refuses(_ctx: ActivityContext, secret: String) -> Result<(), ActivityError> {
    Err(ActivityError::non_retryable(
        "Refused",
        format!("no {secret}"),
    ))
}

/// A Prometheus recorder installed: the scrape names every activity metric with its help
/// text, and no payload value appears in it.
#[tokio::test]
async fn the_scrape_describes_the_metrics_and_holds_no_payload() {
    prometheus();
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(refuses).spawn().await.unwrap();
    let h = engine
        .client()
        .start(refuses, "hunter2".to_owned(), StartOptions::id("secret-id"))
        .await
        .unwrap();
    assert!(h.result().await.is_err());
    scrape_until("the failure", |s| {
        sample(
            s,
            m::ACTIVITY_EXECUTION_FAILED,
            &[("activity_type", "refuses"), ("error_type", "Refused")],
        ) == Some(1.0)
    })
    .await;
    let scrape = prometheus().render();
    assert!(
        scrape.contains(&format!("# HELP {} Attempts started", m::ACTIVITY_STARTED)),
        "{scrape}"
    );
    assert!(!scrape.contains("secret-id"), "ids are not labels");
    assert!(
        !scrape.contains("hunter2"),
        "inputs and error messages are not labels"
    );
}
