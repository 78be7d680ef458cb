//! Versioned checkpoints: older versions migrate through `migrate_from` chains; newer or
//! corrupt ones follow `on_bad_checkpoint` ("restart" warns and starts from Default, "fail"
//! ends the activity non-retryably without losing the details); plain JSON from a non-hb
//! caller reads as the current version; the envelope is `{"_hb_v":N, ...fields}`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};

use hb_runtime::checkpoint::{decode_payload, encode_payload};
use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use hb_runtime::testing::RecordedCall;
use hb_runtime::{CheckpointDecodeError, Payload};
use tracing::Level;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct ProgressV1 {
    done: u32,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[checkpoint(version = 2, migrate_from = ProgressV1)]
struct ProgressV2 {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
}

impl From<ProgressV1> for ProgressV2 {
    fn from(v1: ProgressV1) -> Self {
        ProgressV2 {
            next: u64::from(v1.done),
            total: 0,
        }
    }
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[checkpoint(version = 3, migrate_from = ProgressV2)]
struct ProgressV3 {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
    phase: String,
}

impl From<ProgressV2> for ProgressV3 {
    fn from(v2: ProgressV2) -> Self {
        ProgressV3 {
            next: v2.next,
            total: v2.total,
            phase: "migrated".into(),
        }
    }
}

/// Returns the checkpoint it started from.
#[activity(heartbeat_timeout = "10s")]
async fn start_v2(
    _ctx: ActivityContext,
    #[checkpoint] p: ProgressV2,
    _input: (),
) -> Result<ProgressV2, ActivityError> {
    Ok(p)
}

#[activity(heartbeat_timeout = "10s")]
async fn start_v3(
    _ctx: ActivityContext,
    #[checkpoint] p: ProgressV3,
    _input: (),
) -> Result<ProgressV3, ActivityError> {
    Ok(p)
}

/// Checkpoints what it started from with one more step done, then waits for a heartbeat.
#[activity(heartbeat_timeout = "10s")]
async fn step_v2(
    ctx: ActivityContext,
    #[checkpoint] mut p: ProgressV2,
    _input: (),
) -> Result<(), ActivityError> {
    p.next += 1;
    ctx.checkpoint(&p)?;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    Ok(())
}

static STRICT_RAN: AtomicBool = AtomicBool::new(false);

#[activity(heartbeat_timeout = "10s", on_bad_checkpoint = "fail")]
async fn strict_v2(
    _ctx: ActivityContext,
    #[checkpoint] p: ProgressV2,
    _input: (),
) -> Result<ProgressV2, ActivityError> {
    STRICT_RAN.store(true, Ordering::SeqCst);
    Ok(p)
}

#[activity(heartbeat_timeout = "10s", on_bad_checkpoint = "restart")]
async fn lenient_v2(
    _ctx: ActivityContext,
    #[checkpoint] p: ProgressV2,
    _input: (),
) -> Result<ProgressV2, ActivityError> {
    Ok(p)
}

fn json(bytes: &[u8]) -> Payload {
    Payload::from_json_bytes(bytes.to_vec())
}

#[tokio::test(start_paused = true)]
async fn a_v1_checkpoint_migrates_to_v2_through_from() {
    let run = ActivityEnvironment::new()
        .with_checkpoint(ProgressV1 { done: 7 })
        .run(start_v2, ())
        .await;
    assert_eq!(run.result.unwrap(), ProgressV2 { next: 7, total: 0 });
}

#[tokio::test(start_paused = true)]
async fn migrations_chain_from_v1_and_v2_to_v3() {
    let from_v1 = ActivityEnvironment::new()
        .with_checkpoint(ProgressV1 { done: 4 })
        .run(start_v3, ())
        .await;
    assert_eq!(
        from_v1.result.unwrap(),
        ProgressV3 {
            next: 4,
            total: 0,
            phase: "migrated".into()
        }
    );

    let from_v2 = ActivityEnvironment::new()
        .with_checkpoint(ProgressV2 { next: 5, total: 9 })
        .run(start_v3, ())
        .await;
    assert_eq!(
        from_v2.result.unwrap(),
        ProgressV3 {
            next: 5,
            total: 9,
            phase: "migrated".into()
        }
    );

    let current = ProgressV3 {
        next: 6,
        total: 9,
        phase: "copy".into(),
    };
    let from_v3 = ActivityEnvironment::new()
        .with_checkpoint(current.clone())
        .run(start_v3, ())
        .await;
    assert_eq!(from_v3.result.unwrap(), current);
}

#[tokio::test(start_paused = true)]
async fn the_migrated_checkpoint_is_sent_back_in_the_new_version() {
    let run = ActivityEnvironment::new()
        .with_details(json(br#"{"_hb_v":1,"done":2}"#))
        .run(step_v2, ())
        .await;
    run.result.as_ref().unwrap();
    let sent = run.heartbeats[0].details.as_ref().unwrap();
    let value: serde_json::Value = serde_json::from_slice(sent.data()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"_hb_v": 2, "_hb_p": [3, 0], "next": 3, "total": 0})
    );
}

#[tokio::test(start_paused = true)]
async fn details_from_a_non_hb_caller_decode_as_the_current_version() {
    // A Python workflow or an activity without hb heartbeated plain JSON.
    let run = ActivityEnvironment::new()
        .with_details(Payload::json(&serde_json::json!({"next": 4, "total": 10})).unwrap())
        .run(start_v2, ())
        .await;
    assert_eq!(run.result.unwrap(), ProgressV2 { next: 4, total: 10 });
}

#[tokio::test(start_paused = true)]
async fn heartbeats_carry_the_fields_at_the_top_level_of_a_versioned_envelope() {
    let run = ActivityEnvironment::new()
        .with_checkpoint(ProgressV2 {
            next: 40,
            total: 100,
        })
        .run(step_v2, ())
        .await;
    run.result.as_ref().unwrap();
    let sent = run.heartbeats[0].details.as_ref().unwrap();
    assert_eq!(sent.encoding(), Some("json/plain"));
    assert_eq!(
        sent.data(),
        br#"{"_hb_v":2,"_hb_p":[41,100],"next":41,"total":100}"#
    );
    // What a Python caller does: details[0]["next"].
    let value: serde_json::Value = serde_json::from_slice(sent.data()).unwrap();
    assert_eq!(value["next"], 41);
    assert_eq!(
        decode_payload::<ProgressV2>(sent).unwrap(),
        ProgressV2 {
            next: 41,
            total: 100
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_scalar_checkpoint_is_wrapped_in_the_envelope() {
    #[activity(heartbeat_timeout = "10s")]
    async fn counts(
        ctx: ActivityContext,
        #[checkpoint] mut n: u64,
        _input: (),
    ) -> Result<(), ActivityError> {
        n += 41;
        ctx.checkpoint(&n)?;
        Ok(())
    }
    let run = ActivityEnvironment::new().run(counts, ()).await;
    run.result.as_ref().unwrap();
    assert_eq!(
        run.final_details.unwrap().data(),
        br#"{"_hb_v":1,"_hb_p":[41,null],"_hb_value":41}"#
    );
}

fn restart_warnings(activity_id: &str) -> Vec<support::Captured> {
    support::logs()
        .for_activity(activity_id)
        .into_iter()
        .filter(|e| e.level == Level::WARN && e.message.contains("bad checkpoint"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn restart_policy_warns_and_starts_a_newer_version_from_default() {
    support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("restart-newer")
        .with_details(json(br#"{"_hb_v":9,"next":50,"total":100}"#))
        .run(lenient_v2, ())
        .await;
    assert_eq!(run.result.unwrap(), ProgressV2::default());
    let warns = restart_warnings("restart-newer");
    assert_eq!(warns.len(), 1, "{warns:#?}");
    let error = warns[0].field("error").unwrap();
    assert!(error.contains("ProgressV2"), "{error}");
    assert!(error.contains("version 9 is newer"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn restart_is_the_default_policy_for_corrupt_bytes() {
    support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("restart-corrupt")
        .with_details(json(b"\x00\x01 not json"))
        .run(start_v2, ())
        .await;
    assert_eq!(run.result.unwrap(), ProgressV2::default());
    assert_eq!(restart_warnings("restart-corrupt").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_attempt_overwrites_the_bad_details_with_its_own_checkpoint() {
    let run = ActivityEnvironment::new()
        .with_details(json(br#"{"_hb_v":2,"next":"forty"}"#))
        .run(step_v2, ())
        .await;
    run.result.as_ref().unwrap();
    assert_eq!(run.last_checkpoint, Some(ProgressV2 { next: 1, total: 0 }));
}

/// Runs strict_v2 with `details` and returns its BadCheckpoint error, after checking everything
/// the "fail" policy promises.
async fn fails_with(details: Payload) -> CheckpointDecodeError {
    STRICT_RAN.store(false, Ordering::SeqCst);
    let run = ActivityEnvironment::new()
        .with_details(details.clone())
        .run(strict_v2, ())
        .await;
    assert!(!STRICT_RAN.load(Ordering::SeqCst), "the body must not run");
    assert_eq!(run.elapsed, std::time::Duration::ZERO, "fails at once");
    assert!(!run.timed_out);
    let err = run.result.unwrap_err();
    assert!(!err.is_retryable(), "never an endless retry loop");
    assert_eq!(err.error_type(), "BadCheckpoint");
    // The details are not lost: the failure report carries them unchanged.
    match run.calls.last() {
        Some(RecordedCall::Failed { last_details, .. }) => {
            assert_eq!(last_details.as_ref(), Some(&details))
        }
        other => panic!("expected a failure report, got {other:?}"),
    }
    assert_eq!(run.final_details.as_ref(), Some(&details));
    // Nothing overwrote them either.
    assert!(
        run.heartbeats
            .iter()
            .all(|h| h.details.as_ref() == Some(&details))
    );
    match err {
        ActivityError::BadCheckpoint(e) => {
            let shown = ActivityError::BadCheckpoint(e.clone()).to_string();
            assert!(shown.contains("ProgressV2"), "names the type: {shown}");
            e
        }
        other => panic!("expected BadCheckpoint, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn fail_policy_rejects_a_newer_version_naming_type_and_version() {
    let e = fails_with(json(br#"{"_hb_v":9,"next":50,"total":100}"#)).await;
    assert_eq!(e.type_name, "ProgressV2");
    assert_eq!(e.version, Some(9));
    assert_eq!(e.expected, 2);
    let shown = e.to_string();
    assert!(shown.contains('9'), "names the version: {shown}");
}

#[tokio::test(start_paused = true)]
async fn fail_policy_rejects_corrupt_bytes_naming_the_position() {
    let bytes = b"{\"_hb_v\":2,\"next\":";
    let e = fails_with(json(bytes)).await;
    assert_eq!(e.type_name, "ProgressV2");
    assert_eq!(
        e.message,
        "at next (line 1, column 18): EOF while parsing a value"
    );
    assert!(
        ActivityError::BadCheckpoint(e)
            .to_string()
            .contains("EOF while parsing a value")
    );
}

/// The field and serde's reason, without the value it refused (see `log_redaction.rs`).
#[tokio::test(start_paused = true)]
async fn fail_policy_rejects_a_wrong_shape_naming_the_field() {
    let reason = "at next: invalid type: string, expected u64";
    let e = fails_with(json(br#"{"_hb_v":2,"next":"forty","total":1}"#)).await;
    assert_eq!(e.version, Some(2));
    assert!(e.message.contains(reason), "{} vs {reason}", e.message);
    let shown = ActivityError::BadCheckpoint(e).to_string();
    assert!(
        shown.contains("ProgressV2") && shown.contains(reason),
        "{shown}"
    );
}

#[tokio::test(start_paused = true)]
async fn fail_policy_reports_a_broken_old_version_through_the_migration() {
    let e = fails_with(json(br#"{"_hb_v":1,"done":"seven"}"#)).await;
    assert_eq!(e.type_name, "ProgressV2");
    assert_eq!(e.version, Some(1));
    assert!(e.message.contains("ProgressV1"), "{}", e.message);
}

#[test]
fn encode_and_decode_round_trip_every_version() {
    let v1 = encode_payload(&ProgressV1 { done: 1 }).unwrap();
    assert_eq!(v1.data(), br#"{"_hb_v":1,"done":1}"#);
    assert_eq!(
        decode_payload::<ProgressV3>(&v1).unwrap(),
        ProgressV3 {
            next: 1,
            total: 0,
            phase: "migrated".into()
        }
    );
    let v3 = ProgressV3 {
        next: 2,
        total: 3,
        phase: "p".into(),
    };
    assert_eq!(
        decode_payload::<ProgressV3>(&encode_payload(&v3).unwrap()).unwrap(),
        v3
    );
    // An older type cannot read a newer checkpoint.
    let err = decode_payload::<ProgressV1>(&encode_payload(&v3).unwrap()).unwrap_err();
    assert_eq!(err.version, Some(3));
}
