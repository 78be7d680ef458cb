//! # hb: long-running activities that heartbeat themselves
//!
//! An *activity* is work that takes minutes to hours. hb makes it report liveness, keep its
//! progress across crashes and retries, and stop promptly when cancelled — the model of
//! Temporal's activity heartbeats, without the hand-written loop:
//!
//! ```
//! use hb_runtime::prelude::*;
//!
//! #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
//! struct Progress {
//!     #[checkpoint(done)]
//!     next: u64,
//!     #[checkpoint(total)]
//!     total: u64,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Batch { items: Vec<u64> }
//!
//! #[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1h", stall_timeout = "2m",
//!            retry(max_attempts = 5, initial_interval = "1s", backoff = 2.0, non_retryable = ["BadInput"]))]
//! async fn process_batch(ctx: ActivityContext, #[checkpoint] mut p: Progress, input: Batch)
//!     -> Result<u64, ActivityError>
//! {
//!     p.total = input.items.len() as u64;
//!     let mut sum = 0;
//!     for item in &input.items[p.next as usize..] {
//!         sum += item;              // a cancel drops the body at its next .await
//!         p.next += 1;
//!         ctx.checkpoint(&p)?;      // nanoseconds: stores the latest; the pump ships it
//!     }
//!     Ok(sum)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A retry resuming from item 2 (the test kit stands in for a backend here).
//! let run = hb_runtime::testing::ActivityEnvironment::new()
//!     .with_checkpoint(Progress { next: 2, total: 4 })
//!     .attempt(2)
//!     .run(process_batch, Batch { items: vec![1, 2, 3, 4] })
//!     .await;
//! assert_eq!(run.result.unwrap(), 7);
//! # }
//! ```
//!
//! ## The pieces
//! What an activity author uses sits at the crate root and in [`client`], [`worker`] and
//! [`testing`]; what a backend is built from sits in [`backend`].
//!
//! - [`macro@activity`] wraps an `async fn` into an [`Activity`] with its [`ActivityOptions`];
//!   [`macro@Checkpoint`] derives typed, versioned progress state ([`checkpoint`] is its
//!   codec).
//! - [`ActivityContext`] is what the body sees: `checkpoint`, `flush`, `cancelled`,
//!   `run_blocking`; [`StateMap`] holds the worker's resources for `#[state]` parameters.
//! - [`client::ActivityClient`] starts and follows activities, written once for every
//!   backend; [`worker::Worker`] is the worker builder both backends share.
//! - [`engine`] is the embedded durable backend (SQLite); `temporal` (feature `temporal`) runs
//!   the same activities on a Temporal server.
//! - [`testing::ActivityEnvironment`] runs an activity in tests with a deterministic clock.
//! - [`metrics`]: what hb reports through the `metrics` facade (names, labels, units).
//! - [`backend`]: the [`Transport`](backend::Transport) seam, the
//!   [`AttemptRunner`](backend::AttemptRunner), the heartbeat [`Pump`](backend::Pump) and the
//!   [`Interceptor`](backend::Interceptor) chain.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

// The modules in dependency order: each uses only those above it (a DAG with the attempt at its
// centre). Leaves: payloads, checkpoints, state, errors, options, and the deadline lanes the
// pump and the engine's timers keep their items in.
pub mod checkpoint;
mod error;
mod lanes;
mod options;
mod payload;
mod state;
// Metric names and the handles attempts record into (a leaf over the `metrics` facade).
pub mod metrics;
// The seam every backend implements.
mod transport;
// One running attempt's state, and the two sides that drive it: the body's context and the
// pump that heartbeats it.
mod attempt;
mod context;
mod heartbeat;
// What an activity is, the chain around its attempts, and the runner that runs one.
mod activity;
mod intercept;
mod runner;
// Callers and workers, over any backend; the backends on top; `backend` re-exports the
// plumbing for backend authors.
pub mod backend;
pub mod client;
#[cfg(feature = "dashboard")]
pub mod dashboard;
#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "temporal")]
pub mod temporal;
pub mod testing;
pub mod worker;

