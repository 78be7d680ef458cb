//! The heartbeat pump under 10,000 concurrent attempts heartbeating every second: the pump
//! thread's CPU time per heartbeat, and memory per attempt.
//!
//! Run: `cargo bench -p hb-runtime --bench pump`
//!
//! The criterion figure is CPU time of the `hb-pump` thread (from
//! `/proc/self/task/<tid>/schedstat`) per heartbeat, encoding and transport call included.
//! Memory per attempt (everything an attempt costs: its task, context, pump entry) is printed
//! (exact heap bytes, counted by `stats_alloc`, against the same body run as a plain tokio task)
//! before the criterion run.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use hb_runtime::backend::Pump;
use hb_runtime::backend::{AttemptRequest, AttemptRunner};
use hb_runtime::backend::{NullTransport, TaskToken};
use hb_runtime::{
    Activity, ActivityContext, ActivityError, ActivityOptions, BoxFuture, CancelReason, Checkpoint,
    Payload,
};
use serde::{Deserialize, Serialize};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

// Counts heap bytes exactly (no backtraces, a few atomics per allocation).
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since `region` began (stats_alloc already counts a
/// reallocation's growth in `bytes_allocated` and its shrinking in `bytes_deallocated`).
fn live_bytes(region: &Region<'_, std::alloc::System>) -> i64 {
    let s = region.change();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

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

/// The same body as `Worker`, as a plain tokio task without hb: the baseline.
async fn plain_body(stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut p = Progress {
        total: 1_000_000,
        ..Progress::default()
    };
    while !stop.load(Ordering::Relaxed) {
        p.next += 1;
        p.bytes += 4096;
        black_box(&p);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Heap bytes per task of 10,000 plain tasks running the same loop (ids included).
fn baseline_heap_per_task(rt: &tokio::runtime::Runtime) -> i64 {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let region = Region::new(GLOBAL);
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
    std::thread::sleep(Duration::from_millis(1200));
    let per_task = live_bytes(&region) / ATTEMPTS as i64;
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for j in joins {
            let _ = j.await;
        }
    });
    per_task
}

fn bench_pump(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let baseline = baseline_heap_per_task(&rt);
    let transport = NullTransport::new();
    let pump = Pump::global();
    let runner = AttemptRunner::new(transport.clone()).pump(pump.clone());

    let region = Region::new(GLOBAL);
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
    while transport.heartbeats() < 3 * ATTEMPTS as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let per_attempt = live_bytes(&region) / ATTEMPTS as i64;
    let checkpoint_bytes = std::mem::size_of::<Progress>() as i64
        + hb_runtime::checkpoint::encode(&Progress::default())
            .unwrap()
            .len() as i64;
    println!(
        "pump: {} attempts heartbeating; heap per attempt = {per_attempt} bytes; the same body as a plain tokio task = {baseline} bytes; hb's share = {} bytes per attempt, of which the checkpoint (value + encoded) is {checkpoint_bytes} bytes",
        pump.stats().active,
        per_attempt - baseline,
    );

    c.benchmark_group("pump")
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(10))
        .bench_function("cpu_per_heartbeat/10k_attempts_1s_interval", |b| {
            b.iter_custom(|iters| {
                // At least 10,000 heartbeats (~1 s) per sample, so the thread's CPU clock (as
                // /proc reports it) surely moves; a window where it did not is measured again.
                let want = iters.max(10_000);
                let (beats, cpu) = loop {
                    let start_beats = transport.heartbeats();
                    let start_cpu = pump_cpu_ns();
                    while transport.heartbeats() - start_beats < want {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let cpu = pump_cpu_ns() - start_cpu;
                    if cpu > 0 {
                        break (transport.heartbeats() - start_beats, cpu);
                    }
                };
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
    benches();
    Criterion::default().configure_from_args().final_summary();
}
