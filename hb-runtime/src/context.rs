//! [`ActivityContext`]: what a running attempt sees of itself and its backend.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::checkpoint::{self, Checkpoint, Progress};
use crate::definition::ActivityOptions;
use crate::error::{ActivityError, CancelReason, CheckpointError};
use crate::heartbeat::SendState;
use crate::state::StateMap;
use crate::transport::{HeartbeatReply, TaskToken, Transport};

/// What an attempt knows about itself; [`ActivityContext::info`] returns it.
///
/// ```
/// use hb_runtime::prelude::*;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1m")]
/// async fn whoami(ctx: ActivityContext) -> Result<String, ActivityError> {
///     let info = ctx.info();
///     assert_eq!(info.heartbeat_interval, Duration::from_secs(5)); // half the timeout
///     assert!(info.deadline.is_some()); // from start_to_close_timeout
///     Ok(format!("{} {} #{}", info.activity_type, info.activity_id, info.attempt))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new()
///     .activity_id("order-42")
///     .attempt(3)
///     .run(whoami, ())
///     .await;
/// assert_eq!(run.result.unwrap(), "whoami order-42 #3");
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ActivityInfo {
    /// The activity id (stable across attempts).
    pub activity_id: String,
    /// The activity type name.
    pub activity_type: &'static str,
    /// The attempt number, starting at 1.
    pub attempt: u32,
    /// The heartbeat timeout in force, if any.
    pub heartbeat_timeout: Option<Duration>,
    /// How often the pump heartbeats this attempt.
    pub heartbeat_interval: Duration,
    /// When this attempt must have finished (start-to-close or schedule-to-close), if bounded.
    pub deadline: Option<SystemTime>,
    /// The token that identifies this attempt to its backend (for heartbeating from outside).
    pub task_token: TaskToken,
}

