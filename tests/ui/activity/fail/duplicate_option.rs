use hb_runtime::prelude::*;

#[activity(
    heartbeat_timeout = "10s",
    name = "a",
    heartbeat_timeout = "20s",
    retry(backoff = 2.0, backoff = 3.0)
)]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
