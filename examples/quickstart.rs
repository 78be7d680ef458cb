//! A batch activity that dies partway through and resumes from its checkpoint.
//!
//! Run: `cargo run --example quickstart`
//!
//! The first attempt processes items until it fails at item 37 (a simulated crash); its last
//! checkpoint was flushed as it ended. The retry reads that checkpoint and carries on from
//! there instead of starting over. (This example runs each attempt through hb's test kit,
//! which stands in for a backend; the durable embedded engine serves the same activity.)

use std::time::Duration;

use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;

/// Progress through a batch: the next item to process.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
#[checkpoint(version = 1)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
    sum: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Batch {
    items: u64,
    /// Fail once this item is reached (simulates a crash on the first attempt).
    crash_at: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Report {
    processed: u64,
    resumed_from: u64,
    attempt: u32,
    sum: u64,
}

/// Sums the squares of `0..items`, one item every 10 ms, checkpointing after each.
#[activity(
    heartbeat_timeout = "2s",
    start_to_close_timeout = "1m",
    retry(max_attempts = 3, initial_interval = "100ms")
)]
async fn process_batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    batch: Batch,
) -> Result<Report, ActivityError> {
    let resumed_from = p.next;
    p.total = batch.items;
    while p.next < batch.items {
        if Some(p.next) == batch.crash_at {
            return Err(ActivityError::retryable(
                "Crash",
                format!("simulated crash at item {}", p.next),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        p.sum += p.next * p.next;
        p.next += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(Report {
        processed: p.next - resumed_from,
        resumed_from,
        attempt: ctx.info().attempt,
        sum: p.sum,
    })
}

#[tokio::main]
async fn main() {
    let items = 100;
    println!("attempt 1: processing {items} items");
    let first = ActivityEnvironment::new()
        .activity_id("batch-42")
        .run(
            process_batch,
            Batch {
                items,
                crash_at: Some(37),
            },
        )
        .await;
    let checkpoint = first.last_checkpoint.expect("a checkpoint was flushed");
    let err = first.result.expect_err("the first attempt crashes");
    println!(
        "attempt 1 failed: {err} (retryable: {}); {} heartbeats sent; last checkpoint: item {} of {}",
        err.is_retryable(),
        first.heartbeats.len(),
        checkpoint.next,
        checkpoint.total
    );

    let policy = hb_runtime::Activity::options(&process_batch()).retry;
    assert!(policy.should_retry(1, &err));
    println!(
        "retrying in {:?} (policy: {:?})",
        policy.delay_after(1),
        policy
    );
    tokio::time::sleep(policy.delay_after(1)).await;

    let second = ActivityEnvironment::new()
        .activity_id("batch-42")
        .attempt(2)
        .with_checkpoint(checkpoint)
        .run(
            process_batch,
            Batch {
                items,
                crash_at: None,
            },
        )
        .await;
    let report = second.result.expect("the retry completes");
    println!(
        "attempt {} resumed from item {} and processed {} items; sum of squares = {}",
        report.attempt, report.resumed_from, report.processed, report.sum
    );
    assert_eq!(report.sum, (0..items).map(|i| i * i).sum::<u64>());
}
