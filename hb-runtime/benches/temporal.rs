//! hb against the official SDK and the Temporal dev server, on a real server (started here,
//! as the Temporal tests do: `temporal server start-dev` from a virtualenv under `target/`).
//!
//! Run: `cargo bench -p hb-runtime --features temporal --bench temporal`
//!
//! - `record_heartbeat`: temporalio-sdk's `ctx.record_heartbeat(details)` per call in a tight
//!   loop, inside a real activity on a temporalio-sdk worker (compare with
//!   `cargo bench -p hb-runtime --bench checkpoint`, hb's `ctx.checkpoint`), and the resident
//!   memory 1,000,000 calls leave behind;
//! - `noop_end_to_end`: no-op standalone activities started and awaited through hb's Temporal
//!   client and worker on the dev server, against the same through the embedded engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use hb_runtime::client::{ActivityClient, StartOptions};
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;
use hb_runtime::temporal::{ConnectOptions, Temporal};

#[path = "../tests/temporal/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../tests/temporal/sdk_harness.rs"]
mod sdk_harness;

/// The details each heartbeat carries: a 3-field struct of integers, like hb's bench.
#[derive(Serialize, Deserialize, Clone, Copy)]
struct Progress {
    next: u64,
    total: u64,
    bytes: u64,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Plain temporalio-sdk activities measuring `record_heartbeat` from the inside.
mod sdk {
    #![allow(dead_code)]
    use super::{Progress, rss_bytes};
    use std::time::Instant;

    pub struct Measure;

    #[temporalio_macros::activities]
    impl Measure {
        /// `calls` heartbeats in a tight loop: the ns they took.
        #[activity(name = "sdk_heartbeat_loop")]
        pub async fn heartbeat_loop(
            ctx: temporalio_sdk::activities::ActivityContext,
            calls: u64,
        ) -> Result<u64, temporalio_sdk::activities::ActivityError> {
            let start = Instant::now();
            for i in 0..calls {
                let _ = ctx
                    .record_heartbeat(Progress {
                        next: i,
                        total: calls,
                        bytes: i * 4096,
                    })
                    .await;
            }
            Ok(start.elapsed().as_nanos() as u64)
        }

        /// The resident memory `calls` heartbeats left behind, in bytes.
        #[activity(name = "sdk_heartbeat_memory")]
        pub async fn heartbeat_memory(
            ctx: temporalio_sdk::activities::ActivityContext,
            calls: u64,
        ) -> Result<u64, temporalio_sdk::activities::ActivityError> {
            let before = rss_bytes();
            for i in 0..calls {
                let _ = ctx
                    .record_heartbeat(Progress {
                        next: i,
                        total: calls,
                        bytes: i * 4096,
                    })
                    .await;
            }
            Ok(rss_bytes().saturating_sub(before))
        }
    }

