//! The embedded engine: end-to-end throughput, cancel latency, dead-attempt detection, and the
//! cost of 10,000 in-flight activities heartbeating every second; the first and the last
//! again with a Prometheus recorder installed (the cost of the metrics).
//!
//! Run: `cargo bench -p hb-runtime --bench engine`
//!
//! For comparison (same machine): the Temporal dev server completes 52 no-op standalone
//! activities/s end to end (458/s at best), detects a dead attempt 2 ms after
//! heartbeat_timeout, and takes 0.2–1.4 s to deliver a cancel at heartbeat_timeout = 2 s.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group};
use hb_runtime::client::{ActivityStatus, StartOptions};
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[activity(start_to_close_timeout = "1m")]
async fn noop(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

/// When the body of `waits_for_cancel` saw its cancel, and why.
static OBSERVED: Mutex<Option<(Instant, SystemTime, Option<CancelReason>)>> = Mutex::new(None);
static SEEN: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[activity(heartbeat_timeout = "10s", cancel = "cooperative", cancel_grace = "1s")]
async fn waits_for_cancel(ctx: ActivityContext) -> Result<(), ActivityError> {
    ctx.cancelled().await;
    *OBSERVED.lock().unwrap() = Some((Instant::now(), SystemTime::now(), ctx.cancel_reason()));
    SEEN.notify_one();
    Ok(())
}

/// Checkpoints once, then stops making progress: the pump stops heartbeating after
/// `stall_timeout`, so the engine sees a dead attempt.
#[activity(
    heartbeat_timeout = "200ms",
    heartbeat_interval = "20ms",
    stall_timeout = "60ms",
    cancel = "cooperative",
    cancel_grace = "1s",
    retry(max_attempts = 1)
)]
async fn goes_quiet(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
    ctx.checkpoint(&(n + 1))?;
    ctx.cancelled().await;
    *OBSERVED.lock().unwrap() = Some((Instant::now(), SystemTime::now(), ctx.cancel_reason()));
    SEEN.notify_one();
    Ok(())
}

/// Heartbeats every second until cancelled.
#[activity(heartbeat_timeout = "2s", heartbeat_interval = "1s")]
async fn in_flight(ctx: ActivityContext, #[checkpoint] mut n: u64) -> Result<(), ActivityError> {
    loop {
        n += 1;
        ctx.checkpoint(&n)?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = ctx.cancelled() => return Ok(()),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A directory for one bench's engine file, removed when the guard drops.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-bench-{name}-"))
        .tempdir()
        .unwrap()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn bench_throughput(c: &mut Criterion) {
    throughput(c, "noop_activity_end_to_end_durable");
}

/// `name`: no-op activities end to end on an engine file, 1,024 callers at a time.
fn throughput(c: &mut Criterion, name: &str) {
    let rt = runtime();
    let dir = temp_dir(name);
    let engine = rt.block_on(Engine::open(dir.path().join("hb.db"))).unwrap();
    let _worker = rt.block_on(async {
        engine
            .worker()
            .register(noop)
            .max_concurrent(1024)
            .spawn()
            .await
            .unwrap()
    });
    let client = engine.client();
    let next = Arc::new(AtomicU64::new(0));
    c.benchmark_group("engine")
        .sample_size(10)
        .bench_function(name, |b| {
            b.iter_custom(|iters| {
                let client = client.clone();
                let next = next.clone();
                rt.block_on(async move {
                    let start = Instant::now();
                    let callers = 1024.min(iters);
                    let mut set = tokio::task::JoinSet::new();
                    for k in 0..callers {
                        let client = client.clone();
                        let next = next.clone();
                        let share = iters / callers + u64::from(k < iters % callers);
                        set.spawn(async move {
                            for _ in 0..share {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let h = client
                                    .start(noop, i, StartOptions::id(format!("n{i}")))
                                    .await
                                    .unwrap();
                                black_box(h.result().await.unwrap());
                            }
                        });
                    }
                    while set.join_next().await.is_some() {}
                    start.elapsed()
                })
            })
        });
}

fn bench_cancel(c: &mut Criterion) {
    let rt = runtime();
    let engine = rt.block_on(Engine::in_memory()).unwrap();
    let _worker = rt.block_on(async {
        engine
            .worker()
            .register(waits_for_cancel)
            .spawn()
            .await
            .unwrap()
    });
    let client = engine.client();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let next = AtomicU64::new(0);
    c.benchmark_group("engine")
        .sample_size(20)
        .bench_function("cancel_to_body_observing", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let id = format!("c{}", next.fetch_add(1, Ordering::Relaxed));
                        let h = client
                            .start(waits_for_cancel, (), StartOptions::id(&id))
                            .await
                            .unwrap();
                        while h.describe().await.unwrap().status != ActivityStatus::Running {
                            tokio::task::yield_now().await;
                        }
                        // Let the worker attach the attempt (so the cancel is a push).
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let seen = SEEN.notified();
                        let t0 = Instant::now();
                        client.cancel(&id).await.unwrap();
                        seen.await;
                        let (at, _, _) = OBSERVED.lock().unwrap().take().unwrap();
                        let d = at.saturating_duration_since(t0);
                        samples.lock().unwrap().push(d);
                        total += d;
                        let _ = h.result().await;
                    }
                    total
                })
            })
        });
    let mut s = samples.lock().unwrap().clone();
    println!(
        "engine: cancel() to the body observing it over {} cancels: median {:?}, p99 {:?}",
        s.len(),
        percentile(&mut s, 0.5),
        percentile(&mut s, 0.99)
    );
}

