//! What a change of the core asks of the world outside: [`Effects`], filled by the core
//! under the engine's lock and applied by a shell (`Inner::change`, or the simulator's), and
//! the [`Timer`]s it arms in the deadline queue.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::EngineError;
use super::live::Closed;
use super::write::{Ack, Write};
use crate::error::CancelReason;
use crate::runner::AttemptHandle;

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
