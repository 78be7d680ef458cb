//! The engine's in-memory state machine: every open activity, the ready queues, timeouts and
//! retries. Sans-IO: each change records what must happen outside ([`Effects`]: writes for
//! the store's writer, timers, cancels to push, waiters to answer), and a thin shell applies
//! them ([`Inner::change`](super::Inner::change) in a running engine, `engine::sim` in the
//! simulator). Waiters of a closed activity are answered only once its closing write is
//! committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::EngineError;
use super::clock::{Clock, Now, later};
use super::ready::Ready;
use super::record::{ActivityRow, StoredOptions};
use super::silence::{self, Silence};
use super::store::{Ack, Write};
use crate::client::{ActivityFailure, ActivityStatus, TimeoutKind};
use crate::error::{ActivityError, CancelReason, TransportError, TransportErrorKind};
use crate::payload::Payload;
use crate::runner::AttemptHandle;
use crate::transport::{HeartbeatReply, TaskToken};

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
fn closing_write(live: &Live, closed: &Closed, fold: bool, now_ms: i64) -> Write {
    Write::Transition {
        fold,
        id: live.id.clone(),
        state: closed.state,
        attempt: live.attempt,
        details: live.details(),
        output: closed.output.clone(),
        failure: closed.failure.as_ref().map(ActivityFailure::to_json),
        next_attempt_at: None,
        closed_at: Some(now_ms),
    }
}

/// The senders of `result()` calls waiting on an activity.
pub(crate) type Waiters = Option<Box<Vec<oneshot::Sender<Closed>>>>;

/// How a closed activity ended.
#[derive(Debug, Clone)]
pub(crate) struct Closed {
    pub(crate) state: ActivityStatus,
    pub(crate) output: Option<Payload>,
    pub(crate) failure: Option<ActivityFailure>,
}

/// An activity not yet closed.
pub(crate) struct Live {
    pub(crate) id: Arc<str>,
    /// Shared by the open activities of one type (interned by `Core::admit`).
    pub(crate) activity_type: Arc<str>,
    pub(crate) state: ActivityStatus,
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
    /// Its running attempt is heartbeated by another process, by task token through the
    /// file: at a reopen it may still be alive (the attempt keeps its timeout).
    pub(crate) external: bool,
    /// How many heartbeat writes of its checkpoint failed (this attempt), for the backoff of
    /// storing it again; and whether a `StoreCheckpoint` timer is armed to do it.
    pub(crate) checkpoint_failures: u8,
    pub(crate) checkpoint_retry: bool,
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

