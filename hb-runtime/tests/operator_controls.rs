//! The engine's operator controls, through the public client, as Temporal defines them: a
//! pause stops the running attempt (`CancelReason::Paused`, its checkpoint kept) and holds the
//! activity until an unpause, which resumes it from the checkpoint at the next attempt; a
//! reset starts it again at attempt 1, from the checkpoint or from scratch; refusals name the
//! status; and all of it is stored: a paused activity stays paused across a reopen.

use std::time::Duration;

use hb_runtime::client::{
    ActivityClient, ActivityFailure, ActivityStatus, ClientError, ResetOptions, StartOptions,
};
use hb_runtime::engine::{Engine, request_unpause};
use hb_runtime::prelude::*;
use tempfile::TempDir;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Step {
    #[checkpoint(done)]
    n: u64,
}

/// What the body tells the test.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// Attempt `attempt` started from checkpoint `from`.
    Started { attempt: u32, from: u64 },
    /// It stored checkpoint `n` (flushed).
    Checkpointed(u64),
    /// It was stopped, for this reason.
    Stopped(Option<CancelReason>),
}

/// Sends why the body stopped when it is dropped (the default cancel mode drops it).
struct OnDrop(ActivityContext, UnboundedSender<Seen>, bool);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if !self.2 {
            let _ = self.1.send(Seen::Stopped(self.0.cancel_reason()));
        }
    }
}

/// Announces its attempt, stores one more step, and waits to be stopped; resumed from a
/// checkpoint of at least `finish_at`, it completes with that checkpoint's step instead.
#[activity(heartbeat_timeout = "30s", retry(max_attempts = 1))]
async fn stepper(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    #[state] seen: UnboundedSender<Seen>,
    finish_at: u64,
) -> Result<u64, ActivityError> {
    let _ = seen.send(Seen::Started {
        attempt: ctx.info().attempt,
        from: s.n,
    });
    if s.n >= finish_at {
        return Ok(s.n);
    }
    let mut guard = OnDrop(ctx.clone(), seen.clone(), false);
    s.n += 1;
    ctx.checkpoint(&s)?;
    ctx.flush().await?;
    let _ = seen.send(Seen::Checkpointed(s.n));
    std::future::pending::<()>().await;
    guard.2 = true;
    Ok(s.n)
}

/// The next thing the body says (10 s at most).
async fn next(rx: &mut UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the body said nothing for 10 s")
        .expect("the worker is gone")
}

/// Waits (10 s at most) for `id` to be in `status`.
async fn until(client: &impl ActivityClient, id: &str, status: ActivityStatus) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.describe(id).await.unwrap().status != status {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} did not become {status}"));
}

