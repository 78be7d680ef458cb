use hb_runtime::prelude::*;

#[activity(
    heartbeat = "10s",
    timeout = "1h",
    retries = 3,
    max_retries = 3,
    hearbeat_interval = "1s"
)]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