fn bench_dead_attempt(c: &mut Criterion) {
    let rt = runtime();
    let engine = rt.block_on(Engine::in_memory()).unwrap();
    let _worker =
        rt.block_on(async { engine.worker().register(goes_quiet).spawn().await.unwrap() });
    let client = engine.client();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let next = AtomicU64::new(0);
    c.benchmark_group("engine").sample_size(10).bench_function(
        "dead_attempt_detected_after_heartbeat_timeout",
        |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let id = format!("q{}", next.fetch_add(1, Ordering::Relaxed));
                        let seen = SEEN.notified();
                        let h = client
                            .start(goes_quiet, (), StartOptions::id(&id))
                            .await
                            .unwrap();
                        seen.await;
                        let (_, observed, reason) = OBSERVED.lock().unwrap().take().unwrap();
                        assert_eq!(reason, Some(CancelReason::TimedOut));
                        let _ = h.result().await;
                        let last = h.describe().await.unwrap().last_heartbeat.unwrap();
                        // Past the deadline (last heartbeat + heartbeat_timeout) by this much.
                        let late = observed
                            .duration_since(last + Duration::from_millis(200))
                            .unwrap_or_default();
                        samples.lock().unwrap().push(late);
                        total += late;
                    }
                    total
                })
            })
        },
    );
    let mut s = samples.lock().unwrap().clone();
    println!(
        "engine: dead attempt detected after last heartbeat + heartbeat_timeout (200 ms) + median {:?}, max {:?} ({} attempts; the heartbeat time is stored in whole ms)",
        percentile(&mut s, 0.5),
        s.iter().max().copied().unwrap_or_default(),
        s.len()
    );
}

#[path = "support/cpu.rs"]
mod cpu;
use cpu::process_cpu_ns;

