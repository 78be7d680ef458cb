//! The engine's in-memory state machine: every open activity, the ready queues, timeouts and
//! retries. Durable state is written through the store's writer; waiters of a closed activity
//! are answered only once its closing write is committed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

use futures_util::FutureExt as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::record::{ActivityFailure, ActivityRow, ActivityState, StoredOptions, TimeoutKind};
use super::silence::{self, Silence};
use super::store::Write;
use super::Inner;
use crate::error::{ActivityError, CancelReason, TransportError, TransportErrorKind};
use bytes::Bytes;

use crate::payload::Payload;
use crate::runner::AttemptHandle;
use crate::transport::{HeartbeatReply, TaskToken};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The wall-clock time in ms of a tokio instant (to the millisecond).
pub(crate) fn ms_of(instant: Instant) -> i64 {
    let now = Instant::now();
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if instant <= now {
        now_ms().saturating_sub(ms(now - instant))
    } else {
        now_ms().saturating_add(ms(instant - now))
    }
}

/// The tokio instant of a past (or future) wall-clock time in ms.
pub(crate) fn instant_of(ms: i64) -> Instant {
    let now = Instant::now();
    let delta = ms.saturating_sub(now_ms());
    if delta >= 0 {
        let far = Duration::from_secs(100 * 365 * 24 * 3600);
        now.checked_add(Duration::from_millis(delta as u64).min(far))
            .unwrap_or(now)
    } else {
        now.checked_sub(Duration::from_millis(delta.unsigned_abs()))
            .unwrap_or(now)
    }
}

/// The furthest a timer is armed ahead (tokio-util's delay queue refuses deadlines about two
/// years out); a later deadline is re-armed each time this much has passed.
const MAX_TIMER_MS: u64 = 24 * 3600 * 1000;

/// The task token of attempt `attempt` of `id`.
pub(crate) fn token_of(id: &str, attempt: u32) -> TaskToken {
    TaskToken::new(format!("{id}#{attempt}"))
}

/// Splits a task token into the activity id and the attempt.
pub(crate) fn parse_token(token: &TaskToken) -> Option<(&str, u32)> {
    let s = std::str::from_utf8(token.as_bytes()).ok()?;
    let (id, attempt) = s.rsplit_once('#')?;
    Some((id, attempt.parse().ok()?))
}

/// The longest wait between two tries of a closing write that keeps failing.
const CLOSING_RETRY_MAX: Duration = Duration::from_secs(60);

/// The write that closes `live` as `closed` (answered through `Inner::on_closed_committed`);
/// `fold`: a heartbeat of it may sit in the `heartbeats` table.
fn closing_write(live: &Live, closed: &Closed, fold: bool) -> Write {
    Write::Transition {
        fold,
        id: live.id.clone(),
        state: closed.state,
        attempt: live.attempt,
        details: live.details(),
        output: closed.output.clone(),
        failure: closed.failure.as_ref().map(ActivityFailure::to_json),
        next_attempt_at: None,
        closed_at: Some(now_ms()),
    }
}

/// The senders of `result()` calls waiting on an activity.
pub(crate) type Waiters = Option<Box<Vec<oneshot::Sender<Closed>>>>;

/// How a closed activity ended.
#[derive(Debug, Clone)]
pub(crate) struct Closed {
    pub(crate) state: ActivityState,
    pub(crate) output: Option<Payload>,
    pub(crate) failure: Option<ActivityFailure>,
}

