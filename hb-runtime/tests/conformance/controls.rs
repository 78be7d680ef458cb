//! Scenarios of what callers and operators do to an activity: cancel, pause, unpause, reset,
//! start it twice, shut its worker down.

use std::time::{Duration, Instant};

use hb_runtime::CancelReason;
use hb_runtime::checkpoint::decode_payload;
use hb_runtime::client::{
    ActivityClient, ActivityFailure, ActivityStatus, ClientError, ResetOptions,
};

use crate::activities::{Failure, Job, Progress, Report, batch, failing, finish_fast};
use crate::backend::Bench;
use crate::util::{Outcome, body_stopped, describe_until, running_batch};

fn assert_not_allowed(r: Result<(), ClientError>, op: &str, status: ActivityStatus) {
    match r {
        Err(ClientError::NotAllowed {
            operation,
            status: s,
            ..
        }) => assert_eq!((operation, s), (op, status)),
        other => panic!("expected {op} to be NotAllowed ({status}), got {other:?}"),
    }
}

pub async fn cancel_while_running(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let c = b.client();
    let id = b.id("cancel");
    let h = running_batch(b, &c, &id).await;
    let asked = Instant::now();
    c.cancel(&id).await.unwrap();
    let seen = body_stopped(&id, CancelReason::Requested).await;
    let latency = seen.saturating_duration_since(asked);
    let details = match h.result().await {
        Err(ActivityFailure::Cancelled { details }) => details,
        other => panic!("expected Cancelled, got {other:?}"),
    };
    let last: Progress = decode_payload(&details.expect("the last checkpoint")).unwrap();
    assert!(last.next > 0, "{last:?}");
    let d = h.describe().await.unwrap();
    assert_eq!(d.status, ActivityStatus::Cancelled, "{d:?}");
    assert!(d.cancel_requested, "{d:?}");
    assert!(
        latency <= b.diff.cancel_within,
        "the body saw the cancel {latency:?} after it was asked (at most {:?})",
        b.diff.cancel_within
    );
    w.shutdown().await;
    Outcome::Measured {
        cell: format!("pass {} ms", latency.as_millis()),
        note: format!(
            "cancel latency {} ms (request → the body sees it)",
            latency.as_millis()
        ),
    }
}

pub async fn cancel_before_start(b: &Bench) -> Outcome {
    // No worker.
    let c = b.client();
    let id = b.id("cancel-queued");
    let h = c.start(batch, Job::endless(), b.opts(&id)).await.unwrap();
    let d = h.describe().await.unwrap();
    assert_eq!(
        (d.status, d.attempt),
        (ActivityStatus::Scheduled, b.diff.attempt_before_first),
        "{d:?}"
    );
    let asked = Instant::now();
    c.cancel(&id).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), h.result()).await;
    let latency = asked.elapsed();
    match result {
        // No attempt ran: no checkpoint (Temporal's details there are the cancel's reason,
        // which hb's client does not hand on as one).
        Ok(Err(ActivityFailure::Cancelled { details })) => {
            assert!(details.is_none(), "{details:?}");
        }
        other => panic!("expected Cancelled at once, got {other:?}"),
    }
    let d = h.describe().await.unwrap();
    assert_eq!(d.status, ActivityStatus::Cancelled, "{d:?}");
    // A worker that comes later does not run it.
    let w = b.worker().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.describe().await.unwrap().status,
        ActivityStatus::Cancelled
    );
    w.shutdown().await;
    Outcome::Measured {
        cell: format!("pass {} ms", latency.as_millis()),
        note: format!(
            "cancelled while queued in {} ms (request → result)",
            latency.as_millis()
        ),
    }
}

pub async fn duplicate_start_is_idempotent(b: &Bench) -> Outcome {
    let c = b.client();
    let id = b.id("dup");
    let job = |items| Job {
        items,
        item_ms: 1,
        fail_at: None,
    };
    // While it waits for a worker, and once closed: the same activity, the input ignored.
    let first = c.start(batch, job(5), b.opts(&id)).await.unwrap();
    let again = c.start(batch, job(99), b.opts(&id)).await.unwrap();
    assert_eq!(again.id(), first.id());
    let refused = c.start(batch, job(1), b.opts(&id).fail_if_exists()).await;
    assert!(
        matches!(&refused, Err(ClientError::AlreadyStarted { activity_type, .. }) if activity_type == "batch"),
        "{refused:?}"
    );
    let w = b.worker().await;
    let r = again.result().await.unwrap();
    assert_eq!(r.processed, 5, "the first start's input: {r:?}");
    let later = c.start(batch, job(7), b.opts(&id)).await.unwrap();
    assert_eq!(later.result().await.unwrap(), r);
    let refused = c.start(batch, job(1), b.opts(&id).fail_if_exists()).await;
    assert!(
        matches!(refused, Err(ClientError::AlreadyStarted { .. })),
        "{refused:?}"
    );
    let f = Failure {
        error_type: "X".into(),
        non_retryable: true,
    };
    let other = c.start(failing, f, b.opts(&id)).await;
    assert!(
        matches!(&other, Err(ClientError::WrongType { found, expected, .. }) if found == "batch" && expected == "failing"),
        "{other:?}"
    );
    w.shutdown().await;
    Outcome::pass()
}

