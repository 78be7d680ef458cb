//! Interceptors: code that runs around every attempt.
//!
//! The heartbeat pump is the built-in, outermost one
//! ([`HeartbeatInterceptor`](crate::heartbeat::HeartbeatInterceptor)); add your own (metrics,
//! tracing fields, rate limits) with `AttemptRunner::interceptor`. Each receives the attempt's
//! context and a [`Next`] to call the rest of the chain; the innermost step is the body.
//!
//! ```
//! use hb_runtime::intercept::{AttemptResult, Interceptor, Next};
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

use crate::context::ActivityContext;
use crate::definition::BoxFuture;
use crate::error::ActivityError;
use crate::payload::Payload;

/// What an attempt ends with: the encoded output, or the failure.
pub type AttemptResult = Result<Payload, ActivityError>;

/// Code that runs around every attempt.
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