/// An activity not yet closed.
pub(crate) struct Live {
    pub(crate) id: Arc<str>,
    /// Shared by the open activities of one type (interned by `Core::admit`).
    pub(crate) activity_type: Arc<str>,
    pub(crate) state: ActivityState,
    /// The latest attempt started (0 before the first).
    pub(crate) attempt: u32,
    /// Its input and last checkpoint as JSON (what the file keeps; see [`Live::input`] and
    /// [`Live::details`]).
    input: Bytes,
    details: Option<Bytes>,
    /// Shared by the open activities of one type with the same options (see `Core::admit`).
    pub(crate) options: Arc<StoredOptions>,
    pub(crate) scheduled_at: i64,
    pub(crate) started: Option<Instant>,
    pub(crate) last_heartbeat: Option<Instant>,
    pub(crate) next_attempt_ms: Option<i64>,
    pub(crate) cancel_requested: bool,
    /// How many times the closing write failed (it is retried with backoff).
    pub(crate) closing_failures: u8,
    /// Its running attempt's place among the watched heartbeat timeouts (`silence::NONE`: not
    /// watched).
    pub(crate) silence: u32,
    /// A heartbeat of this activity may sit in the file's `heartbeats` table: the next state
    /// change folds it into the activity's row (no-op activities never heartbeat, and their
    /// state changes skip that work).
    pub(crate) heartbeat_row: bool,
    pub(crate) handle: Option<AttemptHandle>,
    /// The worker running `handle`'s attempt (0: none).
    pub(crate) worker: u32,
    /// Boxed, like `closing`: rare, and every open activity carries the field.
    pub(crate) last_failure: Option<Box<ActivityFailure>>,
    /// Set once the closing write is queued; the entry goes when it is committed.
    pub(crate) closing: Option<Box<Closed>>,
    /// Who awaits its result (boxed: most activities have none, and every open one carries
    /// the field).
    pub(crate) waiters: Waiters,
}

impl Live {
    /// Its input (a `json/plain` payload sharing the bytes).
    pub(crate) fn input(&self) -> Payload {
        Payload::from_json_shared(self.input.clone())
    }

    /// Its last checkpoint (a `json/plain` payload sharing the bytes).
    pub(crate) fn details(&self) -> Option<Payload> {
        self.details.clone().map(Payload::from_json_shared)
    }

    /// Keeps `details`' data as the last checkpoint. The engine keeps details as JSON, as its
    /// file does: a payload's metadata is not kept.
    pub(crate) fn set_details(&mut self, details: &Payload) {
        self.details = Some(details.shared_data().clone());
    }

    pub(crate) fn from_row(row: ActivityRow) -> Self {
        let options = serde_json::from_str(&row.options).unwrap_or_else(|e| {
            tracing::warn!(id = %row.id, error = %e, "unreadable stored options; using defaults");
            StoredOptions::from_options(&crate::ActivityOptions::new())
        });
        Live {
            id: row.id,
            activity_type: Arc::from(row.activity_type),
            state: row.state,
            attempt: row.attempt,
            input: Bytes::from(row.input),
            details: row.details.map(Bytes::from),
            options: Arc::new(options),
            scheduled_at: row.scheduled_at,
            started: row.attempt_started_at.map(instant_of),
            last_heartbeat: row.last_heartbeat_at.map(instant_of),
            next_attempt_ms: row.next_attempt_at,
            cancel_requested: row.cancel_requested,
            closing_failures: 0,
            // Recovered from the file: it may have one.
            heartbeat_row: true,
            silence: silence::NONE,
            worker: 0,
            handle: None,
            last_failure: row
                .failure
                .as_deref()
                .and_then(ActivityFailure::from_json)
                .map(Box::new),
            closing: None,
            waiters: None,
        }
    }

    fn is_current(&self, attempt: u32) -> bool {
        self.closing.is_none() && self.state == ActivityState::Running && self.attempt == attempt
    }
}

/// A timer of the engine's one deadline queue.
#[derive(Debug, Clone)]
pub(crate) struct Timer {
    pub(crate) id: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) kind: TimerKind,
    /// Set when the deadline was beyond what one timer can wait: re-armed until then.
    pub(crate) due: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    Heartbeat,
    StartToClose,
    ScheduleToClose,
    Retry,
    /// Retry of a closing write that failed.
    StoreClosing,
}

/// An attempt handed to a worker.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) id: Arc<str>,
    pub(crate) activity_type: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) token: TaskToken,
    pub(crate) input: Payload,
    pub(crate) details: Option<Payload>,
    pub(crate) options: Arc<StoredOptions>,
    pub(crate) deadline: Option<SystemTime>,
}

/// The mutable state behind the engine's lock.
#[derive(Default)]
pub(crate) struct Core {
    /// The options of the latest activity admitted per type, to share with the next one.
    options: HashMap<Arc<str>, Arc<StoredOptions>>,
    pub(crate) live: super::live_map::LiveMap,
    pub(crate) ready: HashMap<Arc<str>, VecDeque<Arc<str>>>,
    /// The heartbeat timeouts of running attempts.
    silence: Silence,
}

