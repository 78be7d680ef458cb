//! Tracks whether the body's future is being polled, so the pump can warn about a blocked or
//! starved executor. The activity side only does atomic stores; the pump does all timing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Counters shared between the body's future and the pump.
#[derive(Default)]
pub(crate) struct PollTracker {
    polls: AtomicU64,
    in_poll: AtomicBool,
    waker: Arc<WakeRecorder>,
}

#[derive(Default)]
struct WakeRecorder {
    woken: AtomicBool,
    inner: Mutex<Option<Waker>>,
}

impl Wake for WakeRecorder {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let waker = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl PollTracker {
    /// `(polls started, inside a poll now, woken and not yet polled)`.
    pub(crate) fn snapshot(&self) -> (u64, bool, bool) {
        (
            self.polls.load(Ordering::Acquire),
            self.in_poll.load(Ordering::Acquire),
            self.waker.woken.load(Ordering::Acquire),
        )
    }
}

/// Wraps the body's future, recording its polls and wakes in a [`PollTracker`].
pub(crate) struct TrackedFuture<F> {
    inner: F,
    shared: Arc<crate::context::Shared>,
}

impl<F> TrackedFuture<F> {
    pub(crate) fn new(inner: F, shared: Arc<crate::context::Shared>) -> Self {
        TrackedFuture { inner, shared }
    }
}

impl<F: Future + Unpin> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let tracker = &self.shared.polls;
        {
            let mut slot = tracker
                .waker
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        tracker.waker.woken.store(false, Ordering::Release);
        tracker.polls.fetch_add(1, Ordering::AcqRel);
        tracker.in_poll.store(true, Ordering::Release);
        let waker = Waker::from(tracker.waker.clone());
        let mut inner_cx = Context::from_waker(&waker);
        let out = Pin::new(&mut self.inner).poll(&mut inner_cx);
        self.shared.polls.in_poll.store(false, Ordering::Release);
        out
    }
}
