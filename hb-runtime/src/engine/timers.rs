//! The engine's one deadline queue, on its own thread (`hb-timers`): it fires the core's
//! timers (start-to-close and schedule-to-close timeouts, retry backoffs, retries of failed
//! closing writes) and sweeps the running attempts' heartbeat timeouts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::time::delay_queue::Key;

use super::Inner;
use super::core::{Timer, TimerKind};

/// What the deadline queue is told.
#[derive(Debug)]
pub(crate) enum TimerCommand {
    /// Fire `Timer` at the instant.
    Arm(Timer, Instant),
    /// The activity closed: drop its pending timers (a long start-to-close or schedule-to-close
    /// timeout would otherwise hold memory until its deadline).
    Forget(Arc<str>),
    /// A running attempt's heartbeat timeout may expire at this instant: look then.
    SweepAt(Instant),
}

/// The furthest a timer is armed ahead (tokio-util's delay queue refuses deadlines about two
/// years out); a later deadline is re-armed each time this much has passed.
pub(crate) const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

/// `timer` armed at `at`, as a queue that cannot wait past [`MAX_TIMER`] from `now` keeps
/// it: a later deadline fires at the cap carrying its real one (`due`), and the core re-arms
/// it then (see `Core::on_timer`).
pub(crate) fn capped(now: Instant, timer: Timer, at: Instant) -> (Timer, Instant) {
    let cap = super::clock::later(now, MAX_TIMER);
    if at > cap {
        (
            Timer {
                due: Some(at),
                ..timer
            },
            cap,
        )
    } else {
        (timer, at)
    }
}

/// Starts the engine's one deadline queue on its own thread, `hb-timers`, so timeouts fire on
/// time even when activity bodies keep the runtime the engine was opened on busy. The thread
/// ends when the engine is dropped.
pub(crate) fn spawn(
    weak: Weak<Inner>,
    rx: mpsc::UnboundedReceiver<TimerCommand>,
    pending: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    std::thread::Builder::new()
        .name("hb-timers".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("building the hb engine timer runtime")
                .block_on(run(weak, rx, pending, stop));
        })
        .expect("spawning the hb engine timer thread");
}

/// How long the deadline queue lets commands gather after taking some (see `run`). A timer
/// armed meanwhile fires at most this late if its deadline is that close.
const COMMAND_BATCHING: Duration = Duration::from_millis(1);

/// Heartbeat deadlines are rounded up to this step, so that thousands of activities wake the
/// deadline queue a few hundred times a second at most; a dead attempt is still detected
/// within `heartbeat_timeout` + 2 ms (plus the queue's own millisecond).
const HEARTBEAT_TIMER_STEP: Duration = Duration::from_millis(2);

/// `at` rounded up to the next [`HEARTBEAT_TIMER_STEP`] from `epoch`.
fn round_up(epoch: Instant, at: Instant) -> Instant {
    let step = HEARTBEAT_TIMER_STEP.as_nanos();
    let since = at.saturating_duration_since(epoch).as_nanos();
    let rounded = since.div_ceil(step) * step;
    super::clock::later(
        epoch,
        Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX)),
    )
}

/// The timers of every open activity, by deadline, and which are pending for each activity
/// (to drop them when it closes).
struct Deadlines {
    queue: tokio_util::time::DelayQueue<Timer>,
    keys: foldhash::HashMap<Arc<str>, Vec<Key>>,
    /// What heartbeat deadlines are rounded from.
    epoch: Instant,
}

impl Deadlines {
    fn new() -> Self {
        Deadlines {
            queue: tokio_util::time::DelayQueue::new(),
            keys: foldhash::HashMap::default(),
            epoch: Instant::now(),
        }
    }

    /// Queues `timer` at `at` (a heartbeat deadline rounded up to the step; a far deadline
    /// capped) and returns its key.
    fn insert(
        queue: &mut tokio_util::time::DelayQueue<Timer>,
        epoch: Instant,
        timer: Timer,
        mut at: Instant,
    ) -> Key {
        if timer.kind == TimerKind::Heartbeat {
            at = round_up(epoch, at);
        }
        let (timer, at) = capped(Instant::now(), timer, at);
        queue.insert_at(timer, at)
    }

