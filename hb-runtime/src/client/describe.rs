//! What a backend knows of one activity: [`Description`], its [`ActivityStatus`], and the
//! [`ListFilter`] that selects descriptions.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

use super::ActivityFailure;
use crate::checkpoint;
use crate::checkpoint::value::{Checkpoint, Progress};
use crate::payload::Payload;

/// Where an activity is in its life, on every backend.
///
/// ```
/// use hb_runtime::client::ActivityStatus;
///
/// assert!(!ActivityStatus::BackingOff.is_closed());
/// assert!(ActivityStatus::TimedOut.is_closed());
/// assert_eq!(ActivityStatus::BackingOff.as_str(), "backing_off");
/// assert_eq!(ActivityStatus::BackingOff.to_string(), "backing_off");
///
/// // `parse` reads what `as_str` writes, and a few spellings people type.
/// assert_eq!(ActivityStatus::parse("timed_out"), Some(ActivityStatus::TimedOut));
/// assert_eq!(ActivityStatus::parse("timed-out"), Some(ActivityStatus::TimedOut));
/// assert_eq!(ActivityStatus::parse("canceled"), Some(ActivityStatus::Cancelled));
/// assert_eq!(ActivityStatus::parse("sleeping"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[repr(i64)]
pub enum ActivityStatus {
    /// Waiting for a worker.
    Scheduled = 0,
    /// An attempt is running.
    Running = 1,
    /// Waiting for the retry delay after a failed attempt.
    BackingOff = 2,
    /// Completed with an output.
    Completed = 3,
    /// Failed for good (non-retryable, or retries exhausted).
    Failed = 4,
    /// Cancelled.
    Cancelled = 5,
    /// Timed out for good (schedule-to-close, or the last attempt's timeout).
    TimedOut = 6,
    /// Paused by an operator: no attempt runs until it is unpaused (Temporal).
    Paused = 7,
    /// Terminated by an operator (Temporal).
    Terminated = 8,
    /// A status this build does not know (written by a newer hb, or a newer server).
    Unknown = 99,
}

impl ActivityStatus {
    #[cfg(feature = "engine")]
    pub(crate) fn from_i64(v: i64) -> Option<Self> {
        Some(match v {
            0 => ActivityStatus::Scheduled,
            1 => ActivityStatus::Running,
            2 => ActivityStatus::BackingOff,
            3 => ActivityStatus::Completed,
            4 => ActivityStatus::Failed,
            5 => ActivityStatus::Cancelled,
            6 => ActivityStatus::TimedOut,
            7 => ActivityStatus::Paused,
            8 => ActivityStatus::Terminated,
            _ => return None,
        })
    }

    /// Whether the activity has ended.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            ActivityStatus::Completed
                | ActivityStatus::Failed
                | ActivityStatus::Cancelled
                | ActivityStatus::TimedOut
                | ActivityStatus::Terminated
        )
    }

    /// The lower-case name (`"running"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Scheduled => "scheduled",
            ActivityStatus::Running => "running",
            ActivityStatus::BackingOff => "backing_off",
            ActivityStatus::Completed => "completed",
            ActivityStatus::Failed => "failed",
            ActivityStatus::Cancelled => "cancelled",
            ActivityStatus::TimedOut => "timed_out",
            ActivityStatus::Paused => "paused",
            ActivityStatus::Terminated => "terminated",
            ActivityStatus::Unknown => "unknown",
        }
    }

    /// Parses [`as_str`](Self::as_str) names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => ActivityStatus::Scheduled,
            "running" => ActivityStatus::Running,
            "backing_off" | "backing-off" => ActivityStatus::BackingOff,
            "completed" => ActivityStatus::Completed,
            "failed" => ActivityStatus::Failed,
            "cancelled" | "canceled" => ActivityStatus::Cancelled,
            "timed_out" | "timed-out" => ActivityStatus::TimedOut,
            "paused" => ActivityStatus::Paused,
            "terminated" => ActivityStatus::Terminated,
            _ => return None,
        })
    }
}

