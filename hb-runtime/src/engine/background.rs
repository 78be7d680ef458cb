//! What an engine does in the background, on the runtime it was opened on: applying the
//! requests other processes queue in its file, and deleting closed activities past their
//! retention. Each holds the engine weakly and ends with it.

use std::time::Duration;

use super::core::{Ack, Write};
use super::{Inner, clock};

/// How many closed activities one prune write deletes: a few milliseconds of the writer.
const PRUNE_BATCH: u32 = 1_000;

/// Deletes closed activities older than `retention`, a batch at a time through the writer
/// (each batch between other writes), every `retention / 8` (at least 10 ms, at most 1 min).
pub(super) async fn prune(
    weak: std::sync::Weak<Inner>,
    stop: tokio_util::sync::CancellationToken,
    retention: Duration,
) {
    let every = (retention / 8).clamp(Duration::from_millis(10), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        loop {
            let (rx, before) = {
                let Some(inner) = weak.upgrade() else { return };
                let before = inner
                    .lock()
                    .clock
                    .wall_ms()
                    .saturating_sub(clock::ms(retention));
                let (ack, rx) = Ack::reply();
                inner.writer.send(
                    Write::Prune {
                        closed_before: before,
                        limit: PRUNE_BATCH,
                    },
                    Some(ack),
                );
                (rx, before)
            };
            match rx.await {
                // A whole batch: there may be more.
                Ok(Ok(true)) => tokio::task::yield_now().await,
                Ok(Ok(false)) => break,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, closed_before = before, "pruning closed activities failed; trying again later");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

/// Applies requests other processes queued in the file (the CLI's `cancel`, heartbeats by task
/// token), a few times a second.
pub(super) async fn poll_requests(
    weak: std::sync::Weak<Inner>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // Only the reader is held across the read: the engine may go away meanwhile.
        let Some(reader) = weak.upgrade().map(|i| i.reader.clone()) else {
            return;
        };
        let requests = match tokio::task::spawn_blocking(move || reader.requests()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read queued requests");
                continue;
            }
            Err(_) => return,
        };
        if requests.is_empty() {
            continue;
        }
        let Some(inner) = weak.upgrade() else { return };
        inner.change(|core, fx| {
            core.requests_stored(fx);
            for request in requests {
                core.request(request, fx);
            }
        });
    }
}

/// Sets the engine's gauges (open activities, the file's size) once a second.
pub(super) async fn sample_metrics(
    weak: std::sync::Weak<Inner>,
    stop: tokio_util::sync::CancellationToken,
) {
    let gauges = crate::metrics::EngineGauges::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        let open = inner.lock().live.len();
        // The database and its write-ahead log (an in-memory engine has neither).
        let wal = {
            let mut p = inner.path.clone().into_os_string();
            p.push("-wal");
            std::path::PathBuf::from(p)
        };
        let size = std::fs::metadata(&inner.path)
            .ok()
            .map(|m| m.len() + std::fs::metadata(&wal).map_or(0, |m| m.len()));
        drop(inner);
        gauges.set(open, size);
    }
}
