//! Resuming from the previous attempt's checkpoint: the body starts from it, sees its attempt
//! number; to a backend that wipes details a heartbeat does not carry (Temporal) the first
//! heartbeat re-seeds it, while to one that keeps them (the embedded engine) it is never sent
//! again, so details sent from elsewhere meanwhile (a heartbeat by task token) stand.
//! Activities without a checkpoint heartbeat with no details.

use std::time::Duration;

use std::sync::Arc;

use hb_runtime::Payload;
use hb_runtime::backend::TaskToken;
use hb_runtime::checkpoint::{decode_payload, encode_payload};
use hb_runtime::client::{ActivityFailure, StartOptions};
use hb_runtime::engine::{Engine, WorkerHandle};
use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

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

#[tokio::test(start_paused = true)]
async fn a_backend_that_keeps_details_is_never_sent_the_resumed_checkpoint_again() {
    let resumed = Progress { next: 3, total: 9 };
    let env = ActivityEnvironment::new()
        .with_checkpoint(resumed.clone())
        .attempt(2);
    env.transport().set_keeps_details(true);
    let run = env.run(observe_start, 11).await;
    run.result.as_ref().unwrap();
    // Liveness heartbeats only, and a report without details: the backend holds them.
    let at: Vec<_> = run.heartbeats.iter().map(|h| h.at).collect();
    assert_eq!(at, [Duration::from_secs(5), Duration::from_secs(10)]);
    assert!(run.heartbeats.iter().all(|h| h.details.is_none()));
    assert_eq!(run.last_checkpoint, Some(resumed.clone()));
    let token = hb_runtime::backend::TaskToken::new(*b"test-activity#2");
    let held = env.transport().details_of(&token).unwrap();
    assert_eq!(decode_payload::<Progress>(&held).unwrap(), resumed);
}

/// What `hands_out` shares with its test: each attempt's number, task token and the
/// checkpoint it resumed from; and, for attempt 2, when to fail.
#[derive(Clone)]
struct Outside {
    started: UnboundedSender<(u32, TaskToken, Progress)>,
    fail_second: Arc<Notify>,
}

/// Attempt 1 checkpoints {1, 9} and fails. Attempt 2 never checkpoints: it hands its token out
/// (someone else reports progress for it) and fails when told to, or waits for a cancel.
/// Attempt 3 returns the checkpoint it resumed from.
#[activity(
    heartbeat_timeout = "1s",
    retry(max_attempts = 3, initial_interval = "10ms")
)]
async fn hands_out(
    ctx: ActivityContext,
    #[checkpoint] p: Progress,
    #[state] outside: Outside,
) -> Result<Progress, ActivityError> {
    let attempt = ctx.info().attempt;
    let _ = outside
        .started
        .send((attempt, ctx.info().task_token.clone(), p.clone()));
    match attempt {
        1 => {
            ctx.checkpoint(&Progress { next: 1, total: 9 })?;
            Err(ActivityError::retryable("Flaky", "the first attempt fails"))
        }
        2 => {
            outside.fail_second.notified().await;
            Err(ActivityError::retryable("Flaky", "so does the second"))
        }
        _ => Ok(p),
    }
}

async fn next_attempt(
    attempts: &mut UnboundedReceiver<(u32, TaskToken, Progress)>,
) -> (u32, TaskToken, Progress) {
    tokio::time::timeout(Duration::from_secs(10), attempts.recv())
        .await
        .expect("the next attempt started")
        .unwrap()
}

/// On an in-memory engine: starts `hands_out` as `id`, waits for its attempt 2, heartbeats
/// {5, 9} for it by task token, and checks that `describe()` keeps showing those details while
/// the pump heartbeats the attempt three more times (it would re-send {1, 9}, the checkpoint
/// attempt 2 resumed from, at every one).
async fn external_details_survive_attempt_2(
    id: &str,
) -> (
    Engine,
    WorkerHandle,
    Arc<Notify>,
    UnboundedReceiver<(u32, TaskToken, Progress)>,
    Payload,
) {
    let engine = Engine::in_memory().await.unwrap();
    let (started, mut attempts) = unbounded_channel();
    let fail_second = Arc::new(Notify::new());
    let worker = engine
        .worker()
        .register(hands_out)
        .state(Outside {
            started,
            fail_second: fail_second.clone(),
        })
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    client
        .start(hands_out, (), StartOptions::id(id))
        .await
        .unwrap();
    assert_eq!(next_attempt(&mut attempts).await.0, 1);
    let (attempt, token, resumed_from) = next_attempt(&mut attempts).await;
    assert_eq!((attempt, resumed_from), (2, Progress { next: 1, total: 9 }));

    let external = encode_payload(&Progress { next: 5, total: 9 }).unwrap();
    assert!(!client.heartbeat(&token, Some(&external)).unwrap().stops());
    let sent_at = std::time::SystemTime::now();
    // The pump heartbeats attempt 2 every 0.5 s (half its 1 s timeout): wait until the engine
    // saw it at least 1.5 s after the external heartbeat, checking the details all along.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = client.describe(id).await.unwrap();
        assert_eq!(d.attempt, 2);
        assert_eq!(
            d.details
                .as_ref()
                .map(|p| decode_payload::<Progress>(p).unwrap()),
            Some(Progress { next: 5, total: 9 }),
            "the external heartbeat's details were overwritten"
        );
        if d.last_heartbeat
            .is_some_and(|at| at >= sent_at + Duration::from_millis(1_500))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeats from the pump"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    (engine, worker, fail_second, attempts, external)
}

#[tokio::test]
async fn an_external_heartbeat_during_a_retry_survives_it_and_the_cancel_carries_it() {
    let (engine, worker, _fail, _attempts, external) =
        external_details_survive_attempt_2("ext-cancel").await;
    let handle = engine.client().handle(hands_out, "ext-cancel");
    handle.cancel().await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), handle.result())
        .await
        .expect("the cancel ended the activity")
    {
        // Compared decoded: the stored payload may be the same JSON with its keys in another order.
        Err(ActivityFailure::Cancelled { details }) => assert_eq!(
            details.map(|p| decode_payload::<Progress>(&p).unwrap()),
            Some(decode_payload::<Progress>(&external).unwrap())
        ),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn an_external_heartbeat_during_a_retry_is_what_the_next_retry_resumes_from() {
    let (engine, worker, fail_second, mut attempts, _external) =
        external_details_survive_attempt_2("ext-retry").await;
    fail_second.notify_one();
    let (attempt, _, resumed_from) = next_attempt(&mut attempts).await;
    assert_eq!((attempt, resumed_from), (3, Progress { next: 5, total: 9 }));
    let handle = engine.client().handle(hands_out, "ext-retry");
    let done = tokio::time::timeout(Duration::from_secs(10), handle.result())
        .await
        .expect("attempt 3 completed")
        .unwrap();
    assert_eq!(done, Progress { next: 5, total: 9 });
    worker.shutdown().await;
}
