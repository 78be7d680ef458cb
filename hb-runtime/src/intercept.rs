//! Interceptors: code that runs around every attempt.
//!
//! The [heartbeat pump](crate::heartbeat)'s registration is around all of them; add yours (metrics,
//! tracing fields, rate limits) with `AttemptRunner::interceptor`. Each receives the attempt's
//! context and a [`Next`] to call the rest of the chain; the innermost step is the body.
//!
//! ```
//! use hb_runtime::backend::{AttemptResult, Interceptor, Next};
//! use hb_runtime::{ActivityContext, BoxFuture};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! #[derive(Debug, Default)]
//! struct CountFailures(AtomicUsize);
//!
//! impl Interceptor for CountFailures {
//!     fn intercept<'a>(&'a self, ctx: &'a ActivityContext, next: Next<'a>) -> BoxFuture<'a, AttemptResult> {
//!         Box::pin(async move {
//!             let result = next.run().await;
//!             if result.is_err() {
//!                 self.0.fetch_add(1, Ordering::Relaxed);
//!                 eprintln!("{} attempt {} failed", ctx.info().activity_type, ctx.info().attempt);
//!             }
//!             result
//!         })
//!     }
//! }
//! ```

use std::fmt;
use std::sync::Arc;

use crate::BoxFuture;
use crate::context::ActivityContext;
use crate::error::ActivityError;
use crate::payload::Payload;

/// What an attempt ends with: the encoded output, or the failure.
pub type AttemptResult = Result<Payload, ActivityError>;

/// Code that runs around every attempt.
///
/// Add one with [`AttemptRunner::interceptor`](crate::runner::AttemptRunner::interceptor) (or
/// [`ActivityEnvironment::interceptor`](crate::testing::ActivityEnvironment::interceptor) in tests):
///
/// ```
/// use hb_runtime::backend::{AttemptResult, Interceptor, Next};
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::backend::TaskToken;
/// use hb_runtime::{BoxFuture, Payload};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// /// Counts the attempts that started.
/// #[derive(Clone, Default)]
/// struct Attempts(Arc<AtomicUsize>);
///
/// impl Interceptor for Attempts {
///     fn intercept<'a>(&'a self, _ctx: &'a ActivityContext, next: Next<'a>) -> BoxFuture<'a, AttemptResult> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         next.run()
///     }
/// }
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn answer(ctx: ActivityContext) -> Result<u64, ActivityError> {
///     Ok(42)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let attempts = Attempts::default();
/// let runner = AttemptRunner::new(MemoryTransport::new()).interceptor(attempts.clone());
/// for attempt in 1..=2 {
///     let token = TaskToken::new(format!("a#{attempt}"));
///     let request = AttemptRequest::new("a", token, Payload::json(&()).unwrap()).attempt(attempt);
///     runner.start(&answer(), request).run().await.result.unwrap();
/// }
/// assert_eq!(attempts.0.load(Ordering::Relaxed), 2);
/// # }
/// ```
pub trait Interceptor: Send + Sync + 'static {
    /// Runs around the rest of the chain: call `next.run()` to go on (or don't, to short-cut
    /// the attempt with your own result).
    fn intercept<'a>(
        &'a self,
        ctx: &'a ActivityContext,
        next: Next<'a>,
    ) -> BoxFuture<'a, AttemptResult>;
}

/// The rest of the interceptor chain, ending in the activity's body.
///
/// Call [`run`](Self::run) to go on, or drop it to short-cut the attempt:
///
/// ```
/// use hb_runtime::backend::{AttemptResult, Interceptor, Next};
/// use hb_runtime::prelude::*;
/// use hb_runtime::BoxFuture;
///
/// /// Refuses every attempt (to be retried elsewhere) while the worker drains.
/// struct Draining(bool);
///
/// impl Interceptor for Draining {
///     fn intercept<'a>(&'a self, _ctx: &'a ActivityContext, next: Next<'a>) -> BoxFuture<'a, AttemptResult> {
///         if self.0 {
///             return Box::pin(async { Err(ActivityError::retryable("Draining", "worker is draining")) });
///         }
///         next.run()
///     }
/// }
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn answer(ctx: ActivityContext) -> Result<u64, ActivityError> {
///     Ok(42)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hb_runtime::testing::ActivityEnvironment;
/// let run = ActivityEnvironment::new().interceptor(Draining(true)).run(answer, ()).await;
/// assert_eq!(run.result.unwrap_err().error_type(), "Draining");
/// let run = ActivityEnvironment::new().interceptor(Draining(false)).run(answer, ()).await;
/// assert_eq!(run.result.unwrap(), 42);
/// # }
/// ```
pub struct Next<'a> {
    rest: &'a [Arc<dyn Interceptor>],
    ctx: &'a ActivityContext,
    body: BoxFuture<'a, AttemptResult>,
}

impl<'a> Next<'a> {
    pub(crate) fn new(
        chain: &'a [Arc<dyn Interceptor>],
        ctx: &'a ActivityContext,
        body: BoxFuture<'a, AttemptResult>,
    ) -> Self {
        Next {
            rest: chain,
            ctx,
            body,
        }
    }

    /// Runs the rest of the chain and the body.
    pub fn run(self) -> BoxFuture<'a, AttemptResult> {
        match self.rest.split_first() {
            None => self.body,
            Some((first, rest)) => first.intercept(
                self.ctx,
                Next {
                    rest,
                    ctx: self.ctx,
                    body: self.body,
                },
            ),
        }
    }
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("remaining_interceptors", &self.rest.len())
            .finish_non_exhaustive()
    }
}
