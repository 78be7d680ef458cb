//! What an in-flight activity costs in heap on the embedded engine: everything hb keeps for
//! it (engine record, heartbeat timeout, worker task, attempt state, pump entry, checkpoint)
//! beyond what the same loop costs as a plain tokio task. The target is 1 KiB beyond the
//! checkpoint; this asserts it with the checkpoint counted too.
//!
//! It also checks that nothing the engine holds grows with what is gone: abandoned `result()`
//! calls, and activities cancelled while they waited for a worker.
//!
//! (A test binary of its own: it counts every allocation of the process. Its tests take turns,
//! `ONE_AT_A_TIME`, so one's allocations do not count in another's.)

use std::time::{Duration, Instant};

use hb_runtime::backend::Pump;
use hb_runtime::client::StartOptions;
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Enough activities that the engine's costs which grow in steps of their own while it runs
/// (SQLite's page cache, the writer's buffers: ~100 KB a step) weigh ~10 B each here; at 5,000
/// one step more or less moved the figure by 20 B, across the 1 KiB line.
const N: usize = 10_000;

/// The tests of this file run one at a time: each counts the process's allocations.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// `in_flight`'s loop without hb.
async fn plain(stop: tokio_util::sync::CancellationToken) {
    let mut n = 0u64;
    loop {
        n += 1;
        std::hint::black_box(&n);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

fn heap(region: &Region<'_, std::alloc::System>) -> i64 {
    let s = region.change();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Waits (bounded) until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_in_flight_activity_costs_under_1_kib_beyond_a_plain_task() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The baseline: the same loop as plain tasks (with an id each, as the engine's handles hold).
    let stop = tokio_util::sync::CancellationToken::new();
    let region = Region::new(GLOBAL);
    let plain_tasks: Vec<_> = (0..N)
        .map(|i| (format!("a{i}"), rt.spawn(plain(stop.clone()))))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let plain_each = heap(&region) / N as i64;
    stop.cancel();
    rt.block_on(async {
        for (_, t) in plain_tasks {
            t.await.unwrap();
        }
    });

    let dir = tempfile::Builder::new()
        .prefix("hb-engine-memory-")
        .tempdir()
        .unwrap();
    let engine = rt.block_on(Engine::open(dir.path().join("hb.db"))).unwrap();
    let worker = rt.block_on(async {
        engine
            .worker()
            .register(in_flight)
            .max_concurrent(N)
            .shutdown_grace(Duration::ZERO)
            .spawn()
            .await
            .unwrap()
    });
    let client = engine.client();
    let pump = Pump::global();
    let ticks_before = pump.stats().ticks;

    let region = Region::new(GLOBAL);
    let handles: Vec<_> = rt.block_on(async {
        let mut handles = Vec::with_capacity(N);
        for i in 0..N {
            let id = format!("a{i}");
            handles.push(
                client
                    .start(in_flight, (), StartOptions::id(id))
                    .await
                    .unwrap(),
            );
        }
        handles
    });
    // Every attempt running, and heartbeating (so its checkpoint is encoded and stored):
    // the pump ticks each one once a second.
    wait_for("every attempt to run", || pump.stats().active >= N as u64);
    wait_for("two heartbeats per attempt", || {
        pump.stats().ticks - ticks_before >= 2 * N as u64
    });
    // What stays, not what passes through: the writer's queue of heartbeats waiting for their
    // commit comes and goes, so the least of a few looks over half a second counts.
    let held = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            heap(&region)
        })
        .min()
        .unwrap();
    let hb_each = held / N as i64;
    let share = hb_each - plain_each;
    println!("{N} in flight: {hb_each} bytes each; a plain task {plain_each}; hb's share {share}");
    assert!(
        share <= 1024,
        "hb keeps {share} bytes per in-flight activity (checkpoint included) beyond a plain task's {plain_each}"
    );

    rt.block_on(async {
        worker.shutdown().await;
        drop(handles);
        engine.close().await.unwrap();
    });
    // The global pump lets go of the attempts on its own thread: done before the next test of
    // this binary counts allocations.
    wait_for("the pump to let go of every attempt", || {
        pump.stats().active == 0
    });
}

/// Never registered with a worker here.
#[activity(heartbeat_timeout = "10s")]
async fn waits(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Issue 9, failure 4: a health check doing `timeout(.., h.result())` in a loop on a long
/// activity left a waiter behind per call (~217 bytes), without bound. Abandoned calls are
/// pruned now: 20,000 of them leave next to nothing.
#[test]
fn abandoned_result_calls_do_not_accumulate() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let engine = rt.block_on(Engine::in_memory()).unwrap();
    let h = rt
        .block_on(engine.client().start(waits, 1, StartOptions::id("long")))
        .unwrap();
    // Each call is polled once (its waiter registered) and dropped, as a timeout drops it;
    // without a timer, which would make each call wait for the next millisecond tick.
    let abandon = |n: usize| {
        rt.block_on(async {
            for _ in 0..n {
                let r = futures::FutureExt::now_or_never(h.result());
                assert!(r.is_none(), "still waiting");
            }
        })
    };
    abandon(1_000); // warm-up: buffers reach their working size
    let region = Region::new(GLOBAL);
    abandon(20_000);
    let grown = heap(&region);
    println!("20,000 abandoned result() calls: {grown} bytes held");
    assert!(
        grown < 16 << 10,
        "{grown} bytes held after 20,000 abandoned calls"
    );
    rt.block_on(async { h.cancel().await.unwrap() });
}

/// Issue 9, failure 6: activities cancelled while they waited for a worker of a type none
/// runs left their ids in the ready queue. Now the queue keeps at most about what still waits:
/// a round of 20,000 starts and cancels leaves next to nothing.
#[test]
fn cancelled_waiting_activities_leave_nothing_in_the_ready_queue() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let engine = rt.block_on(Engine::in_memory()).unwrap();
    let client = engine.client();
    let round = |r: usize| {
        rt.block_on(async {
            for i in 0..20_000 {
                let id = format!("r{r}-{i}");
                let h = client.start(waits, 1, StartOptions::id(id)).await.unwrap();
                h.cancel().await.unwrap();
            }
        });
        wait_for("every activity to close", || engine.stats().open == 0);
    };
    round(0); // warm-up: buffers reach their working size
    let region = Region::new(GLOBAL);
    round(1);
    let grown = heap(&region);
    println!("20,000 starts and cancels of waiting activities: {grown} bytes held");
    assert!(
        grown < 64 << 10,
        "{grown} bytes held after 20,000 cancelled waiting activities"
    );
}
