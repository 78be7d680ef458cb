//! hb in one minute: a batch activity on the durable embedded engine, whose first attempt dies
//! partway and whose retry resumes from the last checkpoint.
//!
//! Run: `cargo run --example quickstart`
//!
//! What happens:
//! 1. An engine opens a SQLite file (in the temp directory) and a worker registers
//!    `process_batch`.
//! 2. A client starts it on 200 items. Every item is checkpointed (`ctx.checkpoint(&p)`, a few
//!    nanoseconds); the heartbeat pump ships the latest checkpoint every 250 ms.
//! 3. Attempt 1 panics at item 120 (a simulated crash). Its last checkpoint was flushed as it
//!    died, so the engine's retry (attempt 2) starts at item 120, not 0.
//! 4. The progress bar follows `handle.watch()`: the engine pushes each change (a heartbeat,
//!    the new attempt, the end) to it.
//! 5. The report says which item the retry resumed from.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hb_runtime::client::{ActivityStatus, StartOptions};
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

/// How far the batch got: what a retry resumes from.
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
    item_ms: u64,
    /// The first attempt dies when it reaches this item.
    crash_at: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Report {
    processed: u64,
    resumed_from: u64,
    attempt: u32,
    sum: u64,
}

/// Sums the squares of `0..items`, one item every `item_ms`.
#[activity(
    heartbeat_timeout = "500ms",
    start_to_close_timeout = "1m",
    retry(max_attempts = 3, initial_interval = "200ms")
)]
async fn process_batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    batch: Batch,
) -> Result<Report, ActivityError> {
    let resumed_from = p.next;
    p.total = batch.items;
    while p.next < batch.items {
        if ctx.info().attempt == 1 && p.next == batch.crash_at {
            panic!("simulated crash at item {}", p.next);
        }
        tokio::time::sleep(Duration::from_millis(batch.item_ms)).await;
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

/// Prints above the bar, or plainly when there is no terminal to draw it on.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A quiet panic message: the crash is on purpose.
    std::panic::set_hook(Box::new(|_| {}));
    let path = std::env::temp_dir().join(format!("hb-quickstart-{}.db", std::process::id()));
    let started = Instant::now();

    let engine = Engine::open(&path).await?;
    println!("engine file: {}", path.display());
    let worker = engine
        .worker()
        .register(process_batch)
        .max_concurrent(4)
        .spawn()
        .await?;

    let batch = Batch {
        items: 200,
        item_ms: 10,
        crash_at: 120,
    };
    let handle = engine
        .client()
        .start(process_batch, batch, StartOptions::id("batch-42"))
        .await?;

    let bar = ProgressBar::new(200);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos:>3}/{len} {msg}")?
            .progress_chars("=> "),
    );
    let mut attempt_seen = 0;
    // Each change the engine makes to the activity (a heartbeat, a new attempt, its end), as it
    // happens: no polling. The stream ends with the activity.
    let mut changes = std::pin::pin!(handle.watch());
    while let Some(d) = changes.next().await {
        let d = d?;
        if d.attempt != attempt_seen {
            if attempt_seen > 0 {
                let resumed = d.checkpoint::<Progress>().map_or(0, |p| p.next);
                let why = d
                    .last_failure
                    .as_ref()
                    .map_or_else(String::new, |f| f.to_string());
                say(
                    &bar,
                    format!(
                        "attempt {attempt_seen} died: {why}\nattempt {} resumes from item {resumed} (its last checkpoint)",
                        d.attempt
                    ),
                );
            }
            if attempt_seen == 0 {
                say(&bar, format!("attempt {} started", d.attempt));
            }
            attempt_seen = d.attempt;
            bar.set_prefix(format!("attempt {}", d.attempt));
        }
        if let Some(p) = d.progress {
            bar.set_position(p.done);
        }
        bar.set_message(d.status.to_string());
    }
    bar.finish();

    let report = handle.result().await?;
    println!(
        "\nreport: attempt {} resumed from item {} and processed {} items; sum of squares = {}",
        report.attempt, report.resumed_from, report.processed, report.sum
    );
    let expected: u64 = (0..200u64).map(|i| i * i).sum();
    assert_eq!(report.sum, expected, "every item counted exactly once");
    assert_eq!(handle.describe().await?.status, ActivityStatus::Completed);
    println!("done in {:.1?}", started.elapsed());

    worker.shutdown().await;
    drop(engine);
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
