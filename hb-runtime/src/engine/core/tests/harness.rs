//! The events of the table, what is seen after one, and the harness that applies them to a
//! core the way the engine's shell would, keeping what a shell keeps: armed timers and the
//! acknowledgements of writes not committed yet.

use std::sync::Arc;

use tokio::time::Instant;

use super::super::super::EngineError;
use super::super::super::clock::{Clock, SimClock};
use super::super::{
    Ack, Core, Effects, Operated, Operation, Queued, Request, Start, Timer, TimerKind, Write,
    token_of,
};
use super::ms;
use crate::BoxFuture;
use crate::client::{ActivityFailure, ActivityStatus};
use crate::context::ActivityContext;
use crate::error::{ActivityError, CancelReason};
use crate::options::ActivityOptions;
use crate::payload::Payload;
use crate::runner::{AttemptHandle, AttemptRequest, AttemptRunner};
use crate::transport::memory::MemoryTransport;
use crate::transport::{HeartbeatReply, TaskToken};

pub(super) const ID: &str = "job";
pub(super) const TYPE: &str = "t";

/// Something that happens to the activity.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ev {
    /// A client starts it, and its row is stored.
    Start,
    /// A worker takes the next attempt and attaches its handle (what a worker does).
    Take,
    /// A worker takes the next attempt; its handle is not attached yet.
    TakeBare,
    /// The worker's handle of `attempt` is attached.
    Attach(u32),
    /// Attempt `n` heartbeats with a checkpoint.
    Heartbeat(u32),
    /// A heartbeat with a token that is not the engine's.
    ForeignToken,
    /// Attempt `n` completes.
    Complete(u32),
    /// Attempt `n` fails retryably (`Flaky`).
    Fail(u32),
    /// Attempt `n` fails for good (`Bad`).
    FailForGood(u32),
    /// Attempt `n` is stopped by its worker's shutdown.
    Shutdown(u32),
    /// Attempt `n` stopped after a cancel request.
    Cancelled(u32),
    /// A client cancels the activity.
    Cancel,
    /// A client awaits its result.
    Wait,
    /// Time passes.
    Advance(u64),
    /// Time passes to the earliest armed timer of this kind not fired yet, and it fires.
    Fire(TimerKind),
    /// The running attempt says nothing for its whole heartbeat timeout; the sweep runs.
    Silent,
    /// The sweep of heartbeat timeouts runs now.
    Sweep,
    /// Every write waiting for an acknowledgement is committed.
    Commit,
    /// Every write waiting for an acknowledgement fails (a full disk).
    CommitFails,
    /// A heartbeat write of the activity failed.
    HeartbeatLost,
    /// Another process's request, read from the file as row `seq`.
    FileCancel(i64),
    FileHeartbeat(i64, u32),
    /// A row this build cannot apply.
    FileUnreadable(i64),
    /// The file is reopened with the activity stored as running attempt `n`.
    RecoverRunning(u32),
    /// The file is reopened with the activity stored as paused after attempt `n`.
    RecoverPaused(u32),
    /// The file is reopened with the activity stored in `state` at attempt `n`, its running
    /// attempt told of operator requests `bits` (`core::operator`).
    RecoverTold(ActivityStatus, u32, u8),
    /// A worker asks for an attempt, and may get none.
    TryTake,
    /// A client pauses the activity.
    Pause,
    /// A client unpauses it.
    Unpause,
    /// A client resets it (keeping the checkpoint; unpausing).
    Reset,
    /// A client resets it, clearing the checkpoint.
    ResetClear,
    /// A client resets it, keeping a pause.
    ResetKeepPaused,
    /// Attempt `n` stopped, told to pause.
    StoppedPaused(u32),
    /// Attempt `n` stopped, told of a reset.
    StoppedReset(u32),
    /// A pause request from another process, read from the file as row `seq`.
    FilePause(i64),
}
use Ev::*;

/// Where the activity is afterwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum S {
    Scheduled(u32),
    Running(u32),
    BackingOff(u32),
    Paused(u32),
    /// Closed; its closing write not committed yet.
    Closing(ActivityStatus),
    /// Not held any more (closed and committed, or never known).
    Gone,
}