/// What the core asks for after a change, done once the lock is released.
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) writes: Vec<Write>,
    pub(crate) timers: Vec<(Timer, Instant)>,
    /// Activities whose timers can go (they closed).
    pub(crate) forget: Vec<Arc<str>>,
    pub(crate) cancels: Vec<(AttemptHandle, CancelReason)>,
    pub(crate) closed: Vec<Arc<str>>,
    pub(crate) ready: bool,
    /// Acknowledgements of writes the writer could not take (it has stopped).
    pub(crate) unsent: Vec<super::store::Ack>,
    /// A queued write asks the writer to commit soon.
    pub(crate) wake_writer: bool,
    /// A heartbeat deadline the deadline queue may sleep past.
    pub(crate) sweep: Option<Instant>,
}

impl Core {
    fn push_ready(&mut self, live: &Live, fx: &mut Effects) {
        self.ready
            .entry(live.activity_type.clone())
            .or_default()
            .push_back(live.id.clone());
        fx.ready = true;
    }

    /// Adds an activity (new or recovered) and arms its timers.
    pub(crate) fn admit(&mut self, mut live: Live, fx: &mut Effects) {
        match self.options.get_key_value(&*live.activity_type) {
            Some((name, shared)) => {
                live.activity_type = name.clone();
                if **shared == *live.options {
                    live.options = shared.clone();
                } else {
                    self.options
                        .insert(live.activity_type.clone(), live.options.clone());
                }
            }
            None => {
                self.options
                    .insert(live.activity_type.clone(), live.options.clone());
            }
        }
        let now = Instant::now();
        if let Some(stc) = live.options.schedule_to_close() {
            fx.timers.push((
                Timer {
                    id: live.id.clone(),
                    attempt: 0,
                    kind: TimerKind::ScheduleToClose,
                    due: None,
                },
                instant_of(live.scheduled_at) + stc,
            ));
        }
        match live.state {
            ActivityState::Scheduled => self.push_ready(&live, fx),
            ActivityState::BackingOff => fx.timers.push((
                Timer {
                    id: live.id.clone(),
                    attempt: live.attempt,
                    kind: TimerKind::Retry,
                    due: None,
                },
                live.next_attempt_ms.map_or(now, instant_of),
            )),
            ActivityState::Running => {
                // Recovered: the process that ran this attempt is gone. It times out from its
                // last heartbeat as if it had simply stopped heartbeating.
                let since = live.last_heartbeat.or(live.started).unwrap_or(now);
                let ht = live.options.heartbeat_timeout();
                let stc = live.options.start_to_close();
                if ht.is_none() && stc.is_none() {
                    live.started = Some(now);
                }
                fx.timers.push((
                    Timer {
                        id: live.id.clone(),
                        attempt: live.attempt,
                        kind: TimerKind::Heartbeat,
                        due: None,
                    },
                    since + ht.or(stc).unwrap_or(Duration::ZERO),
                ));
            }
            _ => return,
        }
        self.live.insert(Box::new(live));
    }

