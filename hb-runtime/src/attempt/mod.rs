//! The state of one running attempt, shared by the three parts that drive it: the body's
//! [`ActivityContext`](crate::ActivityContext) stores checkpoints and watches for a cancel, the
//! heartbeat pump encodes and sends them on schedule, and the runner starts the attempt and
//! reports its outcome. Each reaches the state through one `Arc<Shared>`; none of them depends
//! on another, only on this module.
//!
//! - [`Shared`]: the attempt's info, options, checkpoint slot, cancel status and send state;
//! - [`slot`]: the typed latest checkpoint (`ctx.checkpoint` stores into it);
//! - [`send`]: encoding and sending one heartbeat, serialised per attempt (the pump's tick,
//!   `ctx.flush()` and the final flush all go through it), with [`pace`] deciding what a beat
//!   carries;
//! - [`poll`]: whether the body's future is being polled (a blocked executor is warned about).

mod info;
mod options;
pub(crate) mod pace;
pub(crate) mod poll;
pub(crate) mod send;
pub(crate) mod slot;

use std::any::Any;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::error::CancelReason;
use crate::options::ActivityOptions;
use crate::payload::Payload;
use crate::state::StateMap;
use crate::transport::{HeartbeatReply, Transport};

pub use info::ActivityInfo;
pub(crate) use options::AttemptOptions;
pub(crate) use poll::PollTracker;
pub(crate) use send::SendState;
pub(crate) use slot::{ErasedSlot, Slot};

/// What every attempt of one runner shares: its backend and the worker's resources.
pub(crate) struct Env {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) state: StateMap,
    /// The pump runs on the attempts' runtime and follows its clock (the test kit's).
    pub(crate) pump_on_runtime: bool,
    /// The metric handles of the runner's activity types.
    pub(crate) metrics: Arc<crate::metrics::Registry>,
}

/// Everything one attempt's context, its pump entry and its runner share (kept small: there
/// is one per running attempt).
pub(crate) struct Shared {
    pub(crate) info: ActivityInfo,
    pub(crate) options: AttemptOptions,
    pub(crate) slot: Box<dyn ErasedSlot>,
    pub(crate) env: Arc<Env>,
    /// Cancelled with the attempt; made only when something outside the attempt's own task
    /// waits for the cancel (most attempts never make one).
    token: OnceLock<CancellationToken>,
    /// Whether and why the attempt was cancelled, a refusal to report, its end: the
    /// `REASON_MASK`, `HAS_ERROR` and `ENDED` bits.
    status: AtomicU32,
    /// The attempt's place in its pump (set and read on the pump's thread only).
    pub(crate) pump_slot: AtomicU32,
    /// Encoding and sending is serialised per attempt, so an older checkpoint never overtakes a newer one.
    pub(crate) send: tokio::sync::Mutex<SendState>,
    pub(crate) polls: PollTracker,
    pub(crate) metrics: crate::metrics::AttemptMetrics,
    /// `None` when no subscriber wanted the span (a disabled span takes 40 bytes for nothing).
    span: Option<Box<tracing::Span>>,
}

/// `Shared::status`: the cancel reason's code (0: not cancelled; see [`reason_code`]).
const REASON_MASK: u32 = 0b111;
/// `Shared::status`: the pump refused a checkpoint; the next `checkpoint()` reports the
/// refusal kept in the send state.
const HAS_ERROR: u32 = 1 << 3;
/// `Shared::status`: the outcome was reported; nothing more is sent for this attempt.
const ENDED: u32 = 1 << 4;
/// `Shared::status`: the slot started with the checkpoint the attempt resumed from (its store
/// counter at 1).
const RESUMED: u32 = 1 << 5;
/// `Shared::status`: `run_blocking` was refused under a paused clock (see
/// [`PAUSED_BLOCKING`]).
const REFUSED_BLOCKING: u32 = 1 << 6;

fn reason_code(reason: CancelReason) -> u32 {
    match reason {
        CancelReason::Requested => 1,
        CancelReason::TimedOut => 2,
        CancelReason::WorkerShutdown => 3,
        CancelReason::Paused => 4,
        CancelReason::NotFound => 5,
        CancelReason::Reset => 6,
    }
}

fn reason_of(status: u32) -> Option<CancelReason> {
    Some(match status & REASON_MASK {
        1 => CancelReason::Requested,
        2 => CancelReason::TimedOut,
        3 => CancelReason::WorkerShutdown,
        4 => CancelReason::Paused,
        5 => CancelReason::NotFound,
        6 => CancelReason::Reset,
        _ => return None,
    })
}

impl Shared {
    /// The slot as `Any`, to downcast to its checkpoint type (an upcast: no call).
    #[inline]
    pub(crate) fn slot_any(&self) -> &dyn Any {
        &*self.slot
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.status.load(Ordering::SeqCst) & REASON_MASK != 0
    }

