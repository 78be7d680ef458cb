//! The heartbeat pump: one shared scheduler that heartbeats every running attempt.
//!
//! - [`Pump`] owns a deadline queue of running attempts. In production it runs on its own
//!   thread ([`Pump::global`]), so CPU-bound activity bodies cannot starve it; the test kit runs
//!   the same scheduler on the test's runtime ([`Pump::on_current_runtime`]) so it follows
//!   tokio's paused clock.
//! - Each tick of an attempt encodes its checkpoint only if it changed (coalescing: the activity
//!   may have stored thousands since the last tick), re-sends the latest one otherwise, applies
//!   the reply's flags (cancel, pause), checks for stalls and for a blocked executor.
//! - [`HeartbeatInterceptor`] is the built-in interceptor that registers an attempt with the
//!   pump and flushes its final checkpoint on every exit path.

mod poll;
mod pump;
mod send;

pub(crate) use poll::{PollTracker, Tracked, TrackedFuture};
pub use pump::{Pump, PumpStats};
pub(crate) use send::{finish, send_now, SendState};

use crate::context::ActivityContext;
use crate::definition::BoxFuture;
use crate::intercept::{AttemptResult, Interceptor, Next};

/// The built-in interceptor: heartbeats the attempt through a [`Pump`] while it runs and
/// has its latest checkpoint flushed when it ends (success, error, cancel, panic, or its
/// future dropped mid-run).
///
/// Every attempt run through [`AttemptRunner`](crate::runner::AttemptRunner) has it as the
/// outermost interceptor; you do not add it yourself. What it guarantees: a checkpoint stored
/// just before the attempt ends reaches the backend, even when no heartbeat was due yet.
///
/// ```
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn fail_fast(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
///     ctx.checkpoint(&(n + 1))?;
///     Err(ActivityError::retryable("Flaky", "try again"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(fail_fast, ()).await;
/// assert!(run.result.is_err());
/// // Flushed on the way out, so the retry resumes from 1.
/// assert_eq!(run.heartbeats.len(), 1);
/// assert_eq!(run.heartbeats[0].checkpoint, Some(1));
/// assert_eq!(run.last_checkpoint, Some(1));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HeartbeatInterceptor {
    pump: Pump,
}

impl HeartbeatInterceptor {
    /// An interceptor heartbeating through `pump`. Crate-private: the runner adds exactly one,
    /// so an attempt is never registered with a pump twice.
    pub(crate) fn new(pump: Pump) -> Self {
        HeartbeatInterceptor { pump }
    }
}

impl Interceptor for HeartbeatInterceptor {
    fn intercept<'a>(
        &'a self,
        ctx: &'a ActivityContext,
        next: Next<'a>,
    ) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            let mut registration = self.pump.register(ctx.inner.clone());
            // Stall detection counts from when the attempt runs, not from when it was prepared.
            if let Ok(mut s) = ctx.inner.send.try_lock() {
                s.mark_progress();
            }
            let result = next.run().await;
            // The runner flushes the final checkpoint as it reports the outcome (after every
            // interceptor has run); a registration dropped mid-run flushes from the pump.
            registration.finish();
            result
        })
    }
}
