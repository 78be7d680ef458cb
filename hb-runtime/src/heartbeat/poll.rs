//! Tracks whether the body's future is being polled, so the pump can warn about a blocked or
//! starved executor. The activity side only does atomic stores; the pump does all timing.
//!
//! The attempt's [`Shared`] state is itself the waker handed to the body: a wake records the
//! fact and wakes the task's own waker. A cancel wakes that same waker, so the attempt sees it
//! at once without a cancellation future of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use crate::context::Shared;

/// Counters shared between the body's future and the pump.
#[derive(Default)]
pub(crate) struct PollTracker {
    polls: AtomicU64,
    in_poll: AtomicBool,
    woken: AtomicBool,
    /// The waker of the task driving the attempt.
    task: Mutex<Option<Waker>>,
}

impl PollTracker {
    /// `(polls started, inside a poll now, woken and not yet polled)`.
    pub(crate) fn snapshot(&self) -> (u64, bool, bool) {
        (
            self.polls.load(Ordering::Acquire),
            self.in_poll.load(Ordering::Acquire),
            self.woken.load(Ordering::Acquire),
        )
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
        self.polls.woken.store(true, Ordering::Release);
        self.polls.wake_task();
    }
}

/// Clears `in_poll` when dropped, unwinding included.
struct LeavesPoll<'a>(&'a AtomicBool);

impl Drop for LeavesPoll<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
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
        tracker.woken.store(false, Ordering::Release);
        tracker.polls.fetch_add(1, Ordering::AcqRel);
        tracker.in_poll.store(true, Ordering::Release);
        let waker = Waker::from(shared.clone());
        let out = {
            // Out of the poll when it returns or panics.
            let _leaving = LeavesPoll(&tracker.in_poll);
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