    fn arm(&mut self, timer: Timer, at: Instant) {
        let id = timer.id.clone();
        let key = Self::insert(&mut self.queue, self.epoch, timer, at);
        self.keys.entry(id).or_default().push(key);
    }

    fn forget(&mut self, id: &str) {
        for key in self.keys.remove(id).unwrap_or_default() {
            self.queue.try_remove(&key);
        }
    }

    /// The next timer due, waiting for it, with its key (still listed as pending).
    async fn next(&mut self) -> Option<(Timer, Key)> {
        let expired = futures_util::future::poll_fn(|cx| self.queue.poll_expired(cx)).await?;
        let key = expired.key();
        Some((expired.into_inner(), key))
    }

    /// `key` of activity `id` fired and the core answered with `rearmed`. The common case, a
    /// heartbeat timer re-armed for the same activity, takes one lookup.
    fn fired(&mut self, id: &Arc<str>, key: Key, rearmed: Vec<(Timer, Instant)>) {
        let mut others = Vec::new();
        match self.keys.get_mut(id) {
            Some(pending) => {
                pending.retain(|k| *k != key);
                for (timer, at) in rearmed {
                    if timer.id == *id {
                        pending.push(Self::insert(&mut self.queue, self.epoch, timer, at));
                    } else {
                        others.push((timer, at));
                    }
                }
                if pending.is_empty() {
                    self.keys.remove(id);
                }
            }
            None => others = rearmed,
        }
        for (timer, at) in others {
            self.arm(timer, at);
        }
    }
}

/// The deadline queue: fires timers into the core.
async fn run(
    weak: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<TimerCommand>,
    pending: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut deadlines = Deadlines::new();
    // After a burst of commands, the next ones are taken a moment later, all at once: under
    // load (tens of thousands of starts a second, each arming a timer) the thread wakes a
    // thousand times a second instead of once per command. Due timers fire meanwhile.
    let mut listen_at: Option<Instant> = None;
    // When a running attempt's heartbeat timeout may next expire (see `Core::sweep`).
    let mut sweep_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            cmd = rx.recv(), if listen_at.is_none() => {
                let Some(cmd) = cmd else { break };
                let mut next = Some(cmd);
                while let Some(cmd) = next {
                    match cmd {
                        TimerCommand::Arm(timer, at) => deadlines.arm(timer, at),
                        TimerCommand::Forget(id) => deadlines.forget(&id),
                        TimerCommand::SweepAt(at) => {
                            sweep_at = Some(sweep_at.map_or(at, |s: Instant| s.min(at)));
                        }
                    }
                    next = rx.try_recv().ok();
                }
                listen_at = Some(Instant::now() + COMMAND_BATCHING);
            },
            _ = tokio::time::sleep_until(listen_at.unwrap_or_else(Instant::now)), if listen_at.is_some() => {
                listen_at = None;
            },
            _ = tokio::time::sleep_until(sweep_at.map_or_else(Instant::now, |at| round_up(deadlines.epoch, at))), if sweep_at.is_some() => {
                let Some(inner) = weak.upgrade() else { break };
                sweep_at = inner.change(|core, fx| {
                    let now = core.clock.now();
                    let next = core.sweep(now, fx);
                    for (timer, at) in fx.timers.drain(..) {
                        deadlines.arm(timer, at);
                    }
                    next
                });
            },
            Some(first) = deadlines.next(), if !deadlines.queue.is_empty() => {
                let Some(inner) = weak.upgrade() else { break };
                // Every timer due now, under one lock: thousands of heartbeat timers come due
                // in the same few milliseconds.
                let mut due = vec![first];
                while let Some(Some(more)) = deadlines.next().now_or_never() {
                    due.push(more);
                }
                inner.change(|core, fx| {
                    for (timer, key) in due {
                        core.on_timer(&timer, fx);
                        // Re-armed timers (most often: a heartbeat came since this one was
                        // armed) go straight back into the queue.
                        deadlines.fired(&timer.id, key, std::mem::take(&mut fx.timers));
                    }
                });
            }
        }
        pending.store(deadlines.queue.len() as u64, Ordering::Relaxed);
    }
}