fn step_of(d: &hb_runtime::client::Description) -> Option<u64> {
    d.details
        .as_ref()
        .map(|p| hb_runtime::checkpoint::decode_payload::<Step>(p).unwrap().n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_attempt_stops_keeps_its_checkpoint_and_resumes_from_it_once_unpaused() {
    let engine = Engine::in_memory().await.unwrap();
    let (tx, mut rx) = unbounded_channel();
    let _worker = engine
        .worker()
        .register(stepper)
        .state(tx)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let handle = client
        .start(stepper, 1, StartOptions::id("pause-1"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        Seen::Started {
            attempt: 1,
            from: 0
        }
    );
    assert_eq!(next(&mut rx).await, Seen::Checkpointed(1));

    handle.pause().await.unwrap();
    assert_eq!(
        next(&mut rx).await,
        Seen::Stopped(Some(CancelReason::Paused))
    );
    until(&client, "pause-1", ActivityStatus::Paused).await;
    let d = handle.describe().await.unwrap();
    assert_eq!((d.attempt, step_of(&d)), (1, Some(1)));
    match &d.last_failure {
        Some(ActivityFailure::Application { error_type, .. }) => assert_eq!(error_type, "Paused"),
        other => panic!("expected the pause as the last failure, got {other:?}"),
    }
    // Paused already: refused, with the status.
    match client.pause("pause-1").await {
        Err(ClientError::NotAllowed {
            id,
            operation,
            status,
        }) => assert_eq!(
            (id.as_str(), operation, status),
            ("pause-1", "pause", ActivityStatus::Paused)
        ),
        other => panic!("expected NotAllowed, got {other:?}"),
    }

    // Unpaused: attempt 2 (one allowed by the policy: the pause used none of it), from step 1.
    client.unpause("pause-1").await.unwrap();
    assert_eq!(
        next(&mut rx).await,
        Seen::Started {
            attempt: 2,
            from: 1
        }
    );
    assert_eq!(handle.result().await.unwrap(), 1);

    // Closed, or unknown.
    assert!(matches!(
        handle.unpause().await,
        Err(ClientError::NotAllowed {
            operation: "unpause",
            status: ActivityStatus::Completed,
            ..
        })
    ));
    assert!(matches!(
        handle.reset(ResetOptions::new()).await,
        Err(ClientError::NotAllowed {
            operation: "reset",
            status: ActivityStatus::Completed,
            ..
        })
    ));
    assert!(matches!(
        client.pause("no-such-id").await,
        Err(ClientError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_starts_again_at_attempt_1_from_the_checkpoint_or_from_scratch() {
    let engine = Engine::in_memory().await.unwrap();
    let (tx, mut rx) = unbounded_channel();
    let _worker = engine
        .worker()
        .register(stepper)
        .state(tx)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let handle = client
        .start(stepper, u64::MAX, StartOptions::id("reset-1"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        Seen::Started {
            attempt: 1,
            from: 0
        }
    );
    assert_eq!(next(&mut rx).await, Seen::Checkpointed(1));

    // Kept: attempt 1 again, from step 1.
    handle.reset(ResetOptions::new()).await.unwrap();
    assert_eq!(
        next(&mut rx).await,
        Seen::Stopped(Some(CancelReason::Reset))
    );
    assert_eq!(
        next(&mut rx).await,
        Seen::Started {
            attempt: 1,
            from: 1
        }
    );
    assert_eq!(next(&mut rx).await, Seen::Checkpointed(2));
    assert_eq!(handle.describe().await.unwrap().attempt, 1);

    // Cleared: attempt 1 from scratch.
    handle
        .reset(ResetOptions::new().clear_checkpoint())
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        Seen::Stopped(Some(CancelReason::Reset))
    );
    assert_eq!(
        next(&mut rx).await,
        Seen::Started {
            attempt: 1,
            from: 0
        }
    );
    assert_eq!(next(&mut rx).await, Seen::Checkpointed(1));

    // A cancel still ends it.
    handle.cancel().await.unwrap();
    assert!(matches!(
        handle.result().await,
        Err(ActivityFailure::Cancelled { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_activity_is_cancelled_by_a_cancel_and_a_reset_may_keep_it_paused() {
    let engine = Engine::in_memory().await.unwrap();
    let client = engine.client();
    // No worker: it waits, and is paused at once.
    let handle = client
        .start(stepper, 1, StartOptions::id("held"))
        .await
        .unwrap();
    handle.pause().await.unwrap();
    assert_eq!(
        handle.describe().await.unwrap().status,
        ActivityStatus::Paused
    );
    handle
        .reset(ResetOptions::new().keep_paused())
        .await
        .unwrap();
    assert_eq!(
        handle.describe().await.unwrap().status,
        ActivityStatus::Paused
    );
    handle.cancel().await.unwrap();
    assert!(matches!(
        handle.result().await,
        Err(ActivityFailure::Cancelled { .. })
    ));
}

/// A directory of its own, removed when it drops (even if the test fails).
fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-operator-{name}-"))
        .tempdir()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_is_stored_a_reopened_file_holds_it_paused_until_another_process_unpauses_it() {
    let dir = temp_dir("durable");
    let path = dir.path().join("hb.db");
    {
        let engine = Engine::open(&path).await.unwrap();
        let (tx, mut rx) = unbounded_channel();
        let worker = engine
            .worker()
            .register(stepper)
            .state(tx)
            .spawn()
            .await
            .unwrap();
        let handle = engine
            .client()
            .start(stepper, 1, StartOptions::id("kept"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut rx).await,
            Seen::Started {
                attempt: 1,
                from: 0
            }
        );
        assert_eq!(next(&mut rx).await, Seen::Checkpointed(1));
        handle.pause().await.unwrap();
        assert_eq!(
            next(&mut rx).await,
            Seen::Stopped(Some(CancelReason::Paused))
        );
        until(&engine.client(), "kept", ActivityStatus::Paused).await;
        worker.shutdown().await;
        engine.close().await.unwrap();
    }
    // Reopened with a worker: nothing of it runs. A second activity, started after it was
    // recovered, runs and completes: the worker took what was ready, and this was not.
    let engine = Engine::open(&path).await.unwrap();
    let (tx, mut rx) = unbounded_channel();
    let _worker = engine
        .worker()
        .register(stepper)
        .state(tx)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let probe = client
        .start(stepper, 0, StartOptions::id("probe"))
        .await
        .unwrap();
    assert_eq!(probe.result().await.unwrap(), 0);
    assert_eq!(
        next(&mut rx).await,
        Seen::Started {
            attempt: 1,
            from: 0
        }
    );
    let d = client.describe("kept").await.unwrap();
    assert_eq!(
        (d.status, d.attempt, step_of(&d)),
        (ActivityStatus::Paused, 1, Some(1))
    );
    assert!(rx.try_recv().is_err(), "nothing else ran");

    // Unpaused by another process (what `hb unpause` does): attempt 2 from step 1.
    request_unpause(&path, "kept").unwrap();
    assert_eq!(
        next(&mut rx).await,
        Seen::Started {
            attempt: 2,
            from: 1
        }
    );
    let kept = client.handle(stepper, "kept");
    assert_eq!(kept.result().await.unwrap(), 1);
}
