//! CPU-bound work that still heartbeats: `ctx.run_blocking` runs the loop on tokio's blocking
//! pool, the pump heartbeats from its own thread, and the loop checkpoints and watches for a
//! cancel as it goes.
//!
//! Run: `cargo run --release --example cpu_bound`

use std::time::{Duration, Instant};

use hb_runtime::client::StartOptions;
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct Search {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
    found: u64,
}

/// Counts primes below `limit` by trial division (deliberately slow).
#[activity(heartbeat_timeout = "1s")]
async fn count_primes(
    ctx: ActivityContext,
    #[checkpoint] s: Search,
    limit: u64,
) -> Result<u64, ActivityError> {
    ctx.run_blocking(move |ctx| {
        let mut s = s;
        s.total = limit;
        while s.next < limit {
            let n = s.next;
            if n >= 2
                && (2..)
                    .take_while(|d| d * d <= n)
                    .all(|d| !n.is_multiple_of(d))
            {
                s.found += 1;
            }
            s.next += 1;
            if n.is_multiple_of(4096) {
                ctx.checkpoint(&s)?;
                ctx.check_cancelled()?;
            }
        }
        Ok(s.found)
    })
    .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::in_memory().await?;
    let _worker = engine.worker().register(count_primes).spawn().await?;
    let started = Instant::now();
    let h = engine
        .client()
        .start(count_primes, 15_000_000, StartOptions::id("primes"))
        .await?;
    let mut last = None;
    loop {
        let d = h.describe().await?;
        if d.last_heartbeat != last {
            if let Some(p) = d.progress {
                println!("heartbeat: {}/{} checked", p.done, p.total.unwrap_or(0));
            }
            last = d.last_heartbeat;
        }
        if d.status.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} primes below 15,000,000 in {:.1?}, heartbeating all along",
        h.result().await?,
        started.elapsed()
    );
    Ok(())
}