/// What one event did.
#[derive(Debug, PartialEq)]
pub(super) struct Seen {
    pub(super) state: S,
    /// The activity's failure: how it closed, or the last attempt's while it waits to retry.
    pub(super) failure: Option<String>,
    pub(super) writes: Vec<String>,
    pub(super) timers: Vec<String>,
    pub(super) cancels: Vec<String>,
    pub(super) answered: usize,
    pub(super) reply: Option<HeartbeatReply>,
    /// An operator control was refused for the activity in this status.
    pub(super) refused: Option<ActivityStatus>,
    /// The activity holds a checkpoint afterwards.
    pub(super) checkpoint: bool,
}

/// One activity, its core, and what the shell would hold: armed timers and writes waiting for
/// their acknowledgement.
pub(super) struct Harness {
    clock: Arc<SimClock>,
    core: Core,
    options: ActivityOptions,
    /// Armed timers, in arming order, not fired yet.
    timers: Vec<(Timer, Instant)>,
    /// Acknowledgements of writes not committed yet.
    acks: Vec<Ack>,
    runner: AttemptRunner,
}

impl Harness {
    pub(super) fn new(options: ActivityOptions) -> Self {
        let clock = Arc::new(SimClock::new(1_780_000_000_000));
        Harness {
            core: Core::new(clock.clone()),
            clock,
            options,
            timers: Vec::new(),
            acks: Vec::new(),
            runner: AttemptRunner::new(MemoryTransport::new()),
        }
    }

    fn handle(&self, attempt: u32) -> AttemptHandle {
        let request = AttemptRequest::new(ID, token_of(ID, attempt), Payload::json(&()).unwrap());
        self.runner.start(&Stub, request).handle()
    }

