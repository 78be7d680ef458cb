//! The Temporal [`ActivityClient`]: hb activities as standalone activities on a Temporal
//! server, started by their typed input, awaited for their typed output, cancelled, described
//! (status, attempt, progress from the checkpoint) and listed.

use std::fmt;
use std::time::Duration;

use futures_util::StreamExt;
use temporalio_client::{
    ActivityCancelOptions, ActivityDescribeOptions, ActivityExecutionInfoLike,
    ActivityExecutionStatus, ActivityHandle, ActivityIdConflictPolicy, ActivityIdReusePolicy,
    ActivityListOptions, ActivityStartOptions, PendingActivityState,
    RetryPolicy as TemporalRetryPolicy,
};
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_common::{ActivityCloseTimeouts, UntypedActivity};

use super::TemporalError;
use super::convert::{from_proto, to_proto};
use crate::BoxFuture;
use crate::backend::{ClientBackend, StartRequest, answer_existing};
use crate::client::{
    ActivityClient, ActivityFailure, ActivityStatus, ClientError, Description, ListFilter,
    ResetOptions, TimeoutKind,
};
use crate::options::ActivityOptions;
use crate::payload::Payload;

/// The task queue of starts and workers that name none.
pub const DEFAULT_TASK_QUEUE: &str = "hb-tasks";

/// Used when an activity sets neither a start-to-close nor a schedule-to-close timeout
/// (Temporal requires one).
const DEFAULT_START_TO_CLOSE: Duration = Duration::from_secs(24 * 3600);

/// Starts and follows standalone hb activities on a Temporal server: from
/// [`Temporal::client`](super::Temporal::client), cheap to clone. Its operations are those of
/// [`ActivityClient`].
///
/// ```no_run
/// use hb_runtime::client::{ActivityClient, StartOptions};
/// use hb_runtime::prelude::*;
/// use hb_runtime::temporal::{ConnectOptions, Temporal};
///
/// #[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1h")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let temporal = Temporal::connect(ConnectOptions::new("localhost:7233")).await?;
/// let _worker = temporal.worker().register(double).spawn().await?;
/// let handle = temporal.client().start(double, 21, StartOptions::id("double-1")).await?;
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

impl ActivityClient for Client {}

impl ClientBackend for Client {
    fn start_activity(&self, request: StartRequest) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(self.start(request))
    }

    fn activity_output<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Payload, ActivityFailure>> {
        Box::pin(self.output(id))
    }

    fn describe_activity<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Description, ClientError>> {
        Box::pin(self.describe_id(id))
    }

    fn cancel_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(self.cancel_id(id))
    }

    fn pause_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(self.operate(id, Operation::Pause))
    }

    fn unpause_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(self.operate(id, Operation::Unpause))
    }

    fn reset_activity<'a>(
        &'a self,
        id: &'a str,
        options: ResetOptions,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(self.operate(id, Operation::Reset(options)))
    }

    fn list_activities(
        &self,
        filter: ListFilter,
    ) -> BoxFuture<'_, Result<Vec<Description>, ClientError>> {
        Box::pin(self.list_matching(filter))
    }
}

/// An operator control, sent as the server's activity operation of the same name.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Pause,
    Unpause,
    Reset(ResetOptions),
}

/// Whether the server's `code` says the activity's status refuses the operation.
fn code_refuses(code: temporalio_client::tonic::Code) -> bool {
    code == temporalio_client::tonic::Code::FailedPrecondition
}

impl Operation {
    /// Whether an activity in `status` takes the operation (the rule both backends follow).
    fn allowed_in(self, status: ActivityStatus) -> bool {
        match self {
            _ if status.is_closed() => false,
            Operation::Pause => status != ActivityStatus::Paused,
            Operation::Unpause => status == ActivityStatus::Paused,
            Operation::Reset(_) => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Operation::Pause => "pause",
            Operation::Unpause => "unpause",
            Operation::Reset(_) => "reset",
        }
    }
}

impl Client {
    pub(crate) fn new(inner: temporalio_client::Client) -> Self {
        Client { inner }
    }

