//! Scenarios of how an activity runs, fails, times out and is retried.

use std::time::Duration;

use hb_runtime::RetryPolicy;
use hb_runtime::checkpoint::decode_payload;
use hb_runtime::client::{ActivityClient, ActivityFailure, ActivityStatus, TimeoutKind};

use crate::activities::{
    Failure, Job, Progress, Report, batch, failing, finish_fast, stalling, strict_text,
};
use crate::backend::{Bench, Killed};
use crate::util::{Outcome, describe_until, running_batch, within};

/// `r` is attempt `attempt` of `items` items, resumed from a checkpoint at most `at_most`.
fn assert_resumed(r: &Report, attempt: u32, items: u64, at_most: u64) {
    assert_eq!(r.attempt, attempt, "{r:?}");
    assert!(
        r.resumed_from > 0 && r.resumed_from <= at_most,
        "resumed from a checkpoint at most {at_most}: {r:?}"
    );
    assert_eq!(r.resumed_from + r.processed, items, "{r:?}");
}

/// `f` is the failure of an application error of `error_type`.
fn assert_application(f: &ActivityFailure, error_type: &str, non_retryable: bool) {
    match f {
        ActivityFailure::Application {
            error_type: t,
            non_retryable: n,
            ..
        } => assert_eq!((t.as_str(), *n), (error_type, non_retryable), "{f:?}"),
        other => panic!("expected the activity's own {error_type} error, got {other:?}"),
    }
}

pub async fn happy_path(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let c = b.client();
    let id = b.id("happy");
    let job = Job {
        items: 20,
        item_ms: 1,
        fail_at: None,
    };
    let h = c.start(batch, job, b.opts(&id)).await.unwrap();
    let r = h.result().await.unwrap();
    assert_eq!(
        r,
        Report {
            processed: 20,
            resumed_from: 0,
            attempt: 1
        }
    );
    let d = h.describe().await.unwrap();
    assert_eq!(
        (d.status, d.attempt),
        (ActivityStatus::Completed, 1),
        "{d:?}"
    );
    assert_eq!(
        d.progress.map(|p| (p.done, p.total)),
        Some((20, Some(20))),
        "{d:?}"
    );
    assert_eq!(d.checkpoint::<Progress>().map(|p| p.next), Some(20));
    let out: Report = d.output.as_ref().expect("the output").decode().unwrap();
    assert_eq!(out, r);
    assert!(d.closed_at.is_some() && d.last_failure.is_none(), "{d:?}");
    w.shutdown().await;
    Outcome::pass()
}

pub async fn retryable_failure_resumes_from_the_checkpoint(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let id = b.id("retry");
    let job = Job {
        items: 10,
        item_ms: 1,
        fail_at: Some(4),
    };
    let h = b.client().start(batch, job, b.opts(&id)).await.unwrap();
    let r = h.result().await.unwrap();
    assert_eq!(
        r,
        Report {
            processed: 6,
            resumed_from: 4,
            attempt: 2
        }
    );
    assert_eq!(h.describe().await.unwrap().attempt, 2);
    w.shutdown().await;
    Outcome::pass()
}

pub async fn killed_worker_times_out_and_the_retry_resumes(b: &Bench) -> Outcome {
    let id = b.id("killed");
    // Started here, run by a worker process (on the engine file, the file is handed over: no
    // handle may outlive this block).
    b.client()
        .start(batch, Job::endless(), b.opts(&id))
        .await
        .unwrap();
    let mut process = b.killable_worker().await;
    // 150 items take 1.5 s: the checkpoint has reached the backend by then (the engine
    // stores it every second, Temporal with the heartbeat every 0.8 × 2 s at most).
    let reached = process.items_done(&id, 150).await;
    let killed_at = b.kill(process, &id).await.max(reached);

    // Engine file: reopening finds the dead process's attempt and retries it at once.
    // Temporal, and the in-memory engine: the attempt is timed out after 2 s without a
    // heartbeat.
    let c = b.client();
    let h = c.handle(batch, &id);
    let d = describe_until(&h, "shown the attempt's failure", |d| {
        d.last_failure.is_some()
    })
    .await;
    let failure = d.last_failure.as_ref().unwrap();
    match b.diff.killed_worker {
        Killed::WorkerLost => assert_application(failure, "WorkerLost", false),
        _ => assert!(
            matches!(
                failure,
                ActivityFailure::Timeout {
                    kind: TimeoutKind::Heartbeat,
                    ..
                }
            ),
            "{failure:?}"
        ),
    }
    let last: Progress = d
        .checkpoint()
        .unwrap_or_else(|| panic!("the checkpoint is kept: {d:?}"));
    assert!(
        last.next > 0 && last.next <= killed_at,
        "the last checkpoint ({} of {killed_at} done): {d:?}",
        last.next
    );
    let details = failure
        .last_details()
        .map(|p| decode_payload::<Progress>(p).unwrap());
    assert_eq!(
        details,
        Some(last),
        "the failure carries the checkpoint: {d:?}"
    );
    assert!(!d.status.is_closed(), "{d:?}");

    let w = b.worker().await;
    finish_fast(&id);
    let r = within(Duration::from_secs(30), "the retry", h.result())
        .await
        .unwrap();
    assert_resumed(&r, 2, Job::endless().items, killed_at);
    w.shutdown().await;
    Outcome::Pass(Some(format!(
        "{}: killed at item {killed_at}, resumed from {}",
        b.kill_means(),
        r.resumed_from
    )))
}