    /// The record of a row read from the file; `now` converts its stored times.
    pub(crate) fn from_row(row: ActivityRow, now: &Now) -> Self {
        let options = crate::payload::decode_json(row.options.as_bytes()).unwrap_or_else(|e| {
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
            started: row.attempt_started_at.map(|ms| now.instant_of_past(ms)),
            last_heartbeat: row.last_heartbeat_at.map(|ms| now.instant_of_past(ms)),
            next_attempt_ms: row.next_attempt_at,
            cancel_requested: row.cancel_requested,
            external: row.external_attempt.is_some_and(|a| a == row.attempt),
            checkpoint_failures: 0,
            checkpoint_retry: false,
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
        self.closing.is_none() && self.state == ActivityStatus::Running && self.attempt == attempt
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
    /// Storing again a checkpoint whose heartbeat write failed.
    StoreCheckpoint,
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
pub(crate) struct Core {
    /// Where every change reads the time.
    pub(crate) clock: Arc<dyn Clock>,
    /// The options of the latest activity admitted per type, to share with the next one.
    options: HashMap<Arc<str>, Arc<StoredOptions>>,
    pub(crate) live: super::live_map::LiveMap,
    ready: Ready,
    /// The heartbeat timeouts of running attempts.
    silence: Silence,
    /// The newest heartbeat request from the file applied: one whose delete failed is not
    /// applied again after newer ones.
    requests_applied: i64,
    /// Cancel requests from the file applied, deleted once their cancels are stored.
    cancels_stored: Vec<(i64, Stored)>,
}

/// A caller waiting for a write to be committed (`Ok(false)`: an insert of an id that exists).
pub(crate) type Reply = oneshot::Sender<Result<bool, EngineError>>;

/// What the core asks for after a change, done once the lock is released.
#[derive(Default)]
pub(crate) struct Effects {
    /// For the store's writer, in order, each with what to do once it is committed.
    pub(crate) writes: Vec<(Write, Option<Ack>)>,
    pub(crate) timers: Vec<(Timer, Instant)>,
    /// Activities whose timers can go (they closed).
    pub(crate) forget: Vec<Arc<str>>,
    pub(crate) cancels: Vec<(AttemptHandle, CancelReason)>,
    /// `result()` calls to answer.
    pub(crate) answers: Vec<(oneshot::Sender<Closed>, Closed)>,
    /// Callers of committed writes to answer.
    pub(crate) replies: Vec<(Reply, Result<bool, EngineError>)>,
    pub(crate) ready: bool,
    /// Acknowledgements of writes the writer could not take (it has stopped).
    pub(crate) unsent: Vec<Ack>,
    /// A queued write asks the writer to commit soon.
    pub(crate) wake_writer: bool,
    /// A heartbeat deadline the deadline queue may sleep past.
    pub(crate) sweep: Option<Instant>,
}

impl Core {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Core {
            clock,
            options: HashMap::new(),
            live: Default::default(),
            ready: Ready::default(),
            silence: Silence::default(),
            requests_applied: i64::MIN,
            cancels_stored: Vec::new(),
        }
    }

    /// Both clocks, read once.
    pub(crate) fn now(&self) -> Now {
        Now::of(&*self.clock)
    }

    fn push_ready(ready: &mut Ready, live: &Live, fx: &mut Effects) {
        ready.push(&live.activity_type, live.id.clone());
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
        let clock = self.now();
        let now = clock.at;
        // Stored times lie in the past; one in the future was left by a wall clock that has
        // stepped back since, and counts as now (see `Now::instant_of_past`).
        if let Some(stc) = live.options.schedule_to_close() {
            fx.timers.push((
                Timer {
                    id: live.id.clone(),
                    attempt: 0,
                    kind: TimerKind::ScheduleToClose,
                    due: None,
                },
                later(clock.instant_of_past(live.scheduled_at), stc),
            ));
        }
        match live.state {
            ActivityStatus::Scheduled => Self::push_ready(&mut self.ready, &live, fx),
            ActivityStatus::BackingOff => {
                // Never later than the retry's own delay from now, whatever the wall clock did.
                let latest = later(now, live.options.retry_delay(live.attempt));
                let at = live
                    .next_attempt_ms
                    .map_or(now, |ms| clock.instant_of(ms))
                    .min(latest);
                fx.timers.push((
                    Timer {
                        id: live.id.clone(),
                        attempt: live.attempt,
                        kind: TimerKind::Retry,
                        due: None,
                    },
                    at,
                ));
            }
            ActivityStatus::Running => {
                // Recovered: the engine holds its file's lock, so the process that ran this
                // attempt is gone. Retried at once, unless another process heartbeats its
                // work by token (it may be alive): that times out from its last heartbeat.
                let timeout = live
                    .options
                    .heartbeat_timeout()
                    .or(live.options.start_to_close());
                let (Some(timeout), true) = (timeout, live.external) else {
                    let id = live.id.clone();
                    let failure = ActivityFailure::Application {
                        error_type: "WorkerLost".into(),
                        message: format!(
                            "the process running attempt {} ended without reporting (found when the engine file was reopened)",
                            live.attempt
                        ),
                        non_retryable: false,
                        details: live.details(),
                    };
                    self.live.insert(Box::new(live));
                    self.attempt_failed(&id, failure, true, true, fx);
                    return;
                };
                let since = live.last_heartbeat.or(live.started).unwrap_or(now).min(now);
                fx.timers.push((
                    Timer {
                        id: live.id.clone(),
                        attempt: live.attempt,
                        kind: TimerKind::Heartbeat,
                        due: None,
                    },
                    later(since, timeout),
                ));
            }
            _ => return,
        }
        self.live.insert(Box::new(live));
    }

    /// Admits what a reopened file holds open.
    pub(crate) fn recover(
        &mut self,
        rows: Vec<ActivityRow>,
        requests_applied: i64,
        fx: &mut Effects,
    ) {
        self.requests_applied = requests_applied;
        let now = self.now();
        for row in rows {
            self.admit(Live::from_row(row, &now), fx);
        }
    }

    /// Takes the next ready attempt of one of `types`, marking it running.
    pub(crate) fn take(&mut self, types: &[&str], fx: &mut Effects) -> Option<Task> {
        for t in types {
            while let Some(id) = self.ready.pop(t) {
                let Some(live) = self.live.get_mut(&id) else {
                    self.ready.skipped(t);
                    continue;
                };
                if live.state != ActivityStatus::Scheduled || live.closing.is_some() {
                    self.ready.skipped(t);
                    continue;
                }
                let Now {
                    at: now,
                    wall_ms: now_ms,
                } = Now::of(&*self.clock);
                live.attempt = live.attempt.saturating_add(1);
                // The previous attempt's handle must not receive this attempt's cancels.
                live.handle = None;
                live.state = ActivityStatus::Running;
                live.started = Some(now);
                live.last_heartbeat = None;
                live.external = false;
                live.checkpoint_failures = 0;
                fx.writes.push((
                    Write::Started {
                        fold: std::mem::take(&mut live.heartbeat_row),
                        id: id.clone(),
                        attempt: live.attempt,
                        at: now_ms,
                    },
                    None,
                ));
                let mut deadline = None;
                if let Some(stc) = live.options.start_to_close() {
                    fx.timers.push((
                        Timer {
                            id: id.clone(),
                            attempt: live.attempt,
                            kind: TimerKind::StartToClose,
                            due: None,
                        },
                        later(now, stc),
                    ));
                    deadline = std::time::UNIX_EPOCH
                        .checked_add(Duration::from_millis(now_ms.max(0) as u64))
                        .and_then(|t| t.checked_add(stc.min(super::clock::FAR)));
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
        let clock = Now::of(&*self.clock);
        let Some(live) = self.live.get_mut(id) else {
            return Ok((HeartbeatReply::not_found(), None));
        };
        if !live.is_current(attempt) {
            // The last word of an attempt the engine already timed out (its final flush): the
            // retry, not started yet, resumes from it.
            let awaiting_retry = matches!(
                live.state,
                ActivityStatus::BackingOff | ActivityStatus::Scheduled
            );
            let mut write = None;
            if live.attempt == attempt
                && live.closing.is_none()
                && awaiting_retry
                && let Some(d) = details
            {
                live.set_details(d);
                live.heartbeat_row = true;
                write = Some(Write::Heartbeat {
                    id: live.id.clone(),
                    details: Some(d.clone()),
                    at: clock.wall_ms,
                    commit_within: live.options.heartbeat_commit_within(),
                });
            }
            let reply = if live.attempt == attempt {
                HeartbeatReply::timed_out()
            } else {
                HeartbeatReply::not_found()
            };
            return Ok((reply, write));
        }
        let Now {
            at: now,
            wall_ms: now_ms,
        } = clock;
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
        let waited = live.state == ActivityStatus::Scheduled;
        live.handle = None;
        self.silence.unwatch(
            std::mem::replace(&mut live.silence, silence::NONE),
            &live.id,
        );
        live.state = closed.state;
        fx.forget.push(id.clone());
        let fold = std::mem::take(&mut live.heartbeat_row);
        let write = closing_write(live, &closed, fold, self.clock.wall_ms());
        fx.writes.push((write, Some(Ack::Closed(id.clone()))));
        live.closing = Some(Box::new(closed));
        if waited {
            // Its id stays in the ready queue, stale, until the queue is compacted.
            let ty = live.activity_type.clone();
            let live = &self.live;
            self.ready.left(&ty, |i| {
                live.get(i)
                    .is_some_and(|l| l.state == ActivityStatus::Scheduled && l.closing.is_none())
            });
        }
    }

    /// A write the core asked for was committed (or failed): its acknowledgement comes back.
    pub(crate) fn committed(
        &mut self,
        ack: Ack,
        result: Result<bool, EngineError>,
        fx: &mut Effects,
    ) {
        match ack {
            Ack::Reply(reply) => fx.replies.push((reply, result)),
            Ack::Closed(id) => self.closed_committed(&id, result, fx),
            Ack::Lost(id) => self.checkpoint_lost(&id, fx),
            Ack::Unfolded(id) => {
                if let Some(live) = self.live.get_mut(&id) {
                    live.heartbeat_row = true;
                }
            }
            Ack::Inserted(live, reply) => {
                // Admitted here, not by the caller: a start whose future was dropped after
                // its row was written still runs.
                if matches!(result, Ok(true)) {
                    self.admit(*live, fx);
                }
                fx.replies.push((reply, result));
            }
        }
    }

    /// A heartbeat write of `id` failed (a full disk): the pump will not send that checkpoint
    /// again (the engine accepted it), so the engine stores it again itself, 1 s later,
    /// doubling to 1 min while writes keep failing.
    fn checkpoint_lost(&mut self, id: &Arc<str>, fx: &mut Effects) {
        let now = self.clock.now();
        let Some(live) = self.live.get_mut(id) else {
            return;
        };
        if live.closing.is_some() {
            return; // its closing write carries the checkpoint
        }
        live.checkpoint_failures = live.checkpoint_failures.saturating_add(1);
        if std::mem::replace(&mut live.checkpoint_retry, true) {
            return; // a retry is armed already
        }
        let retry_in = Duration::from_secs(1 << live.checkpoint_failures.saturating_sub(1).min(6))
            .min(CLOSING_RETRY_MAX);
        fx.timers.push((
            Timer {
                id: live.id.clone(),
                attempt: live.attempt,
                kind: TimerKind::StoreCheckpoint,
                due: None,
            },
            later(now, retry_in),
        ));
        tracing::warn!(activity_id = %id, ?retry_in, "a checkpoint could not be stored; storing it again");
    }

    /// The closing write of `id` was committed, or failed.
    ///
    /// Committed: answer the waiters and forget the activity. Failed (a full disk): nothing of
    /// it was stored, so the file still holds the activity as it was; the waiters get the
    /// storage error now, and the activity stays in memory, closing, while the write is
    /// retried with backoff (1 s doubling to 1 min). If the process ends first, reopening the
    /// file recovers the activity from what it holds.
    fn closed_committed(
        &mut self,
        id: &Arc<str>,
        result: Result<bool, EngineError>,
        fx: &mut Effects,
    ) {
        match result {
            Ok(_) => {
                let Some(live) = self.live.remove(id) else {
                    return;
                };
                // The options shared by its type go with the last activity that used them.
                if Arc::strong_count(&live.options) == 2
                    && let Some((_, shared)) = self.options.get_key_value(&*live.activity_type)
                    && Arc::ptr_eq(shared, &live.options)
                {
                    self.options.remove(&*live.activity_type);
                }
                let closed = live.closing.map(|c| *c).unwrap_or(Closed {
                    state: live.state,
                    output: None,
                    failure: None,
                });
                for w in live.waiters.into_iter().flat_map(|w| *w) {
                    fx.answers.push((w, closed.clone()));
                }
            }
            Err(e) => {
                let now = self.clock.now();
                let Some(live) = self.live.get_mut(id) else {
                    return;
                };
                if live.closing.is_none() {
                    return;
                }
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
                    later(now, retry_in),
                ));
                tracing::error!(
                    activity_id = %id,
                    error = %e,
                    ?retry_in,
                    "the activity's closing write failed; it stays open and the write is retried"
                );
                let closed = Closed {
                    state: live.state,
                    output: None,
                    failure: Some(ActivityFailure::from(e)),
                };
                for w in std::mem::take(&mut live.waiters)
                    .into_iter()
                    .flat_map(|w| *w)
                {
                    fx.answers.push((w, closed.clone()));
                }
            }
        }
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
                state: ActivityStatus::Completed,
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
                state: ActivityStatus::Cancelled,
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
        let clock = self.now();
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
                    state: ActivityStatus::Cancelled,
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
        // A delay beyond `FAR` (an interval near `Duration::MAX`: "never on its own") is
        // `FAR`: a time the file can hold, and a timer the deadline queue can keep.
        let delay = delay.min(super::clock::FAR);
        let next_ms = clock.wall_ms.saturating_add(super::clock::ms(delay));
        let before_deadline = live.options.schedule_to_close_ms.is_none_or(|s2c| {
            next_ms
                < live
                    .scheduled_at
                    .saturating_add(i64::try_from(s2c).unwrap_or(i64::MAX))
        });
        if retryable && attempts_left && before_deadline && delay.is_zero() {
            // Retried at once (worker shutdown, or a zero interval): ready again now.
            live.state = ActivityStatus::Scheduled;
            live.next_attempt_ms = None;
            live.last_failure = Some(Box::new(failure.clone()));
            fx.writes.push((
                Write::Transition {
                    fold: std::mem::take(&mut live.heartbeat_row),
                    id: id.clone(),
                    state: ActivityStatus::Scheduled,
                    attempt: live.attempt,
                    details: live.details(),
                    output: None,
                    failure: Some(failure.to_json()),
                    next_attempt_at: None,
                    closed_at: None,
                },
                None,
            ));
            Self::push_ready(&mut self.ready, live, fx);
            tracing::info!(activity_id = %id, attempt = live.attempt, %failure, "attempt failed; retrying now");
            return;
        }
        if retryable && attempts_left && before_deadline {
            live.state = ActivityStatus::BackingOff;
            live.next_attempt_ms = Some(next_ms);
            live.last_failure = Some(Box::new(failure.clone()));
            fx.writes.push((
                Write::Transition {
                    fold: std::mem::take(&mut live.heartbeat_row),
                    id: id.clone(),
                    state: ActivityStatus::BackingOff,
                    attempt: live.attempt,
                    details: live.details(),
                    output: None,
                    failure: Some(failure.to_json()),
                    next_attempt_at: Some(next_ms),
                    closed_at: None,
                },
                None,
            ));
            fx.timers.push((
                Timer {
                    id: id.clone(),
                    attempt: live.attempt,
                    kind: TimerKind::Retry,
                    due: None,
                },
                later(clock.at, delay),
            ));
            tracing::info!(activity_id = %id, attempt = live.attempt, ?delay, %failure, "attempt failed; retrying");
            return;
        }
        let state = if matches!(failure, ActivityFailure::Timeout { .. }) {
            ActivityStatus::TimedOut
        } else {
            ActivityStatus::Failed
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
        let now = self.clock.now();
        if let Some(due) = t.due
            && now < due
        {
            fx.timers.push((
                Timer {
                    due: None,
                    ..t.clone()
                },
                due,
            ));
            return;
        }
        let Some(live) = self.live.get_mut(&t.id) else {
            return;
        };
        if let Some(closed) = &live.closing {
            if t.kind == TimerKind::StoreClosing {
                // The failed write's fold was not stored either.
                let write = closing_write(live, closed, true, self.clock.wall_ms());
                fx.writes.push((write, Some(Ack::Closed(live.id.clone()))));
            }
            return;
        }
        match t.kind {
            TimerKind::Heartbeat | TimerKind::StartToClose => {
                if !live.is_current(t.attempt) {
                    return;
                }
                let kind = if t.kind == TimerKind::Heartbeat {
                    if let (Some(ht), Some(since)) = (
                        live.options.heartbeat_timeout(),
                        live.last_heartbeat.or(live.started),
                    ) {
                        let deadline = later(since, ht);
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
                        state: ActivityStatus::TimedOut,
                        output: None,
                        failure: Some(failure),
                    },
                    fx,
                );
            }
            TimerKind::Retry => {
                if live.state != ActivityStatus::BackingOff || live.attempt != t.attempt {
                    return;
                }
                live.state = ActivityStatus::Scheduled;
                live.next_attempt_ms = None;
                fx.writes.push((
                    Write::Transition {
                        fold: std::mem::take(&mut live.heartbeat_row),
                        id: live.id.clone(),
                        state: ActivityStatus::Scheduled,
                        attempt: live.attempt,
                        details: None,
                        output: None,
                        failure: None,
                        next_attempt_at: None,
                        closed_at: None,
                    },
                    None,
                ));
                Self::push_ready(&mut self.ready, live, fx);
            }
            // Only meaningful while the activity is closing (handled above).
            TimerKind::StoreClosing => {}
            TimerKind::StoreCheckpoint => {
                // Stored again; a failure reports back (`Ack::Lost`) and re-arms this timer.
                live.checkpoint_retry = false;
                live.heartbeat_row = true;
                fx.writes.push((
                    Write::Heartbeat {
                        id: live.id.clone(),
                        details: live.details(),
                        at: self.clock.wall_ms(),
                        commit_within: Duration::ZERO,
                    },
                    None,
                ));
            }
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

    /// A cancel request. Returns the state the activity is in afterwards and what to await
    /// before telling the caller the cancel is stored (`None`: the activity is not open).
    pub(crate) fn cancel(
        &mut self,
        id: &str,
        fx: &mut Effects,
    ) -> Option<(ActivityStatus, Stored)> {
        let live = self.live.get_mut(id)?;
        if let Some(c) = &live.closing {
            // Closing already: stored once its closing write is.
            let state = c.state;
            return Some((state, Stored::Closed(Self::waiter(live))));
        }
        match live.state {
            ActivityStatus::Scheduled | ActivityStatus::BackingOff => {
                let id = live.id.clone();
                let details = live.details();
                let rx = Self::waiter(live);
                self.close(
                    &id,
                    Closed {
                        state: ActivityStatus::Cancelled,
                        output: None,
                        failure: Some(ActivityFailure::Cancelled { details }),
                    },
                    fx,
                );
                Some((ActivityStatus::Cancelled, Stored::Closed(rx)))
            }
            ActivityStatus::Running => {
                live.cancel_requested = true;
                // Written again by every cancel (it is idempotent): the caller waits for its own
                // write, whatever became of an earlier one.
                let (ack, rx) = Ack::reply();
                fx.writes.push((
                    Write::CancelRequested {
                        id: live.id.clone(),
                    },
                    Some(ack),
                ));
                if let Some(h) = &live.handle {
                    fx.cancels.push((h.clone(), CancelReason::Requested));
                }
                Some((ActivityStatus::Running, Stored::Written(rx)))
            }
            s => Some((s, Stored::Now)),
        }
    }

    /// A new waiter of `live`'s closing.
    fn waiter(live: &mut Live) -> oneshot::Receiver<Closed> {
        let (tx, rx) = oneshot::channel();
        let waiters = live.waiters.get_or_insert_with(Box::default);
        // Calls abandoned meanwhile (a `timeout` around `result()`) go, so the list holds at
        // most about twice the calls still waiting: pruned each time it reaches a power of two.
        if waiters.len() >= 4 && waiters.len().is_power_of_two() {
            waiters.retain(|w| !w.is_closed());
        }
        waiters.push(tx);
        rx
    }

    /// The type of open activity `id`, if it is open.
    pub(crate) fn type_of(&self, id: &str) -> Option<String> {
        self.live.get(id).map(|l| l.activity_type.to_string())
    }

    /// Registers a `result()` call waiting for activity `id` to close.
    pub(crate) fn wait(&mut self, id: &str, engine_stopped: bool) -> Wait {
        match self.live.get_mut(id) {
            // Its closing write failed and will not be retried (the engine is closed).
            Some(live) if live.closing_failures > 0 && engine_stopped => Wait::EngineClosed,
            Some(live) => Wait::Pending(Self::waiter(live)),
            None => Wait::NotOpen,
        }
    }

    /// Worker `worker` started attempt `attempt` of `id` as `handle`: keep the handle for
    /// cancels, or stop the attempt at once if it is no longer current (it timed out or its
    /// activity closed before it could start).
    pub(crate) fn attach(
        &mut self,
        id: &str,
        attempt: u32,
        handle: &AttemptHandle,
        worker: u32,
        fx: &mut Effects,
    ) {
        match self.live.get_mut(id) {
            Some(live) if live.is_current(attempt) => {
                // A cancel requested before the handle existed is delivered now.
                if live.cancel_requested {
                    fx.cancels.push((handle.clone(), CancelReason::Requested));
                }
                live.handle = Some(handle.clone());
                live.worker = worker;
            }
            _ => fx.cancels.push((handle.clone(), CancelReason::TimedOut)),
        }
    }

    /// The handles of the attempts worker `worker` runs.
    pub(crate) fn handles_of(&self, worker: u32) -> Vec<AttemptHandle> {
        self.live
            .values()
            .filter(|l| l.worker == worker)
            .filter_map(|l| l.handle.clone())
            .collect()
    }

    /// The engine was closed: closing writes that failed are no longer retried, so their
    /// waiters hear it now.
    pub(crate) fn engine_closed(&mut self, fx: &mut Effects) {
        for live in self.live.values_mut().filter(|l| l.closing_failures > 0) {
            let closed = Closed {
                state: live.state,
                output: None,
                failure: Some(ActivityFailure::from(EngineError::Closed)),
            };
            for w in std::mem::take(&mut live.waiters)
                .into_iter()
                .flat_map(|w| *w)
            {
                fx.answers.push((w, closed.clone()));
            }
        }
    }

    /// Deletes the cancel requests whose cancels are stored now (checked before each round of
    /// requests).
    pub(crate) fn requests_stored(&mut self, fx: &mut Effects) {
        self.cancels_stored.retain_mut(|(seq, stored)| {
            let done = match stored {
                Stored::Closed(rx) => match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => return true,
                    Ok(c) => !matches!(c.failure, Some(ActivityFailure::Backend(_))),
                    Err(_) => false,
                },
                Stored::Written(rx) => match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => return true,
                    r => matches!(r, Ok(Ok(_))),
                },
                Stored::Now => true,
            };
            if done {
                fx.writes.push((Write::DeleteRequest { seq: *seq }, None));
            }
            false
        });
    }

    /// Applies a request another process queued in the file, and deletes it.
    pub(crate) fn request(&mut self, request: super::store::Request, fx: &mut Effects) {
        let seq = request.seq;
        match (
            request.kind.as_str(),
            request.activity_id,
            request.task_token,
        ) {
            ("cancel", Some(id), _) => {
                if self.cancels_stored.iter().any(|(s, _)| *s == seq) {
                    return; // applied; its delete waits for the cancel to be stored
                }
                match self.cancel(&id, fx) {
                    // Deleted once the cancel is stored: a failed write leaves the request in
                    // the file, to be applied again (a cancel is idempotent).
                    Some((_, stored @ (Stored::Closed(_) | Stored::Written(_)))) => {
                        self.cancels_stored.push((seq, stored));
                    }
                    _ => fx.writes.push((Write::DeleteRequest { seq }, None)),
                }
            }
            ("heartbeat", _, Some(token)) => {
                if seq <= self.requests_applied {
                    // A newer heartbeat request was applied already (this one's delete
                    // failed): applied now, it would put an older checkpoint back.
                    fx.writes.push((Write::DeleteRequest { seq }, None));
                    return;
                }
                let token = TaskToken::new(token.into_bytes());
                let details = request.details.map(Payload::from_json_bytes);
                if let Ok((
                    _,
                    Some(Write::Heartbeat {
                        id, details, at, ..
                    }),
                )) = self.heartbeat(&token, details.as_ref())
                {
                    // Stored with the request's deletion, in one write.
                    self.requests_applied = seq;
                    fx.writes.push((
                        Write::RequestHeartbeat {
                            id,
                            details,
                            at,
                            seq,
                        },
                        None,
                    ));
                } else {
                    fx.writes.push((Write::DeleteRequest { seq }, None));
                }
                // Recorded once per attempt: a reopen leaves this attempt to its timeout.
                if let Some((id, attempt)) = parse_token(&token)
                    && let Some(live) = self.live.get_mut(id)
                    && live.is_current(attempt)
                    && !live.external
                {
                    live.external = true;
                    fx.writes.push((
                        Write::External {
                            id: live.id.clone(),
                            attempt,
                        },
                        None,
                    ));
                }
            }
            (other, ..) => {
                tracing::warn!(kind = other, "ignoring an unknown queued request");
                fx.writes.push((Write::DeleteRequest { seq }, None));
            }
        }
    }

    /// What the core holds, for the simulator's memory invariants.
    #[cfg(feature = "sim")]
    pub(crate) fn footprint(&self) -> Footprint {
        Footprint {
            ready: self.ready.len(),
            options: self.options.len(),
        }
    }

    /// Whether a running attempt of `id` is watched for its heartbeat timeout.
    #[cfg(feature = "sim")]
    pub(crate) fn watched(&self, id: &str) -> bool {
        self.live
            .get(id)
            .is_some_and(|l| l.silence != silence::NONE)
    }

    /// Whether `id` waits in the ready queue of its type.
    #[cfg(feature = "sim")]
    pub(crate) fn is_ready(&self, id: &str) -> bool {
        self.live
            .get(id)
            .is_some_and(|l| self.ready.contains(&l.activity_type, id))
    }
}

/// Sizes of what the core holds beside its open activities.
#[cfg(feature = "sim")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Footprint {
    /// Ids in the ready queues.
    pub(crate) ready: usize,
    /// Shared options kept per type.
    pub(crate) options: usize,
}

/// What a cancel awaits before it is stored.
pub(crate) enum Stored {
    /// Its closing write: the waiter hears how it closed (or that the write failed).
    Closed(oneshot::Receiver<Closed>),
    /// The write recording the request.
    Written(oneshot::Receiver<Result<bool, EngineError>>),
    /// Nothing: the state it is in is stored already.
    Now,
}

/// What [`Core::wait`] found.
pub(crate) enum Wait {
    /// Open: the receiver gets how it closed.
    Pending(oneshot::Receiver<Closed>),
    /// Not open (closed, or unknown): the file has the answer.
    NotOpen,
    /// Its closing write failed and the engine is closed: it will not be answered.
    EngineClosed,
}
