//! [`ActivityInfo`]: what an attempt knows about itself.

use std::time::{Duration, SystemTime};

use crate::transport::TaskToken;

/// What an attempt knows about itself; [`ActivityContext::info`](crate::ActivityContext::info) returns it.
///
/// ```
/// use hb_runtime::prelude::*;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1m")]
/// async fn whoami(ctx: ActivityContext) -> Result<String, ActivityError> {
///     let info = ctx.info();
///     assert_eq!(info.heartbeat_interval, Duration::from_secs(5)); // half the timeout
///     assert!(info.deadline.is_some()); // from start_to_close_timeout
///     Ok(format!("{} {} #{}", info.activity_type, info.activity_id, info.attempt))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new()
///     .activity_id("order-42")
///     .attempt(3)
///     .run(whoami, ())
///     .await;
/// assert_eq!(run.result.unwrap(), "whoami order-42 #3");
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ActivityInfo {
    /// The activity id (stable across attempts).
    pub activity_id: String,
    /// The activity type name.
    pub activity_type: &'static str,
    /// The attempt number, starting at 1.
    pub attempt: u32,
    /// The heartbeat timeout in force, if any.
    pub heartbeat_timeout: Option<Duration>,
    /// How often the pump heartbeats this attempt.
    pub heartbeat_interval: Duration,
    /// When this attempt must have finished (start-to-close or schedule-to-close), if bounded.
    pub deadline: Option<SystemTime>,
    /// The token that identifies this attempt to its backend (for heartbeating from outside).
    pub task_token: TaskToken,
}
