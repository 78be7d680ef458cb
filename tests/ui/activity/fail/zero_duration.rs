use hb_runtime::prelude::*;

#[activity(heartbeat_timeout = "0s", retry(initial_interval = "0ms"))]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