    /// Takes the next ready attempt of one of `types`, marking it running.
    pub(crate) fn take(&mut self, types: &[&str], fx: &mut Effects) -> Option<Task> {
        for t in types {
            let Some(queue) = self.ready.get_mut(*t) else {
                continue;
            };
            while let Some(id) = queue.pop_front() {
                let Some(live) = self.live.get_mut(&id) else {
                    continue;
                };
                if live.state != ActivityState::Scheduled || live.closing.is_some() {
                    continue;
                }
                let now = Instant::now();
                let now_ms = now_ms();
                live.attempt = live.attempt.saturating_add(1);
                // The previous attempt's handle must not receive this attempt's cancels.
                live.handle = None;
                live.state = ActivityState::Running;
                live.started = Some(now);
                live.last_heartbeat = None;
                fx.writes.push(Write::Started {
                    fold: std::mem::take(&mut live.heartbeat_row),
                    id: id.clone(),
                    attempt: live.attempt,
                    at: now_ms,
                });
                let mut deadline = None;
                if let Some(stc) = live.options.start_to_close() {
                    fx.timers.push((
                        Timer {
                            id: id.clone(),
                            attempt: live.attempt,
                            kind: TimerKind::StartToClose,
                            due: None,
                        },
                        now + stc,
                    ));
                    deadline = Some(SystemTime::now() + stc);
                }
                if let Some(ht) = live.options.heartbeat_timeout() {
                    self.silence.unwatch(live.silence, &live.id);
                    let (node, front) = self.silence.watch(live.id.clone(), live.attempt, ht, now);
                    live.silence = node;
                    if let Some(at) = front {
                        fx.sweep = Some(fx.sweep.map_or(at, |s| s.min(at)));
                    }
                }
                return Some(Task {
                    id: id.clone(),
                    activity_type: live.activity_type.clone(),
                    attempt: live.attempt,
                    token: token_of(&id, live.attempt),
                    input: live.input(),
                    details: live.details(),
                    options: live.options.clone(),
                    deadline,
                });
            }
        }
        None
    }

    /// A heartbeat of attempt `token`: the reply, and the write to queue (see
    /// [`Inner::heartbeat`](super::Inner::heartbeat): a heartbeat has no other effect).
    pub(crate) fn heartbeat(
        &mut self,
        token: &TaskToken,
        details: Option<&Payload>,
    ) -> Result<(HeartbeatReply, Option<Write>), TransportError> {
        let (id, attempt) = parse_token(token).ok_or_else(|| {
            TransportError::new(TransportErrorKind::NotFound, "not an engine task token")
        })?;
        let Some(live) = self.live.get_mut(id) else {
            return Ok((HeartbeatReply::not_found(), None));
        };
        if !live.is_current(attempt) {
            // The last word of an attempt the engine already timed out (its final flush): the
            // retry, not started yet, resumes from it.
            let awaiting_retry = matches!(
                live.state,
                ActivityState::BackingOff | ActivityState::Scheduled
            );
            let mut write = None;
            if live.attempt == attempt && live.closing.is_none() && awaiting_retry {
                if let Some(d) = details {
                    live.set_details(d);
                    live.heartbeat_row = true;
                    write = Some(Write::Heartbeat {
                        id: live.id.clone(),
                        details: Some(d.clone()),
                        at: now_ms(),
                        commit_within: live.options.heartbeat_commit_within(),
                    });
                }
            }
            let reply = if live.attempt == attempt {
                HeartbeatReply::timed_out()
            } else {
                HeartbeatReply::not_found()
            };
            return Ok((reply, write));
        }
        let now_ms = now_ms();
        let now = Instant::now();
        live.last_heartbeat = Some(now);
        self.silence.touch(live.silence, &live.id, now);
        if let Some(d) = details {
            live.set_details(d);
        }
        live.heartbeat_row = true;
        let write = Write::Heartbeat {
            id: live.id.clone(),
            details: details.cloned(),
            at: now_ms,
            commit_within: live.options.heartbeat_commit_within(),
        };
        let reply = if live.cancel_requested {
            HeartbeatReply::cancel()
        } else {
            HeartbeatReply::ok()
        };
        Ok((reply, Some(write)))
    }

    /// Closes activity `id` for good.
    fn close(&mut self, id: &Arc<str>, closed: Closed, fx: &mut Effects) {
        let Some(live) = self.live.get_mut(id) else {
            return;
        };
        live.handle = None;
        self.silence.unwatch(
            std::mem::replace(&mut live.silence, silence::NONE),
            &live.id,
        );
        live.state = closed.state;
        fx.forget.push(id.clone());
        let fold = std::mem::take(&mut live.heartbeat_row);
        fx.writes.push(closing_write(live, &closed, fold));
        live.closing = Some(Box::new(closed));
        fx.closed.push(id.clone());
    }