pub async fn graceful_shutdown_mid_attempt_resumes_on_a_new_worker(b: &Bench) -> Outcome {
    let first = b.worker().await;
    let c = b.client();
    let id = b.id("shutdown");
    let h = running_batch(b, &c, &id).await;
    // 500 ms of grace, then the attempt is cancelled with WorkerShutdown, flushes its
    // checkpoint and is retried on the next worker.
    first.shutdown().await;
    body_stopped(&id, CancelReason::WorkerShutdown).await;
    let at = h
        .describe()
        .await
        .unwrap()
        .progress
        .expect("the checkpoint")
        .done;
    let second = b.worker().await;
    finish_fast(&id);
    let r = h.result().await.unwrap();
    assert_eq!(r.attempt, 2, "{r:?}");
    assert!(
        r.resumed_from > 0 && r.resumed_from >= at,
        "resumed from the flushed checkpoint ({at}): {r:?}"
    );
    second.shutdown().await;
    Outcome::pass()
}

pub async fn pause_then_unpause_resumes_from_the_checkpoint(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let c = b.client();
    let id = b.id("pause");
    let h = running_batch(b, &c, &id).await;
    c.pause(&id).await.unwrap();
    body_stopped(&id, CancelReason::Paused).await;
    let d = describe_until(&h, "paused", |d| d.status == ActivityStatus::Paused).await;
    let at = d.progress.expect("the checkpoint is kept").done;
    assert!(at > 0, "{d:?}");
    // Still paused a moment later: no attempt runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = h.describe().await.unwrap();
    assert_eq!(d.status, ActivityStatus::Paused, "{d:?}");
    assert_eq!(d.progress.map(|p| p.done), Some(at), "{d:?}");
    c.unpause(&id).await.unwrap();
    finish_fast(&id);
    let r = h.result().await.unwrap();
    assert_eq!(r.attempt, 2, "the attempt count goes on: {r:?}");
    assert_eq!(r.resumed_from, at, "{r:?}");
    w.shutdown().await;
    Outcome::pass()
}

/// A reset: the attempt stops, and the activity starts again at attempt 1 from its
/// checkpoint, or from none when `clear`.
async fn reset(b: &Bench, clear: bool) -> Report {
    let w = b.worker().await;
    let c = b.client();
    let id = b.id(if clear { "reset-clear" } else { "reset" });
    let h = running_batch(b, &c, &id).await;
    let options = if clear {
        ResetOptions::new().clear_checkpoint()
    } else {
        ResetOptions::new()
    };
    c.reset(&id, options).await.unwrap();
    body_stopped(&id, CancelReason::Reset).await;
    finish_fast(&id);
    let r = h.result().await.unwrap();
    assert_eq!(r.attempt, 1, "a reset starts again at attempt 1: {r:?}");
    assert_eq!(r.resumed_from + r.processed, Job::endless().items, "{r:?}");
    w.shutdown().await;
    r
}

pub async fn reset_restarts_at_attempt_1_from_the_checkpoint(b: &Bench) -> Outcome {
    let r = reset(b, false).await;
    assert!(r.resumed_from > 0, "from the checkpoint: {r:?}");
    Outcome::pass()
}

pub async fn reset_clearing_the_checkpoint_starts_from_none(b: &Bench) -> Outcome {
    let r = reset(b, true).await;
    assert_eq!(r.resumed_from, 0, "from no checkpoint: {r:?}");
    Outcome::pass()
}

pub async fn operations_that_do_not_apply_are_not_allowed(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let c = b.client();
    let id = b.id("not-allowed");
    let h = running_batch(b, &c, &id).await;
    assert_not_allowed(c.unpause(&id).await, "unpause", ActivityStatus::Running);
    c.pause(&id).await.unwrap();
    // Asked again at once: refused, whether the told attempt still stops (`Running`) or has
    // stopped (`Paused`).
    match c.pause(&id).await {
        Err(ClientError::NotAllowed {
            operation: "pause",
            status: ActivityStatus::Running | ActivityStatus::Paused,
            ..
        }) => {}
        other => panic!("expected a second pause to be NotAllowed, got {other:?}"),
    }
    // Paused once the attempt has stopped (until then Temporal says it runs: pause requested).
    body_stopped(&id, CancelReason::Paused).await;
    describe_until(&h, "paused", |d| d.status == ActivityStatus::Paused).await;
    assert_not_allowed(c.pause(&id).await, "pause", ActivityStatus::Paused);
    c.unpause(&id).await.unwrap();
    finish_fast(&id);
    h.result().await.unwrap();
    assert_not_allowed(
        c.reset(&id, ResetOptions::new()).await,
        "reset",
        ActivityStatus::Completed,
    );
    assert_not_allowed(c.pause(&id).await, "pause", ActivityStatus::Completed);
    assert_not_allowed(c.unpause(&id).await, "unpause", ActivityStatus::Completed);
    w.shutdown().await;
    Outcome::pass()
}
