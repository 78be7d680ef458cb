//! Errors: what an attempt ends with, what `checkpoint()`/`flush()` report, what transports say.

use std::fmt;

#[cfg(feature = "anyhow")]
mod anyhow;

use crate::checkpoint::value::CheckpointDecodeError;
use crate::payload::Payload;
use crate::state::MissingState;

/// Why an attempt was asked to stop; see [`ActivityContext::cancel_reason`](crate::ActivityContext::cancel_reason).
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::testing::ActivityEnvironment;
///
/// #[activity(heartbeat_timeout = "10s", cancel = "cooperative")]
/// async fn watch(ctx: ActivityContext) -> Result<String, ActivityError> {
///     ctx.cancelled().await;
///     Ok(ctx.cancel_reason().unwrap().to_string())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let run = ActivityEnvironment::new().pause_after_heartbeats(1).run(watch, ()).await;
/// assert_eq!(run.result.unwrap(), "paused");
/// assert_eq!(run.cancel_reason, Some(CancelReason::Paused));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CancelReason {
    /// A caller asked for the activity to be cancelled.
    Requested,
    /// The backend timed the attempt out (start-to-close, schedule-to-close or heartbeat).
    TimedOut,
    /// The worker is shutting down; the attempt will be retried elsewhere.
    WorkerShutdown,
    /// The activity was paused on the server. Not a cancellation of the activity: it is retried
    /// (from its last checkpoint) once unpaused.
    Paused,
    /// The backend no longer knows the attempt (it completed or timed out already).
    NotFound,
    /// The activity was reset on the server (`temporal activity reset`): this attempt stops
    /// and the server starts the activity again. Retryable, like a pause.
    Reset,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Requested => "cancel requested",
            CancelReason::TimedOut => "timed out",
            CancelReason::WorkerShutdown => "worker shutdown",
            CancelReason::Paused => "paused",
            CancelReason::NotFound => "activity not found",
            CancelReason::Reset => "activity reset",
        })
    }
}

