//! Tracing: every attempt runs in an `activity` span carrying activity_type, activity_id and
//! attempt (also around blocking closures and the pump's own events); each heartbeat is a debug
//! event; a delivered cancel is an info event.

mod support;

use std::time::Duration;

use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use tracing::Level;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Step {
    #[checkpoint(done)]
    n: u64,
}

#[activity(heartbeat_timeout = "10s")]
async fn traced(ctx: ActivityContext, _input: ()) -> Result<(), ActivityError> {
    tracing::info!(marker = "body", "inside the body");
    ctx.run_blocking(|_ctx| {
        tracing::info!(marker = "blocking", "inside the blocking closure");
        Ok(())
    })
    .await
}

/// Checkpoints once, then waits `secs` seconds.
#[activity(heartbeat_timeout = "10s")]
async fn beats(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    secs: u64,
) -> Result<(), ActivityError> {
    s.n = 12_345;
    ctx.checkpoint(&s)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

#[activity(heartbeat_timeout = "10s")]
async fn forever(_ctx: ActivityContext, _input: ()) -> Result<(), ActivityError> {
    std::future::pending::<()>().await;
    Ok(())
}

// Unpaused: `traced` runs a blocking closure, which a paused clock cannot follow.
#[tokio::test]
async fn the_attempt_span_carries_type_id_and_attempt() {
    let logs = support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("traced-1")
        .attempt(3)
        .run(traced, ())
        .await;
    run.result.unwrap();

    let events = logs.for_activity("traced-1");
    for marker in ["body", "blocking"] {
        let e = events
            .iter()
            .find(|e| e.field("marker") == Some(marker))
            .unwrap_or_else(|| panic!("no {marker} event inside the attempt span: {events:#?}"));
        let (name, fields) = e.spans.last().unwrap();
        assert_eq!(name, "activity");
        assert_eq!(
            fields.get("activity_type").map(String::as_str),
            Some("traced")
        );
        assert_eq!(
            fields.get("activity_id").map(String::as_str),
            Some("traced-1")
        );
        assert_eq!(fields.get("attempt").map(String::as_str), Some("3"));
    }
}

#[tokio::test(start_paused = true)]
async fn every_heartbeat_is_a_debug_event_in_the_attempt_span() {
    let logs = support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("traced-2")
        .run(beats, 16)
        .await;
    run.result.as_ref().unwrap();
    assert_eq!(run.heartbeats.len(), 3);

    let size = run.heartbeats[0]
        .details
        .as_ref()
        .unwrap()
        .len()
        .to_string();
    let debug: Vec<_> = logs
        .for_activity("traced-2")
        .into_iter()
        .filter(|e| e.level == Level::DEBUG && e.message == "heartbeat")
        .collect();
    assert_eq!(debug.len(), 3, "{debug:#?}");
    for e in &debug {
        assert_eq!(e.field("bytes"), Some(size.as_str()));
        assert_eq!(e.span_field("activity_type"), Some("beats"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_delivered_cancel_is_an_info_event_with_its_reason() {
    let logs = support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("traced-3")
        .cancel_after_heartbeats(1)
        .run(forever, ())
        .await;
    assert!(run.result.unwrap_err().is_cancelled());

    let info: Vec<_> = logs
        .for_activity("traced-3")
        .into_iter()
        .filter(|e| e.level == Level::INFO && e.field("reason") == Some("cancel requested"))
        .collect();
    assert!(
        info.iter().any(|e| e.message.contains("cancel delivered")),
        "{info:#?}"
    );
    assert!(
        info.iter()
            .all(|e| e.span_field("activity_id") == Some("traced-3"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_a_warn_event_saying_whether_it_is_retried() {
    #[activity(heartbeat_timeout = "10s")]
    async fn fails(_ctx: ActivityContext, _input: ()) -> Result<(), ActivityError> {
        Err(ActivityError::retryable("Flaky", "try later"))
    }
    let logs = support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("traced-4")
        .run(fails, ())
        .await;
    assert!(run.result.is_err());
    let warn = logs
        .for_activity("traced-4")
        .into_iter()
        .find(|e| e.level == Level::WARN)
        .expect("a warn event");
    assert_eq!(warn.field("retryable"), Some("true"));
    assert!(warn.field("error").unwrap().contains("try later"));
}

#[tokio::test(start_paused = true)]
async fn attempts_of_different_activities_do_not_share_spans() {
    let logs = support::logs();
    let env_a = ActivityEnvironment::new().activity_id("traced-5a");
    let env_b = ActivityEnvironment::new().activity_id("traced-5b");
    let (a, b) = tokio::join!(env_a.run(beats, 6), env_b.run(beats, 11));
    assert_eq!((a.heartbeats.len(), b.heartbeats.len()), (1, 2));
    let count = |id| {
        logs.for_activity(id)
            .iter()
            .filter(|e| e.message == "heartbeat")
            .count()
    };
    assert_eq!((count("traced-5a"), count("traced-5b")), (1, 2));
}
