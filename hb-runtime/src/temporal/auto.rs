//! Auto-heartbeat for plain temporalio-sdk activities (written with temporalio's own
//! `#[activities]`), without changing their code.

use std::time::Duration;

use futures_util::future::BoxFuture;
use temporalio_common::ActivityDefinition;
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::activities::{ActivityContext, ActivityError, ExecutableActivity};

/// A plain temporalio-sdk activity, heartbeated while it runs and stopped when cancelled.
///
/// Register it in place of the activity's marker type:
///
/// ```no_run
/// use std::sync::Arc;
/// use hb_runtime::temporal::AutoHeartbeat;
/// use temporalio_sdk::activities::{ActivityContext, ActivityError};
///
/// pub struct Files;
///
/// #[temporalio_macros::activities]
/// impl Files {
///     #[activity(name = "copy_tree")]
///     pub async fn copy_tree(_ctx: ActivityContext, root: String) -> Result<u64, ActivityError> {
///         Ok(root.len() as u64) // hours of copying, no heartbeat of its own
///     }
/// }
///
/// fn main() {
///     let options = temporalio_sdk::WorkerOptions::new("files")
///         .register_activity::<AutoHeartbeat<files::CopyTree>>(Arc::new(Files))
///         .build();
///     // temporalio_sdk::Worker::new(&runtime, client, options) ... as usual
/// #   let _ = options;
/// }
/// ```
///
/// While the activity runs, the wrapper records a heartbeat every half heartbeat timeout (30 s
/// when the caller set none), below core's throttle of 0.8 × the timeout, from a thread of its
/// own (`hb-auto-heartbeat`, shared by every wrapped attempt), so a body that blocks its
/// thread for a while still heartbeats. So:
/// - an activity that never heartbeats stays alive past its heartbeat timeout, for as long as
///   it runs;
/// - a cancel (which reaches a worker only in a heartbeat's reply) stops it. The body is
///   dropped at its next await and the attempt reports `Cancelled`.
///
/// Each heartbeat carries the details the attempt started with: the previous attempt's
/// checkpoint, as received. Temporal keeps them for the next retry instead of having them
/// wiped by an empty heartbeat. An activity that records heartbeat details of its own should
/// not be wrapped: the wrapper's heartbeats would put the previous attempt's details back
/// between its own.
pub struct AutoHeartbeat<A>(A);

impl<A: ActivityDefinition> std::fmt::Debug for AutoHeartbeat<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AutoHeartbeat")
            .field(&self.0.name())
            .finish()
    }
}

impl<A: ActivityDefinition> ActivityDefinition for AutoHeartbeat<A> {
    type Input = A::Input;
    type Output = A::Output;

    fn name(&self) -> &str {
        self.0.name()
    }
}

/// The runtime the wrappers' heartbeat loops run on: one thread of its own (`hb-auto-heartbeat`),
/// started on first use, apart from the activities' executor.
fn beats_runtime() -> &'static tokio::runtime::Handle {
    static HANDLE: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building the auto-heartbeat runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("hb-auto-heartbeat".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("spawning the hb-auto-heartbeat thread");
        handle
    })
}

/// How often the wrapper heartbeats an attempt with heartbeat timeout `timeout`.
fn interval(timeout: Option<Duration>) -> Duration {
    match timeout.filter(|t| !t.is_zero()) {
        Some(t) => (t / 2).max(Duration::from_millis(1)),
        None => Duration::from_secs(30),
    }
}

impl<A> ExecutableActivity for AutoHeartbeat<A>
where
    A: ExecutableActivity + Send + 'static,
    A::Input: Send,
    A::Output: Send,
{
    type Implementer = A::Implementer;
    const REQUIRES_INSTANCE: bool = A::REQUIRES_INSTANCE;

    fn definition() -> Self {
        AutoHeartbeat(A::definition())
    }

    fn execute(
        receiver: Option<std::sync::Arc<Self::Implementer>>,
        ctx: ActivityContext,
        input: Self::Input,
    ) -> BoxFuture<'static, Result<Self::Output, ActivityError>> {
        let body = A::execute(receiver, ctx.clone(), input);
        Box::pin(async move {
            let every = interval(ctx.info().heartbeat_timeout);
            let previous = ctx.heartbeat_details().raw().to_vec();
            // Off the activity's executor, so a body that blocks its thread (no `.await` for a
            // while) does not stop the heartbeats; aborted when the attempt ends or is dropped.
            let _beats = {
                let ctx = ctx.clone();
                let previous = previous.clone();
                tokio_util::task::AbortOnDropHandle::new(beats_runtime().spawn(async move {
                    loop {
                        if let Err(e) = ctx.record_heartbeat(RawValue::new(previous.clone())).await
                        {
                            tracing::warn!(error = %e, "auto-heartbeat could not be recorded");
                        }
                        tokio::time::sleep(every).await;
                    }
                }))
            };
            tokio::select! {
                result = body => result,
                () = ctx.cancelled() => {
                    tracing::info!(activity_type = %ctx.info().activity_type, "cancel delivered; activity body dropped");
                    Err(if previous.is_empty() {
                        ActivityError::cancelled()
                    } else {
                        ActivityError::cancelled_with_details(RawValue::new(previous.clone()))
                    })
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_stays_below_cores_throttle() {
        assert_eq!(
            interval(Some(Duration::from_secs(2))),
            Duration::from_secs(1)
        );
        assert_eq!(interval(Some(Duration::ZERO)), Duration::from_secs(30));
        assert_eq!(interval(None), Duration::from_secs(30));
        assert_eq!(
            interval(Some(Duration::from_millis(4))),
            Duration::from_millis(2)
        );
    }
}