impl fmt::Display for ActivityStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a backend knows of one activity: from
/// [`ActivityClient::describe`](super::ActivityClient::describe), `list`, and
/// [`Handle::describe`](super::Handle::describe).
///
/// It serialises (serde) with times as RFC 3339 strings and payloads as their JSON, for a
/// dashboard or an API to hand on.
///
/// ```
/// use hb_runtime::client::{ActivityClient, ActivityFailure, ActivityStatus, StartOptions};
/// use hb_runtime::engine::Engine;
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Rows {
///     #[checkpoint(done)]
///     done: u64,
///     #[checkpoint(total)]
///     total: u64,
/// }
///
/// #[activity(heartbeat_timeout = "10s", retry(max_attempts = 3))]
/// async fn import(ctx: ActivityContext, #[checkpoint] mut rows: Rows, bad_row: u64)
///     -> Result<(), ActivityError>
/// {
///     rows.total = 10;
///     while rows.done < rows.total {
///         if rows.done == bad_row {
///             return Err(ActivityError::non_retryable("BadRow", format!("row {bad_row}")));
///         }
///         rows.done += 1;
///         ctx.checkpoint(&rows)?;
///     }
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(import).spawn().await?;
/// let handle = engine.client().start(import, 4, StartOptions::id("import-1")).await?;
/// assert!(handle.result().await.is_err());
///
/// let d = handle.describe().await?;
/// assert_eq!((d.id.as_str(), d.activity_type.as_str()), ("import-1", "import"));
/// assert_eq!(d.status, ActivityStatus::Failed);
/// assert_eq!(d.attempt, 1); // non-retryable: no second attempt
/// assert_eq!(d.progress.unwrap().to_string(), "4/10");
/// assert_eq!(d.checkpoint::<Rows>().unwrap().done, 4);
/// assert!(matches!(
///     d.last_failure,
///     Some(ActivityFailure::Application { ref error_type, .. }) if error_type == "BadRow"
/// ));
/// assert!(!d.cancel_requested);
/// assert!(d.closed_at.is_some() && d.next_attempt_at.is_none());
///
/// let json = serde_json::to_value(&d)?;
/// assert_eq!(json["status"], "failed");
/// assert_eq!(json["details"]["done"], 4);
/// assert_eq!(json["last_failure"]["failure"], "application");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Description {
    /// The activity id.
    pub id: String,
    /// The activity type (the hb name).
    pub activity_type: String,
    /// Where it is.
    pub status: ActivityStatus,
    /// The latest attempt started (0 before the first on the engine; Temporal counts the
    /// scheduled attempt, from 1).
    pub attempt: u32,
    /// Done/total from the last checkpoint (`#[checkpoint(done)]`/`total` fields).
    pub progress: Option<Progress>,
    /// The last checkpoint, encoded; [`checkpoint`](Self::checkpoint) decodes it.
    #[serde(serialize_with = "payload_json")]
    pub details: Option<Payload>,
    /// When the current attempt last heartbeated.
    #[serde(serialize_with = "rfc3339")]
    pub last_heartbeat: Option<SystemTime>,
    /// When the current attempt started.
    #[serde(serialize_with = "rfc3339")]
    pub attempt_started: Option<SystemTime>,
    /// The last failure (of an attempt, or the final one).
    pub last_failure: Option<ActivityFailure>,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// When it was started.
    #[serde(serialize_with = "rfc3339")]
    pub scheduled_at: Option<SystemTime>,
    /// When the next attempt is due (backing off).
    #[serde(serialize_with = "rfc3339")]
    pub next_attempt_at: Option<SystemTime>,
    /// When it closed.
    #[serde(serialize_with = "rfc3339")]
    pub closed_at: Option<SystemTime>,
    /// The output, once completed (encoded; decode it with [`Payload::decode`], or await
    /// [`Handle::result`](super::Handle::result) for it typed). `list` leaves it out.
    #[serde(serialize_with = "payload_json")]
    pub output: Option<Payload>,
    /// The task queue it runs on (Temporal; `None` on the engine, which has no queues).
    pub task_queue: Option<String>,
    /// Its attempts, oldest first: those that ended while it stayed open (the engine keeps
    /// the newest 100), then the running or final one. `list` leaves them out. On Temporal,
    /// which keeps no per-attempt history of a standalone activity, only the current or
    /// final attempt.
    pub attempts: Vec<AttemptRecord>,
}

/// How one attempt ended, or that it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptStatus {
    /// It runs.
    Running,
    /// It completed the activity.
    Completed,
    /// It failed (an error; retried unless it was the last).
    Failed,
    /// It timed out (heartbeat, start-to-close, or the activity's schedule-to-close).
    TimedOut,
    /// It was cancelled with the activity.
    Cancelled,
    /// An operator paused the activity: the attempt stopped, its checkpoint kept.
    Paused,
    /// An operator reset the activity: the attempt stopped, and the next one is attempt 1.
    Reset,
}

impl AttemptStatus {
    /// The lower-case name (`"failed"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Running => "running",
            AttemptStatus::Completed => "completed",
            AttemptStatus::Failed => "failed",
            AttemptStatus::TimedOut => "timed_out",
            AttemptStatus::Cancelled => "cancelled",
            AttemptStatus::Paused => "paused",
            AttemptStatus::Reset => "reset",
        }
    }
}