pub async fn stalled_attempt_times_out_on_heartbeat_and_is_retried(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let c = b.client();
    let opts = |id: &str, attempts: u32| {
        b.opts(id).heartbeat_timeout(Duration::from_secs(1)).retry(
            RetryPolicy::new()
                .max_attempts(attempts)
                .initial_interval(Duration::from_millis(100)),
        )
    };
    let (once, twice) = (b.id("stall-once"), b.id("stall-twice"));
    let h1 = c.start(stalling, 5, opts(&once, 1)).await.unwrap();
    let h2 = c.start(stalling, 5, opts(&twice, 2)).await.unwrap();
    let (r1, r2) = tokio::join!(h1.result(), h2.result());

    // One attempt allowed: the heartbeat timeout, with the checkpoint as its last details.
    let failure = r1.unwrap_err();
    assert!(
        matches!(
            failure,
            ActivityFailure::Timeout {
                kind: TimeoutKind::Heartbeat,
                ..
            }
        ),
        "{failure:?}"
    );
    let details = failure
        .last_details()
        .expect("the timeout carries the last details");
    assert_eq!(decode_payload::<Progress>(details).unwrap().next, 5);
    let d = h1.describe().await.unwrap();
    assert_eq!(
        (d.status, d.attempt),
        (ActivityStatus::TimedOut, 1),
        "{d:?}"
    );

    // Two: the retry resumes from the checkpoint.
    assert_eq!(
        r2.unwrap(),
        Report {
            processed: 0,
            resumed_from: 5,
            attempt: 2
        }
    );
    w.shutdown().await;
    Outcome::pass()
}

pub async fn non_retryable_errors_end_it_at_once(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let c = b.client();
    // A retryable error whose type the activity's own policy lists (the start keeps that
    // policy: 5 attempts, `Unlucky` non-retryable).
    let listed = b.id("listed");
    let mut keep_policy = b.opts(&listed);
    keep_policy.retry = None;
    let f = Failure {
        error_type: "Unlucky".into(),
        non_retryable: false,
    };
    let h1 = c.start(failing, f, keep_policy).await.unwrap();
    // An error marked non-retryable, 5 attempts allowed.
    let marked = b.id("marked");
    let f = Failure {
        error_type: "Fatal".into(),
        non_retryable: true,
    };
    let opts = b.opts(&marked).retry(RetryPolicy::new().max_attempts(5));
    let h2 = c.start(failing, f, opts).await.unwrap();
    let (r1, r2) = tokio::join!(h1.result(), h2.result());
    let f1 = r1.unwrap_err();
    match &f1 {
        ActivityFailure::Application { error_type, .. } => assert_eq!(error_type, "Unlucky"),
        other => panic!("expected the Unlucky failure, got {other:?}"),
    }
    assert_eq!(f1.to_string(), "Unlucky: not this time");
    assert_application(&r2.unwrap_err(), "Fatal", true);
    for h in [&h1, &h2] {
        let d = h.describe().await.unwrap();
        assert_eq!((d.status, d.attempt), (ActivityStatus::Failed, 1), "{d:?}");
        assert_eq!(d.checkpoint::<u64>(), Some(1), "{d:?}");
    }
    w.shutdown().await;
    Outcome::pass()
}

