//! The heartbeat pump: one shared scheduler that heartbeats every running attempt.
//!
//! - [`Pump`] owns a deadline queue of running attempts. In production it runs on its own
//!   thread ([`Pump::global`]), so CPU-bound activity bodies cannot starve it; the test kit runs
//!   the same scheduler on the test's runtime ([`Pump::on_current_runtime`]) so it follows
//!   tokio's paused clock.
//! - Each tick of an attempt encodes its checkpoint only if it changed (coalescing: the activity
//!   may have stored thousands since the last tick), sends it, applies the reply's flags
//!   (cancel, pause), checks for stalls and for a blocked executor. An unchanged checkpoint is
//!   re-sent with every heartbeat to a backend that wipes details a heartbeat does not carry
//!   (Temporal); to one that keeps them (the embedded engine) the tick sends a heartbeat
//!   without details, so details sent by task token from elsewhere stand.
//! - A backend with a checkpoint interval of its own (the embedded engine) has its attempts
//!   ticked that often: a changed checkpoint is persisted within that interval, and otherwise
//!   nothing is sent until a liveness heartbeat is due. See
//!   [`Transport::checkpoint_interval`](crate::backend::Transport::checkpoint_interval).
//! - Every attempt run through [`AttemptRunner`](crate::backend::AttemptRunner) is registered
//!   with a pump while it runs, around the [interceptors](crate::backend::Interceptor) you add, and has
//!   its latest checkpoint flushed when it ends (success, error, cancel, panic, or its future
//!   dropped mid-run): a checkpoint stored just before the attempt ends reaches the backend,
//!   even when no heartbeat was due yet.
//!
//! ```
//! use hb_runtime::prelude::*;
//!
//! #[activity(heartbeat_timeout = "10s")]
//! async fn fail_fast(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
//!     ctx.checkpoint(&(n + 1))?;
//!     Err(ActivityError::retryable("Flaky", "try again"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let run = hb_runtime::testing::ActivityEnvironment::new().run(fail_fast, ()).await;
//! assert!(run.result.is_err());
//! // Flushed on the way out, so the retry resumes from 1.
//! assert_eq!(run.heartbeats.len(), 1);
//! assert_eq!(run.heartbeats[0].checkpoint, Some(1));
//! assert_eq!(run.last_checkpoint, Some(1));
//! # }
//! ```

mod pump;

pub use pump::{Pump, PumpStats};
