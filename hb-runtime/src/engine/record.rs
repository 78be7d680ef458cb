//! What the engine stores of an activity, and the typed failures clients receive.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::definition::{ActivityOptions, RetryPolicy};
use crate::error::ActivityError;
use crate::payload::Payload;

/// Where an activity is in its life.
///
/// ```
/// use hb_runtime::engine::ActivityState;
///
/// assert!(!ActivityState::BackingOff.is_closed());
/// assert!(ActivityState::TimedOut.is_closed());
/// assert_eq!(ActivityState::BackingOff.as_str(), "backing_off");
/// assert_eq!(ActivityState::BackingOff.to_string(), "backing_off");
///
/// // `parse` reads what `as_str` writes, and a few spellings people type.
/// assert_eq!(ActivityState::parse("timed_out"), Some(ActivityState::TimedOut));
/// assert_eq!(ActivityState::parse("timed-out"), Some(ActivityState::TimedOut));
/// assert_eq!(ActivityState::parse("canceled"), Some(ActivityState::Cancelled));
/// assert_eq!(ActivityState::parse("paused"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[repr(i64)]
pub enum ActivityState {
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
    /// A state this build does not know (written by a newer hb).
    Unknown = 99,
}

impl ActivityState {
    pub(crate) fn from_i64(v: i64) -> Option<Self> {
        Some(match v {
            0 => ActivityState::Scheduled,
            1 => ActivityState::Running,
            2 => ActivityState::BackingOff,
            3 => ActivityState::Completed,
            4 => ActivityState::Failed,
            5 => ActivityState::Cancelled,
            6 => ActivityState::TimedOut,
            _ => return None,
        })
    }

    /// Whether the activity has ended.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            ActivityState::Completed
                | ActivityState::Failed
                | ActivityState::Cancelled
                | ActivityState::TimedOut
        )
    }

    /// The lower-case name (`"running"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityState::Scheduled => "scheduled",
            ActivityState::Running => "running",
            ActivityState::BackingOff => "backing_off",
            ActivityState::Completed => "completed",
            ActivityState::Failed => "failed",
            ActivityState::Cancelled => "cancelled",
            ActivityState::TimedOut => "timed_out",
            ActivityState::Unknown => "unknown",
        }
    }

    /// Parses [`as_str`](Self::as_str) names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => ActivityState::Scheduled,
            "running" => ActivityState::Running,
            "backing_off" | "backing-off" => ActivityState::BackingOff,
            "completed" => ActivityState::Completed,
            "failed" => ActivityState::Failed,
            "cancelled" | "canceled" => ActivityState::Cancelled,
            "timed_out" | "timed-out" => ActivityState::TimedOut,
            _ => return None,
        })
    }
}

impl fmt::Display for ActivityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which timeout fired.
///
/// ```
/// use hb_runtime::engine::{ActivityFailure, ActivityState, Engine, StartOptions, TimeoutKind};
/// use hb_runtime::prelude::*;
///
/// #[activity(start_to_close_timeout = "50ms", retry(max_attempts = 1))]
/// async fn too_slow(_ctx: ActivityContext) -> Result<(), ActivityError> {
///     std::future::pending().await // never finishes on its own
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(too_slow).spawn()?;
/// let handle = engine.client().start(too_slow, (), StartOptions::id("slow")).await?;
/// match handle.result().await {
///     Err(ActivityFailure::Timeout { kind, .. }) => {
///         assert_eq!(kind, TimeoutKind::StartToClose);
///         assert_eq!(kind.to_string(), "start-to-close");
///     }
///     other => panic!("expected a timeout, got {other:?}"),
/// }
/// assert_eq!(handle.describe().await?.state, ActivityState::TimedOut);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimeoutKind {
    /// No heartbeat for `heartbeat_timeout`.
    Heartbeat,
    /// One attempt ran longer than `start_to_close_timeout`.
    StartToClose,
    /// The whole activity took longer than `schedule_to_close_timeout`.
    ScheduleToClose,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Heartbeat => "heartbeat",
            TimeoutKind::StartToClose => "start-to-close",
            TimeoutKind::ScheduleToClose => "schedule-to-close",
        })
    }
}

