use hb_runtime::prelude::*;

#[activity(heartbeat_timeout = "10s", heartbeat_interval = "9s")]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
