use hb_runtime::prelude::*;

#[activity(
    heartbeat_timeout = "ten seconds",
    start_to_close_timeout = "5 fortnights"
)]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
