//! Standalone activities on a Temporal server: start an hb activity by its typed input, await
//! its typed output, cancel it, and describe it (state, attempt, progress from its checkpoint).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use temporalio_client::{
    ActivityCancelOptions, ActivityDescribeOptions, ActivityHandle, ActivityStartOptions,
    RetryPolicy as TemporalRetryPolicy,
};
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_common::{ActivityCloseTimeouts, UntypedActivity};

use super::convert::{self, from_proto, to_proto};
use super::{ConnectOptions, TemporalError};
use crate::checkpoint::{Progress, progress_of};
use crate::definition::{Activity, IntoActivity};
use crate::payload::Payload;

/// Starts and follows standalone hb activities on a Temporal server.
///
/// ```no_run
/// use hb_runtime::prelude::*;
/// use hb_runtime::temporal::{Client, ConnectOptions, StartOptions};
///
/// #[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1h")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::connect(ConnectOptions::new("http://localhost:7233")).await?;
/// let handle = client.start(double, 21, StartOptions::new("hb-tasks", "double-1")).await?;
/// assert_eq!(handle.result().await?, 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: temporalio_client::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// Where and how to start one activity.
#[derive(Clone, Debug)]
pub struct StartOptions {
    task_queue: String,
    id: String,
    start_to_close_timeout: Option<Duration>,
    schedule_to_close_timeout: Option<Duration>,
    heartbeat_timeout: Option<Duration>,
}

impl StartOptions {
    /// The activity `id` (unique among running activities of the namespace) on `task_queue`
    /// (where an hb [`Worker`](super::Worker) runs it). Timeouts and the retry policy come from
    /// the activity's `#[activity(...)]` options unless set here.
    pub fn new(task_queue: impl Into<String>, id: impl Into<String>) -> Self {
        StartOptions {
            task_queue: task_queue.into(),
            id: id.into(),
            start_to_close_timeout: None,
            schedule_to_close_timeout: None,
            heartbeat_timeout: None,
        }
    }

    /// Overrides the activity's start-to-close timeout.
    pub fn start_to_close_timeout(mut self, timeout: Duration) -> Self {
        self.start_to_close_timeout = Some(timeout);
        self
    }

    /// Overrides the activity's schedule-to-close timeout.
    pub fn schedule_to_close_timeout(mut self, timeout: Duration) -> Self {
        self.schedule_to_close_timeout = Some(timeout);
        self
    }

    /// Overrides the activity's heartbeat timeout.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = Some(timeout);
        self
    }
}

/// Used when an activity sets neither a start-to-close nor a schedule-to-close timeout
/// (Temporal requires one).
const DEFAULT_START_TO_CLOSE: Duration = Duration::from_secs(24 * 3600);

impl Client {
    /// Connects to the server `options` names.
    ///
    /// # Errors
    /// [`TemporalError::Connect`] when the server cannot be reached.
    pub async fn connect(options: ConnectOptions) -> Result<Client, TemporalError> {
        let connection = options.connect().await?;
        let inner = temporalio_client::Client::new(
            connection,
            temporalio_client::ClientOptions::new(options.namespace.clone()).build(),
        )
        .map_err(|e| TemporalError::Worker(e.to_string()))?;
        Ok(Client { inner })
    }

