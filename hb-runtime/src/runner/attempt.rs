//! One attempt's future, from its first poll to its report.
//!
//! Written by hand rather than as nested `async` blocks: an attempt waits for its whole run
//! (minutes to hours), and tens of thousands may be in flight, so the state it holds while
//! the body runs is kept to a context, a pump registration and one boxed future (the body).
//! Everything only needed at the end (the cancel mode's grace period, the report) is boxed
//! when it starts.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;

use super::AttemptOutcome;
use crate::BoxFuture;
use crate::attempt::Shared;
use crate::attempt::poll::{Tracked, TrackedFuture};
use crate::attempt::send;
use crate::context::ActivityContext;
use crate::error::{ActivityError, CancelReason, panic_message};
use crate::heartbeat::Pump;
use crate::intercept::{AttemptResult, Interceptor, Next};
use crate::options::CancelMode;
use crate::payload::Payload;

/// The body's future: the activity's typed result.
type Body<O> = BoxFuture<'static, Result<O, ActivityError>>;

/// An attempt as a future (see the module docs).
pub(super) struct Attempt<O> {
    ctx: ActivityContext,
    /// The pump heartbeating the attempt from its first poll to its report.
    pump: Pump,
    pumped: Pumped,
    stage: Stage<O>,
    /// Held until the attempt ends (a worker's concurrency permit; see [`AttemptFuture::hold`]).
    held: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// An attempt's future, type-erased, with room for what must live exactly as long as it.
pub(super) trait AttemptFuture: Future<Output = AttemptOutcome> + Send {
    /// Keeps `permit` until the attempt's outcome is reported (or the future dropped).
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    fn hold(self: Pin<&mut Self>, permit: tokio::sync::OwnedSemaphorePermit);
}

impl<O: serde::Serialize + Send + 'static> AttemptFuture for Attempt<O> {
    fn hold(self: Pin<&mut Self>, permit: tokio::sync::OwnedSemaphorePermit) {
        self.get_mut().held = Some(permit);
    }
}

/// Where an attempt stands with its pump.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pumped {
    NotYet,
    Registered,
    Done,
}

enum Stage<O> {
    /// The body, polled here (no interceptors of the user's).
    Body(Body<O>),
    /// The body behind the user's interceptors (their chain owns it).
    Chain(BoxFuture<'static, AttemptResult>),
    /// Cancelled while running: the cancel mode plays out (grace period, or drop).
    Cancelled(Body<O>),
    /// The outcome is being reported, the last checkpoint flushed.
    Report(BoxFuture<'static, AttemptOutcome>),
    Done,
}

impl<O: serde::Serialize + Send + 'static> Attempt<O> {
    pub(super) fn new(
        ctx: ActivityContext,
        pump: Pump,
        chain: Arc<[Arc<dyn Interceptor>]>,
        body: Body<O>,
    ) -> Self {
        let stage = if chain.is_empty() {
            Stage::Body(body)
        } else {
            let ctx = ctx.clone();
            Stage::Chain(Box::pin(async move {
                let guarded = Box::pin(guard(ctx.clone(), body));
                // A panicking interceptor fails the attempt like a panicking body.
                AssertUnwindSafe(Next::new(&chain, &ctx, guarded).run())
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        let message = panic_message(panic.as_ref());
                        tracing::error!(%message, "an interceptor panicked");
                        Err(ActivityError::Panicked { message })
                    })
            }))
        };
        Attempt {
            ctx,
            pump,
            pumped: Pumped::NotYet,
            stage,
            held: None,
        }
    }

    /// The run ended with `result`: leave the pump and report.
    fn report(&mut self, result: AttemptResult) {
        // The final checkpoint is flushed by the report; a registration dropped mid-run (the
        // attempt's future dropped) flushes from the pump instead.
        let shared = self.ctx.inner.clone();
        if std::mem::replace(&mut self.pumped, Pumped::Done) == Pumped::Registered {
            self.pump.unregister(&shared, false);
        }
        self.stage = Stage::Report(Box::pin(async move { report(&shared, result).await }));
    }
}