    pub use measure::{HeartbeatLoop, HeartbeatMemory};
}

/// hb markers naming the SDK activities, so hb's client can start them by name.
#[activity(start_to_close_timeout = "10m")]
async fn sdk_heartbeat_loop(_ctx: ActivityContext, _calls: u64) -> Result<u64, ActivityError> {
    unreachable!("runs on the temporalio-sdk worker")
}

#[activity(start_to_close_timeout = "10m")]
async fn sdk_heartbeat_memory(_ctx: ActivityContext, _calls: u64) -> Result<u64, ActivityError> {
    unreachable!("runs on the temporalio-sdk worker")
}

/// A no-op activity.
#[activity(start_to_close_timeout = "1m")]
async fn noop(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

/// A temporalio-sdk worker running the measuring activities.
fn sdk_worker(url: &str, queue: &str) -> (Box<dyn Fn() + Send>, std::thread::JoinHandle<()>) {
    let queue = queue.to_owned();
    sdk_harness::sdk_worker(url, move || {
        temporalio_sdk::WorkerOptions::new(queue)
            .register_activity::<sdk::HeartbeatLoop>(Arc::new(sdk::Measure))
            .register_activity::<sdk::HeartbeatMemory>(Arc::new(sdk::Measure))
            .graceful_shutdown_period(Duration::from_secs(1))
            .build()
    })
}

/// The time per activity of `iters` rounds, each starting `batch` activities one after the
/// other, then awaiting each one's result.
fn per_activity<H, S, R>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    batch: u64,
    mut start: impl FnMut() -> S,
    result: impl Fn(H) -> R,
) -> Duration
where
    S: std::future::Future<Output = H>,
    R: std::future::Future<Output = ()>,
{
    let began = Instant::now();
    for _ in 0..iters {
        rt.block_on(async {
            let mut handles = Vec::new();
            for _ in 0..batch {
                handles.push(start().await);
            }
            for h in handles {
                result(h).await;
            }
        });
    }
    began.elapsed() / batch as u32
}

fn main() {
    let venv = harness::venv();
    let server = harness::Server::start(&venv);
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default().configure_from_args();
    let temporal = rt
        .block_on(Temporal::connect(ConnectOptions::new(&url)))
        .unwrap();
    let client = temporal.client();
    let mut run = 0u64;
    let mut id = move |what: &str| {
        run += 1;
        format!("{what}-{}-{run}", std::process::id())
    };

    // temporalio-sdk's record_heartbeat, per call.
    let sdk_queue = format!("bench-sdk-{}", std::process::id());
    let (stop_sdk, sdk_thread) = sdk_worker(&url, &sdk_queue);
    c.bench_function("temporalio_sdk_record_heartbeat_per_call", |b| {
        b.iter_custom(|iters| {
            let h = rt
                .block_on(client.start(
                    sdk_heartbeat_loop,
                    iters,
                    StartOptions::id(id("loop")).task_queue(&sdk_queue),
                ))
                .unwrap();
            Duration::from_nanos(rt.block_on(h.result()).unwrap())
        })
    });
    let h = rt
        .block_on(client.start(
            sdk_heartbeat_memory,
            1_000_000,
            StartOptions::id(id("memory")).task_queue(&sdk_queue),
        ))
        .unwrap();
    let grown = rt.block_on(h.result()).unwrap();
    println!(
        "temporalio-sdk: RSS growth after 1,000,000 record_heartbeat calls = {} MB ({} bytes per call)",
        grown / 1_000_000,
        grown / 1_000_000,
    );
    {
        // Core's shutdown spawns on the runtime it is called from.
        let _in_runtime = rt.enter();
        stop_sdk();
    }
    let _ = sdk_thread.join();

    // No-op activities end to end: the dev server through hb's Temporal worker ...
    const BATCH: u64 = 100;
    let hb_queue = format!("bench-hb-{}", std::process::id());
    let worker = rt
        .block_on(
            temporal
                .worker()
                .task_queue(&hb_queue)
                .register(noop)
                .max_concurrent(BATCH as usize)
                .spawn(),
        )
        .unwrap();
    let mut group = c.benchmark_group("noop_end_to_end");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("temporal_dev_server_via_hb_worker", |b| {
        b.iter_custom(|iters| {
            per_activity(
                &rt,
                iters,
                BATCH,
                || {
                    let options = StartOptions::id(id("noop")).task_queue(&hb_queue);
                    async { client.start(noop, (), options).await.unwrap() }
                },
                |h| async move { h.result().await.unwrap() },
            )
        })
    });
    // ... and the embedded engine, the same way.
    let dir = harness::temp_dir("bench-engine");
    let engine = rt.block_on(Engine::open(dir.path().join("hb.db"))).unwrap();
    let engine_worker = rt.block_on(async {
        engine
            .worker()
            .register(noop)
            .max_concurrent(BATCH as usize)
            .spawn()
            .await
            .unwrap()
    });
    let engine_client = engine.client();
    group.bench_function("embedded_engine", |b| {
        b.iter_custom(|iters| {
            per_activity(
                &rt,
                iters,
                BATCH,
                || {
                    let options = StartOptions::id(id("engine"));
                    async { engine_client.start(noop, (), options).await.unwrap() }
                },
                |h| async move { h.result().await.unwrap() },
            )
        })
    });
    group.finish();
    rt.block_on(async {
        engine_worker.shutdown().await;
        worker.shutdown().await;
        let _ = engine.close().await;
    });
    c.final_summary();
    drop(server);
}