    /// The closing write of `id` failed: its waiters (to answer with the error), and when the
    /// write is retried (the retry timer is armed).
    pub(crate) fn closing_write_failed(
        &mut self,
        id: &Arc<str>,
        fx: &mut Effects,
    ) -> Option<(ActivityState, Duration, Waiters)> {
        let live = self.live.get_mut(id)?;
        live.closing.as_ref()?;
        let retry_in =
            Duration::from_secs(1 << live.closing_failures.min(6)).min(CLOSING_RETRY_MAX);
        live.closing_failures = live.closing_failures.saturating_add(1);
        fx.timers.push((
            Timer {
                id: live.id.clone(),
                attempt: live.attempt,
                kind: TimerKind::StoreClosing,
                due: None,
            },
            Instant::now() + retry_in,
        ));
        Some((live.state, retry_in, std::mem::take(&mut live.waiters)))
    }

    /// Attempt `attempt` completed with `output`.
    pub(crate) fn complete(
        &mut self,
        id: &str,
        attempt: u32,
        output: Payload,
        fx: &mut Effects,
    ) -> bool {
        let Some(live) = self.live.get(id) else {
            return false;
        };
        if !live.is_current(attempt) {
            return false;
        }
        let id = live.id.clone();
        self.close(
            &id,
            Closed {
                state: ActivityState::Completed,
                output: Some(output),
                failure: None,
            },
            fx,
        );
        true
    }

    /// The activity attempt `attempt` reports about, if that attempt is still the current one;
    /// its last checkpoint (if it sent one) becomes the activity's.
    fn reporting(&mut self, id: &str, attempt: u32, details: Option<Payload>) -> Option<&mut Live> {
        let live = self.live.get_mut(id)?;
        if !live.is_current(attempt) {
            return None;
        }
        if let Some(d) = &details {
            live.set_details(d);
        }
        Some(live)
    }

    /// Attempt `attempt` stopped after a cancel request.
    pub(crate) fn cancelled(
        &mut self,
        id: &str,
        attempt: u32,
        details: Option<Payload>,
        fx: &mut Effects,
    ) -> bool {
        let Some(live) = self.reporting(id, attempt, details) else {
            return false;
        };
        let id = live.id.clone();
        let details = live.details();
        self.close(
            &id,
            Closed {
                state: ActivityState::Cancelled,
                output: None,
                failure: Some(ActivityFailure::Cancelled { details }),
            },
            fx,
        );
        true
    }

    /// Attempt `attempt` failed: retry it or close the activity.
    pub(crate) fn failed(
        &mut self,
        id: &str,
        attempt: u32,
        error: &ActivityError,
        details: Option<Payload>,
        fx: &mut Effects,
    ) -> bool {
        let Some(live) = self.reporting(id, attempt, details) else {
            return false;
        };
        let failure = ActivityFailure::from_attempt(error, live.details());
        // A worker shutting down is not the activity's fault: retry at once.
        let immediate = matches!(
            error,
            ActivityError::Cancelled {
                reason: CancelReason::WorkerShutdown | CancelReason::Paused,
                ..
            }
        );
        let id = live.id.clone();
        self.attempt_failed(&id, failure, error.is_retryable(), immediate, fx);
        true
    }