    fn handle_of(&self, id: &str) -> ActivityHandle<temporalio_client::Client, UntypedActivity> {
        self.inner.get_untyped_activity_handle(id, None)
    }

    /// Starts a standalone activity; an existing id (running or closed: ids are not reused)
    /// is the existing activity unless the request says to fail.
    async fn start(&self, request: StartRequest) -> Result<(), ClientError> {
        let StartRequest {
            activity_type,
            id,
            input,
            options,
            task_queue,
            if_exists,
            ..
        } = request;
        let queue = task_queue.unwrap_or_else(|| DEFAULT_TASK_QUEUE.to_owned());
        let start = ActivityStartOptions::new(queue, id.clone(), close_timeouts(&options))
            .maybe_heartbeat_timeout(options.heartbeat_timeout)
            .retry_policy(retry_policy(&options))
            // Ids are never reused, and a start of an existing id is answered here: the
            // engine's semantics (idempotent by id).
            .id_reuse_policy(ActivityIdReusePolicy::RejectDuplicate)
            .id_conflict_policy(ActivityIdConflictPolicy::Fail)
            .build();
        let started = self
            .inner
            .start_activity(
                UntypedActivity::new(activity_type),
                RawValue::new(vec![to_proto(&input)]),
                start,
            )
            .await;
        match started {
            Ok(_) => Ok(()),
            Err(temporalio_client::errors::StartActivityError::AlreadyStarted { .. }) => {
                let found = self.describe_id(&id).await?.activity_type;
                answer_existing(&id, activity_type, if_exists, found)
            }
            Err(e) => Err(ClientError::Temporal(TemporalError::Rpc(e.to_string()))),
        }
    }

    /// Waits for activity `id` to close: its output, or how it failed.
    async fn output(&self, id: &str) -> Result<Payload, ActivityFailure> {
        use temporalio_client::errors::ActivityResultError as E;
        let failure = match self.handle_of(id).result().await {
            Ok(raw) => {
                return Ok(raw
                    .payloads
                    .into_iter()
                    .next()
                    .map(from_proto)
                    .unwrap_or_else(|| Payload::from_json_bytes(b"null".to_vec())));
            }
            Err(E::ActivityFailed(e)) => failure_of(e.failure()),
            Err(E::Cancelled { details }) => {
                let details = details.raw().first().cloned().map(from_proto);
                ActivityFailure::Cancelled {
                    details: self.checkpoint_of_cancelled(id, details).await,
                }
            }
            Err(E::Terminated) => ActivityFailure::Terminated,
            Err(E::TimedOut(t)) => ActivityFailure::Timeout {
                kind: {
                    use temporalio_sdk::TimeoutType as T;
                    match t {
                        T::Heartbeat => TimeoutKind::Heartbeat,
                        T::ScheduleToClose => TimeoutKind::ScheduleToClose,
                        T::ScheduleToStart => TimeoutKind::ScheduleToStart,
                        _ => TimeoutKind::StartToClose,
                    }
                },
                last_details: None,
            },
            Err(E::NotFound(_)) => {
                return Err(ClientError::NotFound { id: id.to_owned() }.into());
            }
            Err(other) => return Err(TemporalError::Rpc(other.to_string()).into()),
        };
        // A retryable failure that ended the activity: its retries were spent (as the engine
        // reports it).
        let retryable = match &failure {
            ActivityFailure::Application {
                non_retryable,
                error_type,
                ..
            } => !non_retryable && error_type != "BadInput",
            ActivityFailure::Timeout { kind, .. } => {
                matches!(kind, TimeoutKind::Heartbeat | TimeoutKind::StartToClose)
            }
            _ => false,
        };
        if !retryable {
            return Err(failure);
        }
        let raw = self
            .handle_of(id)
            .describe(ActivityDescribeOptions::builder().build())
            .await
            .map_err(|e| ClientError::Temporal(TemporalError::Rpc(e.to_string())))?;
        let info = raw.raw_info();
        let listed = |t: &str| {
            info.retry_policy
                .as_ref()
                .is_some_and(|p| p.non_retryable_error_types.iter().any(|n| n == t))
        };
        let attempts = u32::try_from(info.attempt).unwrap_or(0);
        match &failure {
            ActivityFailure::Application { error_type, .. } if listed(error_type) => Err(failure),
            _ if attempts > 1 => Err(ActivityFailure::RetriesExhausted {
                attempts,
                last: Box::new(failure),
            }),
            _ => Err(failure),
        }
    }