    /// Starts `activity` with `input` as a standalone activity.
    ///
    /// Not idempotent by id: a second start with the id of a running activity fails with
    /// [`TemporalError::AlreadyStarted`] (use [`handle`](Self::handle) to follow the running
    /// one).
    ///
    /// # Errors
    /// [`TemporalError::AlreadyStarted`]; [`TemporalError::Encode`] when the input does not
    /// serialise; [`TemporalError::Rpc`] when the server refuses the start.
    pub async fn start<F: IntoActivity>(
        &self,
        activity: F,
        input: <F::Activity as Activity>::Input,
        options: StartOptions,
    ) -> Result<Handle<F::Activity>, TemporalError> {
        let activity = activity.into_activity();
        let defaults = activity.options();
        let name = <F::Activity as Activity>::NAME;
        let input = Payload::json(&input).map_err(|e| TemporalError::Encode {
            activity: name.to_owned(),
            message: e.to_string(),
        })?;
        let stc = options
            .start_to_close_timeout
            .or(defaults.start_to_close_timeout);
        let s2c = options
            .schedule_to_close_timeout
            .or(defaults.schedule_to_close_timeout);
        let close = match (s2c, stc) {
            (Some(schedule_to_close), Some(start_to_close)) => {
                ActivityCloseTimeouts::ScheduleAndStartToClose {
                    schedule_to_close,
                    start_to_close,
                }
            }
            (Some(s), None) => ActivityCloseTimeouts::ScheduleToClose(s),
            (None, s) => ActivityCloseTimeouts::StartToClose(s.unwrap_or(DEFAULT_START_TO_CLOSE)),
        };
        let retry = &defaults.retry;
        let policy = TemporalRetryPolicy::builder()
            // What is in force (the server refuses a maximum below the initial interval).
            .initial_interval(retry.effective_initial_interval())
            .backoff_coefficient(retry.effective_backoff())
            .maybe_maximum_interval(retry.max_interval.map(|_| {
                retry
                    .effective_max_interval()
                    .max(retry.effective_initial_interval())
            }))
            .maximum_attempts(retry.max_attempts)
            .non_retryable_error_types(retry.non_retryable.iter().copied())
            .build();
        let start = ActivityStartOptions::new(options.task_queue, options.id.clone(), close)
            .maybe_heartbeat_timeout(options.heartbeat_timeout.or(defaults.heartbeat_timeout))
            .retry_policy(policy)
            .build();
        let handle = self
            .inner
            .start_activity(
                UntypedActivity::new(name),
                RawValue::new(vec![to_proto(&input)]),
                start,
            )
            .await
            .map_err(|e| match e {
                temporalio_client::errors::StartActivityError::AlreadyStarted { .. } => {
                    TemporalError::AlreadyStarted { id: options.id }
                }
                other => TemporalError::Rpc(other.to_string()),
            })?;
        Ok(Handle {
            inner: self.inner.get_untyped_activity_handle(
                handle.activity_id(),
                handle.run_id().map(str::to_owned),
            ),
            _activity: PhantomData,
        })
    }

    /// A handle on the activity `id` (its latest run), started elsewhere.
    pub fn handle<F: IntoActivity>(
        &self,
        _activity: F,
        id: impl Into<String>,
    ) -> Handle<F::Activity> {
        Handle {
            inner: self.inner.get_untyped_activity_handle(id, None),
            _activity: PhantomData,
        }
    }
}

/// A standalone activity, from [`Client::start`] or [`Client::handle`].
pub struct Handle<A> {
    inner: ActivityHandle<temporalio_client::Client, UntypedActivity>,
    _activity: PhantomData<fn() -> A>,
}

impl<A> fmt::Debug for Handle<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.inner.activity_id())
            .finish_non_exhaustive()
    }
}

/// How a standalone activity ended, when not with its output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// An attempt failed and was not retried (non-retryable, or the retry policy is spent):
    /// the last attempt's failure.
    #[error("{error_type}: {message}")]
    Application {
        /// The error's type (`ActivityError::error_type`, e.g. `BadInput`).
        error_type: String,
        /// What it said.
        message: String,
        /// Whether it was non-retryable.
        non_retryable: bool,
        /// Its details (hb attaches the last checkpoint).
        details: Option<Payload>,
    },
    /// A timeout ended it.
    #[error("{kind} timeout")]
    Timeout {
        /// Which timeout.
        kind: TimeoutKind,
        /// The last heartbeat's details (the last checkpoint).
        last_details: Option<Payload>,
    },
    /// It was cancelled.
    #[error("cancelled")]
    Cancelled {
        /// The details it was cancelled with (the last checkpoint).
        details: Option<Payload>,
    },
    /// It was terminated.
    #[error("terminated")]
    Terminated,
    /// Its output does not decode into the activity's output type.
    #[error("the output of {activity} does not decode: {message}")]
    Output {
        /// The activity type.
        activity: String,
        /// The serde message.
        message: String,
    },
    /// The server could not answer.
    #[error(transparent)]
    Temporal(#[from] TemporalError),
}

/// Which timeout ended an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// No heartbeat within the heartbeat timeout.
    Heartbeat,
    /// An attempt ran past its start-to-close timeout.
    StartToClose,
    /// The activity ran past its schedule-to-close timeout.
    ScheduleToClose,
    /// No worker took it within its schedule-to-start timeout.
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

/// Where a standalone activity stands, from [`Handle::describe`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Description {
    /// Its id.
    pub id: String,
    /// Its activity type (the hb name).
    pub activity_type: String,
    /// `Running`, `Completed`, `Failed`, `Canceled`, `Terminated`, `TimedOut` or `Paused`.
    pub status: String,
    /// `Scheduled`, `Started`, `CancelRequested`, `Paused` or `PauseRequested` while open.
    pub run_state: String,
    /// The current (or last) attempt, from 1.
    pub attempt: u32,
    /// Done/total of the last checkpoint (its `#[checkpoint(done)]`/`total` fields).
    pub progress: Option<Progress>,
    /// The last checkpoint.
    pub details: Option<Payload>,
    /// When the last heartbeat arrived.
    pub last_heartbeat: Option<SystemTime>,
    /// The last failed attempt's failure.
    pub last_failure: Option<String>,
}

