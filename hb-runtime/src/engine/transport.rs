//! The transport the engine's attempts report through: straight into the core, no network.
//! Generic over the shell that applies the core's effects, so the simulator's attempts
//! (`engine::sim`) report through this very code.

use std::time::Duration;

use super::core::{Core, Effects, parse_token};
use crate::BoxFuture;
use crate::error::{ActivityError, TransportError};
use crate::payload::Payload;
use crate::transport::{HeartbeatReply, TaskToken, Transport};

/// What runs the core: the engine (`Arc<Inner>`), or the simulator.
pub(crate) trait Shell: Send + Sync + 'static {
    /// Runs `f` on the core and applies its effects.
    fn change<T>(&self, f: impl FnOnce(&mut Core, &mut Effects) -> T) -> T;
    /// A heartbeat (the hot path).
    fn heartbeat(
        &self,
        token: &TaskToken,
        details: Option<&Payload>,
    ) -> Result<HeartbeatReply, TransportError>;
    /// See `EngineOptions::checkpoint_interval`.
    fn checkpoint_interval(&self) -> Duration;
}

/// The transport of the engine's workers.
#[derive(Clone)]
pub(crate) struct EngineTransport<S>(pub(crate) S);

impl<S: Shell> Transport for EngineTransport<S> {
    fn heartbeat<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        let r = self.0.heartbeat(token, details);
        Box::pin(async move { r })
    }

    fn complete<'a>(
        &'a self,
        token: &'a TaskToken,
        output: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        if let Some((id, attempt)) = parse_token(token) {
            self.0
                .change(|core, fx| core.complete(id, attempt, output, fx));
        }
        Box::pin(async { Ok(()) })
    }

    fn fail<'a>(
        &'a self,
        token: &'a TaskToken,
        error: &'a ActivityError,
        last_details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        if let Some((id, attempt)) = parse_token(token) {
            self.0
                .change(|core, fx| core.failed(id, attempt, error, last_details.cloned(), fx));
        }
        Box::pin(async { Ok(()) })
    }

    fn cancelled<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        if let Some((id, attempt)) = parse_token(token) {
            self.0
                .change(|core, fx| core.cancelled(id, attempt, details.cloned(), fx));
        }
        Box::pin(async { Ok(()) })
    }

    /// The store coalesces: a heartbeat or report without details keeps the stored ones.
    fn keeps_details(&self) -> bool {
        true
    }

    /// A stored checkpoint is cheap (commits are batched), so changed checkpoints are
    /// persisted every `EngineOptions::checkpoint_interval`, whatever the heartbeat interval.
    fn checkpoint_interval(&self) -> Option<Duration> {
        Some(self.0.checkpoint_interval())
    }
}