    /// Decides between a retry and the end, after the current attempt failed.
    fn attempt_failed(
        &mut self,
        id: &Arc<str>,
        failure: ActivityFailure,
        retryable: bool,
        immediate: bool,
        fx: &mut Effects,
    ) {
        let Some(live) = self.live.get_mut(id) else {
            return;
        };
        live.handle = None;
        self.silence.unwatch(
            std::mem::replace(&mut live.silence, silence::NONE),
            &live.id,
        );
        if live.cancel_requested {
            // Cancelled meanwhile: however the attempt ended, the activity ends as cancelled.
            let details = live.details();
            self.close(
                id,
                Closed {
                    state: ActivityState::Cancelled,
                    output: None,
                    failure: Some(ActivityFailure::Cancelled { details }),
                },
                fx,
            );
            return;
        }
        let error_type = match &failure {
            ActivityFailure::Application { error_type, .. } => error_type.as_str(),
            ActivityFailure::Timeout { .. } => "Timeout",
            _ => "Error",
        };
        let attempts_left = live.options.may_retry(live.attempt, error_type);
        let delay = if immediate {
            Duration::ZERO
        } else {
            live.options.retry_delay(live.attempt)
        };
        let next_ms = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let before_deadline = live.options.schedule_to_close_ms.is_none_or(|s2c| {
            next_ms
                < live
                    .scheduled_at
                    .saturating_add(i64::try_from(s2c).unwrap_or(i64::MAX))
        });
        if retryable && attempts_left && before_deadline && delay.is_zero() {
            // Retried at once (worker shutdown, or a zero interval): ready again now.
            live.state = ActivityState::Scheduled;
            live.next_attempt_ms = None;
            live.last_failure = Some(Box::new(failure.clone()));
            fx.writes.push(Write::Transition {
                fold: std::mem::take(&mut live.heartbeat_row),
                id: id.clone(),
                state: ActivityState::Scheduled,
                attempt: live.attempt,
                details: live.details(),
                output: None,
                failure: Some(failure.to_json()),
                next_attempt_at: None,
                closed_at: None,
            });
            let key = (live.activity_type.clone(), live.id.clone());
            self.ready.entry(key.0).or_default().push_back(key.1);
            fx.ready = true;
            tracing::info!(activity_id = %id, attempt = live.attempt, %failure, "attempt failed; retrying now");
            return;
        }
        if retryable && attempts_left && before_deadline {
            live.state = ActivityState::BackingOff;
            live.next_attempt_ms = Some(next_ms);
            live.last_failure = Some(Box::new(failure.clone()));
            fx.writes.push(Write::Transition {
                fold: std::mem::take(&mut live.heartbeat_row),
                id: id.clone(),
                state: ActivityState::BackingOff,
                attempt: live.attempt,
                details: live.details(),
                output: None,
                failure: Some(failure.to_json()),
                next_attempt_at: Some(next_ms),
                closed_at: None,
            });
            fx.timers.push((
                Timer {
                    id: id.clone(),
                    attempt: live.attempt,
                    kind: TimerKind::Retry,
                    due: None,
                },
                Instant::now() + delay,
            ));
            tracing::info!(activity_id = %id, attempt = live.attempt, ?delay, %failure, "attempt failed; retrying");
            return;
        }
        let state = if matches!(failure, ActivityFailure::Timeout { .. }) {
            ActivityState::TimedOut
        } else {
            ActivityState::Failed
        };
        let failure = if retryable && !attempts_left && live.attempt > 1 {
            ActivityFailure::RetriesExhausted {
                attempts: live.attempt,
                last: Box::new(failure),
            }
        } else {
            failure
        };
        tracing::info!(activity_id = %id, attempt = live.attempt, %failure, "activity failed");
        self.close(
            id,
            Closed {
                state,
                output: None,
                failure: Some(failure),
            },
            fx,
        );
    }