impl<O: serde::Serialize + Send + 'static> Attempt<O> {
    /// Advances the attempt by one stage: `Ready(Some(_))` once reported, `Ready(None)` when
    /// a stage ended (the next one is set). A stage is taken out of `self.stage` before it is
    /// dropped, so a panic in the user's code (a destructor, the output's `Serialize`) leaves
    /// `Stage::Done` behind, not a half-dropped stage.
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Option<AttemptOutcome>> {
        match &mut self.stage {
            Stage::Body(body) => {
                let polled = Pin::new(&mut TrackedFuture::new(body, &self.ctx.inner)).poll(cx);
                match polled {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Tracked::Done(r)) => {
                        drop(std::mem::replace(&mut self.stage, Stage::Done));
                        let result = encode_output(&self.ctx, r);
                        self.report(result);
                        Poll::Ready(None)
                    }
                    Poll::Ready(Tracked::Cancelled) => {
                        let Stage::Body(body) = std::mem::replace(&mut self.stage, Stage::Done)
                        else {
                            unreachable!("in the body stage")
                        };
                        self.stage =
                            Stage::Cancelled(Box::pin(after_cancel(self.ctx.clone(), body)));
                        Poll::Ready(None)
                    }
                }
            }
            Stage::Cancelled(rest) => {
                let Poll::Ready(r) = rest.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                drop(std::mem::replace(&mut self.stage, Stage::Done));
                let result = encode_output(&self.ctx, r);
                self.report(result);
                Poll::Ready(None)
            }
            Stage::Chain(chain) => {
                let Poll::Ready(result) = chain.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                drop(std::mem::replace(&mut self.stage, Stage::Done));
                self.report(result);
                Poll::Ready(None)
            }
            Stage::Report(report) => {
                let Poll::Ready(outcome) = report.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                self.stage = Stage::Done;
                Poll::Ready(Some(outcome))
            }
            Stage::Done => panic!("an attempt polled after it completed"),
        }
    }
}

impl<O: serde::Serialize + Send + 'static> Future for Attempt<O> {
    type Output = AttemptOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<AttemptOutcome> {
        let this = self.get_mut();
        let span = this.ctx.inner.span().clone();
        let _entered = span.enter();
        if this.pumped == Pumped::NotYet {
            this.pump.register(&this.ctx.inner);
            // Stall detection counts from when the attempt runs, not from when it was prepared.
            if let Ok(mut s) = this.ctx.inner.send.try_lock() {
                s.mark_progress();
            }
            this.pumped = Pumped::Registered;
        }
        loop {
            let reporting = matches!(this.stage, Stage::Report(_));
            match std::panic::catch_unwind(AssertUnwindSafe(|| this.step(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(None)) => {}
                Ok(Poll::Ready(Some(outcome))) => {
                    this.held = None;
                    return Poll::Ready(outcome);
                }
                // The report is hb's own code: a panic there is a bug, not the activity's.
                Err(panic) if reporting => std::panic::resume_unwind(panic),
                // The activity's code panicked: in the body's poll, in its destructors, or in
                // its output's `Serialize`. The attempt fails, and is reported, like a body
                // that panicked.
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    tracing::error!(%message, "activity panicked");
                    let stage = std::mem::replace(&mut this.stage, Stage::Done);
                    // A panicked future is not polled again; a second panic while dropping it
                    // is only logged.
                    if let Err(again) = std::panic::catch_unwind(AssertUnwindSafe(|| drop(stage))) {
                        let message = panic_message(again.as_ref());
                        tracing::error!(%message, "activity panicked again while dropped");
                    }
                    this.report(Err(ActivityError::Panicked { message }));
                }
            }
        }
    }
}

impl<O> Drop for Attempt<O> {
    /// A future dropped mid-run (its task aborted, its worker gone): the body's destructors run
    /// inside the attempt's span, as its polls did.
    fn drop(&mut self) {
        /// Dropped before its report, the attempt leaves the pump, which flushes its last
        /// checkpoint: after the body's destructors, and even if one of them panics.
        struct Leave<'a>(&'a Pump, &'a Arc<Shared>, bool);

        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                if self.2 {
                    self.0.unregister(self.1, true);
                }
            }
        }

        let _entered = self.ctx.inner.span().enter();
        let _leave = Leave(
            &self.pump,
            &self.ctx.inner,
            self.pumped == Pumped::Registered,
        );
        drop(std::mem::replace(&mut self.stage, Stage::Done));
    }
}

/// The body's output as a payload (or why it cannot be one).
fn encode_output<O: serde::Serialize>(
    ctx: &ActivityContext,
    result: Result<O, ActivityError>,
) -> AttemptResult {
    result.and_then(|output| {
        Payload::json(&output).map_err(|e| ActivityError::OutputNotSerializable {
            activity: ctx.info().activity_type.to_owned(),
            message: e.to_string(),
        })
    })
}