impl<A: Activity> Handle<A> {
    /// The activity id.
    pub fn id(&self) -> &str {
        self.inner.activity_id()
    }

    /// The run this handle follows (`None`: the latest run of the id).
    pub fn run_id(&self) -> Option<&str> {
        self.inner.run_id()
    }

    /// Waits for the activity to end: its typed output, or how it ended otherwise.
    ///
    /// # Errors
    /// See [`ResultError`].
    pub async fn result(&self) -> Result<A::Output, ResultError> {
        use temporalio_client::errors::ActivityResultError as E;
        match self.inner.result().await {
            Ok(raw) => {
                let payload = raw
                    .payloads
                    .into_iter()
                    .next()
                    .map(from_proto)
                    .unwrap_or_else(|| Payload::from_json_bytes(b"null".to_vec()));
                payload.decode().map_err(|e| ResultError::Output {
                    activity: A::NAME.to_owned(),
                    message: e.to_string(),
                })
            }
            Err(E::ActivityFailed(e)) => Err(failure_to_result(e.failure())),
            Err(E::Cancelled { details }) => Err(ResultError::Cancelled {
                details: details.raw().first().cloned().map(from_proto),
            }),
            Err(E::Terminated) => Err(ResultError::Terminated),
            Err(other) => Err(ResultError::Temporal(TemporalError::Rpc(other.to_string()))),
        }
    }

    /// Asks for the activity to be cancelled (returns at once; [`result`](Self::result) says
    /// when it stopped).
    ///
    /// # Errors
    /// [`TemporalError::Rpc`] when the server refuses (e.g. an unknown id).
    pub async fn cancel(&self) -> Result<(), TemporalError> {
        self.inner
            .cancel(ActivityCancelOptions::default())
            .await
            .map_err(|e| TemporalError::Rpc(e.to_string()))
    }

    /// Where the activity stands.
    ///
    /// # Errors
    /// [`TemporalError::Rpc`] when the server refuses (e.g. an unknown id).
    pub async fn describe(&self) -> Result<Description, TemporalError> {
        let d = self
            .inner
            .describe(
                ActivityDescribeOptions::builder()
                    .include_heartbeat_details(true)
                    .include_last_failure(true)
                    .build(),
            )
            .await
            .map_err(|e| TemporalError::Rpc(e.to_string()))?;
        let raw = d.raw_info();
        let details = raw
            .heartbeat_details
            .as_ref()
            .and_then(|p| p.payloads.first().cloned())
            .map(from_proto);
        Ok(Description {
            id: raw.activity_id.clone(),
            activity_type: raw
                .activity_type
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            status: format!(
                "{:?}",
                temporalio_client::ActivityExecutionInfoLike::status(&d)
            ),
            run_state: format!("{:?}", d.run_state()),
            attempt: u32::try_from(raw.attempt).unwrap_or(0),
            progress: details.as_ref().and_then(progress_of),
            details,
            last_heartbeat: raw
                .last_heartbeat_time
                .as_ref()
                .and_then(|t| convert::time(t.seconds, t.nanos)),
            last_failure: raw.last_failure.as_ref().map(|f| f.message.clone()),
        })
    }
}

/// What an activity's final failure says, in hb's terms.
fn failure_to_result(f: &Failure) -> ResultError {
    let first = |p: &Option<temporalio_common::protos::temporal::api::common::v1::Payloads>| {
        p.as_ref()
            .and_then(|p| p.payloads.first().cloned())
            .map(from_proto)
    };
    match &f.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(a)) => ResultError::Application {
            error_type: a.r#type.clone(),
            message: f.message.clone(),
            non_retryable: a.non_retryable,
            details: first(&a.details),
        },
        Some(FailureInfo::TimeoutFailureInfo(t)) => {
            use temporalio_common::protos::temporal::api::enums::v1::TimeoutType as T;
            ResultError::Timeout {
                kind: match t.timeout_type() {
                    T::Heartbeat => TimeoutKind::Heartbeat,
                    T::ScheduleToClose => TimeoutKind::ScheduleToClose,
                    T::ScheduleToStart => TimeoutKind::ScheduleToStart,
                    _ => TimeoutKind::StartToClose,
                },
                last_details: first(&t.last_heartbeat_details),
            }
        }
        Some(FailureInfo::CanceledFailureInfo(c)) => ResultError::Cancelled {
            details: first(&c.details),
        },
        Some(FailureInfo::TerminatedFailureInfo(_)) => ResultError::Terminated,
        // An activity failure wrapping the cause: the cause says what happened.
        _ => match &f.cause {
            Some(cause) => failure_to_result(cause),
            None => ResultError::Application {
                error_type: String::new(),
                message: f.message.clone(),
                non_retryable: false,
                details: None,
            },
        },
    }
}