/// How an attempt failed. Returned by activity bodies and reported to the backend.
///
/// Build application errors with [`ActivityError::retryable`], [`ActivityError::non_retryable`]
/// or the [`ResultExt`] helpers; `?` converts `std::io::Error`, `serde_json::Error` and
/// [`CheckpointError`] directly, and `anyhow::Error` with the `anyhow` feature (see its
/// `From` impl).
///
/// ```
/// use hb_runtime::{ActivityError, ResultExt};
///
/// fn parse(s: &str) -> Result<u64, ActivityError> {
///     s.parse::<u64>().non_retryable("BadInput")
/// }
/// let err = parse("x").unwrap_err();
/// assert_eq!(err.error_type(), "BadInput");
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ActivityError {
    /// An error of the activity's own.
    #[error("{error_type}: {message}")]
    Application {
        /// A type name; a retry policy's `non_retryable` list matches against it.
        error_type: String,
        /// What went wrong.
        message: String,
        /// Never retry this failure, whatever the policy says.
        non_retryable: bool,
        /// Extra details for the caller (the last checkpoint is attached separately).
        details: Option<Payload>,
    },
    /// The attempt stopped because of a cancel request.
    #[error("activity cancelled: {reason}")]
    Cancelled {
        /// Why it was cancelled.
        reason: CancelReason,
        /// The last checkpoint, encoded.
        details: Option<Payload>,
    },
    /// The previous attempt's checkpoint could not be decoded and the activity's policy is
    /// `on_bad_checkpoint = "fail"`. Never retried.
    #[error("bad checkpoint: {0}")]
    BadCheckpoint(CheckpointDecodeError),
    /// The input payload does not decode into the activity's input type. Never retried.
    #[error("activity `{activity}` cannot decode its input as `{expected_type}`: {message}")]
    BadInput {
        /// The activity type name.
        activity: String,
        /// The Rust type the input was decoded into.
        expected_type: &'static str,
        /// The serde message.
        message: String,
    },
    /// A checkpoint could not be stored or sent (too large, wrong type). Never retried: the same
    /// code would fail the same way.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The activity's body panicked. Retried like any other failure.
    #[error("activity panicked: {message}")]
    Panicked {
        /// The panic message, when it was a string.
        message: String,
    },
    /// The worker does not provide a resource the activity takes as a `#[state]` parameter.
    #[error(transparent)]
    MissingState(#[from] MissingState),
    /// The body's output could not be serialised (the counterpart of a caller's
    /// [`ActivityFailure::BadOutput`](crate::client::ActivityFailure::BadOutput), an output that
    /// does not deserialise). Never retried.
    #[error("cannot encode the output of `{activity}`: {message}")]
    OutputNotSerializable {
        /// The activity type name.
        activity: String,
        /// The serde message.
        message: String,
    },
}

impl ActivityError {
    /// A failure the retry policy may retry. `error_type` is what `non_retryable` lists match.
    ///
    /// ```
    /// use hb_runtime::ActivityError;
    ///
    /// let err = ActivityError::retryable("RateLimited", "429 from upstream");
    /// assert_eq!(err.to_string(), "RateLimited: 429 from upstream");
    /// assert!(err.is_retryable());
    /// assert!(!ActivityError::non_retryable("BadInput", "empty file").is_retryable());
    /// ```
    pub fn retryable(error_type: impl Into<String>, message: impl fmt::Display) -> Self {
        ActivityError::Application {
            error_type: error_type.into(),
            message: message.to_string(),
            non_retryable: false,
            details: None,
        }
    }

    /// A failure that is never retried.
    pub fn non_retryable(error_type: impl Into<String>, message: impl fmt::Display) -> Self {
        ActivityError::Application {
            error_type: error_type.into(),
            message: message.to_string(),
            non_retryable: true,
            details: None,
        }
    }

    /// Attaches details to an [`ActivityError::Application`] error (others are returned as is).
    ///
    /// ```
    /// use hb_runtime::{ActivityError, Payload};
    ///
    /// let err = ActivityError::non_retryable("Rejected", "row 12 is invalid")
    ///     .with_details(Payload::json(&12).unwrap());
    /// match err {
    ///     ActivityError::Application { details: Some(d), .. } => assert_eq!(d.decode::<u32>().unwrap(), 12),
    ///     other => panic!("unexpected {other}"),
    /// }
    /// ```
    pub fn with_details(mut self, payload: Payload) -> Self {
        if let ActivityError::Application { details, .. } = &mut self {
            *details = Some(payload);
        }
        self
    }

    /// What the error says, without its type (which [`error_type`](Self::error_type) gives):
    /// what backends store as the failure's message, so that `type: message` names the type
    /// once.
    ///
    /// ```
    /// use hb_runtime::ActivityError;
    ///
    /// let e = ActivityError::non_retryable("NotFound", "No such file: a.csv");
    /// assert_eq!(e.message(), "No such file: a.csv");
    /// assert_eq!(e.to_string(), "NotFound: No such file: a.csv");
    /// ```
    pub fn message(&self) -> std::borrow::Cow<'_, str> {
        match self {
            ActivityError::Application { message, .. } => message.as_str().into(),
            e => e.to_string().into(),
        }
    }

    /// The error's type name, as retry policies match it.
    pub fn error_type(&self) -> &str {
        match self {
            ActivityError::Application { error_type, .. } => error_type,
            ActivityError::Cancelled { .. } => "Cancelled",
            ActivityError::BadCheckpoint(_) => "BadCheckpoint",
            ActivityError::BadInput { .. } => "BadInput",
            ActivityError::Checkpoint(e) => e.error_type(),
            ActivityError::Panicked { .. } => "Panic",
            ActivityError::MissingState(_) => "MissingState",
            ActivityError::OutputNotSerializable { .. } => "OutputNotSerializable",
        }
    }

    /// Whether a retry policy may retry this failure at all.
    ///
    /// ```
    /// use hb_runtime::{ActivityError, CancelReason};
    ///
    /// assert!(ActivityError::retryable("Timeout", "slow upstream").is_retryable());
    /// let paused = ActivityError::Cancelled { reason: CancelReason::Paused, details: None };
    /// assert!(paused.is_retryable()); // resumed once unpaused
    /// let cancelled = ActivityError::Cancelled { reason: CancelReason::Requested, details: None };
    /// assert!(!cancelled.is_retryable() && cancelled.is_cancelled());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            ActivityError::Application { non_retryable, .. } => !non_retryable,
            ActivityError::Panicked { .. } => true,
            ActivityError::Cancelled { reason, .. } => {
                matches!(
                    reason,
                    CancelReason::WorkerShutdown
                        | CancelReason::Paused
                        | CancelReason::TimedOut
                        | CancelReason::Reset
                )
            }
            // A heartbeat the backend did not take (an outage) may work next attempt.
            ActivityError::Checkpoint(CheckpointError::Transport(e)) => {
                e.kind != TransportErrorKind::NotFound
            }
            ActivityError::BadCheckpoint(_)
            | ActivityError::BadInput { .. }
            | ActivityError::Checkpoint(_)
            | ActivityError::MissingState(_)
            | ActivityError::OutputNotSerializable { .. } => false,
        }
    }

    /// Whether this is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ActivityError::Cancelled { .. })
    }
}

