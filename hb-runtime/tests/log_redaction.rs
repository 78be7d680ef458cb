//! Payload values stay out of logs and failure messages (issue 9, failure 11): a payload that does
//! not decode is described by its type, the path of the field and the position, never by the
//! value serde would quote. Checked on every path a decode error takes: an activity's input in
//! the test kit and on the engine (where the failure is also stored), a checkpoint under
//! `on_bad_checkpoint = "restart"` and `"fail"`, a result the caller cannot decode, and options
//! read back from an engine file.

mod support;

use std::time::Duration;

use hb_runtime::Payload;
use hb_runtime::client::{ActivityFailure, StartOptions};
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;

/// The value no log line may contain.
const SECRET: &str = "sk-live-7f3a9c21e5";

fn assert_no_secret_logged() {
    for e in support::logs().all() {
        let line = format!("{} {:?} {:?}", e.message, e.fields, e.spans);
        assert!(
            !line.contains(SECRET),
            "a log line quotes the value: {line}"
        );
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Login {
    user: String,
    pin: u32,
}

#[activity(heartbeat_timeout = "10s")]
async fn login(_ctx: ActivityContext, input: Login) -> Result<u32, ActivityError> {
    Ok(input.pin)
}

#[tokio::test]
async fn an_undecodable_input_is_described_by_field_and_position_not_value() {
    support::logs();
    // Keys are written in order: `pin` first, its value ending at column 27.
    let payload = Payload::json(&serde_json::json!({"user": "ada", "pin": SECRET})).unwrap();
    let run = ActivityEnvironment::new()
        .activity_id("redact-input")
        .run_payload(login, payload)
        .await;
    let err = run.result.unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains(SECRET), "{shown}");
    match err {
        ActivityError::BadInput { message, .. } => assert_eq!(
            message,
            "at pin (line 1, column 27): invalid type: string, expected u32"
        ),
        other => panic!("expected BadInput, got {other:?}"),
    }
    assert_no_secret_logged();
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Cursor {
    #[checkpoint(done)]
    next: u64,
    batches: Vec<u64>,
}

#[activity(heartbeat_timeout = "10s", on_bad_checkpoint = "restart")]
async fn resume_or_restart(
    _ctx: ActivityContext,
    #[checkpoint] c: Cursor,
    _input: (),
) -> Result<u64, ActivityError> {
    Ok(c.next)
}

#[activity(heartbeat_timeout = "10s", on_bad_checkpoint = "fail")]
async fn resume_or_fail(
    _ctx: ActivityContext,
    #[checkpoint] c: Cursor,
    _input: (),
) -> Result<u64, ActivityError> {
    Ok(c.next)
}

fn bad_checkpoint() -> Payload {
    Payload::json(&serde_json::json!({"_hb_v": 1, "next": 3, "batches": [1, SECRET]})).unwrap()
}

#[tokio::test]
async fn a_bad_checkpoint_is_logged_by_field_not_value() {
    support::logs();
    let run = ActivityEnvironment::new()
        .activity_id("redact-restart")
        .with_details(bad_checkpoint())
        .run(resume_or_restart, ())
        .await;
    assert_eq!(run.result.unwrap(), 0, "restarted from Default");
    let warning = support::logs()
        .for_activity("redact-restart")
        .into_iter()
        .find(|e| e.message.contains("bad checkpoint"))
        .expect("a warning for the bad checkpoint");
    let error = warning.field("error").unwrap();
    assert!(error.contains("at batches[1]"), "{error}");
    assert!(
        error.contains("invalid type: string, expected u64"),
        "{error}"
    );

    let run = ActivityEnvironment::new()
        .activity_id("redact-fail")
        .with_details(bad_checkpoint())
        .run(resume_or_fail, ())
        .await;
    let err = run.result.unwrap_err().to_string();
    assert!(err.contains("at batches[1]"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    assert_no_secret_logged();
}

/// Two activities of one type name whose input and output types disagree: what a caller built
/// against an older deployment sends and expects.
mod caller {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, Clone)]
    pub struct OldLogin {
        pub user: String,
        pub pin: String,
    }

    #[activity(heartbeat_timeout = "10s", name = "redact.Login")]
    pub async fn login(_ctx: ActivityContext, _input: OldLogin) -> Result<u32, ActivityError> {
        unreachable!("only started, never run")
    }

    /// No worker runs this type: its activity stays open in the file.
    #[activity(heartbeat_timeout = "10s", name = "redact.Idle")]
    pub async fn idle(_ctx: ActivityContext, _input: ()) -> Result<(), ActivityError> {
        unreachable!("no worker runs it")
    }

    #[activity(heartbeat_timeout = "10s", name = "redact.Token")]
    pub async fn token(_ctx: ActivityContext, _input: ()) -> Result<u64, ActivityError> {
        unreachable!("only started, never run")
    }
}

#[activity(heartbeat_timeout = "10s", name = "redact.Login")]
async fn login_v2(_ctx: ActivityContext, input: Login) -> Result<u32, ActivityError> {
    Ok(input.pin)
}

#[activity(heartbeat_timeout = "10s", name = "redact.Token")]
async fn token_v2(_ctx: ActivityContext, _input: ()) -> Result<String, ActivityError> {
    Ok(SECRET.to_owned())
}

#[tokio::test]
async fn the_engine_stores_and_returns_decode_failures_without_values() {
    support::logs();
    let dir = tempfile::Builder::new()
        .prefix("hb-redaction-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let worker = engine
        .worker()
        .register(login_v2)
        .register(token_v2)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();

    let input = caller::OldLogin {
        user: "ada".into(),
        pin: SECRET.into(),
    };
    let h1 = client
        .start(
            caller::login,
            input,
            StartOptions::id("redact-engine-input"),
        )
        .await
        .unwrap();
    let failure = tokio::time::timeout(Duration::from_secs(30), h1.result())
        .await
        .expect("the attempt fails at once")
        .unwrap_err();
    match &failure {
        ActivityFailure::Application {
            error_type,
            message,
            ..
        } => {
            assert_eq!(error_type, "BadInput");
            assert!(message.contains("at pin"), "{message}");
            assert!(!message.contains(SECRET), "{message}");
        }
        other => panic!("expected the BadInput failure, got {other:?}"),
    }
    let d = client.describe("redact-engine-input").await.unwrap();
    assert!(!format!("{:?}", d.last_failure).contains(SECRET));

    let h = client
        .start(caller::token, (), StartOptions::id("redact-engine-output"))
        .await
        .unwrap();
    let failure = tokio::time::timeout(Duration::from_secs(30), h.result())
        .await
        .expect("the attempt completes at once")
        .unwrap_err();
    match &failure {
        ActivityFailure::BadOutput { message, .. } => {
            assert!(
                message.contains("invalid type: string, expected u64"),
                "{message}"
            );
            assert!(!message.contains(SECRET), "{message}");
        }
        other => panic!("expected BadOutput, got {other:?}"),
    }
    client
        .start(caller::idle, (), StartOptions::id("redact-options"))
        .await
        .unwrap();
    worker.shutdown().await;
    drop((h1, h, client, engine));

    // Stored options a later build cannot read: the engine warns and uses defaults.
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute(
            "UPDATE activities SET options = ?1 WHERE id = 'redact-options'",
            [format!(r#"{{"heartbeat_timeout_ms":"{SECRET}"}}"#)],
        )
        .unwrap();
    }
    let engine = Engine::open(&path).await.unwrap();
    let d = engine.client().describe("redact-options").await.unwrap();
    assert_eq!(d.id, "redact-options");
    let warned = support::logs()
        .all()
        .into_iter()
        .any(|e| e.message.contains("unreadable stored options"));
    assert!(warned, "the engine warns about the options it cannot read");
    assert_no_secret_logged();
    drop(engine);
}

#[test]
fn serde_messages_lose_their_values_and_keep_their_shape() {
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    enum Mode {
        Fast,
        Slow,
    }
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        mode: Mode,
        tags: [u8; 2],
    }
    #[derive(Debug)]
    struct Picky;
    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            Err(serde::de::Error::custom(format!("not a valid key: {s}")))
        }
    }

    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"mode":"sk-live-7f3a9c21e5","tags":[1,2]}"#,
            "mode",
            "unknown variant, expected `Fast` or `Slow`",
        ),
        (
            r#"{"mode":"Fast","tags":[1,2],"sk-live-7f3a9c21e5":1}"#,
            ".",
            "unknown field, expected `mode` or `tags`",
        ),
        (
            r#"{"mode":"Fast","tags":[1,"sk-live-7f3a9c21e5 \"quoted\""]}"#,
            "tags[1]",
            "invalid type: string, expected u8",
        ),
        (
            r#"{"mode":"Fast","tags":[1,7000000000]}"#,
            "tags[1]",
            "invalid value: integer, expected u8",
        ),
        (r#"{"mode":"Fast"}"#, ".", "missing field `tags`"),
    ];
    for (json, path, reason) in cases {
        let err = Payload::from_json_bytes(json.as_bytes().to_vec())
            .decode::<Strict>()
            .unwrap_err();
        assert_eq!(err.reason, *reason, "{json}");
        assert_eq!(if err.path.is_empty() { "." } else { &err.path }, *path);
        assert!(!err.to_string().contains(SECRET), "{err}");
        assert!(err.unredacted().contains(SECRET) || !json.contains(SECRET));
    }

    let err = Payload::json(SECRET)
        .unwrap()
        .decode::<Picky>()
        .unwrap_err();
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(err.reason.contains("withheld"), "{err}");
    assert!(err.unredacted().contains(SECRET));

    let syntax = Payload::from_json_bytes(b"{\"pin\": 12".to_vec())
        .decode::<Login>()
        .unwrap_err();
    assert_eq!(syntax.reason, "EOF while parsing an object");
    assert_eq!((syntax.line, syntax.column), (1, 10));
}
