//! hb activities on a Temporal server: a worker any Temporal client or workflow (Python, Go,
//! TypeScript, Java, Rust) calls by activity name.
//!
//! Run (with a server, e.g. `temporal server start-dev`):
//! `cargo run --features temporal --example temporal_worker -- --address localhost:7233 --namespace default --task-queue hb-example`
//! (the address and namespace default to `TEMPORAL_ADDRESS` and `TEMPORAL_NAMESPACE`, and
//! `TEMPORAL_API_KEY` and the `TEMPORAL_TLS_*` certificate paths are read, as the `temporal`
//! CLI reads them).
//!
//! Activities:
//! - `process_batch`, input `{"items": N, "item_ms": M}`: processes N items of M ms each,
//!   checkpointing after every item; returns `{"processed", "resumed_from", "attempt"}`. Kill
//!   the worker mid-run and start it again: the retry resumes from the last checkpoint.
//! - `double`, input a number: returns it doubled.
//!
//! It runs until Ctrl-C (a graceful shutdown: running batches get 10 s, then stop with their
//! checkpoint and are retried elsewhere), or until polling fails for good (e.g. the namespace
//! was deleted): then it stops its batches the same way and exits with status 1 and the error.
//!
//! From Python, for instance:
//! `await workflow.execute_activity("process_batch", {"items": 100, "item_ms": 50},
//!  task_queue="hb-example", start_to_close_timeout=timedelta(minutes=5),
//!  heartbeat_timeout=timedelta(seconds=2))`

use std::process::ExitCode;
use std::time::Duration;

use hb_runtime::prelude::*;
use hb_runtime::temporal::{ConnectOptions, Temporal};

/// How far a batch got: what a retry resumes from.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Batch {
    items: u64,
    item_ms: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Report {
    processed: u64,
    resumed_from: u64,
    attempt: u32,
}

/// Processes `items` items of `item_ms` each, checkpointing after every item.
#[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1h")]
async fn process_batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    batch: Batch,
) -> Result<Report, ActivityError> {
    let resumed_from = p.next;
    if resumed_from > 0 {
        tracing::info!(
            resumed_from,
            attempt = ctx.info().attempt,
            "resuming from the checkpoint"
        );
    }
    p.total = batch.items;
    while p.next < batch.items {
        tokio::time::sleep(Duration::from_millis(batch.item_ms)).await;
        p.next += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(Report {
        processed: p.next - resumed_from,
        resumed_from,
        attempt: ctx.info().attempt,
    })
}

/// Doubles a number.
#[activity(heartbeat_timeout = "10s")]
async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n * 2)
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "temporal_worker [--address localhost:7233] [--namespace default] [--task-queue hb-example]\n\
             The address, namespace, API key and TLS settings default to TEMPORAL_ADDRESS,\n\
             TEMPORAL_NAMESPACE, TEMPORAL_API_KEY and TEMPORAL_TLS_* as the temporal CLI reads them."
        );
        return Ok(ExitCode::SUCCESS);
    }
    // As the `temporal` CLI: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY and the
    // TLS variables when set (else localhost:7233, namespace default), then the flags.
    let mut options = ConnectOptions::from_env()?;
    if let Some(address) = flag(&args, "--address") {
        options = options.address(address);
    }
    if let Some(namespace) = flag(&args, "--namespace") {
        options = options.namespace(namespace);
    }
    let task_queue = flag(&args, "--task-queue").unwrap_or_else(|| "hb-example".to_owned());
    let (address, namespace) = (
        options.get_address().to_owned(),
        options.get_namespace().to_owned(),
    );

    let temporal = Temporal::connect(options).await?;
    let worker = temporal
        .worker()
        .task_queue(&task_queue)
        .register(process_batch)
        .register(double)
        .spawn()
        .await?;
    println!(
        "hb worker on {address}, namespace {namespace}, task queue {task_queue}: process_batch, double (Ctrl-C stops it)"
    );
    tokio::select! {
        // The worker stopped by itself: polling failed for good (the namespace was deleted,
        // the API key revoked). Its attempts were stopped with their checkpoints; exit with
        // the error, non-zero, for the supervisor to see.
        ended = worker.wait() => {
            if let Err(e) = ended {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
        signal = tokio::signal::ctrl_c() => {
            signal?;
            worker.shutdown().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
