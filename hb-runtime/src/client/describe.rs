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
}

impl Description {
    /// An activity known by id and type only; the backends fill in the rest.
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
        }
    }

    /// Sets `details` and the `progress` read from them.
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
    pub(crate) fn effective_limit(&self) -> usize {
        self.limit.unwrap_or(1000)
    }

    /// Whether `status` is wanted.
    pub(crate) fn wants(&self, status: ActivityStatus) -> bool {
        self.statuses.is_empty() || self.statuses.contains(&status)
    }
}
