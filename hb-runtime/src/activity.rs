//! The backend-neutral [`Activity`] trait that `#[activity]` implements, and [`IntoActivity`],
//! what `register`, `start` and the test kit take.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BoxFuture;
use crate::checkpoint::value::Checkpoint;
use crate::context::ActivityContext;
use crate::error::ActivityError;
use crate::options::ActivityOptions;
use crate::state::{MissingState, StateMap};

/// A long-running unit of work that heartbeats itself.
///
/// You rarely implement this by hand: `#[activity]` implements it for a hidden marker type and
/// turns the function's name into a constructor for that marker, so the name you wrote is what you
/// pass to `register`, `start` or [`ActivityEnvironment::run`](crate::testing::ActivityEnvironment::run).
/// Every backend (the embedded engine, Temporal) adapts this one trait, so the same activity runs on
/// any of them unchanged.
///
/// # Implementing it by hand
///
/// ```
/// use hb_runtime::{Activity, ActivityContext, ActivityError, ActivityOptions, BoxFuture};
/// use std::time::Duration;
///
/// #[derive(Debug, Clone, Copy)]
/// struct Double;
///
/// impl Activity for Double {
///     const NAME: &'static str = "double";
///     type Input = u64;
///     type Output = u64;
///     type Checkpoint = ();
///
///     fn options(&self) -> ActivityOptions {
///         ActivityOptions::new().heartbeat_timeout(Duration::from_secs(10))
///     }
///
///     fn run(&self, _ctx: ActivityContext, _ckpt: (), input: u64)
///         -> BoxFuture<'static, Result<u64, ActivityError>>
///     {
///         Box::pin(async move { Ok(input * 2) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(|| Double, 21).await;
/// assert_eq!(run.result.unwrap(), 42);
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an hb activity",
    label = "not an activity",
    note = "put `#[activity(...)]` on an `async fn` and pass the function's name"
)]
pub trait Activity: Send + Sync + 'static {
    /// The activity type name: what backends and other languages call it by.
    const NAME: &'static str;
    /// What the activity is started with (decoded from a `json/plain` payload).
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What a successful attempt returns (encoded as a `json/plain` payload).
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The progress state saved by [`ActivityContext::checkpoint`]; `()` for none.
    type Checkpoint: Checkpoint;

    /// Timeouts, retry policy, heartbeat and cancellation behaviour.
    fn options(&self) -> ActivityOptions;

    /// Checks that every worker-level resource the activity takes (`#[state]` parameters) is
    /// present in `state`. The default takes none.
    fn check_state(&self, state: &StateMap) -> Result<(), MissingState> {
        let _ = state;
        Ok(())
    }

    /// Runs one attempt's body. `checkpoint` is the previous attempt's last checkpoint, or
    /// `Default::default()` on a first attempt.
    fn run(
        &self,
        ctx: ActivityContext,
        checkpoint: Self::Checkpoint,
        input: Self::Input,
    ) -> BoxFuture<'static, Result<Self::Output, ActivityError>>;
}

/// Anything that names an activity: the function name `#[activity]` was put on (it is a
/// constructor `fn() -> Marker`), or any closure returning an [`Activity`].
///
/// This is what `register`, `start` and the test kit take, so callers write `register(process_batch)`.
/// Take it in your own helpers the same way:
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::IntoActivity;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn ping(ctx: ActivityContext) -> Result<String, ActivityError> {
///     Ok("pong".into())
/// }
///
/// fn describe<F: IntoActivity>(activity: F) -> (&'static str, Option<Duration>) {
///     let options = activity.into_activity().options();
///     (<F::Activity as Activity>::NAME, options.heartbeat_timeout)
/// }
///
/// assert_eq!(describe(ping), ("ping", Some(Duration::from_secs(10))));
/// assert_eq!(describe(|| ping()).0, "ping"); // a closure returning the activity works too
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not name an hb activity",
    label = "expected the name of an `#[activity]` function",
    note = "pass the function's name itself (`process_batch`), not a call (`process_batch(..)`)"
)]
pub trait IntoActivity {
    /// The activity this names.
    type Activity: Activity;
    /// Produces the activity value.
    fn into_activity(self) -> Self::Activity;
}

impl<F, A> IntoActivity for F
where
    F: FnOnce() -> A,
    A: Activity,
{
    type Activity = A;
    fn into_activity(self) -> A {
        self()
    }
}
