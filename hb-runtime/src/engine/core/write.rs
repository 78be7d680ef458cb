//! What the core asks the store to write ([`Write`]), and what comes back to it once a write
//! is committed or has failed ([`Ack`]). The store applies writes without knowing why; the
//! core decides what each acknowledgement means.

use std::sync::Arc;

use super::super::EngineError;
use super::super::record::ActivityRow;
use super::Live;
use crate::Payload;
use crate::client::ActivityStatus;

/// A write for the writer thread.
#[derive(Debug)]
pub(crate) enum Write {
    Insert(Box<ActivityRow>),
    /// A new attempt started.
    Started {
        /// A heartbeat of it may sit in `heartbeats` (a timed-out attempt's last checkpoint):
        /// fold it into the activity's row first.
        fold: bool,
        id: Arc<str>,
        /// Its number since the last reset (what users see).
        attempt: u32,
        /// The attempts before the last reset: stored again with every start, so a reset
        /// whose own write failed (a full disk) cannot leave the file counting attempts from
        /// an older base (a reopen would then number attempts, and their task tokens, again).
        base: u32,
        /// A reset cleared the checkpoint since the last attempt: cleared in the file again
        /// (after the fold), in case the write that cleared it failed.
        clear_details: bool,
        at: i64,
    },
    Heartbeat {
        id: Arc<str>,
        details: Option<Payload>,
        at: i64,
        /// How long it may wait in the writer for more heartbeats to share its commit.
        commit_within: std::time::Duration,
    },
    /// Any change of state with its fields (completion, failure, retry scheduling, cancel).
    Transition {
        /// As for `Started`.
        fold: bool,
        id: Arc<str>,
        state: ActivityStatus,
        /// Its number since the last reset, and the attempts before it.
        attempt: u32,
        base: u32,
        /// The operator requests in force (`core::operator`).
        operator: u8,
        details: Option<Payload>,
        /// A reset cleared the checkpoint: the stored one goes (after the fold).
        clear_details: bool,
        output: Option<Payload>,
        failure: Option<String>,
        next_attempt_at: Option<i64>,
        closed_at: Option<i64>,
        /// The attempt this change ended, the activity staying open (a failure retried, a
        /// pause, a reset): kept in the file's `attempts` table. The attempt that closes an
        /// activity is read from its row instead.
        ended: Option<Box<Ended>>,
    },
    CancelRequested {
        id: Arc<str>,
    },
    /// The operator requests a running attempt was told of (pause, reset).
    Operator {
        id: Arc<str>,
        operator: u8,
    },
    /// Attempt `attempt` is heartbeated by another process through the file.
    External {
        id: Arc<str>,
        attempt: u32,
    },
    /// Ends the writer thread once everything before it is committed.
    Stop,
    /// Writes nothing: its acknowledgement says every write queued before it is committed.
    Barrier,
    DeleteRequest {
        seq: i64,
    },
    /// Deletes up to `limit` activities closed before `closed_before` (ms); acknowledged
    /// with `true` when it deleted `limit` (there may be more).
    Prune {
        closed_before: i64,
        limit: u32,
    },
    /// A heartbeat another process queued as request `seq`: stored, and the request deleted,
    /// together (and `seq` noted as the newest applied).
    RequestHeartbeat {
        id: Arc<str>,
        details: Option<Payload>,
        at: i64,
        seq: i64,
    },
}

impl Write {
    /// The activity the write changes, if it changes one.
    pub(crate) fn activity(&self) -> Option<&str> {
        match self {
            Write::Insert(row) => Some(&row.id),
            Write::Started { id, .. }
            | Write::Heartbeat { id, .. }
            | Write::Transition { id, .. }
            | Write::CancelRequested { id }
            | Write::Operator { id, .. }
            | Write::External { id, .. }
            | Write::RequestHeartbeat { id, .. } => Some(id),
            Write::Stop | Write::Barrier | Write::DeleteRequest { .. } | Write::Prune { .. } => {
                None
            }
        }
    }
}

/// An attempt that ended without closing its activity (see `Write::Transition`).
#[derive(Debug)]
pub(crate) struct Ended {
    /// Its counter over the activity's whole life (`Live::attempt`): the row's key.
    pub(crate) seq: u32,
    /// Its number since the last reset (what users see).
    pub(crate) number: u32,
    /// When it ended (ms).
    pub(crate) at: i64,
    /// How it ended: `failed`, `timed_out`, `paused`, `reset`, `reset_cleared`.
    pub(crate) outcome: &'static str,
    /// Its last checkpoint (what the next attempt resumes from, unless a reset clears it).
    pub(crate) details: Option<Payload>,
}

/// What happens once a write is committed, with `Ok(true)` when it changed the file
/// (`Ok(false)`: an insert of an id that exists), or why it was not stored.
pub(crate) enum Ack {
    /// A caller waits for it.
    Reply(tokio::sync::oneshot::Sender<Result<bool, EngineError>>),
    /// The closing write of an activity: the core answers its waiters (see
    /// `Core::committed`).
    Closed(Arc<str>),
    /// A heartbeat write of this activity failed (not acknowledged otherwise): the core stores
    /// its checkpoint again.
    Lost(Arc<str>),
    /// A write that was to fold this activity's heartbeat row failed: the next one folds it.
    Unfolded(Arc<str>),
    /// The row of a start: the core admits the activity, then answers the caller.
    Inserted(
        Box<Live>,
        tokio::sync::oneshot::Sender<Result<bool, EngineError>>,
    ),
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ack::Reply(_) => f.write_str("Reply"),
            Ack::Closed(id) => write!(f, "Closed({id})"),
            Ack::Lost(id) => write!(f, "Lost({id})"),
            Ack::Unfolded(id) => write!(f, "Unfolded({id})"),
            Ack::Inserted(live, _) => write!(f, "Inserted({})", live.id),
        }
    }
}

impl Ack {
    /// A reply, and the receiver it answers.
    pub(crate) fn reply() -> (
        Ack,
        tokio::sync::oneshot::Receiver<Result<bool, EngineError>>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Ack::Reply(tx), rx)
    }
}
