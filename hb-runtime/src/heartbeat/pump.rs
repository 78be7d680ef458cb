//! The shared heartbeat scheduler.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use crate::attempt::Shared;
use crate::lanes::Lanes;

/// Where [`Pump::on_current_runtime`]'s scheduler runs.
const ON_RUNTIME: &str = "current runtime";

enum Command {
    Add(Arc<Shared>),
    Remove(Arc<Shared>),
    /// The final flush of an attempt dropped mid-run.
    Finish(Arc<Shared>),
}

struct PumpInner {
    tx: mpsc::UnboundedSender<Command>,
    stats: Arc<Counters>,
    home: &'static str,
}

#[derive(Default)]
struct Counters {
    active: AtomicU64,
    ticks: AtomicU64,
}

/// Figures of a [`Pump`], for monitoring and benchmarks.
///
/// ```
/// use hb_runtime::backend::Pump;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let stats = Pump::on_current_runtime().stats();
/// assert_eq!((stats.active, stats.ticks), (0, 0)); // nothing registered yet
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PumpStats {
    /// Attempts registered now.
    pub active: u64,
    /// Ticks run since the pump started: looks at one attempt, each sending a heartbeat
    /// unless its backend has a [checkpoint interval] and neither a changed checkpoint nor a
    /// liveness heartbeat was due.
    ///
    /// [checkpoint interval]: crate::transport::Transport::checkpoint_interval
    pub ticks: u64,
}

/// One scheduler heartbeating every registered attempt at its interval.
///
/// Cheap to clone. All attempts of a process share [`Pump::global`] unless told otherwise.
/// Give a runner another one with [`AttemptRunner::pump`](crate::runner::AttemptRunner::pump),
/// and watch it with [`stats`](Self::stats):
///
/// ```
/// use hb_runtime::backend::Pump;
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::backend::TaskToken;
/// use hb_runtime::Payload;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "20ms")]
/// async fn wait(ctx: ActivityContext) -> Result<(), ActivityError> {
///     ctx.cancelled().await;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pump = Pump::dedicated();
/// let transport = MemoryTransport::new();
/// let runner = AttemptRunner::new(transport.clone()).pump(pump.clone());
/// let request = AttemptRequest::new("wait-1", TaskToken::new(*b"w1"), Payload::json(&()).unwrap());
/// let running = runner.start(&wait(), request);
/// let handle = running.handle();
/// let task = tokio::spawn(running.into_future());
///
/// assert!(transport.wait_for_heartbeats(1, Duration::from_secs(5)).await);
/// assert_eq!(pump.stats().active, 1); // the attempt is registered
/// assert!(pump.stats().ticks >= 1);
/// handle.cancel(CancelReason::Requested);
/// task.await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct Pump {
    inner: Arc<PumpInner>,
}

