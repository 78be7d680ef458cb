//! Plumbing for backend authors: what the embedded engine, the Temporal backend and the test
//! kit are built from. An activity author needs none of it.
//!
//! - [`Transport`]: the seam a backend implements (heartbeats in, reply flags out, attempt
//!   outcomes reported), identified per attempt by a [`TaskToken`];
//! - [`AttemptRunner`]: runs one attempt against a transport — decodes input and checkpoint,
//!   builds the context, runs the body inside the [`Interceptor`] chain, reports the outcome;
//! - [`Pump`]: the one scheduler that heartbeats every running attempt;
//! - [`ClientBackend`]: what a backend implements under
//!   [`ActivityClient`](crate::client::ActivityClient)'s provided methods;
//! - [`checkpoint`](crate::checkpoint) holds the codec of the details a backend stores.
//!
//! ```
//! use hb_runtime::backend::{AttemptRequest, AttemptRunner, NullTransport, TaskToken};
//! use hb_runtime::prelude::*;
//! use hb_runtime::Payload;
//!
//! #[activity(heartbeat_timeout = "10s")]
//! async fn double(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
//!     Ok(n * 2)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let runner = AttemptRunner::new(NullTransport::new());
//! let request = AttemptRequest::new("double-1", TaskToken::new(*b"t1"), Payload::json(&21).unwrap());
//! let outcome = runner.start(&double(), request).into_future().await;
//! assert_eq!(outcome.result.unwrap().decode::<u64>().unwrap(), 42);
//! # }
//! ```

pub use crate::client::backend::{ChangeSignal, ClientBackend, StartRequest};
pub use crate::heartbeat::{Pump, PumpStats};
pub use crate::intercept::{AttemptResult, Interceptor, Next};
pub use crate::payload::JSON_PLAIN;
pub use crate::runner::{
    AttemptHandle, AttemptOutcome, AttemptRequest, AttemptRunner, RunningAttempt,
};
pub use crate::transport::null::NullTransport;
pub use crate::transport::{HeartbeatReply, TaskToken, Transport};

#[cfg(any(feature = "engine", feature = "temporal"))]
pub(crate) use crate::client::backend::answer_existing;