/// The innermost step under the user's interceptors: the body with panics caught, polls
/// tracked, and the cancel mode applied; its output encoded.
async fn guard<O: serde::Serialize>(ctx: ActivityContext, body: Body<O>) -> AttemptResult {
    let mut body = AssertUnwindSafe(body).catch_unwind().map(|r| {
        r.unwrap_or_else(|panic| {
            let message = panic_message(panic.as_ref());
            tracing::error!(%message, "activity panicked");
            Err(ActivityError::Panicked { message })
        })
    });
    let result = match TrackedFuture::new(&mut body, &ctx.inner).await {
        Tracked::Done(r) => r,
        // Boxed so the grace-period state does not enlarge the future for the whole run.
        Tracked::Cancelled => Box::pin(after_cancel(ctx.clone(), body)).await,
    };
    encode_output(&ctx, result)
}

/// The cancel mode applied once a cancel arrived.
async fn after_cancel<O>(
    ctx: ActivityContext,
    mut body: impl Future<Output = Result<O, ActivityError>> + Unpin,
) -> Result<O, ActivityError> {
    let reason = ctx.cancel_reason().unwrap_or(CancelReason::Requested);
    let cancelled = ActivityError::Cancelled {
        reason,
        details: None,
    };
    match ctx.inner.options.cancel {
        CancelMode::Cooperative => {
            let grace = ctx.inner.options.cancel_grace();
            // Still tracked, so a blocked executor during the grace period is reported too.
            // A panic in it fails the attempt like one before the cancel.
            let tracked = TrackedFuture::new(&mut body, &ctx.inner).ignoring_cancel();
            match tokio::time::timeout(grace, AssertUnwindSafe(tracked).catch_unwind()).await {
                Ok(Ok(Tracked::Done(r))) => r,
                Ok(Ok(Tracked::Cancelled)) => Err(cancelled),
                Ok(Err(panic)) => {
                    let message = panic_message(panic.as_ref());
                    tracing::error!(%message, "activity panicked");
                    Err(ActivityError::Panicked { message })
                }
                Err(_) => {
                    tracing::warn!(
                        ?grace,
                        "activity did not finish within cancel_grace; dropped"
                    );
                    Err(cancelled)
                }
            }
        }
        _ => {
            tracing::info!(%reason, "activity body dropped on cancel");
            Err(cancelled)
        }
    }
}

/// Reports the result to the transport with the latest checkpoint (unless the backend keeps
/// details and has it already: see [`Transport::keeps_details`](crate::transport::Transport::keeps_details)).
pub(crate) async fn report(shared: &Arc<Shared>, mut result: AttemptResult) -> AttemptOutcome {
    let send::Final {
        latest: details,
        report: reported,
    } = send::finish(shared).await;
    if let Err(ActivityError::Cancelled { reason, details: d }) = &mut result {
        match shared.cancel_reason() {
            // The reason the attempt was given, whatever the body said: a shutdown, pause or
            // timeout stays retryable.
            Some(actual) => {
                *reason = actual;
                // What the backend is sent (a backend may prefer it to the details it holds).
                *d = reported.clone();
            }
            // Nobody asked it to cancel: a backend would refuse to record a cancellation
            // (Temporal leaves the attempt to time out), so it is a failure.
            None => {
                result = Err(ActivityError::non_retryable(
                    "Cancelled",
                    "the activity returned Cancelled without a cancel request",
                ));
            }
        }
    }
    shared.metrics.ended(&result);
    let token = &shared.info.task_token;
    let transport = &shared.env.transport;
    let sent = match &result {
        Ok(output) => {
            tracing::debug!("activity completed");
            transport.complete(token, output.clone()).await
        }
        Err(ActivityError::Cancelled {
            reason: CancelReason::Requested,
            ..
        }) => transport.cancelled(token, reported.as_ref()).await,
        Err(e) => {
            tracing::warn!(error = %e, retryable = e.is_retryable(), "activity attempt failed");
            transport.fail(token, e, reported.as_ref()).await
        }
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not report the attempt's outcome to the backend");
    }
    // The caller's copy names the attempt's latest checkpoint, whatever the backend was sent.
    if let Err(ActivityError::Cancelled { details: d, .. }) = &mut result {
        d.clone_from(&details);
    }
    AttemptOutcome {
        result,
        details,
        cancel_reason: shared.cancel_reason(),
    }
}
