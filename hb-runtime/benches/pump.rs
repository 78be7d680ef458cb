//! The heartbeat pump under 10,000 concurrent attempts heartbeating every second: the pump
//! thread's CPU time per heartbeat, and memory per attempt.
//!
//! Run: `cargo bench -p hb-runtime --bench pump`
//!
//! The criterion figure is CPU time of the `hb-pump` thread (from
//! `/proc/self/task/<tid>/schedstat`) per heartbeat, encoding and transport call included.
//! Memory per attempt (everything an attempt costs: its task, context, pump entry) is printed
//! before the criterion run.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use hb_runtime::heartbeat::Pump;
use hb_runtime::runner::{AttemptRequest, AttemptRunner};
use hb_runtime::transport::{HeartbeatReply, TaskToken, Transport};
use hb_runtime::{
    Activity, ActivityContext, ActivityError, ActivityOptions, BoxFuture, CancelReason, Checkpoint,
    Payload, TransportError,
};
use serde::{Deserialize, Serialize};

const ATTEMPTS: usize = 10_000;

#[derive(Serialize, Deserialize, Default, Clone, Debug)]
struct Progress {
    next: u64,
    total: u64,
    bytes: u64,
}

impl Checkpoint for Progress {
    const TYPE_NAME: &'static str = "Progress";
}

/// Checkpoints twice a second until cancelled.
#[derive(Debug, Clone, Copy)]
struct Worker;

impl Activity for Worker {
    const NAME: &'static str = "worker";
    type Input = ();
    type Output = ();
    type Checkpoint = Progress;
    fn options(&self) -> ActivityOptions {
        ActivityOptions::new()
            .heartbeat_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_secs(1))
    }
    fn run(
        &self,
        ctx: ActivityContext,
        mut p: Progress,
        _: (),
    ) -> BoxFuture<'static, Result<(), ActivityError>> {
        Box::pin(async move {
            p.total = 1_000_000;
            while !ctx.is_cancelled() {
                p.next += 1;
                p.bytes += 4096;
                ctx.checkpoint(&p)?;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = ctx.cancelled() => {}
                }
            }
            Ok(())
        })
    }
}

/// Counts heartbeats and keeps nothing.
#[derive(Default, Clone)]
struct Counting(Arc<AtomicU64>);

impl Transport for Counting {
    fn heartbeat<'a>(
        &'a self,
        _: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        black_box(details);
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(HeartbeatReply::ok()) })
    }
    fn complete<'a>(
        &'a self,
        _: &'a TaskToken,
        _: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
    fn fail<'a>(
        &'a self,
        _: &'a TaskToken,
        _: &'a ActivityError,
        _: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
    fn cancelled<'a>(
        &'a self,
        _: &'a TaskToken,
        _: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// CPU nanoseconds used so far by the thread named `hb-pump`.
fn pump_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "hb-pump" {
            return std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// The same body as `Worker`, as plain tokio tasks without hb: the baseline memory.
async fn plain_body(stop: tokio_util_free::Stop) {
    let mut p = Progress {
        total: 1_000_000,
        ..Progress::default()
    };
    while !stop.is_set() {
        p.next += 1;
        p.bytes += 4096;
        black_box(&p);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

mod tokio_util_free {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    #[derive(Clone, Default)]
    pub(crate) struct Stop(Arc<AtomicBool>);
    impl Stop {
        pub(crate) fn is_set(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }
}

/// Runs in a child process (`HB_BENCH_BASELINE=1`): RSS growth of 10,000 plain tasks.
fn baseline_child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stop = tokio_util_free::Stop::default();
    let before = rss_bytes();
    let joins: Vec<_> = (0..ATTEMPTS)
        .map(|i| {
            let id = format!("a{i}");
            let stop = stop.clone();
            rt.spawn(async move {
                black_box(&id);
                plain_body(stop).await
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1600));
    let after = rss_bytes();
    println!("{}", after.saturating_sub(before) / ATTEMPTS as u64);
    black_box(joins);
    std::process::exit(0);
}

fn baseline_per_task() -> Option<u64> {
    let out = std::process::Command::new(std::env::current_exe().ok()?)
        .env("HB_BENCH_BASELINE", "1")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn bench_pump(c: &mut Criterion) {
    let baseline = baseline_per_task();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let transport = Counting::default();
    let pump = Pump::global();
    let runner = AttemptRunner::new(transport.clone()).pump(pump.clone());

    let rss_before = rss_bytes();
    let mut handles = Vec::with_capacity(ATTEMPTS);
    let mut joins = Vec::with_capacity(ATTEMPTS);
    for i in 0..ATTEMPTS {
        let running = runner.start(
            &Worker,
            AttemptRequest::new(
                format!("a{i}"),
                TaskToken::new(format!("t{i}")),
                Payload::json(&()).unwrap(),
            ),
        );
        handles.push(running.handle());
        joins.push(rt.spawn(running.run()));
    }
    // Let every attempt heartbeat a few times so all buffers are at their steady size.
    let deadline = Instant::now() + Duration::from_secs(10);
    while transport.0.load(Ordering::Relaxed) < 3 * ATTEMPTS as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_after = rss_bytes();
    let checkpoint_bytes = std::mem::size_of::<Progress>() as u64
        + hb_runtime::checkpoint::encode(&Progress::default())
            .unwrap()
            .len() as u64;
    let per_attempt = rss_after.saturating_sub(rss_before) / ATTEMPTS as u64;
    println!(
        "pump: {} attempts registered; RSS per attempt = {per_attempt} bytes; the same body as a plain tokio task = {} bytes; hb's share = {} bytes, of which the checkpoint (value + encoded) is {checkpoint_bytes} bytes",
        pump.stats().active,
        baseline.map_or("?".to_owned(), |b| b.to_string()),
        baseline.map_or("?".to_owned(), |b| per_attempt.saturating_sub(b).to_string()),
    );

    c.benchmark_group("pump")
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(400))
        .bench_function("cpu_per_heartbeat/10k_attempts_1s_interval", |b| {
            b.iter_custom(|iters| {
                let start_beats = transport.0.load(Ordering::Relaxed);
                let start_cpu = pump_cpu_ns();
                // At least 2,000 heartbeats (~0.2 s) per sample, so the thread's CPU clock moves.
                let want = iters.max(2_000);
                while transport.0.load(Ordering::Relaxed) - start_beats < want {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let beats = transport.0.load(Ordering::Relaxed) - start_beats;
                let cpu = pump_cpu_ns() - start_cpu;
                // Scale to exactly `iters` heartbeats.
                Duration::from_nanos(cpu * iters / beats.max(1))
            })
        });

    for h in &handles {
        h.cancel(CancelReason::WorkerShutdown);
    }
    rt.block_on(async {
        for j in joins {
            let _ = j.await;
        }
    });
}

criterion_group!(benches, bench_pump);

fn main() {
    if std::env::var_os("HB_BENCH_BASELINE").is_some() {
        baseline_child();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
