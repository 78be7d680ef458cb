//! Encoding and sending one attempt's heartbeats; shared by the pump, `flush()` and the final flush.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::attempt::Shared;
use crate::error::{CheckpointError, TransportError, TransportErrorKind};
use crate::payload::Payload;
use crate::transport::HeartbeatReply;

use super::pace::{self, Beat};

/// Per-attempt sending state, behind an async mutex so sends never overtake each other.
pub(crate) struct SendState {
    /// The slot counter of the last value encoded.
    encoded_seq: u64,
    /// Why the value at `encoded_seq` was refused, if it was (boxed: rare, and kept small
    /// because every running attempt has a `SendState`).
    rejected: Option<Box<CheckpointError>>,
    /// The latest checkpoint that fit: what heartbeats and final reports carry.
    pub(crate) last: Option<Payload>,
    /// `last` has not been delivered to the backend yet.
    pending: bool,
    /// Pump ticks since the pump last sent (see [`super::pace`]).
    quiet_ticks: u16,
    /// Stall detection: the slot counter seen last and when it last changed.
    seen_seq: u64,
    last_progress: At,
    stalled: bool,
    /// Blocked-executor detection: the poll counter seen last (its low 32 bits), and since
    /// when it has not moved while the future was inside a poll or woken.
    seen_polls: u32,
    /// [`At::NONE`]: not stuck.
    stuck_since: At,
    warned_blocked: bool,
}

/// An [`Instant`] in 8 bytes, not 16 (every running attempt keeps two): nanoseconds from a
/// process-wide origin, signed (a paused test clock's instants may lie before it).
#[derive(Clone, Copy, PartialEq, Eq)]
struct At(i64);

impl At {
    const NONE: At = At(i64::MIN);

    fn of(t: Instant) -> At {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let origin = Instant::from_std(*ORIGIN.get_or_init(std::time::Instant::now));
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match t.checked_duration_since(origin) {
            Some(after) => At(ns(after)),
            None => At(-ns(origin - t)),
        }
    }