/// How an activity (or one of its attempts) failed, as a client sees it.
///
/// ```
/// use hb_runtime::checkpoint::decode_payload;
/// use hb_runtime::engine::{ActivityFailure, Engine, StartOptions};
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s", retry(max_attempts = 2, initial_interval = "10ms"))]
/// async fn flaky(ctx: ActivityContext, #[checkpoint] mut tries: u64)
///     -> Result<(), ActivityError>
/// {
///     tries += 1;
///     ctx.checkpoint(&tries)?;
///     Err(ActivityError::retryable("Flaky", "not this time"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(flaky).spawn()?;
/// let handle = engine.client().start(flaky, (), StartOptions::id("flaky")).await?;
/// let failure = handle.result().await.unwrap_err();
///
/// let ActivityFailure::RetriesExhausted { attempts, last } = &failure else {
///     panic!("expected RetriesExhausted, got {failure:?}");
/// };
/// assert_eq!(*attempts, 2);
/// match &**last {
///     ActivityFailure::Application { error_type, non_retryable, .. } => {
///         assert_eq!(error_type, "Flaky");
///         assert!(!non_retryable);
///     }
///     other => panic!("expected the activity's own error, got {other:?}"),
/// }
/// // The last checkpoint comes with the failure: attempt 2 resumed from attempt 1's.
/// assert_eq!(decode_payload::<u64>(failure.last_details().unwrap())?, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ActivityFailure {
    /// The activity's own error.
    #[error("{error_type}: {message}")]
    Application {
        /// The error type (what retry policies match).
        error_type: String,
        /// The message.
        message: String,
        /// Whether it was marked non-retryable.
        non_retryable: bool,
        /// The last checkpoint (or the error's own details).
        details: Option<Payload>,
    },
    /// A timeout fired.
    #[error("{kind} timeout")]
    Timeout {
        /// Which one.
        kind: TimeoutKind,
        /// The last checkpoint the attempt heartbeated.
        last_details: Option<Payload>,
    },
    /// The activity was cancelled.
    #[error("cancelled")]
    Cancelled {
        /// Its last checkpoint.
        details: Option<Payload>,
    },
    /// Every attempt the retry policy allowed failed; `last` is the final attempt's failure.
    #[error("retries exhausted after {attempts} attempts; last failure: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// How the last one failed.
        last: Box<ActivityFailure>,
    },
    /// The output could not be decoded into the activity's output type.
    #[error("cannot decode the output: {message}")]
    BadOutput {
        /// The serde message.
        message: String,
    },
    /// The engine could not answer.
    #[error(transparent)]
    Engine(#[from] super::EngineError),
}

impl ActivityFailure {
    /// The last checkpoint carried by the failure, if any: for
    /// [`RetriesExhausted`](Self::RetriesExhausted), the last attempt's.
    ///
    /// ```
    /// use hb_runtime::checkpoint::{decode_payload, encode_payload};
    /// use hb_runtime::engine::{ActivityFailure, TimeoutKind};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let timeout = ActivityFailure::Timeout {
    ///     kind: TimeoutKind::Heartbeat,
    ///     last_details: Some(encode_payload(&7u64)?),
    /// };
    /// let failure = ActivityFailure::RetriesExhausted { attempts: 3, last: Box::new(timeout) };
    /// assert_eq!(decode_payload::<u64>(failure.last_details().unwrap())?, 7);
    ///
    /// let undecodable = ActivityFailure::BadOutput { message: "expected u64".into() };
    /// assert!(undecodable.last_details().is_none());
    /// # Ok(()) }
    /// ```
    pub fn last_details(&self) -> Option<&Payload> {
        match self {
            ActivityFailure::Application { details, .. } => details.as_ref(),
            ActivityFailure::Timeout { last_details, .. } => last_details.as_ref(),
            ActivityFailure::Cancelled { details } => details.as_ref(),
            ActivityFailure::RetriesExhausted { last, .. } => last.last_details(),
            _ => None,
        }
    }

