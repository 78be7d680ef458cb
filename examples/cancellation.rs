//! Cancelling a running activity: the cancel is pushed to the attempt at once, the body is
//! dropped at its next `.await`, and the caller gets `Cancelled` with the last checkpoint.
//! A second activity uses `cancel = "cooperative"` to finish its own way.
//!
//! Run: `cargo run --example cancellation`

use std::time::{Duration, Instant};

use hb_runtime::client::{ActivityFailure, StartOptions};
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct Cursor {
    #[checkpoint(done)]
    next: u64,
}

/// Copies files forever (until cancelled); dropped at its next `.await` on cancel.
#[activity(heartbeat_timeout = "5s")]
async fn copy_files(
    ctx: ActivityContext,
    #[checkpoint] mut c: Cursor,
) -> Result<u64, ActivityError> {
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        c.next += 1;
        ctx.checkpoint(&c)?;
    }
}

/// Sees the cancel and wraps up: returns how far it got instead of being dropped.
#[activity(heartbeat_timeout = "5s", cancel = "cooperative", cancel_grace = "2s")]
async fn index_pages(
    ctx: ActivityContext,
    #[checkpoint] mut c: Cursor,
) -> Result<String, ActivityError> {
    loop {
        tokio::select! {
            _ = ctx.cancelled() => {
                ctx.flush().await.ok();
                return Ok(format!("stopped cleanly after {} pages ({})", c.next,
                    ctx.cancel_reason().map_or("?".into(), |r| r.to_string())));
            }
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                c.next += 1;
                ctx.checkpoint(&c)?;
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::in_memory().await?;
    let _worker = engine
        .worker()
        .register(copy_files)
        .register(index_pages)
        .spawn()
        .await?;
    let client = engine.client();

    let copy = client
        .start(copy_files, (), StartOptions::id("copy"))
        .await?;
    let index = client
        .start(index_pages, (), StartOptions::id("index"))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Instant::now();
    copy.cancel().await?;
    match copy.result().await {
        Err(ActivityFailure::Cancelled { details }) => {
            let c: Cursor = hb_runtime::checkpoint::decode_payload(&details.unwrap())?;
            println!(
                "copy_files: cancelled after {} files (result in {:.1?})",
                c.next,
                t.elapsed()
            );
        }
        other => println!("copy_files: unexpected {other:?}"),
    }

    index.cancel().await?;
    println!("index_pages: {}", index.result().await?);
    Ok(())
}
