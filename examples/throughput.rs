//! End-to-end throughput of the durable embedded engine: no-op activities started, run by a
//! worker and awaited, every completion committed to the file before `result()` returns.
//!
//! Run: `cargo run --release --example throughput [-- N]` (default N = 20,000)

use std::time::Instant;

use hb_runtime::client::StartOptions;
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;

#[activity(start_to_close_timeout = "1m")]
async fn noop(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("hb-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let engine = Engine::open(dir.join("hb.db")).await?;
    let worker = engine
        .worker()
        .register(noop)
        .max_concurrent(1024)
        .spawn()
        .await?;
    let client = engine.client();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // Callers in parallel, as many services would: each starts and awaits its share.
    let callers: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    for c in 0..callers {
        let client = client.clone();
        tasks.spawn(async move {
            let mut sum = 0;
            for i in (c..n).step_by(callers as usize) {
                let h = client
                    .start(noop, i, StartOptions::id(format!("noop-{i}")))
                    .await?;
                sum += h.result().await?;
            }
            Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(sum)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r?.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    assert_eq!(total, n * (n - 1) / 2);
    println!(
        "throughput: {n} no-op activities end to end (durable) in {:.2?}: {:.0} activities/s",
        elapsed,
        n as f64 / elapsed.as_secs_f64()
    );
    worker.shutdown().await;
    drop(engine);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