impl fmt::Display for AttemptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt of an activity, in [`Description::attempts`].
///
/// ```
/// use hb_runtime::client::{ActivityClient, AttemptStatus, StartOptions};
/// use hb_runtime::engine::Engine;
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s", retry(max_attempts = 3, initial_interval = "1ms"))]
/// async fn flaky(ctx: ActivityContext, #[checkpoint] done: u64) -> Result<u64, ActivityError> {
///     ctx.checkpoint(&(done + 10))?;
///     if ctx.info().attempt < 3 {
///         return Err(ActivityError::retryable("Flaky", "try again"));
///     }
///     Ok(done)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(flaky).spawn().await?;
/// let handle = engine.client().start(flaky, (), StartOptions::id("flaky-1")).await?;
/// assert_eq!(handle.result().await?, 20);
///
/// let attempts = handle.describe().await?.attempts;
/// let seen: Vec<_> = attempts.iter().map(|a| (a.attempt, a.status)).collect();
/// assert_eq!(seen, [(1, AttemptStatus::Failed), (2, AttemptStatus::Failed), (3, AttemptStatus::Completed)]);
/// // Each resumed from the checkpoint the one before it left.
/// let resumed: Vec<_> = attempts.iter().map(|a| a.resumed_from.as_ref().map(|p| p.done)).collect();
/// assert_eq!(resumed, [None, Some(10), Some(20)]);
/// assert!(attempts.iter().all(|a| a.started_at.is_some() && a.ended_at.is_some()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// Its number since the activity's last reset (what the body saw in `ctx.info().attempt`).
    pub attempt: u32,
    /// How it ended, or that it runs.
    pub status: AttemptStatus,
    /// When it started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Option<SystemTime>,
    /// When it ended (`None` while it runs).
    #[serde(serialize_with = "rfc3339")]
    pub ended_at: Option<SystemTime>,
    /// Why it ended, if not by completing.
    pub failure: Option<ActivityFailure>,
    /// The progress of the checkpoint it started from (the one the attempt before it left;
    /// `None` for a first attempt, or after a reset that cleared the checkpoint).
    pub resumed_from: Option<Progress>,
    /// Its last checkpoint, encoded.
    #[serde(serialize_with = "payload_json")]
    pub details: Option<Payload>,
}

/// An attempt that ended while its activity stayed open, as a backend keeps it.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "engine"), allow(dead_code))]
pub(crate) struct EndedAttempt {
    /// Its counter over the activity's whole life (resets do not restart it).
    pub(crate) seq: u32,
    pub(crate) attempt: u32,
    pub(crate) status: AttemptStatus,
    /// A reset that cleared the checkpoint: the next attempt starts from none.
    pub(crate) cleared: bool,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) ended_at: SystemTime,
    pub(crate) failure: Option<ActivityFailure>,
    pub(crate) details: Option<Payload>,
}

impl Description {
    /// An activity known by id and type only; the backends fill in the rest.
    #[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
    pub(crate) fn new(id: String, activity_type: String, status: ActivityStatus) -> Self {
        Description {
            id,
            activity_type,
            status,
            attempt: 0,
            progress: None,
            details: None,
            last_heartbeat: None,
            attempt_started: None,
            last_failure: None,
            cancel_requested: false,
            scheduled_at: None,
            next_attempt_at: None,
            closed_at: None,
            output: None,
            task_queue: None,
            attempts: Vec::new(),
        }
    }

    /// Sets `attempts`: the `ended` ones, oldest first, then the running or final attempt
    /// this description shows (unless it is the last of `ended`: an activity cancelled while
    /// backing off ended with no attempt running).
    #[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
    pub(crate) fn with_attempts(mut self, ended: Vec<EndedAttempt>) -> Self {
        let mut out: Vec<AttemptRecord> = Vec::with_capacity(ended.len() + 1);
        let mut from: Option<Progress> = None;
        for e in ended {
            let resumed_from = from.take();
            from = if e.cleared {
                None
            } else {
                e.details.as_ref().and_then(checkpoint::progress_of)
            };
            out.push(AttemptRecord {
                attempt: e.attempt,
                status: e.status,
                started_at: e.started_at,
                ended_at: Some(e.ended_at),
                failure: e.failure,
                resumed_from,
                details: e.details,
            });
        }
        let already = out
            .last()
            .is_some_and(|l| l.attempt == self.attempt && l.started_at == self.attempt_started);
        let status = match self.status {
            ActivityStatus::Running => Some(AttemptStatus::Running),
            ActivityStatus::Completed => Some(AttemptStatus::Completed),
            ActivityStatus::Failed | ActivityStatus::Terminated => Some(AttemptStatus::Failed),
            ActivityStatus::TimedOut => Some(AttemptStatus::TimedOut),
            ActivityStatus::Cancelled => Some(AttemptStatus::Cancelled),
            // Between attempts: the last one is among `ended`.
            _ => None,
        };
        if let (Some(status), false, true) = (status, already, self.attempt > 0) {
            out.push(AttemptRecord {
                attempt: self.attempt,
                status,
                started_at: self.attempt_started,
                ended_at: self.closed_at,
                failure: match status {
                    AttemptStatus::Completed | AttemptStatus::Running => None,
                    _ => self.last_failure.clone(),
                },
                resumed_from: from,
                details: self.details.clone(),
            });
        }
        self.attempts = out;
        self
    }

