//! Bad input: an input payload that does not decode fails the attempt at once, non-retryably,
//! naming the activity, the expected type, the field and the position (never the value: see
//! `log_redaction.rs`), without running the body; a
//! `#[state]` resource the worker does not provide fails the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use hb_runtime::testing::RecordedCall;
use hb_runtime::{MissingState, Payload};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Batch {
    items: Vec<u64>,
    label: String,
}

static BATCH_RAN: AtomicBool = AtomicBool::new(false);

#[activity(heartbeat_timeout = "10s", name = "batches.Process")]
async fn process(_ctx: ActivityContext, input: Batch) -> Result<u64, ActivityError> {
    BATCH_RAN.store(true, Ordering::SeqCst);
    Ok(input.items.iter().sum())
}

/// `process` without the flag (tests run in parallel).
#[activity(heartbeat_timeout = "10s")]
async fn sum_batch(_ctx: ActivityContext, input: Batch) -> Result<u64, ActivityError> {
    Ok(input.items.iter().sum())
}

static DOUBLE_RAN: AtomicBool = AtomicBool::new(false);

#[activity(heartbeat_timeout = "10s")]
async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    DOUBLE_RAN.store(true, Ordering::SeqCst);
    Ok(n * 2)
}

#[derive(Debug)]
struct Db {
    url: String,
}

#[activity(heartbeat_timeout = "10s")]
async fn lookup(
    _ctx: ActivityContext,
    #[state] db: Arc<Db>,
    key: String,
) -> Result<String, ActivityError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(format!("{}/{key}", db.url))
}

static UNPROVIDED_RAN: AtomicBool = AtomicBool::new(false);

#[activity(heartbeat_timeout = "10s")]
async fn lookup_unprovided(
    _ctx: ActivityContext,
    #[state] db: Arc<Db>,
    key: String,
) -> Result<String, ActivityError> {
    UNPROVIDED_RAN.store(true, Ordering::SeqCst);
    Ok(format!("{}/{key}", db.url))
}

/// Checks what every bad-input failure promises and returns (activity, expected type, message).
fn bad_input<A: Activity>(run: hb_runtime::testing::TestRun<A>) -> (String, &'static str, String) {
    assert_eq!(run.elapsed, Duration::ZERO, "fails at once");
    assert!(run.heartbeats.is_empty());
    let err = run.result.err().expect("bad input must fail");
    assert!(
        !err.is_retryable(),
        "the same input would fail the same way"
    );
    assert_eq!(err.error_type(), "BadInput");
    match run.calls.last() {
        Some(RecordedCall::Failed { error, .. }) => assert_eq!(error.error_type(), "BadInput"),
        other => panic!("expected a failure report, got {other:?}"),
    }
    let shown = err.to_string();
    match err {
        ActivityError::BadInput {
            activity,
            expected_type,
            message,
        } => {
            assert!(shown.contains(&activity), "{shown}");
            assert!(shown.contains(expected_type), "{shown}");
            assert!(shown.contains(&message), "{shown}");
            (activity, expected_type, message)
        }
        other => panic!("expected BadInput, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_input_of_the_wrong_type_fails_at_once_without_running_the_body() {
    let payload = Payload::json("forty-two").unwrap();
    let run = ActivityEnvironment::new()
        .run_payload(double, payload)
        .await;
    assert!(!DOUBLE_RAN.load(Ordering::SeqCst));
    let (activity, expected, message) = bad_input(run);
    assert_eq!(activity, "double");
    assert_eq!(expected, "u64");
    assert_eq!(
        message,
        "at . (line 1, column 11): invalid type: string, expected u64"
    );
}

#[tokio::test(start_paused = true)]
async fn a_struct_input_missing_a_field_names_the_type_and_the_field() {
    let payload = Payload::json(&serde_json::json!({"items": [1, 2]})).unwrap();
    let run = ActivityEnvironment::new()
        .run_payload(process, payload)
        .await;
    assert!(!BATCH_RAN.load(Ordering::SeqCst));
    let (activity, expected, message) = bad_input(run);
    assert_eq!(
        activity, "batches.Process",
        "the activity type name, as callers know it"
    );
    assert!(expected.ends_with("Batch"), "{expected}");
    assert!(message.contains("missing field `label`"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn bytes_that_are_not_json_are_bad_input() {
    let payload = Payload::from_json_bytes(b"{\"items\": [1, 2".to_vec());
    let run = ActivityEnvironment::new()
        .run_payload(process, payload)
        .await;
    let (_, _, message) = bad_input(run);
    assert_eq!(
        message,
        "at items (line 1, column 15): EOF while parsing a list"
    );
}

#[tokio::test(start_paused = true)]
async fn good_input_through_run_payload_runs_the_body() {
    let payload = Payload::json(&Batch {
        items: vec![1, 2, 3],
        label: "b".into(),
    })
    .unwrap();
    let run = ActivityEnvironment::new()
        .run_payload(sum_batch, payload)
        .await;
    assert_eq!(run.result.unwrap(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_missing_state_resource_fails_without_running_the_body() {
    let run = ActivityEnvironment::new()
        .with_state(Arc::new(String::from("another resource")))
        .run(lookup_unprovided, "k".to_string())
        .await;
    assert!(!UNPROVIDED_RAN.load(Ordering::SeqCst));
    assert_eq!(run.elapsed, Duration::ZERO);
    let err = run.result.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.error_type(), "MissingState");
    match &err {
        ActivityError::MissingState(MissingState { type_name, .. }) => {
            assert!(type_name.contains("Db"), "{type_name}")
        }
        other => panic!("expected MissingState, got {other:?}"),
    }
    assert!(
        err.to_string().contains("with_state"),
        "tells how to fix it: {err}"
    );
    assert!(matches!(
        run.calls.last(),
        Some(RecordedCall::Failed { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_provided_state_resource_reaches_the_body() {
    let run = ActivityEnvironment::new()
        .with_state(Arc::new(Db {
            url: "sqlite://x".into(),
        }))
        .run(lookup, "k".to_string())
        .await;
    assert_eq!(run.result.unwrap(), "sqlite://x/k");
}
