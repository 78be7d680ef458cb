//! The seam a backend implements: heartbeats in, reply flags out; attempt completion reports.
//!
//! The embedded engine, the Temporal backend and the test kit's [`MemoryTransport`] implement
//! [`Transport`]. The heartbeat pump calls [`Transport::heartbeat`] on its own thread, so
//! implementations must not block: hand work to a channel or await I/O.

pub(crate) mod memory;
pub(crate) mod null;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::BoxFuture;
use crate::error::{ActivityError, TransportError};
use crate::payload::Payload;

/// Opaque bytes that identify one attempt to its backend.
///
/// ```
/// use hb_runtime::backend::TaskToken;
///
/// let token = TaskToken::new(vec![0xbe, 0xef]);
/// assert_eq!(token.as_bytes(), &[0xbe, 0xef]);
/// assert_eq!(token.to_string(), "beef"); // lower-case hex, for logs
/// assert_eq!(token, TaskToken::new(*b"\xbe\xef"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskToken(Arc<[u8]>);

impl TaskToken {
    /// A token from bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        TaskToken(Arc::from(bytes.into()))
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskToken({self})")
    }
}

impl fmt::Display for TaskToken {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a backend answers to a heartbeat.
///
/// A [`Transport`] returns one from [`heartbeat`](Transport::heartbeat); any flag set makes the
/// attempt stop (with the matching [`CancelReason`](crate::CancelReason)).
///
/// ```
/// use hb_runtime::backend::HeartbeatReply;
///
/// assert!(!HeartbeatReply::ok().stops());
/// assert_eq!(HeartbeatReply::default(), HeartbeatReply::ok());
/// for reply in [
///     HeartbeatReply::cancel(),
///     HeartbeatReply::pause(),
///     HeartbeatReply::reset(),
///     HeartbeatReply::timed_out(),
///     HeartbeatReply::not_found(),
/// ] {
///     assert!(reply.stops());
/// }
/// assert!(HeartbeatReply::cancel().cancel_requested);
/// assert!(HeartbeatReply::pause().paused);
/// assert!(HeartbeatReply::reset().reset);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatReply {
    /// A caller asked for the activity to be cancelled.
    pub cancel_requested: bool,
    /// The activity was paused; the attempt should stop (it is retried once unpaused).
    pub paused: bool,
    /// The activity was reset; the attempt should stop (the activity starts again at attempt
    /// 1). Stops it with [`CancelReason::Reset`](crate::CancelReason::Reset).
    pub reset: bool,
    /// The backend already timed the attempt out.
    pub timed_out: bool,
    /// The backend does not know this attempt any more.
    pub not_found: bool,
}

impl HeartbeatReply {
    /// Nothing to report: keep going.
    pub const fn ok() -> Self {
        HeartbeatReply {
            cancel_requested: false,
            paused: false,
            reset: false,
            timed_out: false,
            not_found: false,
        }
    }
    /// A cancel request.
    pub const fn cancel() -> Self {
        HeartbeatReply {
            cancel_requested: true,
            ..Self::ok()
        }
    }
    /// A pause.
    pub const fn pause() -> Self {
        HeartbeatReply {
            paused: true,
            ..Self::ok()
        }
    }
    /// A reset.
    pub const fn reset() -> Self {
        HeartbeatReply {
            reset: true,
            ..Self::ok()
        }
    }
    /// The attempt already timed out.
    pub const fn timed_out() -> Self {
        HeartbeatReply {
            timed_out: true,
            ..Self::ok()
        }
    }
    /// The attempt is unknown.
    pub const fn not_found() -> Self {
        HeartbeatReply {
            not_found: true,
            ..Self::ok()
        }
    }
    /// Whether the reply asks the attempt to stop.
    pub fn stops(&self) -> bool {
        self.cancel_requested || self.paused || self.reset || self.timed_out || self.not_found
    }
}

