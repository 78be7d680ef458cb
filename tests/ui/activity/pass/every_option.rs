// Every option ends up in `options()` exactly as the hand-written builder would set it.
use hb_runtime::prelude::*;
use hb_runtime::{ActivityOptions, BadCheckpointPolicy, CancelMode, RetryPolicy};
use std::time::Duration;

#[activity(
    heartbeat_timeout = "10s",
    heartbeat_interval = "1500ms",
    start_to_close_timeout = "1h 30m",
    schedule_to_close_timeout = "1day",
    retry(max_attempts = 0, initial_interval = "250ms", backoff = 1.5, max_interval = "2m",
          non_retryable = ["BadInput", "NotFound"]),
    stall_timeout = "5m",
    cancel = "cooperative",
    cancel_grace = "20s",
    on_bad_checkpoint = "fail",
    max_checkpoint_size = 512 * 1024,
)]
async fn everything(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(
    cancel = "abort",
    on_bad_checkpoint = "restart",
    max_checkpoint_size = 2097152
)]
async fn defaults_spelled_out(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {
    let expected = ActivityOptions::new()
        .heartbeat_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_millis(1500))
        .start_to_close_timeout(Duration::from_secs(5400))
        .schedule_to_close_timeout(Duration::from_secs(86400))
        .retry(
            RetryPolicy::new()
                .max_attempts(0)
                .initial_interval(Duration::from_millis(250))
                .backoff(1.5)
                .max_interval(Duration::from_secs(120))
                .non_retryable(&["BadInput", "NotFound"]),
        )
        .stall_timeout(Duration::from_secs(300))
        .cancel(CancelMode::Cooperative)
        .cancel_grace(Duration::from_secs(20))
        .on_bad_checkpoint(BadCheckpointPolicy::Fail)
        .max_checkpoint_size(524288);
    assert_eq!(everything().options(), expected);
    assert_eq!(
        defaults_spelled_out().options(),
        ActivityOptions::new().max_checkpoint_size(2097152)
    );
}