impl From<std::io::Error> for ActivityError {
    fn from(e: std::io::Error) -> Self {
        ActivityError::retryable(format!("io::{:?}", e.kind()), e)
    }
}

impl From<serde_json::Error> for ActivityError {
    fn from(e: serde_json::Error) -> Self {
        ActivityError::non_retryable("serde_json::Error", e)
    }
}

/// Turns any `Result<T, E: Display>` into `Result<T, ActivityError>` with a chosen retry class.
///
/// ```
/// use hb_runtime::prelude::*;
///
/// let err = "x".parse::<u32>().retryable().unwrap_err();
/// assert_eq!(err.error_type(), "Error");
/// assert!(err.is_retryable());
///
/// let err = "x".parse::<u32>().non_retryable("BadNumber").unwrap_err();
/// assert_eq!(err.error_type(), "BadNumber");
/// assert!(!err.is_retryable());
///
/// // Retried unless the activity's `retry(non_retryable = [..])` lists it.
/// let err = "x".parse::<u32>().error_type("ParseFailed").unwrap_err();
/// assert_eq!(err.error_type(), "ParseFailed");
/// assert!(err.is_retryable());
/// ```
pub trait ResultExt<T> {
    /// A failure that may be retried, with error type `"Error"`.
    fn retryable(self) -> Result<T, ActivityError>;
    /// A failure that is never retried, with the given error type.
    fn non_retryable(self, error_type: &str) -> Result<T, ActivityError>;
    /// A failure with the given error type (retried unless the policy lists it).
    fn error_type(self, error_type: &str) -> Result<T, ActivityError>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, ActivityError> {
        self.map_err(|e| ActivityError::retryable("Error", e))
    }
    fn non_retryable(self, error_type: &str) -> Result<T, ActivityError> {
        self.map_err(|e| ActivityError::non_retryable(error_type, e))
    }
    fn error_type(self, error_type: &str) -> Result<T, ActivityError> {
        self.map_err(|e| ActivityError::retryable(error_type, e))
    }
}

