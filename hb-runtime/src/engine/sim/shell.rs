//! The engine as the simulator runs it: the real core behind a lock, its effects applied to a
//! simulated writer inbox and deadline queue on a simulated clock, and the real transport
//! calls attempts make.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::super::clock::Clock;
use super::super::core::{Ack, Core, Effects, Timer, TimerKind, Write};
use crate::error::TransportError;
use crate::payload::Payload;
use crate::transport::{HeartbeatReply, TaskToken};

/// The engine of one simulated process.
pub(crate) struct Shell {
    pub(crate) core: Core,
    /// Writes queued for the writer, not committed yet (lost in a crash).
    pub(crate) pending: Vec<(Write, Option<Ack>)>,
    /// When the writer commits what is pending: at once for anything but heartbeats, which
    /// wait their `commit_within`.
    pub(crate) commit_by: Option<Instant>,
    /// The deadline queue, by deadline then arming order.
    pub(crate) timers: BTreeMap<(Instant, u64), Timer>,
    armed: u64,
    /// When a running attempt's heartbeat timeout may next expire.
    pub(crate) sweep_at: Option<Instant>,
    /// Invariants broken while applying effects (checked by the world after each step).
    pub(crate) problems: Vec<(&'static str, String)>,
    /// What the writes say of each activity: paused ones, and the number of the latest
    /// attempt (since the last reset).
    pub(crate) paused: HashSet<Arc<str>>,
    pub(crate) numbers: HashMap<Arc<str>, u32>,
    /// Activities whose checkpoint a reset cleared (the model forgets it).
    pub(crate) cleared: Vec<Arc<str>>,
}

impl Shell {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Shell {
            core: Core::new(clock),
            pending: Vec::new(),
            commit_by: None,
            timers: BTreeMap::new(),
            armed: 0,
            sweep_at: None,
            problems: Vec::new(),
            paused: HashSet::new(),
            numbers: HashMap::new(),
            cleared: Vec::new(),
        }
    }

    /// What the writes tracked start from after a reopen: what the core recovered.
    pub(crate) fn recovered(&mut self) {
        for l in self.core.live.values().filter(|l| l.closing.is_none()) {
            self.numbers.insert(l.id.clone(), l.number());
            if l.state == crate::client::ActivityStatus::Paused {
                self.paused.insert(l.id.clone());
            }
        }
    }

    fn now(&self) -> Instant {
        self.core.clock.now()
    }

    /// Runs `f` on the core and applies its effects (what `Inner::change` does).
    pub(crate) fn change<T>(&mut self, f: impl FnOnce(&mut Core, &mut Effects) -> T) -> T {
        let mut fx = Effects::default();
        let out = f(&mut self.core, &mut fx);
        self.apply(fx);
        out
    }

    /// Queues a write for the writer.
    pub(crate) fn queue(&mut self, write: Write, ack: Option<Ack>) {
        if let Write::Insert(row) = &write {
            // A new activity (its id may be one pruned): numbered from its first attempt.
            self.numbers.remove(&row.id);
            self.paused.remove(&row.id);
        }
        let now = self.now();
        let by = match &write {
            Write::Heartbeat { commit_within, .. } if ack.is_none() => {
                super::super::clock::later(now, *commit_within)
            }
            _ => now,
        };
        self.commit_by = Some(self.commit_by.map_or(by, |c| c.min(by)));
        self.pending.push((write, ack));
    }

    fn apply(&mut self, fx: Effects) {
        let now = self.now();
        for id in fx.forget {
            self.timers.retain(|_, t| t.id != id);
        }
        for (timer, at) in fx.timers {
            self.check_timer(&timer, at);
            let (timer, at) = super::super::timers::capped(now, timer, at);
            self.armed += 1;
            self.timers.insert((at, self.armed), timer);
        }
        if let Some(at) = fx.sweep {
            self.sweep_at = Some(self.sweep_at.map_or(at, |s| s.min(at)));
        }
        for (write, ack) in fx.writes {
            self.check_write(&write);
            self.queue(write, ack);
        }
        for (handle, reason) in fx.cancels {
            handle.cancel(reason);
        }
        for (waiter, closed) in fx.answers {
            let _ = waiter.send(closed);
        }
        for (reply, result) in fx.replies {
            let _ = reply.send(result);
        }
        debug_assert!(fx.unsent.is_empty(), "the simulated writer never stops");
    }

