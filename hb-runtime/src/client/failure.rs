//! How an activity failed, and why a client call could not be answered: one set of types for
//! every backend.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::payload::Payload;

/// Which timeout ended an attempt or an activity.
///
/// ```
/// use hb_runtime::client::{ActivityClient, ActivityFailure, ActivityStatus, StartOptions, TimeoutKind};
/// use hb_runtime::engine::Engine;
/// use hb_runtime::prelude::*;
///
/// #[activity(start_to_close_timeout = "50ms", retry(max_attempts = 1))]
/// async fn too_slow(_ctx: ActivityContext) -> Result<(), ActivityError> {
///     std::future::pending().await // never finishes on its own
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let _worker = engine.worker().register(too_slow).spawn().await?;
/// let handle = engine.client().start(too_slow, (), StartOptions::id("slow")).await?;
/// match handle.result().await {
///     Err(ActivityFailure::Timeout { kind, .. }) => {
///         assert_eq!(kind, TimeoutKind::StartToClose);
///         assert_eq!(kind.to_string(), "start-to-close");
///     }
///     other => panic!("expected a timeout, got {other:?}"),
/// }
/// assert_eq!(handle.describe().await?.status, ActivityStatus::TimedOut);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimeoutKind {
    /// No heartbeat for `heartbeat_timeout`.
    Heartbeat,
    /// One attempt ran longer than `start_to_close_timeout`.
    StartToClose,
    /// The whole activity took longer than `schedule_to_close_timeout`.
    ScheduleToClose,
    /// No worker took it within its schedule-to-start timeout (Temporal only).
    ScheduleToStart,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Heartbeat => "heartbeat",
            TimeoutKind::StartToClose => "start-to-close",
            TimeoutKind::ScheduleToClose => "schedule-to-close",
            TimeoutKind::ScheduleToStart => "schedule-to-start",
        })
    }
}