    /// The details of activity `id`'s cancellation, when they are a checkpoint. The server
    /// cancels an activity that never ran with the cancel's reason as details (a JSON string,
    /// `""` from hb's client): that is no checkpoint, and the engine has `None` there too.
    async fn checkpoint_of_cancelled(&self, id: &str, details: Option<Payload>) -> Option<Payload> {
        let details = details?;
        if !details.data().starts_with(b"\"") {
            return Some(details);
        }
        // A string: a checkpoint only if an attempt ran (one may checkpoint a `String`).
        match self.describe_id(id).await {
            Ok(d) if d.attempt_started.is_none() => None,
            _ => Some(details),
        }
    }

    /// Asks activity `id` to stop; a closed activity is left as it is.
    async fn cancel_id(&self, id: &str) -> Result<(), ClientError> {
        let cancelled = self
            .handle_of(id)
            .cancel(ActivityCancelOptions::default())
            .await;
        match cancelled {
            Ok(()) => Ok(()),
            Err(e) => {
                // Refused: for a closed activity, that is nothing to do.
                let d = self.describe_id(id).await?;
                if d.status.is_closed() {
                    Ok(())
                } else {
                    Err(ClientError::Temporal(TemporalError::Rpc(e.to_string())))
                }
            }
        }
    }

    /// Sends `op` for standalone activity `id` (`PauseActivityExecution`,
    /// `UnpauseActivityExecution`, `ResetActivityExecution`). A refusal because of the
    /// activity's status is [`ClientError::NotAllowed`], with the status described; a server
    /// without the operation is [`ClientError::Unsupported`].
    async fn operate(&self, id: &str, op: Operation) -> Result<(), ClientError> {
        use temporalio_client::NamespacedClient;
        use temporalio_client::grpc::WorkflowService;
        use temporalio_client::tonic::{Code, IntoRequest};
        use temporalio_common::protos::temporal::api::workflowservice::v1::{
            PauseActivityExecutionRequest, ResetActivityExecutionRequest,
            UnpauseActivityExecutionRequest,
        };
        let mut rpc = self.inner.clone();
        let (namespace, identity) = (rpc.namespace(), rpc.identity());
        let resource_id = format!("activity:{id}");
        let sent = match op {
            Operation::Pause => rpc
                .pause_activity_execution(
                    PauseActivityExecutionRequest {
                        namespace,
                        activity_id: id.to_owned(),
                        identity,
                        reason: "paused through hb".to_owned(),
                        resource_id,
                        ..Default::default()
                    }
                    .into_request(),
                )
                .await
                .map(drop),
            Operation::Unpause => rpc
                .unpause_activity_execution(
                    UnpauseActivityExecutionRequest {
                        namespace,
                        activity_id: id.to_owned(),
                        identity,
                        reason: "unpaused through hb".to_owned(),
                        resource_id,
                        ..Default::default()
                    }
                    .into_request(),
                )
                .await
                .map(drop),
            Operation::Reset(options) => rpc
                .reset_activity_execution(
                    ResetActivityExecutionRequest {
                        namespace,
                        activity_id: id.to_owned(),
                        identity,
                        keep_paused: options.keep_paused,
                        reset_heartbeat: !options.keep_checkpoint,
                        resource_id,
                        ..Default::default()
                    }
                    .into_request(),
                )
                .await
                .map(drop),
        };
        let Err(status) = sent else {
            tracing::debug!(activity_id = id, operation = op.name(), "sent to Temporal");
            return Ok(());
        };
        match status.code() {
            Code::NotFound => Err(ClientError::NotFound { id: id.to_owned() }),
            Code::Unimplemented => Err(ClientError::Unsupported {
                operation: op.name(),
                reason: status.message().to_owned(),
            }),
            // Refused: because of the activity's status (the server answers
            // FailedPrecondition, "activity is in non-pausable state Paused"), say which.
            _ => {
                let described = self.describe_id(id).await?;
                if code_refuses(status.code()) || !op.allowed_in(described.status) {
                    Err(ClientError::NotAllowed {
                        id: id.to_owned(),
                        operation: op.name(),
                        status: described.status,
                    })
                } else {
                    Err(ClientError::Temporal(TemporalError::Rpc(format!(
                        "{}: {}",
                        op.name(),
                        status.message()
                    ))))
                }
            }
        }
    }