    /// A timer fired.
    pub(crate) fn on_timer(&mut self, t: &Timer, fx: &mut Effects) {
        if let Some(due) = t.due {
            if Instant::now() < due {
                fx.timers.push((
                    Timer {
                        due: None,
                        ..t.clone()
                    },
                    due,
                ));
                return;
            }
        }
        let Some(live) = self.live.get_mut(&t.id) else {
            return;
        };
        if let Some(closed) = &live.closing {
            if t.kind == TimerKind::StoreClosing {
                // The failed write's fold was not stored either.
                fx.writes.push(closing_write(live, closed, true));
                fx.closed.push(live.id.clone());
            }
            return;
        }
        match t.kind {
            TimerKind::Heartbeat | TimerKind::StartToClose => {
                if !live.is_current(t.attempt) {
                    return;
                }
                let now = Instant::now();
                let kind = if t.kind == TimerKind::Heartbeat {
                    if let (Some(ht), Some(since)) = (
                        live.options.heartbeat_timeout(),
                        live.last_heartbeat.or(live.started),
                    ) {
                        let deadline = since + ht;
                        if now < deadline {
                            // A heartbeat arrived since the timer was armed: re-arm at the
                            // new deadline instead of resetting on every heartbeat.
                            fx.timers.push((t.clone(), deadline));
                            return;
                        }
                    }
                    if live.options.heartbeat_timeout().is_some() {
                        TimeoutKind::Heartbeat
                    } else {
                        TimeoutKind::StartToClose
                    }
                } else {
                    TimeoutKind::StartToClose
                };
                if let Some(h) = live.handle.take() {
                    fx.cancels.push((h, CancelReason::TimedOut));
                }
                let failure = ActivityFailure::Timeout {
                    kind,
                    last_details: live.details(),
                };
                tracing::warn!(activity_id = %t.id, attempt = t.attempt, %kind, "attempt timed out");
                let id = t.id.clone();
                self.attempt_failed(&id, failure, true, false, fx);
            }
            TimerKind::ScheduleToClose => {
                if let Some(h) = live.handle.take() {
                    fx.cancels.push((h, CancelReason::TimedOut));
                }
                let failure = ActivityFailure::Timeout {
                    kind: TimeoutKind::ScheduleToClose,
                    last_details: live.details(),
                };
                let id = t.id.clone();
                self.close(
                    &id,
                    Closed {
                        state: ActivityState::TimedOut,
                        output: None,
                        failure: Some(failure),
                    },
                    fx,
                );
            }
            TimerKind::Retry => {
                if live.state != ActivityState::BackingOff || live.attempt != t.attempt {
                    return;
                }
                live.state = ActivityState::Scheduled;
                live.next_attempt_ms = None;
                fx.writes.push(Write::Transition {
                    fold: std::mem::take(&mut live.heartbeat_row),
                    id: live.id.clone(),
                    state: ActivityState::Scheduled,
                    attempt: live.attempt,
                    details: None,
                    output: None,
                    failure: None,
                    next_attempt_at: None,
                    closed_at: None,
                });
                let key = (live.activity_type.clone(), live.id.clone());
                self.ready.entry(key.0).or_default().push_back(key.1);
                fx.ready = true;
            }
            // Only meaningful while the activity is closing (handled above).
            TimerKind::StoreClosing => {}
        }
    }

    /// Times out the running attempts silent for their whole heartbeat timeout at `now`;
    /// returns when the next one would be.
    pub(crate) fn sweep(&mut self, now: Instant, fx: &mut Effects) -> Option<Instant> {
        for (id, attempt, node) in self.silence.overdue(now) {
            let Some(live) = self.live.get_mut(&id) else {
                continue;
            };
            if live.silence != node {
                continue;
            }
            live.silence = silence::NONE;
            if !live.is_current(attempt) {
                continue;
            }
            if let Some(h) = live.handle.take() {
                fx.cancels.push((h, CancelReason::TimedOut));
            }
            let failure = ActivityFailure::Timeout {
                kind: TimeoutKind::Heartbeat,
                last_details: live.details(),
            };
            tracing::warn!(activity_id = %id, attempt, kind = %TimeoutKind::Heartbeat, "attempt timed out");
            self.attempt_failed(&id, failure, true, false, fx);
        }
        self.silence.next_deadline()
    }

    /// A cancel request. Returns the state the activity is in afterwards.
    pub(crate) fn cancel(&mut self, id: &str, fx: &mut Effects) -> Option<ActivityState> {
        let live = self.live.get_mut(id)?;
        if let Some(c) = &live.closing {
            return Some(c.state);
        }
        match live.state {
            ActivityState::Scheduled | ActivityState::BackingOff => {
                let id = live.id.clone();
                let details = live.details();
                self.close(
                    &id,
                    Closed {
                        state: ActivityState::Cancelled,
                        output: None,
                        failure: Some(ActivityFailure::Cancelled { details }),
                    },
                    fx,
                );
                Some(ActivityState::Cancelled)
            }
            ActivityState::Running => {
                if !live.cancel_requested {
                    live.cancel_requested = true;
                    fx.writes.push(Write::CancelRequested {
                        id: live.id.clone(),
                    });
                }
                if let Some(h) = &live.handle {
                    fx.cancels.push((h.clone(), CancelReason::Requested));
                }
                Some(ActivityState::Running)
            }
            s => Some(s),
        }
    }
}