/// How an activity (or one of its attempts) failed, as a client sees it, on every backend:
/// from [`Handle::result`](super::Handle::result) and in
/// [`Description::last_failure`](super::Description::last_failure).
///
/// ```
/// use hb_runtime::checkpoint::decode_payload;
/// use hb_runtime::client::{ActivityClient, ActivityFailure, StartOptions};
/// use hb_runtime::engine::Engine;
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
/// let _worker = engine.worker().register(flaky).spawn().await?;
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
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActivityFailure {
    /// The activity's own error ([`ActivityError`](crate::ActivityError)). `message` is what
    /// the error said, without its type.
    #[error("{error_type}: {message}")]
    Application {
        /// The error type (what retry policies match).
        error_type: String,
        /// The message.
        message: String,
        /// Whether it was marked non-retryable.
        non_retryable: bool,
        /// The last checkpoint (or the error's own details).
        #[serde(serialize_with = "super::describe::payload_json")]
        details: Option<Payload>,
    },
    /// A timeout fired.
    #[error("{kind} timeout")]
    Timeout {
        /// Which one.
        kind: TimeoutKind,
        /// The last checkpoint the attempt heartbeated.
        #[serde(serialize_with = "super::describe::payload_json")]
        last_details: Option<Payload>,
    },
    /// The activity was cancelled.
    #[error("cancelled")]
    Cancelled {
        /// Its last checkpoint.
        #[serde(serialize_with = "super::describe::payload_json")]
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
    /// It was terminated by an operator (Temporal's `terminate`; the engine has none).
    #[error("terminated")]
    Terminated,
    /// The activity completed, but its output does not decode into the activity's output type
    /// (a caller built against another version of the activity).
    #[error("the output of {activity_type} does not decode: {message}")]
    BadOutput {
        /// The activity type.
        activity_type: String,
        /// Where and why decoding failed (never the value).
        message: String,
    },
    /// The backend could not say how the activity ended (storage or connection failure, an
    /// unknown id, a closed engine).
    #[error(transparent)]
    Backend(#[serde(serialize_with = "message_of")] ClientError),
}

fn message_of<S: Serializer>(e: &ClientError, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry("message", &e.to_string())?;
    m.end()
}

impl ActivityFailure {
    /// The last checkpoint carried by the failure, if any: for
    /// [`RetriesExhausted`](Self::RetriesExhausted), the last attempt's.
    ///
    /// ```
    /// use hb_runtime::checkpoint::{decode_payload, encode_payload};
    /// use hb_runtime::client::{ActivityFailure, TimeoutKind};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let timeout = ActivityFailure::Timeout {
    ///     kind: TimeoutKind::Heartbeat,
    ///     last_details: Some(encode_payload(&7u64)?),
    /// };
    /// let failure = ActivityFailure::RetriesExhausted { attempts: 3, last: Box::new(timeout) };
    /// assert_eq!(decode_payload::<u64>(failure.last_details().unwrap())?, 7);
    /// assert!(ActivityFailure::Terminated.last_details().is_none());
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

    /// Its kind, as its JSON form's `failure` tag names it (`"application"`, `"timeout"`, ...),
    /// without encoding it (and its details).
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ActivityFailure::Application { .. } => "application",
            ActivityFailure::Timeout { .. } => "timeout",
            ActivityFailure::Cancelled { .. } => "cancelled",
            ActivityFailure::RetriesExhausted { .. } => "retries_exhausted",
            ActivityFailure::Terminated => "terminated",
            ActivityFailure::BadOutput { .. } => "bad_output",
            ActivityFailure::Backend(_) => "backend",
        }
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn the_kind_is_the_json_tag() {
        let timeout = ActivityFailure::Timeout {
            kind: TimeoutKind::Heartbeat,
            last_details: None,
        };
        for f in [
            ActivityFailure::Application {
                error_type: "E".into(),
                message: "m".into(),
                non_retryable: false,
                details: None,
            },
            timeout.clone(),
            ActivityFailure::Cancelled { details: None },
            ActivityFailure::RetriesExhausted {
                attempts: 2,
                last: Box::new(timeout),
            },
            ActivityFailure::Terminated,
            ActivityFailure::BadOutput {
                activity_type: "t".into(),
                message: "m".into(),
            },
            ActivityFailure::Backend(ClientError::Closed),
        ] {
            let json = serde_json::to_value(&f).unwrap();
            assert_eq!(json["failure"], f.kind(), "{f:?}");
        }
    }
}

impl From<ClientError> for ActivityFailure {
    fn from(e: ClientError) -> Self {
        ActivityFailure::Backend(e)
    }
}

#[cfg(feature = "engine")]
impl From<crate::engine::EngineError> for ActivityFailure {
    fn from(e: crate::engine::EngineError) -> Self {
        ActivityFailure::Backend(e.into())
    }
}

#[cfg(feature = "temporal")]
impl From<crate::temporal::TemporalError> for ActivityFailure {
    fn from(e: crate::temporal::TemporalError) -> Self {
        ActivityFailure::Backend(e.into())
    }
}

/// Why a client call ([`ActivityClient`](super::ActivityClient)'s `start`, `describe`,
/// `cancel`, `list`, and a handle's) could not be answered.
///
/// ```
/// use hb_runtime::client::{ActivityClient, ClientError, StartOptions};
/// use hb_runtime::engine::Engine;
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
///     Ok(format!("hello {name}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let client = engine.client();
/// client.start(double, 1, StartOptions::id("job")).await?;
///
/// match client.start(greet, "hb".into(), StartOptions::id("job")).await {
///     Err(ClientError::WrongType { id, found, expected }) => {
///         assert_eq!(id, "job");
///         assert_eq!((found.as_str(), expected.as_str()), ("double", "greet"));
///     }
///     other => panic!("expected WrongType, got {other:?}"),
/// }
///
/// let err = client.describe("nope").await.unwrap_err();
/// assert_eq!(err, ClientError::NotFound { id: "nope".into() });
/// assert_eq!(err.to_string(), "no activity with id `nope`");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No activity has this id.
    #[error("no activity with id `{id}`")]
    NotFound {
        /// The id.
        id: String,
    },
    /// An activity with this id exists already, and
    /// [`StartOptions::fail_if_exists`](super::StartOptions::fail_if_exists) said to refuse.
    #[error("an activity with id `{id}` was already started (type {activity_type})")]
    AlreadyStarted {
        /// The id.
        id: String,
        /// Its type.
        activity_type: String,
    },
    /// An activity with this id exists, of another type than the one started.
    #[error("activity `{id}` is of type {found}, not {expected}")]
    WrongType {
        /// The id.
        id: String,
        /// Its type.
        found: String,
        /// The type asked for.
        expected: String,
    },
    /// The input does not serialise (its `Serialize` impl refused it).
    #[error("the input of `{activity_type}` does not serialise: {message}")]
    InputNotSerializable {
        /// The activity type.
        activity_type: String,
        /// serde's message.
        message: String,
    },
    /// The operation does not apply to the activity in its present status: pausing an
    /// activity that is paused or closed, unpausing one that is not paused, resetting a closed
    /// one. The same on every backend (Temporal refuses these too).
    #[error("cannot {operation} activity `{id}`: it is {status}")]
    NotAllowed {
        /// The id.
        id: String,
        /// `"pause"`, `"unpause"` or `"reset"`.
        operation: &'static str,
        /// Its status when it was refused.
        status: super::ActivityStatus,
    },
    /// The backend (or the server it talks to) does not support the operation.
    #[error("{operation} is not supported here: {reason}")]
    Unsupported {
        /// The operation (`"pause"`, ...).
        operation: &'static str,
        /// Why (the server's message).
        reason: String,
    },
    /// The backend has shut down (the engine was closed).
    #[error("the backend has shut down")]
    Closed,
    /// The embedded engine failed (its file: storage, corruption, a lock).
    #[cfg(feature = "engine")]
    #[error(transparent)]
    Engine(crate::engine::EngineError),
    /// The Temporal server refused a request or could not be reached.
    #[cfg(feature = "temporal")]
    #[error(transparent)]
    Temporal(crate::temporal::TemporalError),
}

#[cfg(feature = "engine")]
impl From<crate::engine::EngineError> for ClientError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError;
        match e {
            EngineError::NotFound { id } => ClientError::NotFound { id },
            EngineError::Closed => ClientError::Closed,
            e => ClientError::Engine(e),
        }
    }
}

#[cfg(feature = "temporal")]
impl From<crate::temporal::TemporalError> for ClientError {
    fn from(e: crate::temporal::TemporalError) -> Self {
        ClientError::Temporal(e)
    }
}