pub use activity::{Activity, IntoActivity};
pub use attempt::ActivityInfo;
pub use checkpoint::value::{Checkpoint, CheckpointDecodeError, Progress};
pub use context::{ActivityContext, Cancelled};
pub use error::{
    ActivityError, CancelReason, CheckpointError, ResultExt, TransportError, TransportErrorKind,
};
pub use options::{
    ActivityOptions, BadCheckpointPolicy, CancelMode, DEFAULT_CHECKPOINT_LIMIT,
    DEFAULT_HEARTBEAT_INTERVAL, HARD_CHECKPOINT_LIMIT, RetryPolicy,
};
pub use payload::{DecodeError, Payload};
pub use state::{MissingState, StateMap};

/// A boxed, `Send` future: what [`Activity::run`] and the backend traits return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// `#[derive(Checkpoint)]`: see [`hb_macros::Checkpoint`].
#[cfg(feature = "macros")]
pub use hb_macros::Checkpoint;
/// `#[activity(...)]`: see [`hb_macros::activity`].
#[cfg(feature = "macros")]
pub use hb_macros::activity;

/// Everything an activity author needs, and the [`ActivityClient`](client::ActivityClient)
/// trait whose methods start and follow activities: `use hb_runtime::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "macros")]
    pub use crate::activity;
    pub use crate::client::ActivityClient;
    pub use crate::{
        Activity, ActivityContext, ActivityError, CancelReason, Checkpoint, CheckpointError,
        ResultExt,
    };
    pub use serde::{Deserialize, Serialize};
}

/// What the macros' output names. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::checkpoint::{ProgressCount, decode_current, decode_migrated};
    pub use crate::{
        Activity, ActivityContext, ActivityError, ActivityOptions, BadCheckpointPolicy, BoxFuture,
        CancelMode, Checkpoint, CheckpointDecodeError, MissingState, Progress, RetryPolicy,
        StateMap,
    };
    pub use core::marker::PhantomData;
    pub use core::option::Option;
    pub use core::result::Result;
    pub use core::time::Duration;
    pub use serde::Serialize;
    pub use serde::de::DeserializeOwned;
    pub use serde_json::Value;
    pub use std::boxed::Box;

    /// The value of a `#[state]` parameter.
    pub fn state<T: Clone + Send + Sync + 'static>(
        ctx: &ActivityContext,
    ) -> Result<T, ActivityError> {
        ctx.state::<T>()
    }

    /// An error type a body may return: any `E: Into<ActivityError>`. A trait of its own,
    /// rather than that bound, so the error for one that does not convert says what to do.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` does not convert into `ActivityError`, so it cannot be an activity's error type",
        label = "the activity's error type",
        note = "map the error in the body with `hb_runtime::ResultExt` (`.retryable()`, `.non_retryable(\"Type\")`, `.error_type(\"Type\")`), or, for an error type of your own, implement `From<{Self}> for ActivityError`",
        note = "for `anyhow::Error` (and `anyhow::Result<T>`), enable the `anyhow` feature of hb-runtime"
    )]
    pub trait IntoActivityError {
        /// The conversion.
        fn into_activity_error(self) -> ActivityError;
    }

    // `do_not_recommend`: an unmet `Into` is reported as this trait's message above, not as
    // "`From<E>` is not implemented for `ActivityError`".
    #[diagnostic::do_not_recommend]
    impl<E: Into<ActivityError>> IntoActivityError for E {
        #[inline]
        fn into_activity_error(self) -> ActivityError {
            self.into()
        }
    }

    /// Converts a body's error type.
    pub fn into_activity_error<E: IntoActivityError>(e: E) -> ActivityError {
        e.into_activity_error()
    }

    /// The body's future with its error converted.
    pub fn body<F, T, E, C>(future: F, convert: C) -> futures_util::future::MapErr<F, C>
    where
        F: core::future::Future<Output = Result<T, E>>,
        C: FnOnce(E) -> ActivityError,
    {
        futures_util::TryFutureExt::map_err(future, convert)
    }

    /// A body that fails before it starts (a `#[state]` parameter the worker lacks).
    pub fn failed<T: Send + 'static>(
        e: ActivityError,
    ) -> BoxFuture<'static, Result<T, ActivityError>> {
        Box::pin(core::future::ready(Err(e)))
    }
}
