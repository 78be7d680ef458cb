//! [`ActivityContext`]: what a running attempt sees of itself and its backend.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::attempt::{ActivityInfo, Shared, Slot};
use crate::checkpoint::value::{Checkpoint, Progress};
use crate::error::{ActivityError, CancelReason, CheckpointError};

/// Why `run_blocking` refuses to run under a paused clock with the pump on the same runtime.
pub(crate) const PAUSED_BLOCKING: &str = "ctx.run_blocking was called while tokio's clock is \
paused (#[tokio::test(start_paused = true)] or tokio::time::pause()) and the heartbeat pump \
follows that clock (hb_runtime::testing::ActivityEnvironment, Pump::on_current_runtime): tokio \
holds a paused clock still while a blocking task runs, so no heartbeat, scripted cancel or \
simulated timeout could happen during the closure, and the test would pass without exercising \
them. Test activities that use run_blocking on an unpaused runtime (#[tokio::test], or \
#[tokio::test(flavor = \"multi_thread\")]), with a short heartbeat_timeout, e.g. \
.options(|o| o.heartbeat_timeout(Duration::from_secs(1)))";

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
        if self.inner.has_error() {
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
        self.inner.clear_error();
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
        crate::attempt::send::send_now(&self.inner).await
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

    /// `Err(ActivityError::Cancelled)` once the attempt has been asked to stop, for a loop's
    /// `?` (in a [`run_blocking`](Self::run_blocking) closure above all, which nothing else
    /// interrupts).
    ///
    /// Return this, not an error of your own: the attempt then ends as cancelled, with its
    /// reason, whether the body returns first or the runner sees the cancel first.
    ///
    /// # Errors
    /// [`ActivityError::Cancelled`] with the [`cancel_reason`](Self::cancel_reason).
    ///
    /// ```
    /// let ctx = hb_runtime::testing::detached_context::<u64>();
    /// assert!(ctx.check_cancelled().is_ok());
    /// ```
    pub fn check_cancelled(&self) -> Result<(), ActivityError> {
        match self.cancel_reason() {
            None => Ok(()),
            Some(reason) => Err(ActivityError::Cancelled {
                reason,
                details: None,
            }),
        }
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
    /// attempt ends at once but `f` keeps running until it next checks
    /// [`check_cancelled`](Self::check_cancelled) or `is_cancelled()`.
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
    ///                 ctx.check_cancelled()?;
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
            self.inner.refuse_blocking();
            panic!("{PAUSED_BLOCKING}");
        }
        let ctx = self.clone();
        let span = self.inner.span().clone();
        match tokio::task::spawn_blocking(move || span.in_scope(|| f(ctx))).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(ActivityError::Panicked {
                message: crate::error::panic_message(e.into_panic().as_ref()),
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
