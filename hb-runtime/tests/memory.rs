//! `ctx.checkpoint()` leaves nothing behind: a million calls on a running, heartbeating
//! attempt keep the process's resident memory flat.
//!
//! (temporalio-sdk 1.1's `record_heartbeat` queues ~790 bytes per call that are never given
//! back: +775 MB after 1M calls.)

use std::time::Duration;

use hb_runtime::Payload;
use hb_runtime::backend::TaskToken;
use hb_runtime::backend::{AttemptRequest, AttemptRunner};
use hb_runtime::prelude::*;
use hb_runtime::testing::MemoryTransport;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
    total: u64,
    bytes: u64,
}

#[activity(heartbeat_timeout = "20ms", heartbeat_interval = "5ms")]
async fn park(ctx: ActivityContext, #[checkpoint] _p: Progress) -> Result<(), ActivityError> {
    ctx.cancelled().await;
    Ok(())
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[test]
fn a_million_checkpoints_leave_memory_flat() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone());
    let running = runner.start(
        &park(),
        AttemptRequest::new("mem", TaskToken::new(*b"mem"), Payload::json(&()).unwrap()),
    );
    let handle = running.handle();
    let join = rt.spawn(running.run());
    let ctx = handle.context();
    let mut p = Progress {
        total: 1_000_000,
        ..Progress::default()
    };

    // Warm up: the slot's first value and the first encodes allocate once; wait until the pump
    // has heartbeated so its buffers exist too.
    for _ in 0..10_000 {
        p.next += 1;
        ctx.checkpoint(&p).unwrap();
    }
    assert!(rt.block_on(transport.wait_for_heartbeats(2, Duration::from_secs(10))));

    // Three windows of 1,000,000 calls; the least growth counts. A leak of even one byte a
    // call grows every window by a megabyte, while a one-off (a page the allocator or another
    // thread touches for the first time while the machine is busy) shows in one window only.
    let mut windows = Vec::new();
    for _ in 0..3 {
        let before = rss_bytes();
        let beats_before = transport.heartbeat_count();
        for _ in 0..1_000_000 {
            p.next += 1;
            p.bytes += 4096;
            ctx.checkpoint(std::hint::black_box(&p)).unwrap();
        }
        let growth = rss_bytes().saturating_sub(before);
        // The recording transport keeps every heartbeat it received; allow for those records.
        let recorder = (transport.heartbeat_count() - beats_before) as u64 * 256;
        windows.push((growth, recorder));
    }

    handle.cancel(CancelReason::Requested);
    let outcome = rt.block_on(join).unwrap();
    assert!(outcome.result.is_ok());

    assert!(
        windows
            .iter()
            .any(|&(growth, recorder)| growth < 64 * 1024 + recorder),
        "RSS grew in every window of 1,000,000 checkpoint calls (bytes grown, bytes allowed for heartbeat records): {windows:?}"
    );
    assert_eq!(ctx.last_checkpoint::<Progress>().unwrap().next, 3_010_000);
}