pub async fn undecodable_input_is_bad_input_and_not_retried(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let id = b.id("bad-input");
    let opts = b.opts(&id).retry(RetryPolicy::new().max_attempts(5));
    let h = b
        .client()
        .start(strict_text, "twenty-one".into(), opts)
        .await
        .unwrap();
    let failure = h.result().await.unwrap_err();
    assert_application(&failure, "BadInput", true);
    let message = failure.to_string();
    assert!(
        message.contains("strict") && message.contains("u64"),
        "{message}"
    );
    assert!(!message.contains("twenty-one"), "no value in it: {message}");
    let d = h.describe().await.unwrap();
    assert_eq!((d.status, d.attempt), (ActivityStatus::Failed, 1), "{d:?}");
    w.shutdown().await;
    Outcome::pass()
}

pub async fn start_to_close_and_schedule_to_close_timeouts(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let c = b.client();
    let (per_attempt, whole) = (b.id("s2c"), b.id("sched2c"));
    let opts = b
        .opts(&per_attempt)
        .heartbeat_timeout(Duration::from_secs(1))
        .start_to_close_timeout(Duration::from_secs(1))
        .retry(RetryPolicy::new().max_attempts(1));
    let h1 = c.start(batch, Job::endless(), opts).await.unwrap();
    // Retries without limit: the schedule-to-close timeout ends it.
    let opts = b
        .opts(&whole)
        .schedule_to_close_timeout(Duration::from_millis(1500));
    let h2 = c.start(batch, Job::endless(), opts).await.unwrap();
    let (r1, r2) = tokio::join!(h1.result(), h2.result());
    for (r, kind) in [
        (r1.map(drop), TimeoutKind::StartToClose),
        (r2.map(drop), TimeoutKind::ScheduleToClose),
    ] {
        match r {
            Err(ActivityFailure::Timeout { kind: k, .. }) => assert_eq!(k, kind),
            other => panic!("expected a {kind} timeout, got {other:?}"),
        }
    }
    for h in [&h1, &h2] {
        let d = h.describe().await.unwrap();
        assert_eq!(d.status, ActivityStatus::TimedOut, "{d:?}");
        assert!(d.progress.is_some_and(|p| p.done > 0), "{d:?}");
    }
    w.shutdown().await;
    Outcome::pass()
}

pub async fn retries_exhausted(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let id = b.id("exhausted");
    let f = Failure {
        error_type: "Flaky".into(),
        non_retryable: false,
    };
    let opts = b.opts(&id).retry(
        RetryPolicy::new()
            .max_attempts(3)
            .initial_interval(Duration::from_millis(100)),
    );
    let h = b.client().start(failing, f, opts).await.unwrap();
    let failure = h.result().await.unwrap_err();
    match &failure {
        ActivityFailure::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, 3, "{failure:?}");
            assert_application(last, "Flaky", false);
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    // The last attempt's checkpoint: each attempt resumed from the one before.
    let last: u64 = decode_payload(failure.last_details().expect("details")).unwrap();
    assert_eq!(last, 3);
    let d = h.describe().await.unwrap();
    assert_eq!((d.status, d.attempt), (ActivityStatus::Failed, 3), "{d:?}");
    w.shutdown().await;
    Outcome::pass()
}

pub async fn describe_shows_progress_mid_run(b: &Bench) -> Outcome {
    let w = b.worker().await;
    let c = b.client();
    let id = b.id("describe");
    let h = running_batch(b, &c, &id).await;
    // The engine's first heartbeat comes one heartbeat interval in; Temporal's core sends
    // the first at once.
    let d = describe_until(&h, "heartbeated", |d| d.last_heartbeat.is_some()).await;
    assert_eq!((d.status, d.attempt), (ActivityStatus::Running, 1), "{d:?}");
    let first = d.progress.expect("progress").done;
    assert_eq!(
        d.progress.unwrap().total,
        Some(Job::endless().items),
        "{d:?}"
    );
    assert_eq!(d.checkpoint::<Progress>().map(|p| p.next), Some(first));
    assert!(
        d.last_heartbeat.is_some() && d.attempt_started.is_some() && d.scheduled_at.is_some(),
        "{d:?}"
    );
    assert!(
        d.closed_at.is_none() && d.output.is_none() && !d.cancel_requested,
        "{d:?}"
    );
    // It moves on.
    describe_until(&h, "shown more progress", |d| {
        d.progress.is_some_and(|p| p.done > first)
    })
    .await;
    finish_fast(&id);
    assert_eq!(h.result().await.unwrap().processed, Job::endless().items);
    w.shutdown().await;
    Outcome::pass()
}