    /// The time from `earlier` to `self` (zero if `earlier` is later).
    fn since(self, earlier: At) -> Duration {
        Duration::from_nanos(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl SendState {
    /// Counts from now for stall detection.
    pub(crate) fn mark_progress(&mut self) {
        self.last_progress = At::of(Instant::now());
    }

    /// Why the current checkpoint was refused, if it was.
    pub(crate) fn rejected(&self) -> Option<&CheckpointError> {
        self.rejected.as_deref()
    }

    /// The state of an attempt that resumed from `previous` (its slot's counter at
    /// `seen_seq`). A backend that keeps details holds `previous` already: the slot's resumed
    /// value counts as encoded and delivered, so it is never sent again (it would overwrite
    /// details sent from elsewhere since). One that does not gets it re-encoded and sent with
    /// the first heartbeat.
    pub(crate) fn new(previous: Option<Payload>, seen_seq: u64, keeps_details: bool) -> Self {
        SendState {
            encoded_seq: if keeps_details { seen_seq } else { 0 },
            rejected: None,
            last: previous,
            pending: false,
            quiet_ticks: 0,
            seen_seq,
            last_progress: At::of(Instant::now()),
            stalled: false,
            seen_polls: 0,
            stuck_since: At::NONE,
            warned_blocked: false,
        }
    }
}

/// Encodes the slot's value if it changed since the last encode. On a refusal the previous
/// payload stays in `last`.
fn encode_latest(shared: &Shared, s: &mut SendState) -> Result<(), CheckpointError> {
    if let Some((seq, encoded)) = shared.slot.encode_if_newer(s.encoded_seq) {
        s.encoded_seq = seq;
        let limit = shared.options.checkpoint_limit();
        match encoded {
            Ok(bytes) if bytes.len() <= limit => {
                s.rejected = None;
                s.last = Some(Payload::from_json_bytes(bytes));
                s.pending = true;
            }
            Ok(bytes) => {
                s.rejected = Some(Box::new(CheckpointError::TooLarge {
                    type_name: shared.slot.type_name(),
                    size: bytes.len(),
                    limit,
                }));
            }
            Err(e) => s.rejected = Some(Box::new(e)),
        }
    }
    match s.rejected.as_deref() {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

/// The details a heartbeat of kind `beat` carries.
fn details_for(s: &SendState, beat: Beat) -> Option<&Payload> {
    match beat {
        Beat::Details => s.last.as_ref(),
        Beat::Liveness | Beat::Skip => None,
    }
}

/// How long one heartbeat call may take before it counts as failed: a backend that stops
/// answering must not hold the attempt (its flushes and its final report) forever.
fn call_timeout(shared: &Shared) -> Duration {
    shared.info.heartbeat_interval.max(Duration::from_secs(1))
}

/// Sends a heartbeat with `details`, bounded by [`call_timeout`].
async fn send(
    shared: &Shared,
    details: Option<&Payload>,
) -> Result<HeartbeatReply, TransportError> {
    let metrics = &shared.metrics.of;
    metrics.heartbeats.increment(1);
    if let Some(d) = details {
        metrics.checkpoint_bytes.record(d.len() as f64);
    }
    let mut call = shared
        .env
        .transport
        .heartbeat(&shared.info.task_token, details);
    // A transport that answers at once (the embedded engine) needs no timer.
    let r = match futures_util::FutureExt::now_or_never(&mut call) {
        Some(r) => r,
        None => match tokio::time::timeout(call_timeout(shared), call).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::new(
                TransportErrorKind::Unavailable,
                format!(
                    "the backend did not answer a heartbeat within {:?}",
                    call_timeout(shared)
                ),
            )),
        },
    };
    if r.is_err() {
        metrics.heartbeat_failures.increment(1);
    }
    r
}

/// The attempt's latest checkpoint, encoded, if the backend has not received it yet (see
/// [`AttemptHandle::current_details`](crate::runner::AttemptHandle::current_details)). Never
/// waits: the caller may hold a backend's lock that a send under way needs.
pub(crate) fn undelivered(shared: &Shared) -> Option<Payload> {
    if shared.has_ended() {
        return None;
    }
    match shared.send.try_lock() {
        Ok(mut s) => {
            // Encoded here, it is not encoded again by the next tick, which sends it.
            let fresh = shared.slot.seq() != s.encoded_seq;
            if let Err(e) = encode_latest(shared, &mut s)
                && fresh
            {
                tracing::warn!(parent: shared.span(), error = %e, "checkpoint refused; the previous one stands");
                shared.flag_error();
            }
            if s.pending { s.last.clone() } else { None }
        }
        // A heartbeat is under way: encode the current value on the side, leaving the state
        // to the send (it carries that value or an older one). The value the attempt resumed
        // from is not news.
        Err(_) => match shared.slot.encode_if_newer(u64::from(shared.resumed())) {
            Some((_, Ok(bytes))) if bytes.len() <= shared.options.checkpoint_limit() => {
                Some(Payload::from_json_bytes(bytes))
            }
            _ => None,
        },
    }
}

/// `flush()`: encode the current value and send it now, waiting for any heartbeat in flight.
pub(crate) async fn send_now(shared: &Arc<Shared>) -> Result<(), CheckpointError> {
    let mut s = shared.send.lock().await;
    if shared.has_ended() {
        return Err(CheckpointError::Closed);
    }
    encode_latest(shared, &mut s)?;
    let details = details_for(&s, pace::on_demand(s.pending, shared.options.keeps_details));
    let bytes = details.map_or(0, Payload::len);
    let reply = send(shared, details).await?;
    s.pending = false;
    shared.apply_reply(&reply);
    tracing::debug!(parent: shared.span(), bytes, "heartbeat (flush)");
    Ok(())
}

/// One pump tick of one attempt.
pub(crate) async fn beat(shared: Arc<Shared>) {
    // A heartbeat or flush already in flight carries the latest checkpoint soon enough.
    let Ok(mut s) = shared.send.try_lock() else {
        tracing::trace!(parent: shared.span(), "heartbeat skipped: one is in flight");
        return;
    };
    if shared.has_ended() {
        return;
    }
    let now = At::of(Instant::now());
    let interval = shared.info.heartbeat_interval;
    check_blocked(&shared, &mut s, now, interval);

    let seq = shared.slot.seq();
    if seq != s.seen_seq {
        s.seen_seq = seq;
        s.last_progress = now;
        if s.stalled {
            s.stalled = false;
            tracing::info!(parent: shared.span(), "checkpoints resumed; heartbeating again");
        }
    }
    if let Some(stall) = shared.options.stall_timeout() {
        let quiet = now.since(s.last_progress);
        if quiet >= stall {
            if !s.stalled {
                s.stalled = true;
                shared.metrics.of.stalls.increment(1);
                tracing::warn!(
                    parent: shared.span(),
                    stall_timeout = ?stall,
                    quiet_for = ?quiet,
                    "no checkpoint for stall_timeout: heartbeats stopped so the backend times the attempt out and retries it"
                );
            }
            return;
        }
    }

    // A refusal is reported once: when this tick encoded the refused value. One already seen
    // (by an earlier tick, or by `flush()`, which returns it itself) is not flagged again.
    let fresh = seq != s.encoded_seq;
    if let Err(e) = encode_latest(&shared, &mut s)
        && fresh
    {
        tracing::warn!(parent: shared.span(), error = %e, "checkpoint refused; heartbeating with the previous one");
        shared.flag_error();
    }
    s.quiet_ticks = s.quiet_ticks.saturating_add(1);
    let options = &shared.options;
    let beat = pace::on_tick(
        s.pending,
        s.quiet_ticks,
        options.ticks_per_beat,
        options.keeps_details,
    );
    if beat == Beat::Skip {
        return;
    }
    // A send, delivered or not, restarts the count to the next liveness heartbeat; an
    // undelivered checkpoint stays pending and is retried on the next tick.
    s.quiet_ticks = 0;
    let details = details_for(&s, beat);
    let bytes = details.map_or(0, Payload::len);
    match send(&shared, details).await {
        Ok(reply) => {
            s.pending = false;
            tracing::debug!(parent: shared.span(), bytes, ?reply, "heartbeat");
            shared.apply_reply(&reply);
        }
        Err(e) if e.kind == TransportErrorKind::NotFound => {
            tracing::info!(parent: shared.span(), error = %e, "backend no longer knows the attempt");
            shared.cancel_with(crate::error::CancelReason::NotFound);
        }
        Err(e) => {
            tracing::warn!(parent: shared.span(), error = %e, "heartbeat failed; retrying next interval");
        }
    }
}

/// Warns when the body's future sat inside one poll, or woken but unpolled, for longer than
/// the heartbeat interval: the executor is blocked or starved.
fn check_blocked(shared: &Shared, s: &mut SendState, now: At, interval: Duration) {
    let (polls, in_poll, woken) = shared.polls.snapshot();
    // Truncated: the counter only needs to be seen moving.
    let polls = polls as u32;
    if polls != s.seen_polls || !(in_poll || woken) {
        s.seen_polls = polls;
        s.stuck_since = if in_poll || woken { now } else { At::NONE };
        s.warned_blocked = false;
        return;
    }
    if s.stuck_since == At::NONE {
        s.stuck_since = now;
    }
    let stuck = now.since(s.stuck_since);
    if stuck >= interval && !s.warned_blocked {
        s.warned_blocked = true;
        shared.metrics.of.blocked.increment(1);
        if in_poll {
            tracing::warn!(
                parent: shared.span(),
                blocked_for = ?stuck,
                "the activity has blocked its executor thread inside one poll for longer than its heartbeat interval; run CPU-bound or blocking code with ctx.run_blocking"
            );
        } else {
            tracing::warn!(
                parent: shared.span(),
                unpolled_for = ?stuck,
                "the activity's future was woken but not polled for longer than its heartbeat interval; its executor is starved"
            );
        }
    }
}

/// What the final flush leaves for the attempt's report.
pub(crate) struct Final {
    /// The attempt's latest checkpoint (that fit): the outcome's details.
    pub(crate) latest: Option<Payload>,
    /// What the report carries: the latest checkpoint, except to a backend that keeps details
    /// and already received it (`None` then, so details it got from elsewhere since stand).
    pub(crate) report: Option<Payload>,
}

/// The final flush: encode the latest checkpoint, send it unless the backend has it already,
/// and mark the attempt ended (later `flush()`es return `Closed`; the pump sends nothing more).
pub(crate) async fn finish(shared: &Arc<Shared>) -> Final {
    let mut s = shared.send.lock().await;
    if !shared.end() {
        if let Err(e) = encode_latest(shared, &mut s) {
            tracing::warn!(parent: shared.span(), error = %e, "final checkpoint refused; the previous one stands");
        }
        if s.pending {
            match send(shared, s.last.as_ref()).await {
                Ok(_) => {
                    s.pending = false;
                    tracing::debug!(parent: shared.span(), "final checkpoint flushed");
                }
                Err(e) => {
                    tracing::warn!(parent: shared.span(), error = %e, "final heartbeat failed; the report carries the checkpoint")
                }
            }
        }
    }
    let report = match pace::on_demand(s.pending, shared.options.keeps_details) {
        Beat::Details => s.last.clone(),
        Beat::Liveness | Beat::Skip => None,
    };
    Final {
        latest: s.last.clone(),
        report,
    }
}