    /// The failure of one attempt, from what it reported.
    pub(crate) fn from_attempt(error: &ActivityError, details: Option<Payload>) -> Self {
        match error {
            ActivityError::Cancelled {
                reason: crate::CancelReason::Requested,
                details: d,
            } => ActivityFailure::Cancelled {
                details: d.clone().or(details),
            },
            // Stopped by something other than a cancel request: a retryable failure named
            // after its cause (WorkerShutdown, Paused, ...).
            ActivityError::Cancelled { reason, details: d } => ActivityFailure::Application {
                error_type: format!("{reason:?}"),
                message: format!("attempt stopped: {reason}"),
                non_retryable: false,
                details: d.clone().or(details),
            },
            e => ActivityFailure::Application {
                error_type: e.error_type().to_owned(),
                message: e.to_string(),
                non_retryable: !e.is_retryable(),
                details,
            },
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&StoredFailure::from(self)).unwrap_or_default()
    }

    pub(crate) fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str::<StoredFailure>(s)
            .ok()
            .map(Into::into)
    }
}

/// The JSON form of a failure in the file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredFailure {
    Application {
        error_type: String,
        message: String,
        non_retryable: bool,
        details: Option<serde_json::Value>,
    },
    Timeout {
        timeout: TimeoutKind,
        details: Option<serde_json::Value>,
    },
    Cancelled {
        details: Option<serde_json::Value>,
    },
    RetriesExhausted {
        attempts: u32,
        last: Box<StoredFailure>,
    },
    Other {
        message: String,
    },
}

fn raw(p: &Option<Payload>) -> Option<serde_json::Value> {
    p.as_ref()
        .and_then(|p| serde_json::from_slice(p.data()).ok())
}

fn payload(v: Option<serde_json::Value>) -> Option<Payload> {
    v.and_then(|v| serde_json::to_vec(&v).ok())
        .map(Payload::from_json_bytes)
}

impl From<&ActivityFailure> for StoredFailure {
    fn from(f: &ActivityFailure) -> Self {
        match f {
            ActivityFailure::Application {
                error_type,
                message,
                non_retryable,
                details,
            } => StoredFailure::Application {
                error_type: error_type.clone(),
                message: message.clone(),
                non_retryable: *non_retryable,
                details: raw(details),
            },
            ActivityFailure::Timeout { kind, last_details } => StoredFailure::Timeout {
                timeout: *kind,
                details: raw(last_details),
            },
            ActivityFailure::Cancelled { details } => StoredFailure::Cancelled {
                details: raw(details),
            },
            ActivityFailure::RetriesExhausted { attempts, last } => {
                StoredFailure::RetriesExhausted {
                    attempts: *attempts,
                    last: Box::new(StoredFailure::from(&**last)),
                }
            }
            other => StoredFailure::Other {
                message: other.to_string(),
            },
        }
    }
}

impl From<StoredFailure> for ActivityFailure {
    fn from(f: StoredFailure) -> Self {
        match f {
            StoredFailure::Application {
                error_type,
                message,
                non_retryable,
                details,
            } => ActivityFailure::Application {
                error_type,
                message,
                non_retryable,
                details: payload(details),
            },
            StoredFailure::Timeout { timeout, details } => ActivityFailure::Timeout {
                kind: timeout,
                last_details: payload(details),
            },
            StoredFailure::Cancelled { details } => ActivityFailure::Cancelled {
                details: payload(details),
            },
            StoredFailure::RetriesExhausted { attempts, last } => {
                ActivityFailure::RetriesExhausted {
                    attempts,
                    last: Box::new((*last).into()),
                }
            }
            StoredFailure::Other { message } => ActivityFailure::Application {
                error_type: "Error".into(),
                message,
                non_retryable: true,
                details: None,
            },
        }
    }
}

