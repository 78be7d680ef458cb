//! A [`Transport`] that accepts everything and keeps nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{HeartbeatReply, TaskToken, Transport};
use crate::BoxFuture;
use crate::error::{ActivityError, TransportError};
use crate::payload::Payload;

/// A backend that answers every heartbeat with [`HeartbeatReply::ok`], accepts every report,
/// and only counts heartbeats: for benchmarks, and for running attempts whose outcome you take
/// from [`RunningAttempt::run`](crate::runner::RunningAttempt::run) alone.
///
/// ```
/// use hb_runtime::backend::{NullTransport, TaskToken, Transport};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let t = NullTransport::new();
/// let token = TaskToken::new(*b"t");
/// assert!(!t.heartbeat(&token, None).await.unwrap().stops());
/// assert_eq!(t.heartbeats(), 1);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct NullTransport {
    heartbeats: Arc<AtomicU64>,
}

impl NullTransport {
    /// A new transport with a zero count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Heartbeats received so far (clones share the count).
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }
}

impl Transport for NullTransport {
    fn heartbeat<'a>(
        &'a self,
        _: &'a TaskToken,
        _: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(HeartbeatReply::ok()) })
    }

    fn complete<'a>(
        &'a self,
        _: &'a TaskToken,
        _: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }

    fn fail<'a>(
        &'a self,
        _: &'a TaskToken,
        _: &'a ActivityError,
        _: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }

    fn cancelled<'a>(
        &'a self,
        _: &'a TaskToken,
        _: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
}
