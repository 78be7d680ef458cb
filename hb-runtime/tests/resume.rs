//! Resuming from the previous attempt's checkpoint: the body starts from it, sees its attempt
//! number, and the first heartbeat re-seeds the backend with it; activities without a
//! checkpoint heartbeat with no details.

use std::time::Duration;

use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Start {
    resumed_from: Progress,
    attempt: u32,
    last_checkpoint: Option<Progress>,
    progress: Option<(u64, Option<u64>)>,
}

/// Reports what it started from, without checkpointing.
#[activity(heartbeat_timeout = "10s")]
async fn observe_start(
    ctx: ActivityContext,
    #[checkpoint] p: Progress,
    wait_secs: u64,
) -> Result<Start, ActivityError> {
    let start = Start {
        resumed_from: p,
        attempt: ctx.info().attempt,
        last_checkpoint: ctx.last_checkpoint::<Progress>(),
        progress: ctx.progress().map(|p| (p.done, p.total)),
    };
    tokio::time::sleep(Duration::from_secs(wait_secs)).await;
    Ok(start)
}

/// Sums items, one per second, checkpointing after each; fails once it reaches `fail_at`.
#[activity(heartbeat_timeout = "10s")]
async fn sum_items(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    input: (Vec<u64>, Option<u64>),
) -> Result<u64, ActivityError> {
    let (items, fail_at) = input;
    p.total = items.len() as u64;
    let mut sum = 0;
    for item in &items[p.next as usize..] {
        if Some(p.next) == fail_at {
            return Err(ActivityError::retryable("Flaky", "the disk went away"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        sum += item;
        p.next += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(sum)
}

/// Heartbeats with no checkpoint type at all.
#[activity(heartbeat_timeout = "10s")]
async fn no_checkpoint(ctx: ActivityContext, secs: u64) -> Result<Option<()>, ActivityError> {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(ctx.last_checkpoint::<()>())
}

#[tokio::test(start_paused = true)]
async fn the_injected_checkpoint_and_attempt_reach_the_body() {
    let run = ActivityEnvironment::new()
        .with_checkpoint(Progress {
            next: 40,
            total: 60,
        })
        .attempt(4)
        .run(observe_start, 0)
        .await;
    assert_eq!(
        run.result.unwrap(),
        Start {
            resumed_from: Progress {
                next: 40,
                total: 60
            },
            attempt: 4,
            last_checkpoint: Some(Progress {
                next: 40,
                total: 60
            }),
            progress: Some((40, Some(60))),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_starts_from_default_with_no_last_checkpoint() {
    let run = ActivityEnvironment::new().run(observe_start, 0).await;
    let start = run.result.unwrap();
    assert_eq!(start.resumed_from, Progress::default());
    assert_eq!(start.attempt, 1);
    assert_eq!(start.last_checkpoint, None);
    assert_eq!(start.progress, None);
    assert!(run.heartbeats.is_empty());
    assert_eq!(run.final_details, None);
}

#[tokio::test(start_paused = true)]
async fn the_first_heartbeat_carries_the_resumed_checkpoint_before_the_body_checkpoints() {
    // A heartbeat without details would wipe the backend's copy of the checkpoint: a retry
    // that has not checkpointed yet re-sends the one it resumed from.
    let run = ActivityEnvironment::new()
        .with_checkpoint(Progress { next: 3, total: 9 })
        .attempt(2)
        .run(observe_start, 11)
        .await;
    run.result.as_ref().unwrap();
    let got: Vec<_> = run
        .heartbeats
        .iter()
        .map(|h| (h.at, h.checkpoint.clone()))
        .collect();
    let resumed = Some(Progress { next: 3, total: 9 });
    assert_eq!(
        got,
        [
            (Duration::from_secs(5), resumed.clone()),
            (Duration::from_secs(10), resumed.clone())
        ]
    );
    assert_eq!(run.last_checkpoint, resumed);
}

#[tokio::test(start_paused = true)]
async fn a_retry_resumes_where_the_failed_attempt_stopped() {
    let items: Vec<u64> = (1..=10).collect();
    let first = ActivityEnvironment::new()
        .run(sum_items, (items.clone(), Some(6)))
        .await;
    assert_eq!(first.result.as_ref().unwrap_err().error_type(), "Flaky");
    assert_eq!(first.last_checkpoint, Some(Progress { next: 6, total: 10 }));

    // The backend hands the failed attempt's last details to the retry.
    let second = ActivityEnvironment::new()
        .with_details(first.final_details.clone().unwrap())
        .attempt(2)
        .run(sum_items, (items, None))
        .await;
    // Only items 7..=10 are summed by the retry: 7 + 8 + 9 + 10.
    assert_eq!(second.result.as_ref().unwrap(), &34);
    assert_eq!(second.elapsed, Duration::from_secs(4));
    assert_eq!(
        second.last_checkpoint,
        Some(Progress {
            next: 10,
            total: 10
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_less_activity_heartbeats_without_details() {
    let run = ActivityEnvironment::new().run(no_checkpoint, 12).await;
    assert_eq!(run.result.unwrap(), None);
    assert_eq!(run.heartbeats.len(), 2);
    for h in &run.heartbeats {
        assert!(h.details.is_none(), "{h:?}");
    }
    assert_eq!(run.final_details, None);
}

#[tokio::test(start_paused = true)]
async fn last_checkpoint_of_another_type_is_none() {
    #[activity(heartbeat_timeout = "10s")]
    async fn wrong_type(
        ctx: ActivityContext,
        #[checkpoint] _p: Progress,
        _input: (),
    ) -> Result<(Option<u64>, bool), ActivityError> {
        Ok((
            ctx.last_checkpoint::<u64>(),
            ctx.last_checkpoint::<Progress>().is_some(),
        ))
    }
    let run = ActivityEnvironment::new()
        .with_checkpoint(Progress { next: 1, total: 2 })
        .run(wrong_type, ())
        .await;
    assert_eq!(run.result.unwrap(), (None, true));
}

#[tokio::test(start_paused = true)]
async fn last_checkpoint_follows_the_bodys_own_checkpoints() {
    #[activity(heartbeat_timeout = "10s")]
    async fn step(
        ctx: ActivityContext,
        #[checkpoint] mut p: Progress,
        _input: (),
    ) -> Result<Vec<u64>, ActivityError> {
        let mut seen = vec![ctx.last_checkpoint::<Progress>().map_or(0, |p| p.next)];
        for _ in 0..3 {
            p.next += 1;
            ctx.checkpoint(&p)?;
            seen.push(ctx.last_checkpoint::<Progress>().map_or(0, |p| p.next));
        }
        Ok(seen)
    }
    let run = ActivityEnvironment::new()
        .with_checkpoint(Progress { next: 5, total: 0 })
        .run(step, ())
        .await;
    assert_eq!(run.result.unwrap(), [5, 6, 7, 8]);
}

#[tokio::test(start_paused = true)]
async fn details_given_to_a_checkpoint_less_activity_pass_through_untouched() {
    // Whatever a previous (maybe non-hb) attempt left is neither decoded nor wiped.
    let details = hb_runtime::Payload::json(&serde_json::json!({"cursor": "abc"})).unwrap();
    let run = ActivityEnvironment::new()
        .with_details(details.clone())
        .run(no_checkpoint, 6)
        .await;
    assert_eq!(run.result.as_ref().unwrap(), &None);
    assert_eq!(run.heartbeats.len(), 1);
    assert_eq!(run.heartbeats[0].details.as_ref(), Some(&details));
    assert_eq!(run.final_details.as_ref(), Some(&details));
}
