use hb_runtime::prelude::*;

#[activity(heartbeat_timeout = "10m", start_to_close_timeout = "5m")]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