    /// Sets `details` and the `progress` read from them.
    #[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
    pub(crate) fn with_details(mut self, details: Option<Payload>) -> Self {
        self.progress = details.as_ref().and_then(checkpoint::progress_of);
        self.details = details;
        self
    }

    /// The last checkpoint, decoded as `T` (migrating an older version); `None` when there is
    /// none or it is not a `T`.
    ///
    /// ```
    /// use hb_runtime::client::{ActivityClient, StartOptions};
    /// use hb_runtime::engine::Engine;
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn count_to(ctx: ActivityContext, #[checkpoint] mut next: u64, to: u64)
    ///     -> Result<(), ActivityError>
    /// {
    ///     while next < to {
    ///         next += 1;
    ///         ctx.checkpoint(&next)?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::in_memory().await?;
    /// let _worker = engine.worker().register(count_to).spawn().await?;
    /// let client = engine.client();
    /// client.start(count_to, 5, StartOptions::id("count")).await?.result().await?;
    ///
    /// let d = client.describe("count").await?;
    /// assert_eq!(d.checkpoint::<u64>(), Some(5));
    /// assert_eq!(d.checkpoint::<String>(), None);
    /// # Ok(()) }
    /// ```
    pub fn checkpoint<T: Checkpoint>(&self) -> Option<T> {
        self.details
            .as_ref()
            .and_then(|d| checkpoint::decode_payload(d).ok())
    }
}

/// A payload as its JSON value (`null` when absent; a note when it is not JSON).
pub(crate) fn payload_json<S: Serializer>(p: &Option<Payload>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        None => s.serialize_none(),
        Some(p) => match serde_json::from_slice::<serde_json::Value>(p.data()) {
            Ok(v) => v.serialize(s),
            Err(_) => s.serialize_str(&format!(
                "<{} bytes of {}>",
                p.len(),
                p.encoding().unwrap_or("unknown encoding")
            )),
        },
    }
}

/// A time as RFC 3339 with milliseconds (`null` when absent; past the year 9999, which RFC
/// 3339 cannot write, its milliseconds since 1970).
fn rfc3339<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    const YEAR_10000: Duration = Duration::from_secs(253_402_300_800);
    match t.map(|t| (t, t.duration_since(UNIX_EPOCH).unwrap_or_default())) {
        None => s.serialize_none(),
        Some((_, since)) if since >= YEAR_10000 => {
            s.serialize_u64(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        }
        Some((t, _)) => s.collect_str(&humantime::format_rfc3339_millis(t)),
    }
}

/// The wall-clock time of `ms` since the epoch; before 1970 reads as 1970, past the end of
/// `SystemTime` as the epoch (a hostile file's extreme values: tools show them as such).
#[cfg_attr(not(feature = "engine"), allow(dead_code))]
pub(crate) fn time_of_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.max(0).unsigned_abs());
    UNIX_EPOCH.checked_add(d).unwrap_or(UNIX_EPOCH)
}

/// Which activities [`ActivityClient::list`](super::ActivityClient::list) returns.
///
/// ```
/// use hb_runtime::client::{ActivityStatus, ListFilter};
///
/// assert!(ListFilter::all().statuses.is_empty()); // every status
/// assert_eq!(ListFilter::status(ActivityStatus::Running).statuses, [ActivityStatus::Running]);
///
/// let mut open = ListFilter::all();
/// open.statuses = vec![ActivityStatus::Scheduled, ActivityStatus::Running];
/// open.limit = Some(20); // the 20 newest
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only these statuses (all when empty).
    pub statuses: Vec<ActivityStatus>,
    /// At most this many, newest first (default 1,000).
    pub limit: Option<usize>,
}

impl ListFilter {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only activities in `status`.
    pub fn status(status: ActivityStatus) -> Self {
        ListFilter {
            statuses: vec![status],
            limit: None,
        }
    }

    /// The limit in force.
    #[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
    pub(crate) fn effective_limit(&self) -> usize {
        self.limit.unwrap_or(1000)
    }

    /// Whether `status` is wanted.
    #[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
    pub(crate) fn wants(&self, status: ActivityStatus) -> bool {
        self.statuses.is_empty() || self.statuses.contains(&status)
    }
}