    /// Applies `ev` and says what it did.
    pub(super) fn on(&mut self, ev: Ev) -> Seen {
        let mut fx = Effects::default();
        let mut writes = Vec::new();
        let mut reply = None;
        let mut refused = None;
        let checkpoint = Payload::json(&1).unwrap();
        match ev {
            Start => {
                let now = self.core.now();
                let input = Payload::json(&()).unwrap();
                let start = Start::new(Arc::from(ID), TYPE, &input, &self.options, &now);
                writes.push(start.write);
                self.core.committed(start.ack, Ok(true), &mut fx);
            }
            Take | TakeBare => {
                let task = self
                    .core
                    .take(&[TYPE], &mut fx)
                    .expect("an attempt to take");
                if matches!(ev, Take) {
                    let handle = self.handle(task.attempt);
                    self.core.attach(ID, task.attempt, &handle, 1, &mut fx);
                }
            }
            Attach(n) => {
                let handle = self.handle(n);
                self.core.attach(ID, n, &handle, 1, &mut fx);
            }
            Heartbeat(n) => {
                let (r, w) = self
                    .core
                    .heartbeat(&token_of(ID, n), Some(&checkpoint))
                    .expect("an engine token");
                reply = Some(r);
                writes.extend(w);
            }
            ForeignToken => {
                let e = self.core.heartbeat(&TaskToken::new(*b"stranger"), None);
                assert!(e.is_err(), "not an engine token");
            }
            Complete(n) => {
                self.core
                    .complete(ID, n, Payload::json(&"done").unwrap(), &mut fx);
            }
            Fail(n) | FailForGood(n) | Shutdown(n) | StoppedPaused(n) | StoppedReset(n) => {
                let stopped = |reason| ActivityError::Cancelled {
                    reason,
                    details: None,
                };
                let error = match ev {
                    Fail(_) => ActivityError::retryable("Flaky", "try again"),
                    FailForGood(_) => ActivityError::non_retryable("Bad", "give up"),
                    StoppedPaused(_) => stopped(CancelReason::Paused),
                    StoppedReset(_) => stopped(CancelReason::Reset),
                    _ => stopped(CancelReason::WorkerShutdown),
                };
                self.core.failed(ID, n, &error, None, &mut fx);
            }
            Cancelled(n) => {
                self.core.cancelled(ID, n, None, &mut fx);
            }
            Cancel => {
                let _ = self.core.cancel(ID, &mut fx);
            }
            Wait => {
                let _ = self.core.wait(ID, false);
            }
            Advance(n) => self.clock.advance(ms(n)),
            Fire(kind) => {
                let i = self
                    .timers
                    .iter()
                    .position(|(t, _)| t.kind == kind)
                    .unwrap_or_else(|| panic!("no {kind:?} timer armed"));
                let (timer, at) = self.timers.remove(i);
                self.clock.advance_to(at);
                self.core.on_timer(&timer, &mut fx);
            }
            Silent => {
                let timeout = self.options.heartbeat_timeout.expect("a heartbeat timeout");
                self.clock.advance(timeout);
                self.core.sweep(self.clock.now(), &mut fx);
            }
            Sweep => {
                self.core.sweep(self.clock.now(), &mut fx);
            }
            Commit | CommitFails => {
                for ack in std::mem::take(&mut self.acks) {
                    let result = match ev {
                        Commit => Ok(true),
                        _ => Err(EngineError::Storage {
                            path: ":memory:".into(),
                            message: "disk full".into(),
                        }),
                    };
                    self.core.committed(ack, result, &mut fx);
                }
            }
            HeartbeatLost => {
                self.core
                    .committed(Ack::Lost(Arc::from(ID)), Err(EngineError::Closed), &mut fx)
            }
            FileCancel(seq) | FileHeartbeat(seq, _) | FileUnreadable(seq) => {
                let request = match ev {
                    FileCancel(_) => Some(Request::Cancel { id: ID.into() }),
                    FileHeartbeat(_, n) => Some(Request::Heartbeat {
                        token: token_of(ID, n),
                        details: Some(checkpoint),
                    }),
                    _ => None,
                };
                self.core.request(Queued { seq, request }, &mut fx);
            }
            TryTake => {
                if let Some(task) = self.core.take(&[TYPE], &mut fx) {
                    let handle = self.handle(task.attempt);
                    self.core.attach(ID, task.attempt, &handle, 1, &mut fx);
                }
            }
            Pause | Unpause | Reset | ResetClear | ResetKeepPaused => {
                let op = match ev {
                    Pause => Operation::Pause,
                    Unpause => Operation::Unpause,
                    _ => Operation::Reset {
                        keep_checkpoint: !matches!(ev, ResetClear),
                        keep_paused: matches!(ev, ResetKeepPaused),
                    },
                };
                match self.core.operate(ID, op, &mut fx) {
                    Operated::NotAllowed(status) => refused = Some(status),
                    Operated::NotOpen => refused = Some(ActivityStatus::Unknown),
                    Operated::Stored(_) => {}
                }
            }
            FilePause(seq) => {
                let request = Some(Request::Operate {
                    id: ID.into(),
                    op: Operation::Pause,
                });
                self.core.request(Queued { seq, request }, &mut fx);
            }
            RecoverTold(state, n, bits) => {
                let now = self.core.now();
                let input = Payload::json(&()).unwrap();
                let Write::Insert(mut row) =
                    Start::new(Arc::from(ID), TYPE, &input, &self.options, &now).write
                else {
                    unreachable!("a start inserts its row")
                };
                row.state = state;
                row.attempt = n;
                row.operator = bits;
                row.details = Some(b"1".to_vec());
                row.attempt_started_at = Some(now.wall_ms);
                self.core.recover(vec![*row], i64::MIN, &mut fx);
            }
            RecoverPaused(n) => {
                let now = self.core.now();
                let input = Payload::json(&()).unwrap();
                let Write::Insert(mut row) =
                    Start::new(Arc::from(ID), TYPE, &input, &self.options, &now).write
                else {
                    unreachable!("a start inserts its row")
                };
                row.state = ActivityStatus::Paused;
                row.attempt = n;
                row.details = Some(b"1".to_vec());
                self.core.recover(vec![*row], i64::MIN, &mut fx);
            }
            RecoverRunning(n) => {
                let now = self.core.now();
                let input = Payload::json(&()).unwrap();
                let Write::Insert(mut row) =
                    Start::new(Arc::from(ID), TYPE, &input, &self.options, &now).write
                else {
                    unreachable!("a start inserts its row")
                };
                row.state = ActivityStatus::Running;
                row.attempt = n;
                row.attempt_started_at = Some(now.wall_ms);
                self.core.recover(vec![*row], i64::MIN, &mut fx);
            }
        }
        // What the shell does with the effects: timers go to the deadline queue, writes to the
        // writer (their acknowledgements kept for a later `Commit`).
        let timers = fx
            .timers
            .iter()
            .map(|(t, _)| format!("{:?}", t.kind))
            .collect();
        self.timers.append(&mut fx.timers);
        for (w, ack) in fx.writes.drain(..) {
            writes.push(w);
            self.acks.extend(ack);
        }
        Seen {
            state: self.state(),
            failure: self.failure(),
            writes: writes.iter().map(describe_write).collect(),
            timers,
            cancels: fx.cancels.iter().map(|(_, r)| format!("{r:?}")).collect(),
            answered: fx.answers.len(),
            reply,
            refused,
            checkpoint: self
                .core
                .live
                .get(ID)
                .is_some_and(|l| l.details().is_some()),
        }
    }