    /// Why the attempt was cancelled (the first reason given), once it was.
    pub(crate) fn cancel_reason(&self) -> Option<CancelReason> {
        reason_of(self.status.load(Ordering::SeqCst))
    }

    pub(crate) fn new(
        info: ActivityInfo,
        options: &ActivityOptions,
        slot: Box<dyn ErasedSlot>,
        env: Arc<Env>,
        previous: Option<Payload>,
        span: tracing::Span,
    ) -> Self {
        // A resumed checkpoint is not progress of this attempt: stall detection starts after it.
        let seen_seq = slot.seq();
        let options = AttemptOptions::new(options, info.heartbeat_interval, &*env.transport);
        let send = SendState::new(previous, seen_seq, options.keeps_details);
        let metrics = crate::metrics::AttemptMetrics::new(env.metrics.of(info.activity_type));
        Shared {
            info,
            options,
            slot,
            env,
            token: OnceLock::new(),
            status: AtomicU32::new(if seen_seq != 0 { RESUMED } else { 0 }),
            pump_slot: AtomicU32::new(u32::MAX),
            send: tokio::sync::Mutex::new(send),
            polls: PollTracker::default(),
            metrics,
            span: (!span.is_disabled()).then(|| Box::new(span)),
        }
    }

    /// The attempt's span (a disabled one when no subscriber wanted it).
    pub(crate) fn span(&self) -> &tracing::Span {
        static DISABLED: std::sync::LazyLock<tracing::Span> =
            std::sync::LazyLock::new(tracing::Span::none);
        self.span.as_deref().unwrap_or(&DISABLED)
    }

    pub(crate) fn cancel_with(&self, reason: CancelReason) {
        let code = reason_code(reason);
        let first = self
            .status
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s & REASON_MASK == 0).then_some(s | code)
            })
            .is_ok();
        if first {
            self.metrics.cancelled();
            let _g = self.span().enter();
            tracing::info!(%reason, "activity cancel delivered");
        }
        if let Some(token) = self.token.get() {
            token.cancel();
        }
        // The attempt's task sees the cancel on its next poll: make that now.
        self.polls.wake_task();
    }

    /// The token cancelled with the attempt, made on first use.
    pub(crate) fn token(&self) -> &CancellationToken {
        let token = self.token.get_or_init(CancellationToken::new);
        // A cancel that raced with the token's creation may not have seen it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.is_cancelled() {
            token.cancel();
        }
        token
    }

    /// Whether the outcome was reported (nothing more is sent).
    pub(crate) fn has_ended(&self) -> bool {
        self.status.load(Ordering::Acquire) & ENDED != 0
    }

    /// Whether the slot started with the checkpoint the attempt resumed from.
    pub(crate) fn resumed(&self) -> bool {
        self.status.load(Ordering::Relaxed) & RESUMED != 0
    }

    /// Whether `run_blocking` was refused under a paused clock.
    pub(crate) fn refused_blocking(&self) -> bool {
        self.status.load(Ordering::Relaxed) & REFUSED_BLOCKING != 0
    }

    /// Marks the outcome reported; whether it was already.
    pub(crate) fn end(&self) -> bool {
        self.status.fetch_or(ENDED, Ordering::AcqRel) & ENDED != 0
    }

    /// Applies a backend's heartbeat reply.
    pub(crate) fn apply_reply(&self, reply: &HeartbeatReply) {
        if reply.cancel_requested {
            self.cancel_with(CancelReason::Requested);
        } else if reply.reset {
            self.cancel_with(CancelReason::Reset);
        } else if reply.paused {
            self.cancel_with(CancelReason::Paused);
        } else if reply.timed_out {
            self.cancel_with(CancelReason::TimedOut);
        } else if reply.not_found {
            self.cancel_with(CancelReason::NotFound);
        }
    }

    pub(crate) fn flag_error(&self) {
        self.status.fetch_or(HAS_ERROR, Ordering::Relaxed);
    }

    /// Whether the pump refused a checkpoint that `checkpoint()` has not reported yet.
    #[inline]
    pub(crate) fn has_error(&self) -> bool {
        self.status.load(Ordering::Relaxed) & HAS_ERROR != 0
    }

    /// The refusal is being reported: clears the flag.
    pub(crate) fn clear_error(&self) {
        self.status.fetch_and(!HAS_ERROR, Ordering::Relaxed);
    }

    /// Records that `run_blocking` was refused under a paused clock.
    pub(crate) fn refuse_blocking(&self) {
        self.status.fetch_or(REFUSED_BLOCKING, Ordering::Relaxed);
    }
}