impl fmt::Debug for Pump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pump")
            .field("home", &self.inner.home)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pump {
    /// The process-wide pump, on a dedicated thread named `hb-pump` (started on first use).
    ///
    /// Its own single-threaded tokio runtime runs the scheduler and the heartbeat sends, so an
    /// activity that blocks its executor still heartbeats. [`AttemptRunner::new`] uses it:
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
    /// use hb_runtime::testing::MemoryTransport;
    /// use hb_runtime::backend::TaskToken;
    /// use hb_runtime::Payload;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "100ms")]
    /// async fn hog(ctx: ActivityContext) -> Result<(), ActivityError> {
    ///     std::thread::sleep(Duration::from_millis(400)); // blocks its executor (use run_blocking)
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let transport = MemoryTransport::new();
    /// let runner = AttemptRunner::new(transport.clone()); // heartbeats through Pump::global()
    /// let request = AttemptRequest::new("hog-1", TaskToken::new(*b"h1"), Payload::json(&()).unwrap());
    /// runner.start(&hog(), request).run().await.result.unwrap();
    /// // The hb-pump thread heartbeated while the executor was blocked.
    /// assert!(transport.heartbeat_count() >= 1);
    /// # }
    /// ```
    ///
    /// [`AttemptRunner::new`]: crate::runner::AttemptRunner::new
    pub fn global() -> Pump {
        static GLOBAL: OnceLock<Pump> = OnceLock::new();
        GLOBAL.get_or_init(Pump::dedicated).clone()
    }

    /// A new pump on a new dedicated thread; it stops when the last clone is dropped and its
    /// attempts have ended.
    ///
    /// For a group of attempts that should not share the global pump's thread:
    ///
    /// ```
    /// use hb_runtime::backend::Pump;
    /// use hb_runtime::backend::AttemptRunner;
    /// use hb_runtime::testing::MemoryTransport;
    ///
    /// let pump = Pump::dedicated();
    /// let runner = AttemptRunner::new(MemoryTransport::new()).pump(pump.clone());
    /// assert_eq!(runner.pump_handle().stats(), pump.stats());
    /// assert!(format!("{pump:?}").contains("dedicated thread"));
    /// ```
    pub fn dedicated() -> Pump {
        Pump::with_scheduler("dedicated thread", |rx, stats| {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("hb-pump".into())
                .spawn(move || {
                    // All drivers: transports await network I/O on this runtime.
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot build the heartbeat pump's runtime");
                            return;
                        }
                    };
                    let _ = handle_tx.send(());
                    rt.block_on(schedule(rx, stats));
                })
                .expect("spawning the hb-pump thread");
            handle_rx
                .recv()
                .expect("the hb-pump thread could not start its runtime");
        })
    }

    /// A pump whose scheduler runs as a task on the current tokio runtime.
    ///
    /// For tests: it follows the runtime's clock, so with `tokio::time::pause()` (or
    /// `#[tokio::test(start_paused = true)]`) a 10 s heartbeat timeout plays out in
    /// milliseconds. It shares the executor with the activities, so prefer
    /// [`Pump::global`] in production. A paused clock stands still while a blocking task
    /// runs, so under one [`run_blocking`](crate::ActivityContext::run_blocking) panics
    /// rather than let a test pass without heartbeats.
    ///
    /// ```
    /// use hb_runtime::backend::Pump;
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
    /// use hb_runtime::testing::MemoryTransport;
    /// use hb_runtime::backend::TaskToken;
    /// use hb_runtime::Payload;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn nap(ctx: ActivityContext, secs: u64) -> Result<(), ActivityError> {
    ///     tokio::time::sleep(Duration::from_secs(secs)).await;
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let pump = Pump::on_current_runtime();
    /// let transport = MemoryTransport::new();
    /// let runner = AttemptRunner::new(transport.clone()).pump(pump.clone());
    /// let request = AttemptRequest::new("nap-1", TaskToken::new(*b"n1"), Payload::json(&12).unwrap());
    /// runner.start(&nap(), request).run().await.result.unwrap();
    /// // One heartbeat every 5 s (half the timeout) of the 12 s nap, in no real time.
    /// assert_eq!(pump.stats().ticks, 2);
    /// assert_eq!(transport.heartbeat_count(), 2);
    /// # }
    /// ```
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn on_current_runtime() -> Pump {
        Pump::with_scheduler(ON_RUNTIME, |rx, stats| {
            tokio::spawn(schedule(rx, stats));
        })
    }

    /// A pump whose scheduler `spawn` starts, returning the runtime it runs on.
    fn with_scheduler(
        home: &'static str,
        spawn: impl FnOnce(mpsc::UnboundedReceiver<Command>, Arc<Counters>),
    ) -> Pump {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Counters::default());
        spawn(rx, stats.clone());
        Pump {
            inner: Arc::new(PumpInner { tx, stats, home }),
        }
    }

    /// Whether the scheduler runs on the runtime that made it ([`Pump::on_current_runtime`]),
    /// following that runtime's clock.
    pub(crate) fn on_runtime(&self) -> bool {
        self.inner.home == ON_RUNTIME
    }

    /// Current figures; see the example on [`Pump`].
    pub fn stats(&self) -> PumpStats {
        PumpStats {
            active: self.inner.stats.active.load(Ordering::Relaxed),
            ticks: self.inner.stats.ticks.load(Ordering::Relaxed),
        }
    }

    /// Starts heartbeating `shared`'s attempt.
    pub(crate) fn register(&self, shared: &Arc<Shared>) {
        let _ = self.inner.tx.send(Command::Add(shared.clone()));
    }

    /// Stops heartbeating `shared`'s attempt; with `flush`, sends its last checkpoint first
    /// (the attempt's future was dropped before it could flush it itself).
    pub(crate) fn unregister(&self, shared: &Arc<Shared>, flush: bool) {
        let _ = self.inner.tx.send(Command::Remove(shared.clone()));
        if flush {
            tracing::debug!(parent: shared.span(), "attempt dropped mid-run; flushing its checkpoint from the pump");
            let _ = self.inner.tx.send(Command::Finish(shared.clone()));
        }
    }
}

async fn schedule(mut rx: mpsc::UnboundedReceiver<Command>, stats: Arc<Counters>) {
    // The registered attempts, in lanes per tick interval ordered by their last tick
    // (the key kept in the attempt's `pump_slot`): a tick moves its attempt to the back.
    let mut lanes: Lanes<Arc<Shared>> = Lanes::default();
    // Heartbeats and final flushes in flight; drained before the scheduler returns.
    let mut sends = tokio::task::JoinSet::new();
    loop {
        let next = lanes.next_due(crate::attempt::pace::slot);
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Command::Add(shared)) => {
                    let tick = crate::attempt::pace::tick(shared.info.heartbeat_interval, shared.options.ticks_per_beat);
                    let (key, _) = lanes.insert(shared.clone(), tick, tokio::time::Instant::now());
                    if key != crate::lanes::NONE {
                        shared.pump_slot.store(key, Ordering::Relaxed);
                        stats.active.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Command::Remove(shared)) => {
                    let key = shared.pump_slot.load(Ordering::Relaxed);
                    if lanes.get(key).is_some_and(|s| Arc::ptr_eq(s, &shared)) {
                        lanes.remove(key);
                        stats.active.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                Some(Command::Finish(shared)) => {
                    sends.spawn(async move {
                        crate::attempt::send::finish(&shared).await;
                    });
                }
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)), if next.is_some() => {
                let now = tokio::time::Instant::now();
                for key in lanes.due(now) {
                    let Some(shared) = lanes.get(key).cloned() else { continue };
                    lanes.touch(key, now);
                    stats.ticks.fetch_add(1, Ordering::Relaxed);
                    // Most transports answer at once (the embedded engine does): run the tick
                    // inline and make it a task only if it has to wait.
                    let mut tick = Box::pin(crate::attempt::send::beat(shared));
                    if futures_util::FutureExt::now_or_never(&mut tick).is_none() {
                        sends.spawn(tick);
                    }
                }
            }
            Some(_) = sends.join_next(), if !sends.is_empty() => {}
        }
    }
    // Every handle is gone: let the heartbeats and final flushes under way finish.
    while sends.join_next().await.is_some() {}
}
