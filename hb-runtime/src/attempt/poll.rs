//! Tracks whether the body's future is being polled, so the pump can warn about a blocked or
//! starved executor. The activity side only does atomic stores; the pump does all timing.
//!
//! The attempt's [`Shared`] state is itself the waker handed to the body: a wake records the
//! fact and wakes the task's own waker. A cancel wakes that same waker, so the attempt sees it
//! at once without a cancellation future of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use crate::attempt::Shared;

/// Counters shared between the body's future and the pump.
#[derive(Default)]
pub(crate) struct PollTracker {
    /// The polls started (from bit 2 up), and the `IN_POLL` and `WOKEN` flags.
    state: AtomicU64,
    /// The waker of the task driving the attempt.
    task: Mutex<Option<Waker>>,
}

/// Inside a poll now.
const IN_POLL: u64 = 1;
/// Woken and not yet polled.
const WOKEN: u64 = 2;
/// One poll, in `PollTracker::state`.
const ONE_POLL: u64 = 4;

impl PollTracker {
    /// `(polls started, inside a poll now, woken and not yet polled)`.
    pub(crate) fn snapshot(&self) -> (u64, bool, bool) {
        let s = self.state.load(Ordering::Acquire);
        (s / ONE_POLL, s & IN_POLL != 0, s & WOKEN != 0)
    }

    /// Wakes the task driving the attempt (a cancel arrived).
    pub(crate) fn wake_task(&self) {
        let waker = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.polls.state.fetch_or(WOKEN, Ordering::Release);
        self.polls.wake_task();
    }
}

/// Clears `IN_POLL` when dropped, unwinding included.
struct LeavesPoll<'a>(&'a AtomicU64);

impl Drop for LeavesPoll<'_> {
    fn drop(&mut self) {
        self.0.fetch_and(!IN_POLL, Ordering::Release);
    }
}

/// The outcome of polling a [`TrackedFuture`]: the body's output, or a cancel seen first.
pub(crate) enum Tracked<T> {
    Done(T),
    Cancelled,
}

/// Wraps the body's future: records its polls and wakes in the [`PollTracker`], and resolves
/// to [`Tracked::Cancelled`] once the attempt is cancelled and the body is still pending.
pub(crate) struct TrackedFuture<'a, F> {
    inner: &'a mut F,
    shared: &'a Arc<Shared>,
    cancel_aware: bool,
}

impl<'a, F> TrackedFuture<'a, F> {
    pub(crate) fn new(inner: &'a mut F, shared: &'a Arc<Shared>) -> Self {
        TrackedFuture {
            inner,
            shared,
            cancel_aware: true,
        }
    }

    /// Polls the body to its end even once cancelled (the cooperative grace period).
    pub(crate) fn ignoring_cancel(mut self) -> Self {
        self.cancel_aware = false;
        self
    }
}

impl<F: Future + Unpin> Future for TrackedFuture<'_, F> {
    type Output = Tracked<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let shared = self.shared;
        let tracker = &shared.polls;
        {
            let mut slot = tracker.task.lock().unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // One more poll, inside it now, no longer woken (a wake from here on counts again).
        let _ = tracker
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s & !(IN_POLL | WOKEN)).wrapping_add(ONE_POLL) | IN_POLL)
            });
        let waker = Waker::from(shared.clone());
        let out = {
            // Out of the poll when it returns or panics.
            let _leaving = LeavesPoll(&tracker.state);
            Pin::new(&mut *self.inner).poll(&mut Context::from_waker(&waker))
        };
        match out {
            Poll::Ready(v) => Poll::Ready(Tracked::Done(v)),
            Poll::Pending if self.cancel_aware && shared.is_cancelled() => {
                Poll::Ready(Tracked::Cancelled)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