/// A checkpoint that could not be stored or sent. The previous checkpoint is kept.
///
/// Returned by [`ActivityContext::checkpoint`](crate::ActivityContext::checkpoint) and
/// [`flush`](crate::ActivityContext::flush); `?` turns it into a non-retryable
/// [`ActivityError::Checkpoint`].
///
/// ```
/// use hb_runtime::prelude::*;
///
/// // In an activity's body, `ctx.checkpoint` of another type than the `#[checkpoint]`
/// // parameter's is a compile error; a helper handed the context finds out at run time.
/// fn save_count(ctx: &ActivityContext, n: u64) -> Result<(), CheckpointError> {
///     ctx.checkpoint(&n)
/// }
///
/// #[activity(heartbeat_timeout = "10s", max_checkpoint_size = 64)]
/// async fn note(ctx: ActivityContext, #[checkpoint] mut log: Vec<String>, line: String) -> Result<(), ActivityError> {
///     assert!(matches!(save_count(&ctx, 0), Err(CheckpointError::WrongType { .. })));
///     log.push(line);
///     ctx.checkpoint(&log)?; // stored; its size is checked when it is encoded
///     ctx.flush().await?;    // encodes it now: too large
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(note, "x".repeat(100)).await;
/// match run.result.unwrap_err() {
///     ActivityError::Checkpoint(CheckpointError::TooLarge { size, limit, .. }) => assert!(size > limit),
///     other => panic!("unexpected {other}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The encoded checkpoint is larger than the activity's `max_checkpoint_size`.
    #[error(
        "checkpoint {type_name} is {size} bytes encoded, above the {limit}-byte limit; the previous checkpoint was kept"
    )]
    TooLarge {
        /// The checkpoint type.
        type_name: &'static str,
        /// Its encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The value passed is not the activity's checkpoint type. Within an `#[activity]` body,
    /// `ctx.checkpoint(..)` of another type is a compile error instead; this is what a call
    /// the macro does not see (a helper function handed the context) returns.
    #[error("checkpoint of type {found} passed to an activity whose checkpoint type is {expected}")]
    WrongType {
        /// The activity's declared checkpoint type.
        expected: &'static str,
        /// The type passed.
        found: &'static str,
    },
    /// serde could not serialise the checkpoint.
    #[error("cannot encode checkpoint {type_name}: {message}")]
    Encode {
        /// The checkpoint type.
        type_name: &'static str,
        /// The serde message.
        message: String,
    },
    /// The heartbeat carrying the checkpoint could not be delivered.
    #[error("heartbeat not delivered: {0}")]
    Transport(#[from] TransportError),
    /// The attempt has ended; nothing more is sent.
    #[error("the attempt has ended")]
    Closed,
}

impl CheckpointError {
    fn error_type(&self) -> &'static str {
        match self {
            CheckpointError::TooLarge { .. } => "CheckpointTooLarge",
            CheckpointError::WrongType { .. } => "CheckpointWrongType",
            CheckpointError::Encode { .. } => "CheckpointEncode",
            CheckpointError::Transport(_) => "HeartbeatTransport",
            CheckpointError::Closed => "AttemptClosed",
        }
    }
}

/// A backend could not be reached or refused a call.
///
/// ```
/// use hb_runtime::TransportErrorKind;
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::backend::{TaskToken, Transport};
/// use hb_runtime::TransportError;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let backend = MemoryTransport::new();
/// backend.set_unavailable(true);
/// let err = backend.heartbeat(&TaskToken::new(*b"t1"), None).await.unwrap_err();
/// assert_eq!(err.kind, TransportErrorKind::Unavailable);
///
/// // What a transport of your own returns:
/// let err = TransportError::new(TransportErrorKind::NotFound, "unknown task token");
/// assert_eq!(err.to_string(), "not found: unknown task token");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
#[non_exhaustive]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportErrorKind,
    /// Details.
    pub message: String,
}

/// The kind of a [`TransportError`].
///
/// The heartbeat pump retries [`Unavailable`](Self::Unavailable) at the next interval and stops
/// the attempt on [`NotFound`](Self::NotFound) ([`CancelReason::NotFound`]).
///
/// ```
/// use hb_runtime::{TransportError, TransportErrorKind};
///
/// fn worth_retrying(e: &TransportError) -> bool {
///     e.kind == TransportErrorKind::Unavailable
/// }
/// assert!(worth_retrying(&TransportError::new(TransportErrorKind::Unavailable, "connection reset")));
/// assert!(!worth_retrying(&TransportError::new(TransportErrorKind::NotFound, "attempt ended")));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The backend does not know the task token (the attempt ended or timed out).
    NotFound,
    /// The backend could not be reached; the call may succeed later.
    Unavailable,
    /// Anything else.
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportErrorKind::NotFound => "not found",
            TransportErrorKind::Unavailable => "unavailable",
            TransportErrorKind::Other => "transport error",
        })
    }
}

impl TransportError {
    /// A new error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