/// The handle a running activity uses to checkpoint, flush, and observe cancellation.
///
/// Cheap to clone (one `Arc`); clones talk about the same attempt.
///
/// ```
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Cursor { #[checkpoint(done)] next: u64 }
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn count(ctx: ActivityContext, #[checkpoint] mut c: Cursor, to: u64) -> Result<u64, ActivityError> {
///     while c.next < to {
///         c.next += 1;
///         ctx.checkpoint(&c)?;               // nanoseconds: the pump ships it
///         if ctx.is_cancelled() { break; }
///     }
///     ctx.flush().await?;                     // send now, wait for the backend
///     Ok(c.next)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new()
///     .with_checkpoint(Cursor { next: 7 })
///     .run(count, 10).await;
/// assert_eq!(run.result.unwrap(), 10);
/// assert_eq!(run.last_checkpoint.unwrap().next, 10);
/// # }
/// ```
#[derive(Clone)]
pub struct ActivityContext {
    pub(crate) inner: Arc<Shared>,
}

/// The options an attempt consults while it runs (a compact copy: one per running attempt).
pub(crate) struct AttemptOptions {
    /// In ms (0: none); sub-millisecond values round up to 1 ms, longer than 49 days saturate.
    stall_timeout_ms: u32,
    cancel_grace_ms: u32,
    checkpoint_limit: u32,
    pub(crate) cancel: crate::definition::CancelMode,
    /// From the backend, read once: see [`Transport::keeps_details`].
    pub(crate) keeps_details: bool,
    /// Pump ticks per heartbeat interval, from the backend's checkpoint interval (see
    /// `heartbeat::pace`).
    pub(crate) ticks_per_beat: u16,
}

/// `d` in whole ms, rounded up, at least 1, saturating at `u32::MAX`.
fn ms_u32(d: Duration) -> u32 {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

impl AttemptOptions {
    /// `None` also for one beyond ~49 days (kept as `u32::MAX` ms): never within an
    /// attempt, rather than sooner than asked.
    pub(crate) fn stall_timeout(&self) -> Option<Duration> {
        (self.stall_timeout_ms > 0 && self.stall_timeout_ms < u32::MAX)
            .then(|| Duration::from_millis(self.stall_timeout_ms.into()))
    }

    pub(crate) fn cancel_grace(&self) -> Duration {
        Duration::from_millis(self.cancel_grace_ms.into())
    }

    /// The encoded size a checkpoint may take, in bytes.
    pub(crate) fn checkpoint_limit(&self) -> usize {
        self.checkpoint_limit as usize
    }
}

impl AttemptOptions {
    /// The options of an attempt of `o` heartbeating every `heartbeat_interval` to `transport`.
    fn new(o: &ActivityOptions, heartbeat_interval: Duration, transport: &dyn Transport) -> Self {
        AttemptOptions {
            keeps_details: transport.keeps_details(),
            ticks_per_beat: crate::heartbeat::ticks_per_beat(
                heartbeat_interval,
                transport.checkpoint_interval(),
            ),
            stall_timeout_ms: o.stall_timeout.map_or(0, ms_u32),
            cancel: o.cancel,
            cancel_grace_ms: if o.cancel_grace.is_zero() {
                0
            } else {
                ms_u32(o.cancel_grace)
            },
            // At most 2 MiB (see `effective_checkpoint_limit`).
            checkpoint_limit: u32::try_from(o.effective_checkpoint_limit()).unwrap_or(u32::MAX),
        }
    }
}

/// What every attempt of one runner shares: its backend and the worker's resources.
pub(crate) struct Env {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) state: StateMap,
    /// The pump runs on the attempts' runtime and follows its clock (the test kit's).
    pub(crate) pump_on_runtime: bool,
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
    pub(crate) polls: crate::heartbeat::PollTracker,
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

/// Why `run_blocking` refuses to run under a paused clock with the pump on the same runtime.
pub(crate) const PAUSED_BLOCKING: &str = "ctx.run_blocking was called while tokio's clock is \
paused (#[tokio::test(start_paused = true)] or tokio::time::pause()) and the heartbeat pump \
follows that clock (hb_runtime::testing::ActivityEnvironment, Pump::on_current_runtime): tokio \
holds a paused clock still while a blocking task runs, so no heartbeat, scripted cancel or \
simulated timeout could happen during the closure, and the test would pass without exercising \
them. Test activities that use run_blocking on an unpaused runtime (#[tokio::test], or \
#[tokio::test(flavor = \"multi_thread\")]), with a short heartbeat_timeout, e.g. \
.options(|o| o.heartbeat_timeout(Duration::from_secs(1)))";

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

impl ActivityContext {
    pub(crate) fn from_shared(inner: Arc<Shared>) -> Self {
        ActivityContext { inner }
    }

    /// The attempt's id, type, attempt number, heartbeat timeout, deadline and task token.
    pub fn info(&self) -> &ActivityInfo {
        &self.inner.info
    }

    /// Stores `value` as the latest checkpoint. The heartbeat pump sends it (or a later one)
    /// with the next heartbeat; the retry of a failed attempt resumes from it.
    ///
    /// This is built for hot loops: it copies `value` into a preallocated slot under an
    /// spin lock (one atomic instruction; the pump holds it only to copy the value out) with
    /// `clone_from` — no serialisation, no I/O. A checkpoint of plain
    /// numbers (the common case) allocates nothing; `String` or `Vec` fields allocate as their
    /// `Clone` does (`#[derive(Clone)]` does not reuse buffers), so keep checkpoints small.
    ///
    /// # Errors
    /// - [`CheckpointError::WrongType`] when `T` is not the activity's checkpoint type (nothing stored).
    /// - [`CheckpointError::TooLarge`] when the pump found an earlier checkpoint above the
    ///   size limit (it is reported once, by the next call; the last checkpoint that fit is
    ///   what backends keep). [`flush`](Self::flush) checks the current value at once.
    ///   Since nothing is encoded here, a checkpoint replaced by an oversized one before the
    ///   pump's next tick is never sent: the backend keeps the one before it.
    #[inline]
    pub fn checkpoint<T: Checkpoint>(&self, value: &T) -> Result<(), CheckpointError> {
        let Some(slot) = self.inner.slot_any().downcast_ref::<Slot<T>>() else {
            return Err(self.wrong_type::<T>());
        };
        slot.store(value);
        if self.inner.status.load(Ordering::Relaxed) & HAS_ERROR != 0 {
            return self.take_error();
        }
        Ok(())
    }

    #[cold]
    fn wrong_type<T: Checkpoint>(&self) -> CheckpointError {
        CheckpointError::WrongType {
            expected: self.inner.slot.type_name(),
            found: T::TYPE_NAME,
        }
    }

    #[cold]
    fn take_error(&self) -> Result<(), CheckpointError> {
        // The pump holds the send state only while encoding or sending; if it does now, the
        // refusal is reported by a later call.
        let Ok(send) = self.inner.send.try_lock() else {
            return Ok(());
        };
        self.inner.status.fetch_and(!HAS_ERROR, Ordering::Relaxed);
        match send.rejected() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Sends the latest checkpoint now and waits for the backend's reply (which may carry a
    /// cancel request: check [`is_cancelled`](Self::is_cancelled) afterwards).
    ///
    /// Use it before a step that must not be redone (a side effect you cannot repeat). Waits
    /// for a heartbeat the pump has in flight, so what the backend holds afterwards is never
    /// older than the current checkpoint.
    ///
    /// # Errors
    /// [`CheckpointError::TooLarge`] (the previous checkpoint is kept and nothing is sent),
    /// [`CheckpointError::Encode`], [`CheckpointError::Transport`], or
    /// [`CheckpointError::Closed`] once the attempt has ended (a clone of the context that
    /// outlived it, e.g. in a `run_blocking` closure after an abort).
    pub async fn flush(&self) -> Result<(), CheckpointError> {
        crate::heartbeat::send_now(&self.inner).await
    }

    /// The latest checkpoint: the last one stored by this attempt, else the one it resumed from.
    ///
    /// ```
    /// let ctx = hb_runtime::testing::detached_context::<String>();
    /// assert_eq!(ctx.last_checkpoint::<String>(), None);
    /// ctx.checkpoint(&"page-2".to_string()).unwrap();
    /// assert_eq!(ctx.last_checkpoint::<String>().as_deref(), Some("page-2"));
    /// assert_eq!(ctx.last_checkpoint::<u64>(), None); // not the activity's checkpoint type
    /// ```
    pub fn last_checkpoint<T: Checkpoint>(&self) -> Option<T> {
        self.inner
            .slot_any()
            .downcast_ref::<Slot<T>>()
            .and_then(Slot::get)
    }

    /// Resolves once the attempt is asked to stop (cancel request, timeout, worker shutdown,
    /// pause). Resolves at once if that already happened.
    ///
    /// With `cancel = "cooperative"` the body can answer it its own way:
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "10s", cancel = "cooperative")]
    /// async fn poll_queue(ctx: ActivityContext) -> Result<u32, ActivityError> {
    ///     let mut polls = 0;
    ///     loop {
    ///         tokio::select! {
    ///             _ = ctx.cancelled() => return Ok(polls), // report what was done
    ///             _ = tokio::time::sleep(Duration::from_secs(1)) => polls += 1,
    ///         }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let run = hb_runtime::testing::ActivityEnvironment::new()
    ///     .cancel_at(Duration::from_millis(3500))
    ///     .run(poll_queue, ())
    ///     .await;
    /// assert_eq!(run.result.unwrap(), 3);
    /// # }
    /// ```
    ///
    /// The future is two words. Awaited in the attempt's own task (the body and what it
    /// `select!`s or `join!`s), it waits for free: a cancel wakes that task anyway. Awaited
    /// in another task (a context cloned into `tokio::spawn`), it waits on the attempt's
    /// [`cancellation_token`](Self::cancellation_token).
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled {
            ctx: self,
            waiting: None,
        }
    }

    /// Whether the attempt has been asked to stop.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Why the attempt was asked to stop, once it was.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.inner.cancel_reason()
    }

    /// A token cancelled with the attempt, for your own `select!`s or child tasks.
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "10s", cancel = "cooperative")]
    /// async fn fan_out(ctx: ActivityContext) -> Result<String, ActivityError> {
    ///     let token = ctx.cancellation_token();
    ///     let child = tokio::spawn(async move {
    ///         token.cancelled().await;
    ///         "child stopped".to_string()
    ///     });
    ///     Ok(child.await.unwrap())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let run = hb_runtime::testing::ActivityEnvironment::new()
    ///     .cancel_at(Duration::from_secs(1))
    ///     .run(fan_out, ())
    ///     .await;
    /// assert_eq!(run.result.unwrap(), "child stopped");
    /// # }
    /// ```
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.token().child_token()
    }

    /// Progress (done/total) of the latest checkpoint, from `#[checkpoint(done)]`/`total` fields.
    ///
    /// ```
    /// let ctx = hb_runtime::testing::detached_context::<u64>();
    /// assert_eq!(ctx.progress(), None);
    /// ctx.checkpoint(&40u64).unwrap(); // an integer checkpoint counts as done
    /// assert_eq!(ctx.progress().map(|p| p.done), Some(40));
    /// ```
    pub fn progress(&self) -> Option<Progress> {
        self.inner.slot.progress()
    }

    /// Runs blocking or CPU-bound `f` on tokio's blocking pool and awaits it.
    ///
    /// `f` gets a clone of the context, so it can [`checkpoint`](Self::checkpoint) and check
    /// [`is_cancelled`](Self::is_cancelled) from its loop. Heartbeats go on meanwhile: the pump
    /// runs on its own thread. A thread cannot be interrupted, so with `cancel = "abort"` the
    /// attempt ends at once but `f` keeps running until it next checks `is_cancelled()`.
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn hash(ctx: ActivityContext, #[checkpoint] start: u64, rounds: u64) -> Result<u64, ActivityError> {
    ///     ctx.run_blocking(move |ctx| {
    ///         let mut acc = start;
    ///         for i in start..rounds {
    ///             acc = acc.wrapping_mul(31).wrapping_add(i);
    ///             if i % 1024 == 0 {
    ///                 ctx.checkpoint(&i)?;
    ///                 if ctx.is_cancelled() { return Err(ActivityError::retryable("Stopped", "cancelled")); }
    ///             }
    ///         }
    ///         Ok(acc)
    ///     }).await
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let run = hb_runtime::testing::ActivityEnvironment::new().run(hash, 10_000).await;
    /// assert!(run.result.is_ok());
    /// # }
    /// ```
    ///
    /// # Panics
    /// Under a paused tokio clock (`#[tokio::test(start_paused = true)]`) when the heartbeat
    /// pump follows that clock (the [test kit](crate::testing)'s default,
    /// [`Pump::on_current_runtime`](crate::heartbeat::Pump::on_current_runtime)): tokio holds a
    /// paused clock still while a blocking task runs, so heartbeats, scripted cancels and
    /// simulated timeouts could not happen during `f`, and a test would pass without
    /// exercising them. Test such activities on an unpaused runtime, with a short
    /// `heartbeat_timeout`.
    pub async fn run_blocking<R, F>(&self, f: F) -> Result<R, ActivityError>
    where
        F: FnOnce(ActivityContext) -> Result<R, ActivityError> + Send + 'static,
        R: Send + 'static,
    {
        if self.inner.env.pump_on_runtime && clock_paused() {
            self.inner
                .status
                .fetch_or(REFUSED_BLOCKING, Ordering::Relaxed);
            panic!("{PAUSED_BLOCKING}");
        }
        let ctx = self.clone();
        let span = self.inner.span().clone();
        match tokio::task::spawn_blocking(move || span.in_scope(|| f(ctx))).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(ActivityError::Panicked {
                message: crate::runner::panic_message(e.into_panic().as_ref()),
            }),
            Err(e) => Err(ActivityError::retryable("JoinError", e)),
        }
    }

    /// The worker-level resource of type `T` (what `#[state]` parameters receive).
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn region(ctx: ActivityContext) -> Result<String, ActivityError> {
    ///     ctx.state::<String>() // fails with `ActivityError::MissingState` when absent
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let env = hb_runtime::testing::ActivityEnvironment::new().with_state("eu-west".to_string());
    /// assert_eq!(env.run(region, ()).await.result.unwrap(), "eu-west");
    /// # }
    /// ```
    pub fn state<T: Clone + Send + Sync + 'static>(&self) -> Result<T, ActivityError> {
        self.inner.env.state.get::<T>().map_err(ActivityError::from)
    }
}