/// Queues the effects that must keep the order of the core's changes: timers (a `Forget`
/// before any timer a later acknowledgement arms) and writes. Called with the core's lock
/// held (see [`Inner::change`](super::Inner::change)): a write queued after the lock is
/// released could be overtaken by another thread's, such as a timed-out attempt's late
/// checkpoint overtaking the transition that timed it out.
pub(crate) fn queue(inner: &Arc<Inner>, fx: &mut Effects) {
    for id in fx.forget.drain(..) {
        let _ = inner.timers.send(TimerCommand::Forget(id));
    }
    for (timer, at) in fx.timers.drain(..) {
        let _ = inner.timers.send(TimerCommand::Arm(timer, at));
    }
    if let Some(at) = fx.sweep.take() {
        let _ = inner.timers.send(TimerCommand::SweepAt(at));
    }
    let closed: std::collections::HashSet<Arc<str>> = fx.closed.drain(..).collect();
    for w in fx.writes.drain(..) {
        let ack = match &w {
            Write::Transition {
                id,
                closed_at: Some(_),
                ..
            } if closed.contains(id) => {
                let weak: Weak<Inner> = Arc::downgrade(inner);
                let id = id.clone();
                Some(Box::new(move |r: Result<bool, super::EngineError>| {
                    if let Some(inner) = weak.upgrade() {
                        inner.on_closed_committed(&id, r);
                    }
                }) as super::store::Ack)
            }
            _ => None,
        };
        match inner.writer.queue(w, ack) {
            Ok(wake) => fx.wake_writer |= wake,
            Err(Some(ack)) => fx.unsent.push(ack),
            Err(None) => {}
        }
    }
}

/// Applies the rest once the lock is released: push cancels (after the writes that record
/// why), wake the writer and the workers, and answer the acknowledgements of writes the writer
/// could not take.
pub(crate) fn apply(inner: &Arc<Inner>, fx: Effects) {
    for (handle, reason) in fx.cancels {
        handle.cancel(reason);
    }
    if fx.wake_writer {
        inner.writer.wake();
    }
    if fx.ready {
        inner.ready.notify_waiters();
    }
    for ack in fx.unsent {
        ack(Err(super::EngineError::Closed));
    }
}

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

/// Starts the engine's one deadline queue on its own thread, `hb-timers`, so timeouts fire on
/// time even when activity bodies keep the runtime the engine was opened on busy. The thread
/// ends when the engine is dropped.
pub(crate) fn spawn_timers(
    weak: Weak<Inner>,
    rx: mpsc::UnboundedReceiver<TimerCommand>,
    pending: Arc<std::sync::atomic::AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    std::thread::Builder::new()
        .name("hb-timers".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("building the hb engine timer runtime")
                .block_on(run_timers(weak, rx, pending, stop));
        })
        .expect("spawning the hb engine timer thread");
}

/// How long the deadline queue lets commands gather after taking some (see `run_timers`). A
/// timer armed meanwhile fires at most this late if its deadline is that close.
const COMMAND_BATCHING: Duration = Duration::from_millis(1);

/// Heartbeat deadlines are rounded up to this step, so that thousands of activities wake the
/// deadline queue a few hundred times a second at most; a dead attempt is still detected
/// within `heartbeat_timeout` + 2 ms (plus the queue's own millisecond).
const HEARTBEAT_TIMER_STEP: Duration = Duration::from_millis(2);

use tokio_util::time::delay_queue::Key;

/// `at` rounded up to the next [`HEARTBEAT_TIMER_STEP`] from `epoch`.
fn round_up(epoch: Instant, at: Instant) -> Instant {
    let step = HEARTBEAT_TIMER_STEP.as_nanos();
    let since = at.saturating_duration_since(epoch).as_nanos();
    let rounded = since.div_ceil(step) * step;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
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
        let cap = Instant::now() + Duration::from_millis(MAX_TIMER_MS);
        if at > cap {
            // Fires at the cap, then the core re-arms it for what is left.
            queue.insert_at(
                Timer {
                    due: Some(at),
                    ..timer
                },
                cap,
            )
        } else {
            queue.insert_at(timer, at)
        }
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
async fn run_timers(
    weak: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<TimerCommand>,
    pending: Arc<std::sync::atomic::AtomicU64>,
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
                let now = Instant::now();
                sweep_at = inner.change(|core, fx| {
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
        pending.store(
            deadlines.queue.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