    fn state(&self) -> S {
        let Some(live) = self.core.live.get(ID) else {
            return S::Gone;
        };
        match (&live.closing, live.state) {
            (Some(c), _) => S::Closing(c.state),
            (None, ActivityStatus::Scheduled) => S::Scheduled(live.number()),
            (None, ActivityStatus::Running) => S::Running(live.number()),
            (None, ActivityStatus::BackingOff) => S::BackingOff(live.number()),
            (None, ActivityStatus::Paused) => S::Paused(live.number()),
            (None, other) => panic!("an open activity {other:?}"),
        }
    }

    fn failure(&self) -> Option<String> {
        let live = self.core.live.get(ID)?;
        let failure = match &live.closing {
            Some(c) => c.failure.as_ref(),
            None => live.last_failure.as_deref(),
        };
        failure.map(describe_failure)
    }
}

fn describe_write(w: &Write) -> String {
    match w {
        Write::Insert(_) => "Insert".into(),
        Write::Started { attempt, .. } => format!("Started #{attempt}"),
        Write::Heartbeat { .. } => "Heartbeat".into(),
        Write::Transition {
            state,
            closed_at: Some(_),
            ..
        } => format!("Close {state:?}"),
        Write::Transition {
            state,
            clear_details: true,
            ..
        } => format!("Transition {state:?} (cleared)"),
        Write::Transition { state, .. } => format!("Transition {state:?}"),
        Write::CancelRequested { .. } => "CancelRequested".into(),
        Write::Operator { .. } => "Operator".into(),
        Write::External { attempt, .. } => format!("External #{attempt}"),
        Write::DeleteRequest { seq } => format!("DeleteRequest {seq}"),
        Write::RequestHeartbeat { seq, .. } => format!("RequestHeartbeat {seq}"),
        other => format!("{other:?}"),
    }
}

fn describe_failure(f: &ActivityFailure) -> String {
    match f {
        ActivityFailure::Application { error_type, .. } => format!("Application {error_type}"),
        ActivityFailure::Timeout { kind, .. } => format!("Timeout {kind:?}"),
        ActivityFailure::Cancelled { .. } => "Cancelled".into(),
        ActivityFailure::RetriesExhausted { attempts, last } => {
            format!(
                "RetriesExhausted {attempts} after {}",
                describe_failure(last)
            )
        }
        other => format!("{other:?}"),
    }
}

/// An activity to make attempt handles of (never run).
struct Stub;

impl crate::Activity for Stub {
    const NAME: &'static str = TYPE;
    type Input = ();
    type Output = ();
    type Checkpoint = ();

    fn options(&self) -> ActivityOptions {
        ActivityOptions::new()
    }

    fn run(
        &self,
        _ctx: ActivityContext,
        _checkpoint: (),
        _input: (),
    ) -> BoxFuture<'static, Result<(), ActivityError>> {
        Box::pin(async { Ok(()) })
    }
}
