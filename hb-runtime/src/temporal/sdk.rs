//! hb activities inside a temporalio-sdk worker (for users who also run Rust workflows there).

use std::marker::PhantomData;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use temporalio_common::ActivityDefinition;
use temporalio_common::data_converters::RawValue;
use temporalio_common::error::ApplicationFailure;
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError as SdkError, ActivityImplementer,
    ExecutableActivity,
};

use super::convert::{from_proto, input_of, to_proto};
use crate::activity::{Activity, IntoActivity};
use crate::error::{ActivityError, CancelReason, TransportError};
use crate::payload::Payload;
use crate::runner::{AttemptRequest, AttemptRunner};
use crate::state::StateMap;
use crate::transport::{HeartbeatReply, TaskToken, Transport};

/// An hb activity registered into a temporalio-sdk `WorkerOptions`, from [`sdk_activity`].
///
/// ```no_run
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn process_batch(ctx: ActivityContext, items: u64) -> Result<u64, ActivityError> {
///     Ok(items)
/// }
///
/// let options = temporalio_sdk::WorkerOptions::new("orders")
///     // .register_workflow::<MyWorkflow>() and your other registrations, then:
///     .register_activities(hb_runtime::temporal::sdk_activity(process_batch))
///     .build();
/// // temporalio_sdk::Worker::new(&runtime, client, options) ... as usual
/// # let _ = options;
/// ```
///
/// The attempt runs under hb's runner as on [`Worker`](super::Worker): the pump, checkpoints,
/// the final flush, `json/plain` payloads, `BadInput` failing non-retryably. One difference:
/// the SDK does not say why an attempt is cancelled, so every cancel is seen as a cancel
/// request (`CancelReason::Requested`). A pause then ends the attempt as cancelled; the server
/// refuses that (the activity was not asked to cancel), times the attempt out on heartbeat,
/// and retries it once unpaused, from its checkpoint. hb's own [`Worker`](super::Worker) sees
/// the reason and reports a pause as such.
pub struct SdkActivity<A> {
    activity: A,
    state: StateMap,
}

impl<A> std::fmt::Debug for SdkActivity<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkActivity").finish_non_exhaustive()
    }
}

impl<A> SdkActivity<A> {
    /// Provides a resource the activity takes as a `#[state]` parameter.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }
}

/// `activity` (an `#[activity]` function's name) for a temporalio-sdk `WorkerOptions`'
/// `register_activities`. See [`SdkActivity`].
pub fn sdk_activity<F: IntoActivity>(activity: F) -> SdkActivity<F::Activity> {
    SdkActivity {
        activity: activity.into_activity(),
        state: StateMap::new(),
    }
}

/// The temporalio marker type of hb activity `A` (named `A::NAME`).
pub struct Marker<A>(PhantomData<fn() -> A>);

impl<A: Activity> std::fmt::Debug for Marker<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Marker").field(&A::NAME).finish()
    }
}

impl<A: Activity> ActivityDefinition for Marker<A> {
    type Input = RawValue;
    type Output = RawValue;

    fn name(&self) -> &str {
        A::NAME
    }
}

impl<A: Activity> ActivityImplementer for SdkActivity<A> {
    fn register_all(self: Arc<Self>, defs: &mut ActivityDefinitions) {
        defs.register_activity::<Marker<A>>(self);
    }
}

impl<A: Activity> ExecutableActivity for Marker<A> {
    type Implementer = SdkActivity<A>;
    const REQUIRES_INSTANCE: bool = true;

    fn definition() -> Self {
        Marker(PhantomData)
    }

    fn execute(
        receiver: Option<Arc<SdkActivity<A>>>,
        ctx: ActivityContext,
        input: RawValue,
    ) -> BoxFuture<'static, Result<RawValue, SdkError>> {
        Box::pin(async move {
            let Some(this) = receiver else {
                return Err(SdkError::Application(Box::new(
                    ApplicationFailure::non_retryable(
                        "hb activity registered without its instance",
                    ),
                )));
            };
            let info = ctx.info().clone();
            let mut options = this.activity.options();
            let retry = options.retry;
            if let Some(ht) = info.heartbeat_timeout.filter(|t| !t.is_zero()) {
                options = options.heartbeat_timeout(ht);
            }
            let request = AttemptRequest::new(
                info.activity_id.clone(),
                TaskToken::new(info.task_token.clone()),
                input_of(input.payloads),
            )
            .attempt(info.attempt.max(1))
            .details(
                ctx.heartbeat_details()
                    .raw()
                    .first()
                    .cloned()
                    .map(from_proto),
            )
            .deadline(info.deadline)
            .options(options)
            .schedule_to_start(
                info.current_attempt_scheduled_time
                    .zip(info.started_time)
                    .and_then(|(scheduled, started)| started.duration_since(scheduled).ok()),
            );
            let runner = AttemptRunner::new(SdkTransport { ctx: ctx.clone() })
                .state(this.state.clone())
                .metric_labels(vec![::metrics::Label::new(
                    "task_queue",
                    info.task_queue.clone(),
                )]);
            let attempt = runner.start(&this.activity, request);
            let metrics = attempt.metrics();
            let handle = attempt.handle();
            // The SDK says only that the attempt was cancelled, not why.
            let cancels = ctx.clone();
            let _watcher = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                cancels.cancelled().await;
                handle.cancel(CancelReason::Requested);
            }));
            let outcome = attempt.run().await;
            if let (Ok(_), Some(scheduled)) = (&outcome.result, info.scheduled_time) {
                metrics.succeeded_since(scheduled);
            }
            let details = || {
                outcome
                    .details
                    .as_ref()
                    .map(|d| RawValue::new(vec![to_proto(d)]))
            };
            match &outcome.result {
                Ok(output) => Ok(RawValue::new(vec![to_proto(output)])),
                Err(ActivityError::Cancelled {
                    reason: CancelReason::Requested,
                    ..
                }) => Err(match details() {
                    Some(d) => SdkError::cancelled_with_details(d),
                    None => SdkError::cancelled(),
                }),
                Err(e) => Err(SdkError::Application(Box::new(
                    ApplicationFailure::builder(e.to_string())
                        .type_name(e.error_type().to_owned())
                        .non_retryable(!retry.may_retry(e))
                        .maybe_details(details())
                        .build(),
                ))),
            }
        })
    }
}

/// Heartbeats through the SDK's activity context; the outcome is what `execute` returns.
struct SdkTransport {
    ctx: ActivityContext,
}

impl Transport for SdkTransport {
    fn heartbeat<'a>(
        &'a self,
        _token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        Box::pin(async move {
            let raw = RawValue::new(details.map(to_proto).into_iter().collect());
            if let Err(e) = self.ctx.record_heartbeat(raw).await {
                tracing::warn!(error = %e, "heartbeat could not be recorded");
            }
            Ok(if self.ctx.is_cancelled() {
                HeartbeatReply::cancel()
            } else {
                HeartbeatReply::ok()
            })
        })
    }

    fn complete<'a>(
        &'a self,
        _token: &'a TaskToken,
        _output: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn fail<'a>(
        &'a self,
        _token: &'a TaskToken,
        _error: &'a ActivityError,
        _last_details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn cancelled<'a>(
        &'a self,
        _token: &'a TaskToken,
        _details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}
