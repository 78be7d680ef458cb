//! hb's [`Transport`] over temporalio-sdk-core: heartbeats and outcomes of attempts.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use temporalio_common::protos::coresdk::activity_result::ActivityExecutionResult;
use temporalio_common::protos::coresdk::{ActivityHeartbeat, ActivityTaskCompletion};

use super::convert::{failure_of, to_proto};
use crate::error::{ActivityError, CancelReason, TransportError};
use crate::payload::Payload;
use crate::transport::{HeartbeatReply, TaskToken, Transport};

pub(crate) type CoreWorker = temporalio_sdk_core::Worker;

/// Reports an activity task's outcome (a failed report is logged: the server times the
/// attempt out and retries it).
pub(crate) async fn complete(core: &CoreWorker, token: Vec<u8>, result: ActivityExecutionResult) {
    let completion = ActivityTaskCompletion {
        task_token: token,
        result: Some(result),
    };
    if let Err(e) = core.complete_activity_task(completion).await {
        tracing::warn!(error = %e, "could not report an activity task's outcome to Temporal");
    }
}

/// Heartbeats and outcomes through temporalio-sdk-core. Cancels reach attempts as tasks of
/// their own (see [`poll`](super::poll)), so a heartbeat's reply is always "carry on".
pub(crate) struct CoreTransport {
    pub(crate) core: Arc<CoreWorker>,
    /// The activity's retry policy: its `non_retryable` types are reported as such, since the
    /// caller's policy decides the retries on Temporal.
    pub(crate) retry: crate::RetryPolicy,
}
impl CoreTransport {
    fn record(&self, token: &TaskToken, details: Option<&Payload>) {
        self.core.record_activity_heartbeat(ActivityHeartbeat {
            task_token: token.as_bytes().to_vec(),
            details: details.map(to_proto).into_iter().collect(),
        });
    }
}

impl Transport for CoreTransport {
    fn heartbeat<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        self.record(token, details);
        Box::pin(std::future::ready(Ok(HeartbeatReply::ok())))
    }

    fn complete<'a>(
        &'a self,
        token: &'a TaskToken,
        output: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            complete(
                &self.core,
                token.as_bytes().to_vec(),
                ActivityExecutionResult::ok(to_proto(&output)),
            )
            .await;
            Ok(())
        })
    }

    fn fail<'a>(
        &'a self,
        token: &'a TaskToken,
        error: &'a ActivityError,
        last_details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            // Core attaches the last *recorded* details to a failure: record the final
            // checkpoint first.
            if last_details.is_some() {
                self.record(token, last_details);
            }
            let result = match error {
                // A retryable "WorkerShutdown" failure with the last details, as core reports
                // a cancel it issued for its shutdown. Reported as a failure here, not as a
                // cancellation, because the worker also cancels its attempts itself (when
                // polling failed, or before core's own cancel arrives): core would send
                // those to the server as cancellations, which it refuses without a request.
                ActivityError::Cancelled {
                    reason: CancelReason::WorkerShutdown,
                    ..
                } => ActivityExecutionResult::fail(failure_of(error, last_details, false)),
                e => ActivityExecutionResult::fail(failure_of(
                    e,
                    last_details,
                    !self.retry.may_retry(e),
                )),
            };
            complete(&self.core, token.as_bytes().to_vec(), result).await;
            Ok(())
        })
    }

    fn cancelled<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            if details.is_some() {
                self.record(token, details);
            }
            complete(
                &self.core,
                token.as_bytes().to_vec(),
                ActivityExecutionResult::cancel_from_details(details.map(to_proto)),
            )
            .await;
            Ok(())
        })
    }
}
