//! `ctx.checkpoint(&state)` in a tight loop, and the memory 1,000,000 calls leave behind.
//!
//! Run: `cargo bench -p hb-runtime --bench checkpoint`
//!
//! For comparison (measured on the same 2-core machine): temporalio-sdk 1.1's
//! `record_heartbeat` costs 489–557 ns per call and leaves ~720 bytes per call behind
//! (`cargo bench -p hb-runtime --features temporal --bench temporal` measures it).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use hb_runtime::backend::{AttemptRequest, AttemptRunner};
use hb_runtime::backend::{NullTransport, TaskToken};
use hb_runtime::{
    Activity, ActivityContext, ActivityError, ActivityOptions, BoxFuture, Checkpoint, Payload,
};
use serde::{Deserialize, Serialize};

/// The 3-field struct of integers the issue measures.
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
struct Progress {
    next: u64,
    total: u64,
    bytes: u64,
}

impl Checkpoint for Progress {
    const TYPE_NAME: &'static str = "Progress";
}

/// An activity that parks until cancelled: the bench drives its context from outside.
#[derive(Debug, Clone, Copy)]
struct Park;

impl Activity for Park {
    const NAME: &'static str = "park";
    type Input = ();
    type Output = ();
    type Checkpoint = Progress;
    fn options(&self) -> ActivityOptions {
        ActivityOptions::new()
            .heartbeat_timeout(Duration::from_millis(10))
            .heartbeat_interval(Duration::from_millis(1))
    }
    fn run(
        &self,
        ctx: ActivityContext,
        _: Progress,
        _: (),
    ) -> BoxFuture<'static, Result<(), ActivityError>> {
        Box::pin(async move {
            ctx.cancelled().await;
            Ok(())
        })
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn bench_checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint");

    // A context no pump reads: the call's own cost.
    let ctx = hb_runtime::testing::detached_context::<Progress>();
    let mut p = Progress::default();
    group.bench_function("3_fields/detached", |b| {
        b.iter(|| {
            p.next += 1;
            ctx.checkpoint(black_box(&p))
        })
    });

    // A running attempt heartbeated every millisecond by the global pump: the call with the
    // pump reading the slot concurrently, as in production.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let runner = AttemptRunner::new(NullTransport::new());
    let running = runner.start(
        &Park,
        AttemptRequest::new(
            "bench",
            TaskToken::new(*b"bench"),
            Payload::json(&()).unwrap(),
        ),
    );
    let handle = running.handle();
    let join = rt.spawn(running.run());
    let ctx = handle.context();
    let mut p = Progress::default();
    group.bench_function("3_fields/running_attempt_1ms_pump", |b| {
        b.iter(|| {
            p.next += 1;
            ctx.checkpoint(black_box(&p))
        })
    });
    handle.cancel(hb_runtime::CancelReason::Requested);
    let _ = rt.block_on(join);
    group.finish();
}

/// RSS growth over 1,000,000 checkpoint calls on a running, heartbeating attempt.
fn memory_report() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let transport = NullTransport::new();
    let runner = AttemptRunner::new(transport.clone());
    let running = runner.start(
        &Park,
        AttemptRequest::new("mem", TaskToken::new(*b"mem"), Payload::json(&()).unwrap()),
    );
    let handle = running.handle();
    let join = rt.spawn(running.run());
    let ctx = handle.context();
    let mut p = Progress::default();
    // Warm up: the slot's first value and the pump's first encodes allocate once.
    for _ in 0..10_000 {
        p.next += 1;
        let _ = ctx.checkpoint(&p);
    }
    std::thread::sleep(Duration::from_millis(20));
    let before = rss_bytes();
    for _ in 0..1_000_000 {
        p.next += 1;
        let _ = ctx.checkpoint(black_box(&p));
    }
    std::thread::sleep(Duration::from_millis(20));
    let after = rss_bytes();
    handle.cancel(hb_runtime::CancelReason::Requested);
    let _ = rt.block_on(join);
    println!(
        "memory: RSS growth after 1,000,000 checkpoint calls = {} bytes ({} KiB); heartbeats sent meanwhile: {}",
        after as i64 - before as i64,
        (after as i64 - before as i64) / 1024,
        transport.heartbeats(),
    );
}

criterion_group!(benches, bench_checkpoint);

fn main() {
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