    /// Where activity `id` stands.
    async fn describe_id(&self, id: &str) -> Result<Description, ClientError> {
        use temporalio_client::errors::ActivityInteractionError as E;
        let d = self
            .handle_of(id)
            .describe(
                ActivityDescribeOptions::builder()
                    .include_heartbeat_details(true)
                    .include_last_failure(true)
                    .include_outcome(true)
                    .build(),
            )
            .await
            .map_err(|e| match e {
                E::NotFound(_) => ClientError::NotFound { id: id.to_owned() },
                e => ClientError::Temporal(TemporalError::Rpc(e.to_string())),
            })?;
        let raw = d.raw_info();
        let details = raw
            .heartbeat_details
            .as_ref()
            .and_then(|p| p.payloads.first().cloned())
            .map(from_proto);
        let run_state = d.run_state();
        let mut status = status_of(ActivityExecutionInfoLike::status(&d), run_state);
        let next_attempt_at = d.next_attempt_schedule_time();
        if status == ActivityStatus::Scheduled
            && next_attempt_at.is_some_and(|t| t > std::time::SystemTime::now())
        {
            status = ActivityStatus::BackingOff;
        }
        let mut out = Description::new(
            raw.activity_id.clone(),
            ActivityExecutionInfoLike::activity_type(&d).to_owned(),
            status,
        )
        .with_details(details);
        out.attempt = u32::try_from(raw.attempt).unwrap_or(0);
        out.last_heartbeat = d.last_heartbeat_time();
        out.attempt_started = d.last_started_time();
        out.last_failure = raw.last_failure.as_ref().map(failure_of);
        // A heartbeat timeout of an attempt waiting for its retry: its details are the
        // checkpoint the server kept (as the engine reports it, and as the final failure has).
        if let Some(ActivityFailure::Timeout { last_details, .. }) = &mut out.last_failure
            && last_details.is_none()
        {
            last_details.clone_from(&out.details);
        }
        out.cancel_requested = run_state == PendingActivityState::CancelRequested
            || status == ActivityStatus::Cancelled;
        out.scheduled_at = ActivityExecutionInfoLike::schedule_time(&d);
        out.next_attempt_at = next_attempt_at.filter(|_| !status.is_closed());
        out.closed_at = ActivityExecutionInfoLike::close_time(&d);
        out.task_queue = Some(ActivityExecutionInfoLike::task_queue(&d).to_owned());
        if status == ActivityStatus::Completed {
            use temporalio_common::protos::temporal::api::activity::v1::activity_execution_outcome::Value as V;
            if let Some(V::Result(p)) = d.raw_outcome() {
                out.output = p.payloads.first().cloned().map(from_proto);
            }
        }
        // The server keeps no history of a standalone activity's attempts: the current or
        // final one only.
        Ok(out.with_attempts(Vec::new()))
    }