    /// A timer is never armed later than its own duration from now: a deadline computed from
    /// a stored time that lies in the future (a clock that stepped back) would wait for the
    /// wall clock to catch up, and an overflowing one would never come.
    fn check_timer(&mut self, timer: &Timer, at: Instant) {
        let Some(live) = self.core.live.get(&timer.id) else {
            return;
        };
        let o = &live.options;
        let slack = Duration::from_millis(1);
        let limit = match timer.kind {
            TimerKind::Heartbeat => o
                .heartbeat_timeout()
                .into_iter()
                .chain(o.start_to_close())
                .max()
                .unwrap_or(Duration::ZERO),
            TimerKind::StartToClose => o.start_to_close().unwrap_or(Duration::ZERO),
            TimerKind::ScheduleToClose => o.schedule_to_close().unwrap_or(Duration::ZERO),
            TimerKind::Retry => o.retry_delay(timer.attempt.max(1)),
            TimerKind::StoreClosing | TimerKind::StoreCheckpoint => Duration::from_secs(60),
        };
        let now = self.now();
        let latest = super::super::clock::later(now, limit + slack);
        if at > latest {
            self.problems.push((
                "timer-too-late",
                format!(
                    "{:?} timer of {} (attempt {}) armed {:?} ahead, beyond its {:?}",
                    timer.kind,
                    timer.id,
                    timer.attempt,
                    at.saturating_duration_since(now),
                    limit
                ),
            ));
        }
    }

    /// Stored times are never negative, nor a retry due before now; no attempt starts while
    /// its activity is paused; attempts are numbered 1, 2, ... from the start and again from
    /// each reset.
    fn check_write(&mut self, write: &Write) {
        use crate::client::ActivityStatus;
        match write {
            Write::Started { id, attempt, .. } => {
                if self.paused.contains(id) {
                    self.problems.push((
                        "started-while-paused",
                        format!("attempt {attempt} of {id} started while it is paused"),
                    ));
                }
                if let Some(last) = self.numbers.get(id)
                    && *attempt != last + 1
                {
                    self.problems.push((
                        "attempt-number",
                        format!("{id}: attempt {attempt} started after attempt {last}"),
                    ));
                }
                self.numbers.insert(id.clone(), *attempt);
            }
            Write::Transition {
                id,
                state,
                attempt,
                clear_details,
                closed_at,
                ..
            } => {
                if *state == ActivityStatus::Paused {
                    self.paused.insert(id.clone());
                } else {
                    self.paused.remove(id);
                }
                // Only a reset changes the number, to 0 (the next attempt is 1).
                if let Some(last) = self.numbers.get(id)
                    && *attempt != *last
                    && *attempt != 0
                {
                    self.problems.push((
                        "attempt-number",
                        format!("{id}: a change of state made attempt {last} attempt {attempt}"),
                    ));
                }
                if closed_at.is_some() {
                    self.numbers.remove(id);
                } else {
                    self.numbers.insert(id.clone(), *attempt);
                }
                if *clear_details {
                    self.cleared.push(id.clone());
                }
            }
            _ => {}
        }
        let wall = self.core.clock.wall_ms();
        if let Write::Transition {
            id,
            next_attempt_at: Some(at),
            ..
        } = write
            && *at < wall
        {
            self.problems.push((
                "stored-time",
                format!("{id}: next attempt stored at {at} ms, before now ({wall} ms)"),
            ));
        }
    }
}

/// The shell behind a lock: what the simulated attempts' transport and the world share.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<Mutex<Shell>>);

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shell> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl super::super::transport::Shell for Shared {
    fn change<T>(&self, f: impl FnOnce(&mut Core, &mut Effects) -> T) -> T {
        self.lock().change(f)
    }

    fn heartbeat(
        &self,
        token: &TaskToken,
        details: Option<&Payload>,
    ) -> Result<HeartbeatReply, TransportError> {
        // What `Inner::heartbeat` does: the core's answer, its write queued.
        let mut shell = self.lock();
        shell.core.heartbeat(token, details).map(|(reply, write)| {
            if let Some(w) = write {
                shell.queue(w, None);
            }
            reply
        })
    }

    fn checkpoint_interval(&self) -> Duration {
        crate::engine::DEFAULT_CHECKPOINT_INTERVAL
    }
}
