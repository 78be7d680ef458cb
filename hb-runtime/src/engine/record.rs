//! What the engine stores of an activity: its row, its options, its failures as JSON.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{ActivityFailure, ActivityStatus, TimeoutKind};
use crate::error::ActivityError;
use crate::options::{ActivityOptions, RetryPolicy};
use crate::payload::Payload;

impl ActivityFailure {
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
                message: e.message().into_owned(),
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
    pub(crate) state: ActivityStatus,
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
    /// Attempts started before the last reset (read at recovery): `attempt` counts from it,
    /// and the engine's own count of attempts is `attempt + attempt_base`.
    pub(crate) attempt_base: u32,
    /// Operator requests the running attempt was told of (`core::operator`'s bits; read at
    /// recovery).
    pub(crate) operator: u8,
}