/// Whether tokio's clock is paused. A paused clock moves only when its runtime idles or is
/// advanced, never within one poll; a running one moves with real time. So: let a few
/// microseconds of real time pass and see whether tokio's clock moved.
fn clock_paused() -> bool {
    let before = tokio::time::Instant::now();
    let real = std::time::Instant::now();
    while real.elapsed() < Duration::from_micros(20) {
        std::hint::spin_loop();
    }
    tokio::time::Instant::now() == before
}

impl Shared {
    /// The slot as `Any`, to downcast to its checkpoint type (an upcast: no call).
    #[inline]
    fn slot_any(&self) -> &dyn Any {
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
        previous: Option<crate::payload::Payload>,
        span: tracing::Span,
    ) -> Self {
        // A resumed checkpoint is not progress of this attempt: stall detection starts after it.
        let seen_seq = slot.seq();
        let options = AttemptOptions::new(options, info.heartbeat_interval, &*env.transport);
        let send = SendState::new(previous, seen_seq, options.keeps_details);
        Shared {
            info,
            options,
            slot,
            env,
            token: OnceLock::new(),
            status: AtomicU32::new(if seen_seq != 0 { RESUMED } else { 0 }),
            pump_slot: AtomicU32::new(u32::MAX),
            send: tokio::sync::Mutex::new(send),
            polls: crate::heartbeat::PollTracker::default(),
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
    fn token(&self) -> &CancellationToken {
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
}

/// The future of [`ActivityContext::cancelled`]: resolves once the attempt is asked to stop.
#[must_use = "futures do nothing unless awaited"]
pub struct Cancelled<'a> {
    ctx: &'a ActivityContext,
    /// The wait on the attempt's token, when polled from a task other than the attempt's.
    waiting: Option<Pin<Box<WaitForCancellationFuture<'a>>>>,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.ctx.inner;
        if shared.is_cancelled() {
            return Poll::Ready(());
        }
        // The attempt polls its body with the attempt's own waker (see `heartbeat::poll`), and
        // a cancel wakes the task behind it: seeing the flag on that poll is enough.
        if std::ptr::eq(cx.waker().data(), Arc::as_ptr(shared).cast()) {
            self.waiting = None;
            return Poll::Pending;
        }
        let ctx = self.ctx;
        self.waiting
            .get_or_insert_with(|| Box::pin(ctx.inner.token().cancelled()))
            .as_mut()
            .poll(cx)
    }
}

impl fmt::Debug for Cancelled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("cancelled", &self.ctx.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ActivityContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityContext")
            .field("info", &self.inner.info)
            .field("cancel_reason", &self.cancel_reason())
            .finish_non_exhaustive()
    }
}

