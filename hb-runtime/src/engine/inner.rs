//! The shared state of one engine ([`Inner`]): the core behind its lock, the writer, the
//! reader and the deadline queue's channel, and the thin shell that applies the core's
//! effects ([`Inner::change`]): a sans-IO transition under the lock, the effects that must
//! keep its order queued before the lock is released, the rest applied after.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::core::{self, Ack, Core, Effects};
use super::store::{Reader, Writer};
use super::timers::TimerCommand;
use super::{EngineError, release, transport};

/// The shared state of one engine.
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) writer: Writer,
    pub(crate) reader: Arc<Reader>,
    pub(super) core: Mutex<Core>,
    pub(crate) ready: Notify,
    pub(crate) timers: mpsc::UnboundedSender<TimerCommand>,
    /// The writer thread; it holds the file's lock until it has finished.
    pub(super) writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Cancelled by `close()` (and on drop): workers stop, starts are refused, polling stops.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// Cancelled once `close()` has drained the workers: the deadline queue stops.
    pub(super) timers_stop: tokio_util::sync::CancellationToken,
    /// The workers' scheduling tasks, for `close()` to wait on.
    pub(crate) workers: tokio_util::task::TaskTracker,
    /// Timers in the deadline queue (kept by its thread, for [`Engine::stats`](super::Engine::stats)).
    pub(super) pending_timers: Arc<AtomicU64>,
    /// See [`EngineOptions::checkpoint_interval`](super::EngineOptions::checkpoint_interval).
    pub(super) checkpoint_interval: Duration,
    /// `Handle::watch`es of this engine's activities, woken by their changes.
    pub(crate) watchers: Arc<super::watch::Watchers>,
}

impl Drop for Inner {
    /// The last handle is gone: stop the background tasks, and let the writer commit what is
    /// queued, checkpoint the WAL and release the file. Outside an async runtime this waits
    /// for it, so the file can be reopened at once by any process. On a runtime's thread (or
    /// the writer's own) it does not block: the writer finishes on its own, and an
    /// `Engine::open` of the file in this process waits for it (see `release`).
    fn drop(&mut self) {
        self.stop.cancel();
        self.timers_stop.cancel();
        self.writer.send(core::Write::Stop, None);
        let thread = self
            .writer_thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let own = t.thread().id() == std::thread::current().id();
            if own || tokio::runtime::Handle::try_current().is_ok() {
                release::note(release::key(&self.path), t);
            } else {
                let _ = t.join();
            }
        }
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the deadline queue has stopped (after `close()`): nothing is retried any more.
    pub(crate) fn timers_stopped(&self) -> bool {
        self.timers_stop.is_cancelled()
    }

    /// Runs `f` on the core and applies its effects: its writes and timers queued before the
    /// lock is released (in the order of the changes), the rest after.
    pub(crate) fn change<T>(self: &Arc<Self>, f: impl FnOnce(&mut Core, &mut Effects) -> T) -> T {
        let mut fx = Effects::default();
        let out = {
            let mut core = self.lock();
            let out = f(&mut core, &mut fx);
            self.queue(&mut fx);
            out
        };
        self.apply(fx);
        out
    }

    /// Queues the effects that must keep the order of the core's changes: timers (a `Forget`
    /// before any timer a later acknowledgement arms) and writes. Called with the core's lock
    /// held: a write queued after the lock is released could be overtaken by another
    /// thread's, such as a timed-out attempt's late checkpoint overtaking the transition that
    /// timed it out.
    fn queue(&self, fx: &mut Effects) {
        for id in fx.forget.drain(..) {
            let _ = self.timers.send(TimerCommand::Forget(id));
        }
        for (timer, at) in fx.timers.drain(..) {
            let _ = self.timers.send(TimerCommand::Arm(timer, at));
        }
        if let Some(at) = fx.sweep.take() {
            let _ = self.timers.send(TimerCommand::SweepAt(at));
        }
        for (w, ack) in fx.writes.drain(..) {
            if self.watchers.active()
                && let Some(id) = w.activity()
            {
                self.watchers.changed(id);
            }
            match self.writer.queue(w, ack) {
                Ok(wake) => fx.wake_writer |= wake,
                Err(Some(ack)) => fx.unsent.push(ack),
                Err(None) => {}
            }
        }
    }

    /// Applies the rest once the lock is released: push cancels (after the writes that record
    /// why), wake the writer and the workers, answer waiters and callers, and the
    /// acknowledgements of writes the writer could not take (it has stopped).
    fn apply(self: &Arc<Self>, fx: Effects) {
        for (handle, reason) in fx.cancels {
            handle.cancel(reason);
        }
        if fx.wake_writer {
            self.writer.wake();
        }
        if fx.ready {
            self.ready.notify_waiters();
        }
        for (waiter, closed) in fx.answers {
            let _ = waiter.send(closed);
        }
        for (reply, result) in fx.replies {
            let _ = reply.send(result);
        }
        if !fx.unsent.is_empty() {
            self.committed(
                fx.unsent
                    .into_iter()
                    .map(|ack| (ack, Err(EngineError::Closed)))
                    .collect(),
            )
            .send();
        }
    }

    /// Writes the core asked for were committed (or failed): their acknowledgements, applied
    /// under one lock. Returns the callers to answer (see `Writer::route`'s router).
    pub(super) fn committed(
        self: &Arc<Self>,
        acks: Vec<(Ack, Result<bool, EngineError>)>,
    ) -> Answers {
        self.change(|core, fx| {
            for (ack, result) in acks {
                core.committed(ack, result, fx);
            }
            Answers {
                answers: std::mem::take(&mut fx.answers),
                replies: std::mem::take(&mut fx.replies),
            }
        })
    }

    /// A heartbeat of attempt `token` (the hot path: no effects but its write).
    pub(crate) fn heartbeat(
        &self,
        token: &crate::transport::TaskToken,
        details: Option<&crate::Payload>,
    ) -> Result<crate::transport::HeartbeatReply, crate::TransportError> {
        let mut core = self.lock();
        let (reply, write) = core.heartbeat(token, details)?;
        // Its time changed, whether or not it carried a checkpoint to write.
        if self.watchers.active()
            && let Some((id, _)) = core::parse_token(token)
        {
            self.watchers.changed(id);
        }
        // Queued under the lock, like every write (see `change`).
        let wake = write.is_some_and(|w| matches!(self.writer.queue(w, None), Ok(true)));
        drop(core);
        if wake {
            self.writer.wake();
        }
        Ok(reply)
    }
}

/// Callers to answer: `result()` calls and callers of committed writes.
pub(super) struct Answers {
    answers: Vec<(tokio::sync::oneshot::Sender<core::Closed>, core::Closed)>,
    replies: Vec<(core::Reply, Result<bool, EngineError>)>,
}

impl Answers {
    pub(super) fn send(self) {
        for (waiter, closed) in self.answers {
            let _ = waiter.send(closed);
        }
        for (reply, result) in self.replies {
            let _ = reply.send(result);
        }
    }
}

impl transport::Shell for Arc<Inner> {
    fn change<T>(&self, f: impl FnOnce(&mut Core, &mut Effects) -> T) -> T {
        Inner::change(self, f)
    }

    fn heartbeat(
        &self,
        token: &crate::transport::TaskToken,
        details: Option<&crate::Payload>,
    ) -> Result<crate::transport::HeartbeatReply, crate::TransportError> {
        Inner::heartbeat(self, token, details)
    }

    fn checkpoint_interval(&self) -> Duration {
        self.checkpoint_interval
    }
}
