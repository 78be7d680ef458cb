//! `Handle::watch` on the embedded engine: descriptions pushed as the activity changes, the
//! stream idle between changes, and ending with the activity.

use std::time::Duration;

use futures_util::StreamExt;
use hb_runtime::backend::ClientBackend;
use hb_runtime::client::{ActivityClient, ActivityStatus, ClientError, StartOptions};
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;

/// Steps to `to`, each step flushed (a heartbeat), waiting for a permit before each.
#[activity(heartbeat_timeout = "10s")]
async fn stepper(
    ctx: ActivityContext,
    #[checkpoint] mut done: u64,
    #[state] steps: std::sync::Arc<tokio::sync::Semaphore>,
    to: u64,
) -> Result<u64, ActivityError> {
    while done < to {
        steps.acquire().await.expect("open").forget();
        done += 1;
        ctx.checkpoint(&done)?;
        ctx.flush().await?;
    }
    Ok(done)
}

/// The next item, within 10 s.
async fn next<S: futures_util::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an item within 10 s")
}

#[tokio::test]
async fn each_change_is_pushed_to_the_watch_and_the_stream_ends_with_the_activity() {
    let engine = Engine::in_memory().await.unwrap();
    let steps = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let h = engine
        .client()
        .start(stepper, 3, StartOptions::id("steps"))
        .await
        .unwrap();
    // The engine pushes changes (no polling behind the stream).
    assert!(engine.client().watch_signal("steps").is_some());
    let mut changes = Box::pin(h.watch());
    let first = next(&mut changes).await.unwrap().unwrap();
    assert_eq!(first.status, ActivityStatus::Scheduled);

    // Nothing changes while no worker runs it: the watch waits (it does not yield the same
    // description again).
    assert!(
        tokio::time::timeout(Duration::from_millis(200), changes.next())
            .await
            .is_err(),
        "a watch yields only changes"
    );

    let _w = engine
        .worker()
        .state(steps.clone())
        .register(stepper)
        .spawn()
        .await
        .unwrap();
    let running = next(&mut changes).await.unwrap().unwrap();
    assert_eq!(running.status, ActivityStatus::Running);
    assert_eq!(running.attempt, 1);
    // Each step, one at a time: the watch sees each checkpoint as its heartbeat lands.
    for step in 1..=2 {
        steps.add_permits(1);
        loop {
            let d = next(&mut changes).await.unwrap().unwrap();
            if d.progress.is_some_and(|p| p.done == step) {
                break;
            }
            assert!(d.progress.is_none_or(|p| p.done < step), "{d:?}");
        }
    }
    steps.add_permits(1);
    let mut last = None;
    while let Some(d) = next(&mut changes).await {
        last = Some(d.unwrap());
    }
    let last = last.expect("the closing description");
    assert_eq!(last.status, ActivityStatus::Completed);
    assert_eq!(last.progress.unwrap().done, 3);
    // The whole closed description: its output, when it closed, its attempt ended.
    assert_eq!(last.output.unwrap().decode::<u64>().unwrap(), 3);
    assert!(last.closed_at.is_some());
    assert!(last.attempts.last().unwrap().ended_at.is_some());
}

#[tokio::test]
async fn watching_an_unknown_id_yields_not_found_and_ends() {
    let engine = Engine::in_memory().await.unwrap();
    let h = engine.client().handle(stepper, "nobody");
    let mut changes = Box::pin(h.watch());
    assert!(matches!(
        next(&mut changes).await,
        Some(Err(ClientError::NotFound { .. }))
    ));
    assert!(next(&mut changes).await.is_none());
}

#[tokio::test]
async fn two_watches_of_one_activity_both_see_its_end() {
    let engine = Engine::in_memory().await.unwrap();
    let steps = std::sync::Arc::new(tokio::sync::Semaphore::new(10));
    let h = engine
        .client()
        .start(stepper, 2, StartOptions::id("two"))
        .await
        .unwrap();
    let a = h.watch();
    let b = h.watch();
    let _w = engine
        .worker()
        .state(steps)
        .register(stepper)
        .spawn()
        .await
        .unwrap();
    let (a, b) = tokio::join!(last_status(a), last_status(b));
    assert_eq!(
        (a, b),
        (ActivityStatus::Completed, ActivityStatus::Completed)
    );
}

/// The status of the last description of `changes`, which must end within 10 s.
async fn last_status(
    changes: impl futures_util::Stream<Item = Result<hb_runtime::client::Description, ClientError>>,
) -> ActivityStatus {
    let all: Vec<_> = tokio::time::timeout(Duration::from_secs(10), Box::pin(changes).collect())
        .await
        .expect("the stream ends within 10 s");
    all.into_iter().last().unwrap().unwrap().status
}
