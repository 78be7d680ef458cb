//! Requests to an engine from another process, through its file: a cancel (what `hb cancel`
//! does) or a heartbeat by task token. The engine that has the file open applies them within
//! a fraction of a second; one opened later applies them when it opens.

use std::path::Path;

use super::core::Request;
use super::{EngineError, clock, store};

/// Queues a cancel of activity `id` in the engine file at `path`, for the engine that has it
/// open (or the next to open it) to apply. What `hb cancel` does.
///
/// ```
/// use hb_runtime::client::{ActivityFailure, StartOptions};
/// use hb_runtime::engine::{request_cancel, Engine};
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("hb-doc-request-cancel-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("hb.db");
/// let engine = Engine::open(&path).await?;
/// // No worker runs it: it waits.
/// let handle = engine.client().start(double, 1, StartOptions::id("queued")).await?;
///
/// // From any process; the engine applies it within a fraction of a second.
/// request_cancel(&path, "queued")?;
/// assert!(matches!(handle.result().await, Err(ActivityFailure::Cancelled { .. })));
/// # drop((handle, engine));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn request_cancel(path: impl AsRef<Path>, id: &str) -> Result<(), EngineError> {
    let request = Request::Cancel { id: id.to_owned() };
    store::insert_request(path.as_ref(), &request, clock::now_ms())
}

/// Queues a heartbeat of attempt `token` with `details` in the engine file at `path`: how a
/// process other than the engine's heartbeats an attempt.
///
/// ```
/// use hb_runtime::client::{ActivityFailure, StartOptions};
/// use hb_runtime::engine::{request_cancel, request_heartbeat, Engine};
/// use hb_runtime::prelude::*;
/// use hb_runtime::backend::TaskToken;
/// use hb_runtime::Payload;
/// use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
///
/// /// Hands its task token to whoever does the work, and waits for the cancel.
/// #[activity(heartbeat_timeout = "30s")]
/// async fn external(
///     ctx: ActivityContext,
///     #[state] tokens: UnboundedSender<TaskToken>,
/// ) -> Result<(), ActivityError> {
///     tokens.send(ctx.info().task_token.clone()).ok();
///     std::future::pending().await // until the cancel drops it
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("hb-doc-request-heartbeat-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("hb.db");
/// let engine = Engine::open(&path).await?;
/// let (tx, mut tokens) = unbounded_channel();
/// let _worker = engine.worker().register(external).state(tx).spawn().await?;
/// let handle = engine.client().start(external, (), StartOptions::id("ext")).await?;
/// let token = tokens.recv().await.unwrap();
///
/// // What the other process does: report progress, later cancel. The engine applies both,
/// // in order.
/// let step = Payload::json(&serde_json::json!({ "step": 1 }))?;
/// request_heartbeat(&path, &token, Some(&step))?;
/// request_cancel(&path, "ext")?;
/// match handle.result().await {
///     Err(ActivityFailure::Cancelled { details }) => assert_eq!(details, Some(step)),
///     other => panic!("expected Cancelled, got {other:?}"),
/// }
/// # _worker.shutdown().await;
/// # drop((handle, engine));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn request_heartbeat(
    path: impl AsRef<Path>,
    token: &crate::transport::TaskToken,
    details: Option<&crate::Payload>,
) -> Result<(), EngineError> {
    let request = Request::Heartbeat {
        token: token.clone(),
        details: details.cloned(),
    };
    store::insert_request(path.as_ref(), &request, clock::now_ms())
}