/// The latest checkpoint of one attempt, typed; the pump reads it through [`ErasedSlot`].
///
/// A spin lock rather than `std::sync::Mutex`: `checkpoint()` sits in users' hot loops, and a
/// spin lock's release is a plain store where std's is a second atomic read-modify-write (a
/// third of the call, measured with `benches/checkpoint.rs`). The other holders are the pump copying the value out, and
/// `last_checkpoint()` and progress reads; each holds it only for the checkpoint's `Clone`
/// (or `Checkpoint::progress`), so a wait is rare and short, and the waiter yields its thread
/// meanwhile. (A `Clone` impl that calls back into the same context's `checkpoint()` would
/// wait for itself, as it would under any lock.)
pub(crate) struct Slot<T> {
    inner: spin::mutex::SpinMutex<SlotInner<T>, spin::relax::Yield>,
}

struct SlotInner<T> {
    /// Meaningful once `seq` is not 0 (`Default` until then).
    value: T,
    /// Bumped on every store (0: nothing stored or resumed); the pump compares it with what
    /// it sent last.
    seq: u64,
}

impl<T> SlotInner<T> {
    fn value(&self) -> Option<&T> {
        (self.seq != 0).then_some(&self.value)
    }
}

impl<T: Checkpoint> Slot<T> {
    pub(crate) fn new(initial: Option<T>) -> Self {
        Slot {
            inner: spin::mutex::SpinMutex::new(SlotInner {
                // A resumed checkpoint counts as unsent, so the first heartbeat carries it.
                seq: u64::from(initial.is_some()),
                value: initial.unwrap_or_default(),
            }),
        }
    }

