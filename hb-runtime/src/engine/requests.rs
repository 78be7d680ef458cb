//! Requests to an engine from another process, through its file: a cancel (what `hb cancel`
//! does), a pause, unpause or reset (`hb pause`, `hb unpause`, `hb reset`) or a heartbeat by
//! task token. The engine that has the file open applies them within
//! a fraction of a second; one opened later applies them when it opens.

use std::path::Path;

use super::core::{Operation, Request};
use super::{EngineError, clock, store};
use crate::client::ResetOptions;

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

/// Queues a pause of activity `id` in the engine file at `path`, for the engine that has it
/// open (or the next to open it) to apply as
/// [`ActivityClient::pause`](crate::client::ActivityClient::pause) does. What `hb pause` does.
/// The engine cannot answer the caller: a pause that does not apply (the activity is paused
/// already, or closed) is logged by the engine and dropped, so look at the activity first.
///
/// ```
/// use hb_runtime::client::{ActivityClient, ActivityStatus, StartOptions};
/// use hb_runtime::engine::{request_pause, request_unpause, Engine};
/// use hb_runtime::prelude::*;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("hb-doc-request-pause-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("hb.db");
/// let engine = Engine::open(&path).await?;
/// let client = engine.client();
/// let handle = client.start(double, 1, StartOptions::id("queued")).await?;
///
/// // From any process; the engine applies it within a fraction of a second.
/// request_pause(&path, "queued")?;
/// tokio::time::timeout(Duration::from_secs(10), async {
///     while handle.describe().await.unwrap().status != ActivityStatus::Paused {
///         tokio::time::sleep(Duration::from_millis(20)).await;
///     }
/// })
/// .await?;
/// request_unpause(&path, "queued")?;
/// let _worker = engine.worker().register(double).spawn().await?;
/// assert_eq!(handle.result().await?, 2);
/// # _worker.shutdown().await;
/// # drop((handle, client, engine));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn request_pause(path: impl AsRef<Path>, id: &str) -> Result<(), EngineError> {
    operate(path.as_ref(), id, Operation::Pause)
}

/// Queues an unpause of activity `id` in the engine file at `path`: as
/// [`ActivityClient::unpause`](crate::client::ActivityClient::unpause), from another process
/// (what `hb unpause` does). See [`request_pause`].
pub fn request_unpause(path: impl AsRef<Path>, id: &str) -> Result<(), EngineError> {
    operate(path.as_ref(), id, Operation::Unpause)
}

/// Queues a reset of activity `id` with `options` in the engine file at `path`: as
/// [`ActivityClient::reset`](crate::client::ActivityClient::reset), from another process
/// (what `hb reset` does). See [`request_pause`].
pub fn request_reset(
    path: impl AsRef<Path>,
    id: &str,
    options: ResetOptions,
) -> Result<(), EngineError> {
    let op = Operation::Reset {
        keep_checkpoint: options.keep_checkpoint,
        keep_paused: options.keep_paused,
    };
    operate(path.as_ref(), id, op)
}

fn operate(path: &Path, id: &str, op: Operation) -> Result<(), EngineError> {
    let request = Request::Operate {
        id: id.to_owned(),
        op,
    };
    store::insert_request(path, &request, clock::now_ms())
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
