//! The size guard: a checkpoint above `max_checkpoint_size` is a typed error (at once from
//! `flush()`, on the next `checkpoint()` once the pump saw it), is never sent, and the previous
//! checkpoint is what heartbeats and the final report carry. Also: the wrong checkpoint type.

use std::time::Duration;

use hb_runtime::checkpoint::encode;
use hb_runtime::prelude::*;
use hb_runtime::testing::{ActivityEnvironment, TestRun};

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Blob {
    data: String,
}

fn blob(s: impl Into<String>) -> Blob {
    Blob { data: s.into() }
}

fn big() -> Blob {
    blob("x".repeat(200))
}

fn encoded_len(b: &Blob) -> usize {
    encode(b).unwrap().len()
}

/// `(size, limit)` of a TooLarge error; panics on any other error.
fn too_large(r: Result<(), CheckpointError>) -> Option<(usize, usize)> {
    match r {
        Ok(()) => None,
        Err(CheckpointError::TooLarge {
            size,
            limit,
            type_name,
        }) => {
            assert_eq!(type_name, "Blob");
            Some((size, limit))
        }
        Err(e) => panic!("expected TooLarge, got {e:?}"),
    }
}

fn assert_never_sent_above<A: Activity>(run: &TestRun<A>, limit: usize) {
    for h in &run.heartbeats {
        let len = h.details.as_ref().map_or(0, |d| d.len());
        assert!(
            len <= limit,
            "a {len}-byte heartbeat went out at {:?}",
            h.at
        );
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct FlushSeen {
    stored: Option<(usize, usize)>,
    flushed: Option<(usize, usize)>,
    elapsed_ms: u128,
    last_checkpoint: Option<Blob>,
}

/// Flushes a small checkpoint, then stores and flushes one of `len` bytes of payload.
#[activity(heartbeat_timeout = "10s", max_checkpoint_size = 100)]
async fn flush_big(
    ctx: ActivityContext,
    #[checkpoint] mut b: Blob,
    len: usize,
) -> Result<FlushSeen, ActivityError> {
    b.data = "small".into();
    ctx.checkpoint(&b)?;
    ctx.flush().await?;
    b.data = "x".repeat(len);
    let start = tokio::time::Instant::now();
    let stored = too_large(ctx.checkpoint(&b));
    let flushed = too_large(ctx.flush().await);
    Ok(FlushSeen {
        stored,
        flushed,
        elapsed_ms: start.elapsed().as_millis(),
        last_checkpoint: ctx.last_checkpoint::<Blob>(),
    })
}

/// small at 0 s (sent at 5 s), too big at 6 s (refused by the 10 s tick), small again at 11 s.
#[activity(heartbeat_timeout = "10s", max_checkpoint_size = 100)]
async fn too_big_then_small(
    ctx: ActivityContext,
    #[checkpoint] _b: Blob,
    _input: (),
) -> Result<Vec<Option<(usize, usize)>>, ActivityError> {
    let mut seen = vec![too_large(ctx.checkpoint(&blob("small")))];
    tokio::time::sleep(Duration::from_secs(6)).await;
    seen.push(too_large(ctx.checkpoint(&big())));
    tokio::time::sleep(Duration::from_secs(5)).await;
    seen.push(too_large(ctx.checkpoint(&blob("small again"))));
    seen.push(too_large(ctx.checkpoint(&blob("small again"))));
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(seen)
}

/// small at 0 s (sent at 5 s), too big at 6 s, fails at 7 s before any tick saw the big one.
#[activity(heartbeat_timeout = "10s", max_checkpoint_size = 100)]
async fn too_big_then_fail(
    ctx: ActivityContext,
    #[checkpoint] _b: Blob,
    _input: (),
) -> Result<(), ActivityError> {
    ctx.checkpoint(&blob("small"))?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    ctx.checkpoint(&big())?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Err(ActivityError::retryable("Flaky", "gave up"))
}

/// Propagates the size error with `?`.
#[activity(heartbeat_timeout = "10s", max_checkpoint_size = 100)]
async fn too_big_question_mark(
    ctx: ActivityContext,
    #[checkpoint] _b: Blob,
    _input: (),
) -> Result<(), ActivityError> {
    ctx.checkpoint(&blob("small"))?;
    ctx.flush().await?;
    ctx.checkpoint(&big())?;
    ctx.flush().await?;
    Ok(())
}

/// Flushes a checkpoint of `len` bytes with the default limit.
#[activity(heartbeat_timeout = "10s")]
async fn flush_len(
    ctx: ActivityContext,
    #[checkpoint] _b: Blob,
    len: usize,
) -> Result<Option<(usize, usize)>, ActivityError> {
    ctx.checkpoint(&blob("x".repeat(len)))?;
    Ok(too_large(ctx.flush().await))
}

#[tokio::test(start_paused = true)]
async fn flush_reports_an_oversized_checkpoint_at_once() {
    let run = ActivityEnvironment::new().run(flush_big, 200).await;
    let seen = run.result.as_ref().unwrap();
    let size = encoded_len(&big());
    assert!(size > 100);
    assert_eq!(
        seen,
        &FlushSeen {
            stored: None, // checkpoint() never serialises: it cannot know yet
            flushed: Some((size, 100)),
            elapsed_ms: 0,
            // The body's own copy is what it stored; what backends keep is another matter.
            last_checkpoint: Some(big()),
        }
    );
    assert_never_sent_above(&run, 100);
    assert!(
        run.heartbeats
            .iter()
            .all(|h| h.checkpoint == Some(blob("small")))
    );
    assert_eq!(run.last_checkpoint, Some(blob("small")));
}

#[tokio::test(start_paused = true)]
async fn checkpoint_reports_the_refusal_once_on_the_next_call_and_recovers() {
    let run = ActivityEnvironment::new().run(too_big_then_small, ()).await;
    let size = encoded_len(&big());
    // Stored small: fine. Stored big: fine for now. After the 10 s tick refused it, the next
    // call says so (once); the value it stored is fine and goes out at 15 s.
    assert_eq!(
        run.result.as_ref().unwrap(),
        &[None, None, Some((size, 100)), None]
    );
    let got: Vec<_> = run
        .heartbeats
        .iter()
        .map(|h| (h.at, h.checkpoint.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (Duration::from_secs(5), Some(blob("small"))),
            (Duration::from_secs(10), Some(blob("small"))),
            (Duration::from_secs(15), Some(blob("small again"))),
        ]
    );
    assert_never_sent_above(&run, 100);
    assert_eq!(run.last_checkpoint, Some(blob("small again")));
}

#[tokio::test(start_paused = true)]
async fn the_final_report_carries_the_previous_checkpoint_not_the_oversized_one() {
    let run = ActivityEnvironment::new().run(too_big_then_fail, ()).await;
    assert_eq!(run.result.as_ref().unwrap_err().error_type(), "Flaky");
    assert_never_sent_above(&run, 100);
    assert!(!run.heartbeats.is_empty());
    assert!(
        run.heartbeats
            .iter()
            .all(|h| h.checkpoint == Some(blob("small")))
    );
    assert_eq!(run.last_checkpoint, Some(blob("small")));
}

#[tokio::test(start_paused = true)]
async fn an_oversized_flush_propagated_with_question_mark_fails_non_retryably() {
    let run = ActivityEnvironment::new()
        .run(too_big_question_mark, ())
        .await;
    let err = run.result.as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            ActivityError::Checkpoint(CheckpointError::TooLarge { limit: 100, .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.error_type(), "CheckpointTooLarge");
    assert!(!err.is_retryable(), "the same code would fail the same way");
    assert_eq!(run.last_checkpoint, Some(blob("small")));
    assert_never_sent_above(&run, 100);
}

#[tokio::test(start_paused = true)]
async fn the_default_limit_is_256_kib() {
    let fits = ActivityEnvironment::new().run(flush_len, 200 * 1024).await;
    assert_eq!(fits.result.unwrap(), None);

    let run = ActivityEnvironment::new().run(flush_len, 300 * 1024).await;
    let (size, limit) = run.result.as_ref().unwrap().expect("refused");
    assert_eq!(limit, 256 * 1024);
    assert_eq!(size, encoded_len(&blob("x".repeat(300 * 1024))));
    assert_never_sent_above(&run, 256 * 1024);
}

#[tokio::test(start_paused = true)]
async fn a_configured_limit_is_capped_at_temporals_2_mib() {
    let env = ActivityEnvironment::new().options(|o| o.max_checkpoint_size(10 * 1024 * 1024));
    let fits = env.run(flush_len, 1024 * 1024).await;
    assert_eq!(
        fits.result.unwrap(),
        None,
        "1 MiB is above the default but within the setting"
    );

    let run = env.run(flush_len, 3 * 1024 * 1024).await;
    let (_, limit) = run.result.unwrap().expect("refused");
    assert_eq!(limit, 2 * 1024 * 1024);
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_of_another_type_is_refused_and_not_stored() {
    #[activity(heartbeat_timeout = "10s")]
    async fn wrong_type(
        ctx: ActivityContext,
        #[checkpoint] _b: Blob,
        _input: (),
    ) -> Result<Option<Blob>, ActivityError> {
        ctx.checkpoint(&blob("mine"))?;
        match ActivityContext::checkpoint(&ctx, &41u64) {
            Err(CheckpointError::WrongType { expected, found }) => {
                assert_eq!((expected, found), ("Blob", "u64"));
            }
            other => panic!("expected WrongType, got {other:?}"),
        }
        Ok(ctx.last_checkpoint::<Blob>())
    }
    let run = ActivityEnvironment::new().run(wrong_type, ()).await;
    assert_eq!(run.result.as_ref().unwrap(), &Some(blob("mine")));
    assert_eq!(run.last_checkpoint, Some(blob("mine")));
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_less_activity_refuses_any_checkpoint() {
    #[activity(heartbeat_timeout = "10s")]
    async fn stateless(ctx: ActivityContext, _input: ()) -> Result<(), ActivityError> {
        ActivityContext::checkpoint(&ctx, &blob("nope"))?;
        Ok(())
    }
    let run = ActivityEnvironment::new().run(stateless, ()).await;
    let err = run.result.unwrap_err();
    assert!(
        matches!(
            err,
            ActivityError::Checkpoint(CheckpointError::WrongType {
                expected: "()",
                found: "Blob"
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.error_type(), "CheckpointWrongType");
    assert_eq!(run.final_details, None);
}

/// Flushes an oversized checkpoint (refused, handled), waits past a pump tick, then stores a
/// small one.
#[activity(heartbeat_timeout = "10s", max_checkpoint_size = 100)]
async fn flush_refused_then_small(
    ctx: ActivityContext,
    #[checkpoint] _b: Blob,
    _input: (),
) -> Result<Vec<Option<(usize, usize)>>, ActivityError> {
    ctx.checkpoint(&big())?;
    let mut seen = vec![too_large(ctx.flush().await)];
    tokio::time::sleep(Duration::from_secs(6)).await;
    seen.push(too_large(ctx.checkpoint(&blob("small"))));
    Ok(seen)
}

#[tokio::test(start_paused = true)]

async fn a_refusal_reported_by_flush_is_not_reported_again() {
    let run = ActivityEnvironment::new()
        .run(flush_refused_then_small, ())
        .await;
    let size = encoded_len(&big());
    assert_eq!(run.result.as_ref().unwrap(), &[Some((size, 100)), None]);
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Unencodable {
    // JSON object keys must be strings: serde_json refuses tuple keys.
    by_pair: std::collections::BTreeMap<(u8, u8), u8>,
}

#[activity(heartbeat_timeout = "10s")]
async fn unencodable(
    ctx: ActivityContext,
    #[checkpoint] mut u: Unencodable,
    _input: (),
) -> Result<Vec<String>, ActivityError> {
    u.by_pair.insert((1, 2), 3);
    let mut seen = Vec::new();
    ctx.checkpoint(&u)?;
    match ctx.flush().await {
        Err(CheckpointError::Encode { type_name, message }) => {
            seen.push(format!("flush: {type_name}: {message}"))
        }
        other => panic!("expected Encode, got {other:?}"),
    }
    Ok(seen)
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_serde_cannot_encode_is_a_typed_error_not_a_panic() {
    let run = ActivityEnvironment::new().run(unencodable, ()).await;
    let seen = run.result.as_ref().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].starts_with("flush: Unencodable: "), "{seen:?}");
    assert!(seen[0].contains("key must be a string"), "{seen:?}");
    assert!(run.heartbeats.is_empty());
    assert_eq!(run.final_details, None);
}

/// A checkpoint whose `Serialize` panics once `boom` is set (a bug in user code).
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Explosive {
    #[serde(serialize_with = "explode")]
    boom: bool,
}

fn explode<S: serde::Serializer>(boom: &bool, s: S) -> Result<S::Ok, S::Error> {
    assert!(!*boom, "this checkpoint cannot be serialised");
    s.serialize_bool(*boom)
}

/// Stores an explosive checkpoint and waits (bounded) for the pump's refusal.
#[activity(heartbeat_timeout = "100ms")]
async fn explosive(
    ctx: ActivityContext,
    #[checkpoint] _e: Explosive,
    _input: (),
) -> Result<String, ActivityError> {
    let bad = Explosive { boom: true };
    ctx.checkpoint(&bad)?;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        match ctx.checkpoint(&bad) {
            Err(CheckpointError::Encode { message, .. }) => return Ok(message),
            Err(other) => panic!("expected Encode, got {other:?}"),
            Ok(()) if tokio::time::Instant::now() > give_up => panic!("the pump never refused it"),
            Ok(()) => {}
        }
    }
}

#[activity(heartbeat_timeout = "100ms")]
async fn steady(
    ctx: ActivityContext,
    #[checkpoint] mut n: u64,
    _input: (),
) -> Result<(), ActivityError> {
    loop {
        n += 1;
        ctx.checkpoint(&n)?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_serialize_panics_is_an_encode_error_and_the_pump_lives_on() {
    use hb_runtime::Payload;
    use hb_runtime::backend::TaskToken;
    use hb_runtime::backend::{AttemptRequest, AttemptRunner};
    use hb_runtime::testing::MemoryTransport;

    // The global pump, on its own thread: the one a panic there would take down.
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone());
    let request = |id: &str| {
        AttemptRequest::new(
            id,
            TaskToken::new(id.as_bytes().to_vec()),
            Payload::json(&()).unwrap(),
        )
    };
    let outcome = runner.start(&explosive(), request("explosive")).run().await;
    let message: String = outcome
        .result
        .expect("the refusal reached the body")
        .decode()
        .unwrap();
    assert!(message.contains("Serialize panicked"), "{message}");
    assert!(message.contains("cannot be serialised"), "{message}");

    // Another attempt still heartbeats through the same pump.
    let attempt = runner.start(&steady(), request("steady"));
    let handle = attempt.handle();
    let run = tokio::spawn(attempt.run());
    let mut beats = transport.subscribe();
    let before = *beats.borrow();
    tokio::time::timeout(
        Duration::from_secs(10),
        beats.wait_for(|n| *n >= before + 2),
    )
    .await
    .expect("the pump heartbeats after the panic")
    .unwrap();
    handle.cancel(CancelReason::Requested);
    let _ = run.await;
}