/// The options the engine keeps with an activity (its own, with per-start overrides applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredOptions {
    pub(crate) heartbeat_timeout_ms: Option<u64>,
    pub(crate) start_to_close_ms: Option<u64>,
    pub(crate) schedule_to_close_ms: Option<u64>,
    pub(crate) max_attempts: u32,
    pub(crate) initial_interval_ms: u64,
    pub(crate) backoff: f64,
    pub(crate) max_interval_ms: Option<u64>,
    pub(crate) non_retryable: Vec<String>,
}

/// `d` in whole ms: rounded up (a 500 µs timeout is 1 ms, not none), saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

impl StoredOptions {
    /// How long a heartbeat may wait in the writer before it is committed.
    pub(crate) fn heartbeat_commit_within(&self) -> Duration {
        super::store::heartbeat_commit_within(self.heartbeat_timeout())
    }

    pub(crate) fn from_options(o: &ActivityOptions) -> Self {
        StoredOptions {
            heartbeat_timeout_ms: o.effective_heartbeat_timeout().map(ms),
            start_to_close_ms: o.start_to_close_timeout.map(ms),
            schedule_to_close_ms: o.schedule_to_close_timeout.map(ms),
            max_attempts: o.retry.max_attempts,
            initial_interval_ms: ms(o.retry.initial_interval),
            // What is in force: a NaN or infinite coefficient would not survive JSON.
            backoff: o.retry.effective_backoff(),
            max_interval_ms: o.retry.max_interval.map(ms),
            non_retryable: o
                .retry
                .non_retryable
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    pub(crate) fn heartbeat_timeout(&self) -> Option<Duration> {
        self.heartbeat_timeout_ms.map(Duration::from_millis)
    }
    pub(crate) fn start_to_close(&self) -> Option<Duration> {
        self.start_to_close_ms.map(Duration::from_millis)
    }
    pub(crate) fn schedule_to_close(&self) -> Option<Duration> {
        self.schedule_to_close_ms.map(Duration::from_millis)
    }

    /// The delay before the attempt after failed attempt `attempt`.
    pub(crate) fn retry_delay(&self, attempt: u32) -> Duration {
        let mut p = RetryPolicy::new()
            .initial_interval(Duration::from_millis(self.initial_interval_ms))
            .backoff(self.backoff);
        if let Some(m) = self.max_interval_ms {
            p = p.max_interval(Duration::from_millis(m));
        }
        p.delay_after(attempt)
    }

    /// Whether failure `error_type` (retryable per se) may be retried after attempt `attempt`.
    pub(crate) fn may_retry(&self, attempt: u32, error_type: &str) -> bool {
        !self.non_retryable.iter().any(|t| t == error_type)
            && (self.max_attempts == 0 || attempt < self.max_attempts)
    }

    /// Applies the parts of `self` the attempt itself uses to the activity's own options.
    pub(crate) fn apply_to(&self, mut o: ActivityOptions) -> ActivityOptions {
        o.heartbeat_timeout = self.heartbeat_timeout();
        o.start_to_close_timeout = self.start_to_close();
        o.schedule_to_close_timeout = self.schedule_to_close();
        o
    }
}

/// One row of the `activities` table.
#[derive(Debug, Clone)]
pub(crate) struct ActivityRow {
    pub(crate) id: Arc<str>,
    pub(crate) activity_type: String,
    pub(crate) state: ActivityState,
    pub(crate) attempt: u32,
    pub(crate) input: Vec<u8>,
    pub(crate) options: String,
    pub(crate) details: Option<Vec<u8>>,
    pub(crate) output: Option<Vec<u8>>,
    pub(crate) failure: Option<String>,
    pub(crate) cancel_requested: bool,
    pub(crate) scheduled_at: i64,
    pub(crate) attempt_started_at: Option<i64>,
    pub(crate) last_heartbeat_at: Option<i64>,
    pub(crate) next_attempt_at: Option<i64>,
    pub(crate) closed_at: Option<i64>,
    /// The attempt another process last heartbeated through the file (read at recovery).
    pub(crate) external_attempt: Option<u32>,
}
