use hb_runtime::prelude::*;

const TEN: &str = "10s";

#[activity(heartbeat_timeout = 10, start_to_close_timeout = TEN)]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
