//! What the core holds of each open activity ([`Live`]) and how a closed one ended
//! ([`Closed`]). Kept small: thousands are open at once, so rare fields are boxed, and input
//! and checkpoint stay as the JSON bytes the file holds, shared, not decoded.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::clock::Now;
use super::super::record::{ActivityRow, StoredOptions};
use super::super::silence;
use crate::client::{ActivityFailure, ActivityStatus};
use crate::payload::Payload;
use crate::runner::AttemptHandle;

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
    /// The latest attempt started (0 before the first), counted over the activity's whole
    /// life: task tokens and timers name attempts by it, so an attempt of before a reset is
    /// never taken for one of after. Users see [`Live::number`].
    pub(crate) attempt: u32,
    /// The attempts started before the last reset.
    pub(crate) base: u32,
    /// Operator requests the running attempt was told of, and whether a reset cleared the
    /// checkpoint (bits of `core::operator`).
    pub(crate) operator: u8,
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
            attempt: row.attempt.saturating_add(row.attempt_base),
            base: row.attempt_base,
            // What the running attempt was told (`CLEARED` is of this process only: see
            // `Live::stored_operator`); `Core::admit` carries it out if the file has no
            // attempt running.
            operator: row.operator & !super::operator::CLEARED,
            input: Bytes::from(row.input),
            details: row.details.map(Bytes::from),
            options: Arc::new(options),
            scheduled_at: row.scheduled_at,
            started: row.attempt_started_at.map(|ms| now.instant_of_past(ms)),
            last_heartbeat: row.last_heartbeat_at.map(|ms| now.instant_of_past(ms)),
            next_attempt_ms: row.next_attempt_at,
            cancel_requested: row.cancel_requested,
            external: row
                .external_attempt
                .is_some_and(|a| a == row.attempt.saturating_add(row.attempt_base)),
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

    /// The latest attempt's number since the last reset (what users and the retry policy
    /// count; 0 before the first).
    pub(crate) fn number(&self) -> u32 {
        self.attempt.saturating_sub(self.base)
    }

    /// The operator requests the file keeps: those told to the running attempt, carried out
    /// by a reopen if the process ends first. Not `CLEARED`, which guards this process's
    /// memory only: kept in the file, a reopen would clear again a checkpoint made since.
    pub(crate) fn stored_operator(&self) -> u8 {
        self.operator & !super::operator::CLEARED
    }

    /// Forgets the last checkpoint (a reset that clears it).
    pub(crate) fn clear_details(&mut self) {
        self.details = None;
    }

    pub(super) fn is_current(&self, attempt: u32) -> bool {
        self.closing.is_none() && self.state == ActivityStatus::Running && self.attempt == attempt
    }
}