    #[inline]
    fn store(&self, v: &T) {
        let mut g = self.inner.lock();
        g.value.clone_from(v);
        // Never back to 0 ("nothing stored").
        g.seq = g.seq.checked_add(1).unwrap_or(1);
    }

    fn get(&self) -> Option<T> {
        self.inner.lock().value().cloned()
    }
}

/// What the pump needs from a slot, whatever its type.
pub(crate) trait ErasedSlot: Any + Send + Sync {
    fn type_name(&self) -> &'static str;
    /// The store counter.
    fn seq(&self) -> u64;
    /// When the slot changed since `since`: the new counter and the encoded value.
    fn encode_if_newer(&self, since: u64) -> Option<(u64, Result<Vec<u8>, CheckpointError>)>;
    fn progress(&self) -> Option<Progress>;
}

impl<T: Checkpoint> ErasedSlot for Slot<T> {
    fn type_name(&self) -> &'static str {
        T::TYPE_NAME
    }

    fn seq(&self) -> u64 {
        self.inner.lock().seq
    }

    fn encode_if_newer(&self, since: u64) -> Option<(u64, Result<Vec<u8>, CheckpointError>)> {
        // The user's `Clone` and `Serialize` run here, on the pump's thread among other places:
        // a panic in either is this checkpoint's encode error, not the end of the pump (and of
        // every attempt's heartbeats). The lock is released as the panic unwinds.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Clone under the lock, encode outside it, so the activity's hot loop never waits
            // on serde.
            let (seq, value) = {
                let g = self.inner.lock();
                if g.seq == since {
                    return None;
                }
                (g.seq, g.value()?.clone())
            };
            Some((seq, checkpoint::encode(&value).map_err(|e| e.to_string())))
        }))
        .unwrap_or_else(|panic| {
            let message = crate::runner::panic_message(panic.as_ref());
            Some((
                self.seq(),
                Err(format!("Clone or Serialize panicked: {message}")),
            ))
        })
        .map(|(seq, encoded)| {
            let encoded = encoded.map_err(|message| CheckpointError::Encode {
                type_name: T::TYPE_NAME,
                message,
            });
            (seq, encoded)
        })
    }

    fn progress(&self) -> Option<Progress> {
        self.inner.lock().value().and_then(Checkpoint::progress)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn cancelled_waits_for_free_in_the_attempts_task_and_in_a_wait_list_elsewhere() {
        let ctx = crate::testing::detached_context::<u64>();
        let attempts = Waker::from(ctx.inner.clone());
        let other = Waker::noop();

        let mut own = Box::pin(ctx.cancelled());
        assert!(
            own.as_mut()
                .poll(&mut Context::from_waker(&attempts))
                .is_pending()
        );
        assert!(
            own.waiting.is_none(),
            "no wait list entry in the attempt's task"
        );

        let mut elsewhere = Box::pin(ctx.cancelled());
        assert!(
            elsewhere
                .as_mut()
                .poll(&mut Context::from_waker(other))
                .is_pending()
        );
        assert!(elsewhere.waiting.is_some(), "waits on the token");

        ctx.inner.cancel_with(CancelReason::Requested);
        assert!(
            own.as_mut()
                .poll(&mut Context::from_waker(&attempts))
                .is_ready()
        );
        assert!(
            elsewhere
                .as_mut()
                .poll(&mut Context::from_waker(other))
                .is_ready()
        );
        let mut after = Box::pin(ctx.cancelled());
        assert!(
            after
                .as_mut()
                .poll(&mut Context::from_waker(other))
                .is_ready()
        );
    }
}
