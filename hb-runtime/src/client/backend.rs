//! What a backend implements so that the one client model runs on it: [`ClientBackend`],
//! object-safe, under [`ActivityClient`](super::ActivityClient)'s provided methods. Public as
//! [`hb_runtime::backend`](crate::backend).

use std::fmt;

use super::{ActivityFailure, ClientError, Description, IfExists, ListFilter, ResetOptions};
use crate::BoxFuture;
use crate::options::ActivityOptions;
use crate::payload::Payload;

/// One start, encoded and with its options resolved: what
/// [`ClientBackend::start_activity`] stores.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StartRequest {
    /// The activity type (its hb name).
    pub activity_type: &'static str,
    /// The activity id.
    pub id: String,
    /// The encoded input.
    pub input: Payload,
    /// The activity's own options with the start's overrides applied.
    pub options: ActivityOptions,
    /// The task queue asked for (backends without queues ignore it).
    pub task_queue: Option<String>,
    /// What to do when the id exists.
    pub if_exists: IfExists,
}

/// How a start of `id` as `activity_type` is answered when the id exists with type `found`:
/// the existing activity (`Ok`), unless the start said to fail or the types differ. Every
/// backend answers this way.
#[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
pub(crate) fn answer_existing(
    id: &str,
    activity_type: &str,
    if_exists: IfExists,
    found: String,
) -> Result<(), ClientError> {
    if if_exists == IfExists::Fail {
        Err(ClientError::AlreadyStarted {
            id: id.to_owned(),
            activity_type: found,
        })
    } else if found != activity_type {
        Err(ClientError::WrongType {
            id: id.to_owned(),
            found,
            expected: activity_type.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// The untyped operations behind [`ActivityClient`](crate::client::ActivityClient): a backend
/// implements these (and `ActivityClient`, whose methods are all provided); the typed
/// [`Handle`](crate::client::Handle) calls them through `Arc<dyn ClientBackend>`.
pub trait ClientBackend: Send + Sync + fmt::Debug + 'static {
    /// Stores a start; see [`ActivityClient::start`](crate::client::ActivityClient::start) for
    /// the semantics of an existing id.
    fn start_activity(&self, request: StartRequest) -> BoxFuture<'_, Result<(), ClientError>>;

    /// Waits for activity `id` to close: its output, or how it failed.
    fn activity_output<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Payload, ActivityFailure>>;

    /// What the backend knows of activity `id`.
    fn describe_activity<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Description, ClientError>>;

    /// Asks activity `id` to stop.
    fn cancel_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>>;

    /// Pauses activity `id`; see [`ActivityClient::pause`](crate::client::ActivityClient::pause).
    fn pause_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>>;

    /// Unpauses activity `id`; see
    /// [`ActivityClient::unpause`](crate::client::ActivityClient::unpause).
    fn unpause_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>>;

    /// Resets activity `id`; see [`ActivityClient::reset`](crate::client::ActivityClient::reset).
    fn reset_activity<'a>(
        &'a self,
        id: &'a str,
        options: ResetOptions,
    ) -> BoxFuture<'a, Result<(), ClientError>>;

    /// Activities matching `filter`, newest first.
    fn list_activities(
        &self,
        filter: ListFilter,
    ) -> BoxFuture<'_, Result<Vec<Description>, ClientError>>;

    /// A signal given when activity `id` changes, for
    /// [`Handle::watch`](crate::client::Handle::watch) to describe it again. `None` (the
    /// default) makes the watch poll `describe` every
    /// [`WATCH_POLL_INTERVAL`](crate::client::WATCH_POLL_INTERVAL) instead.
    fn watch_signal(&self, id: &str) -> Option<ChangeSignal> {
        let _ = id;
        None
    }
}

/// What a backend gives [`Handle::watch`](crate::client::Handle::watch) to wait on: a
/// [`Notify`](tokio::sync::Notify) it notifies (`notify_waiters`) on every change of the
/// activity, and whatever must live as long as the watch (a registration to undo on drop).
pub struct ChangeSignal {
    pub(crate) notify: std::sync::Arc<tokio::sync::Notify>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl ChangeSignal {
    /// A signal on `notify`, keeping `keep` until the watch ends.
    pub fn new(
        notify: std::sync::Arc<tokio::sync::Notify>,
        keep: impl std::any::Any + Send + Sync,
    ) -> Self {
        ChangeSignal {
            notify,
            _keep: Box::new(keep),
        }
    }
}

impl fmt::Debug for ChangeSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeSignal").finish_non_exhaustive()
    }
}