    /// Activities matching `filter`, newest first (from the server's visibility store: ids,
    /// types, statuses and times; `describe` one for its checkpoint).
    async fn list_matching(&self, filter: ListFilter) -> Result<Vec<Description>, ClientError> {
        let limit = filter.effective_limit();
        let mut stream = self
            .inner
            .list_activities("", ActivityListOptions::default());
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let info =
                item.map_err(|e| ClientError::Temporal(TemporalError::Rpc(e.to_string())))?;
            let status = status_of(info.status(), PendingActivityState::Unspecified);
            if !filter.wants(status) {
                continue;
            }
            let mut d = Description::new(
                info.activity_id().to_owned(),
                info.activity_type().to_owned(),
                status,
            );
            d.scheduled_at = info.schedule_time();
            d.closed_at = info.close_time();
            d.task_queue = Some(info.task_queue().to_owned());
            out.push(d);
            if out.len() >= limit {
                break;
            }
        }
        out.sort_by(|a, b| b.scheduled_at.cmp(&a.scheduled_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}

/// Temporal's status (and, while open, run state) as hb's.
fn status_of(status: ActivityExecutionStatus, run: PendingActivityState) -> ActivityStatus {
    use ActivityExecutionStatus as S;
    use PendingActivityState as R;
    match status {
        S::Running => match run {
            R::Scheduled => ActivityStatus::Scheduled,
            R::Paused => ActivityStatus::Paused,
            _ => ActivityStatus::Running,
        },
        S::Completed => ActivityStatus::Completed,
        S::Failed => ActivityStatus::Failed,
        S::Canceled => ActivityStatus::Cancelled,
        S::Terminated => ActivityStatus::Terminated,
        S::TimedOut => ActivityStatus::TimedOut,
        S::Paused => ActivityStatus::Paused,
        _ => ActivityStatus::Unknown,
    }
}

/// How the server should close and retry an activity with `options`.
fn close_timeouts(options: &ActivityOptions) -> ActivityCloseTimeouts {
    match (
        options.schedule_to_close_timeout,
        options.start_to_close_timeout,
    ) {
        (Some(schedule_to_close), Some(start_to_close)) => {
            ActivityCloseTimeouts::ScheduleAndStartToClose {
                schedule_to_close,
                start_to_close,
            }
        }
        (Some(s), None) => ActivityCloseTimeouts::ScheduleToClose(s),
        (None, s) => ActivityCloseTimeouts::StartToClose(s.unwrap_or(DEFAULT_START_TO_CLOSE)),
    }
}

fn retry_policy(options: &ActivityOptions) -> TemporalRetryPolicy {
    let retry = &options.retry;
    TemporalRetryPolicy::builder()
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
        .build()
}

fn timeout_kind(
    t: temporalio_common::protos::temporal::api::enums::v1::TimeoutType,
) -> TimeoutKind {
    use temporalio_common::protos::temporal::api::enums::v1::TimeoutType as T;
    match t {
        T::Heartbeat => TimeoutKind::Heartbeat,
        T::ScheduleToClose => TimeoutKind::ScheduleToClose,
        T::ScheduleToStart => TimeoutKind::ScheduleToStart,
        _ => TimeoutKind::StartToClose,
    }
}

/// What a failure says, in hb's terms.
fn failure_of(f: &Failure) -> ActivityFailure {
    let first = |p: &Option<temporalio_common::protos::temporal::api::common::v1::Payloads>| {
        p.as_ref()
            .and_then(|p| p.payloads.first().cloned())
            .map(from_proto)
    };
    match &f.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(a)) => ActivityFailure::Application {
            error_type: a.r#type.clone(),
            message: f.message.clone(),
            non_retryable: a.non_retryable,
            details: first(&a.details),
        },
        Some(FailureInfo::TimeoutFailureInfo(t)) => ActivityFailure::Timeout {
            kind: timeout_kind(t.timeout_type()),
            last_details: first(&t.last_heartbeat_details),
        },
        Some(FailureInfo::CanceledFailureInfo(c)) => ActivityFailure::Cancelled {
            details: first(&c.details),
        },
        Some(FailureInfo::TerminatedFailureInfo(_)) => ActivityFailure::Terminated,
        // An activity failure wrapping the cause: the cause says what happened.
        _ => match &f.cause {
            Some(cause) => failure_of(cause),
            None => ActivityFailure::Application {
                error_type: String::new(),
                message: f.message.clone(),
                non_retryable: false,
                details: None,
            },
        },
    }
}