/// The backend side of running attempts.
///
/// Futures returned here run on the heartbeat pump's thread (heartbeats) or on the worker's
/// executor (reports); they must not block a thread.
///
/// A minimal backend that keeps the outputs of completed attempts:
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::{AttemptRequest, AttemptRunner};
/// use hb_runtime::backend::{HeartbeatReply, TaskToken, Transport};
/// use hb_runtime::{BoxFuture, Payload, TransportError};
/// use std::sync::{Arc, Mutex};
///
/// #[derive(Default)]
/// struct Outputs(Mutex<Vec<Payload>>);
///
/// impl Transport for Outputs {
///     fn heartbeat<'a>(&'a self, _token: &'a TaskToken, _details: Option<&'a Payload>)
///         -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
///         Box::pin(async { Ok(HeartbeatReply::ok()) })
///     }
///     fn complete<'a>(&'a self, _token: &'a TaskToken, output: Payload)
///         -> BoxFuture<'a, Result<(), TransportError>> {
///         self.0.lock().unwrap().push(output);
///         Box::pin(async { Ok(()) })
///     }
///     fn fail<'a>(&'a self, _: &'a TaskToken, _: &'a ActivityError, _: Option<&'a Payload>)
///         -> BoxFuture<'a, Result<(), TransportError>> {
///         Box::pin(async { Ok(()) })
///     }
///     fn cancelled<'a>(&'a self, _: &'a TaskToken, _: Option<&'a Payload>)
///         -> BoxFuture<'a, Result<(), TransportError>> {
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let outputs = Arc::new(Outputs::default());
/// let runner = AttemptRunner::new(outputs.clone()); // an `Arc` of a transport is one too
/// let request = AttemptRequest::new("d-1", TaskToken::new(*b"d1"), Payload::json(&21).unwrap());
/// runner.start(&double(), request).run().await;
/// assert_eq!(outputs.0.lock().unwrap()[0].decode::<u64>().unwrap(), 42);
/// # }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// Records a heartbeat of attempt `token`, with the latest encoded checkpoint when there is
    /// one, and returns the backend's flags.
    fn heartbeat<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>>;

    /// Reports that the attempt completed with `output`.
    fn complete<'a>(
        &'a self,
        token: &'a TaskToken,
        output: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Reports that the attempt failed; `last_details` is its latest checkpoint, which the
    /// retry resumes from.
    fn fail<'a>(
        &'a self,
        token: &'a TaskToken,
        error: &'a ActivityError,
        last_details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Reports that the attempt stopped after a cancel request, with its latest checkpoint.
    fn cancelled<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Whether the backend keeps the details it last received when a heartbeat or a report
    /// carries none. Default `false`.
    ///
    /// - `false` (Temporal: a heartbeat without details wipes the stored ones): every heartbeat
    ///   and every report carries the attempt's latest checkpoint, the one it resumed from
    ///   included, re-sent as often as needed.
    /// - `true` (the embedded engine: its store coalesces): the pump sends details only when
    ///   the attempt has a checkpoint the backend has not received yet, and heartbeats without
    ///   details otherwise; reports carry details only when the last checkpoint could not be
    ///   delivered. So details the backend got from elsewhere (a heartbeat by task token from
    ///   another process) stay until the attempt stores a newer checkpoint of its own, and a
    ///   retry never overwrites them with the checkpoint it resumed from.
    ///
    /// Read once per attempt, when it starts.
    ///
    /// ```
    /// use hb_runtime::testing::MemoryTransport;
    /// use hb_runtime::backend::{NullTransport, Transport};
    ///
    /// assert!(!NullTransport::new().keeps_details()); // the default: re-send
    /// let t = MemoryTransport::new();
    /// t.set_keeps_details(true); // model a coalescing store
    /// assert!(t.keeps_details());
    /// ```
    fn keeps_details(&self) -> bool {
        false
    }

    /// How often the pump persists a changed checkpoint, independently of the liveness
    /// heartbeat; `None` (the default) ties checkpoints to heartbeats.
    ///
    /// With `Some(interval)` shorter than an attempt's heartbeat interval, the pump looks at
    /// the attempt every `interval` (at most; rounded so a whole number of looks makes one
    /// heartbeat interval) and sends a heartbeat when the checkpoint changed since the last
    /// one it delivered; when it did not, it sends one only when a liveness heartbeat is due.
    /// So a crash loses at most about `interval` of work, and an unchanged checkpoint costs
    /// nothing more. For a backend where each heartbeat is cheap (the embedded engine batches
    /// its commits); leave it `None` where every heartbeat is billed or throttled (Temporal).
    ///
    /// Read once per attempt, when it starts.
    ///
    /// ```
    /// use hb_runtime::testing::MemoryTransport;
    /// use hb_runtime::backend::{NullTransport, Transport};
    /// use std::time::Duration;
    ///
    /// assert_eq!(NullTransport::new().checkpoint_interval(), None);
    /// let t = MemoryTransport::new();
    /// t.set_checkpoint_interval(Some(Duration::from_millis(100)));
    /// assert_eq!(t.checkpoint_interval(), Some(Duration::from_millis(100)));
    /// ```
    fn checkpoint_interval(&self) -> Option<Duration> {
        None
    }
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn heartbeat<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        (**self).heartbeat(token, details)
    }
    fn complete<'a>(
        &'a self,
        token: &'a TaskToken,
        output: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        (**self).complete(token, output)
    }
    fn fail<'a>(
        &'a self,
        token: &'a TaskToken,
        error: &'a ActivityError,
        last_details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        (**self).fail(token, error, last_details)
    }
    fn cancelled<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        (**self).cancelled(token, details)
    }
    fn keeps_details(&self) -> bool {
        (**self).keeps_details()
    }
    fn checkpoint_interval(&self) -> Option<Duration> {
        (**self).checkpoint_interval()
    }
}