/// CPU nanoseconds used so far by the threads named `names` (from `/proc/self/task/*/schedstat`).
fn threads_cpu_ns(names: &[&str]) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if names.contains(&comm.trim()) {
            total += std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// `in_flight`'s loop as a plain tokio task without hb: the baseline of the heap figure.
async fn plain_in_flight(stop: tokio_util::sync::CancellationToken) {
    let mut n = 0u64;
    loop {
        n += 1;
        black_box(&n);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Heap bytes per task of `n` plain tasks running `in_flight`'s loop (an id string each, as
/// the engine's handles hold).
fn plain_heap_per_task(rt: &tokio::runtime::Runtime, n: u64) -> i64 {
    let stop = tokio_util::sync::CancellationToken::new();
    let region = Region::new(GLOBAL);
    let joins: Vec<_> = (0..n)
        .map(|i| {
            let id = format!("f{i}");
            let stop = stop.clone();
            let join = rt.spawn(plain_in_flight(stop));
            (id, join)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    let s = region.change();
    let heap = s.bytes_allocated as i64 - s.bytes_deallocated as i64;
    stop.cancel();
    rt.block_on(async {
        for (_, j) in joins {
            let _ = j.await;
        }
    });
    heap / n as i64
}

fn bench_in_flight(c: &mut Criterion) {
    in_flight_cpu(c, "engine_and_pump_cpu_per_second_10k_in_flight");
}

/// `name`: 10,000 activities in flight, heartbeating every second: heap and CPU.
fn in_flight_cpu(c: &mut Criterion, name: &str) {
    const N: u64 = 10_000;
    let rt = runtime();
    let plain = plain_heap_per_task(&rt, N);
    let dir = temp_dir(name);
    let engine = rt.block_on(Engine::open(dir.path().join("hb.db"))).unwrap();
    let worker = rt.block_on(async {
        engine
            .worker()
            .register(in_flight)
            .max_concurrent(N as usize)
            .spawn()
            .await
            .unwrap()
    });
    let client = engine.client();
    let region = Region::new(GLOBAL);
    let handles: Vec<_> = rt.block_on(async {
        let mut hs = Vec::new();
        for i in 0..N {
            hs.push(
                client
                    .start(in_flight, (), StartOptions::id(format!("f{i}")))
                    .await
                    .unwrap(),
            );
        }
        hs
    });
    std::thread::sleep(Duration::from_secs(3));
    let s = region.change();
    let heap = s.bytes_allocated as i64 - s.bytes_deallocated as i64;
    let each = heap / N as i64;
    let encoded = hb_runtime::checkpoint::encode(&1_000u64).unwrap().len();
    println!(
        "engine: {N} in-flight activities heartbeating every second: {each} bytes of heap each (everything: engine record, timers, worker task, attempt, pump, the activity's own future, its checkpoint); the same loop as a plain tokio task: {plain} bytes; hb's share: {} bytes per activity, its checkpoint included (encoded: {encoded} bytes, held once by the pump and the engine)",
        each - plain
    );
    c.benchmark_group("engine")
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .bench_function(name, |b| {
            // One iteration = one second of 10k in-flight activities heartbeating; the figure
            // is the CPU time the engine and the pump used in it (their threads: the pump
            // thread, where heartbeats are handled, the engine's writer thread and its
            // deadline queue), so 10 ms = 1% of one core. The activities' own bodies run
            // elsewhere.
            b.iter_custom(|iters| {
                let threads = ["hb-pump", "hb-writer", "hb-timers"];
                let cpu0 = threads_cpu_ns(&threads);
                let all0 = process_cpu_ns();
                let t0 = Instant::now();
                std::thread::sleep(Duration::from_millis(1000 * iters.min(3)));
                let wall = t0.elapsed().as_nanos() as u64;
                let cpu = threads_cpu_ns(&threads) - cpu0;
                let all = process_cpu_ns() - all0;
                let writer = threads_cpu_ns(&["hb-writer"]);
                println!(
                    "{name}: 10k in flight: engine + pump {:.1}% of one core (writer thread so far {} ms), whole process (bodies included) {:.1}%",
                    cpu as f64 * 100.0 / wall as f64,
                    writer / 1_000_000,
                    all as f64 * 100.0 / wall as f64
                );
                Duration::from_nanos(cpu * 1_000_000_000 / wall.max(1) * iters)
            })
        });
    rt.block_on(async {
        for h in &handles {
            let _ = h.cancel().await;
        }
        worker.shutdown().await;
    });
}

/// The throughput again without a recorder, then it and the in-flight figures with a
/// Prometheus recorder installed, scraped
/// every second as a Prometheus server would (more often than its default 15 s). Run after
/// the others: a recorder cannot be uninstalled, and handles made before it record nothing,
/// so the figures above are the ones without.
fn bench_with_prometheus(c: &mut Criterion) {
    // The figure to compare with: the same bench just before, in the same process (the
    // first run of the file, above, comes before the others warmed the machine up).
    throughput(c, "noop_activity_end_to_end_durable_without_recorder");
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraped = scrapes.clone();
    std::thread::Builder::new()
        .name("scraper".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                black_box(handle.render());
                scraped.fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
    throughput(c, "noop_activity_end_to_end_durable_with_prometheus");
    in_flight_cpu(
        c,
        "engine_and_pump_cpu_per_second_10k_in_flight_with_prometheus",
    );
    println!(
        "prometheus: {} scrapes during the two benches above",
        scrapes.load(Ordering::Relaxed)
    );
}

criterion_group!(
    benches,
    bench_throughput,
    bench_cancel,
    bench_dead_attempt,
    bench_in_flight,
    bench_with_prometheus
);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
