use hb_runtime::prelude::*;

#[activity(start_to_close_timeout = "1h", stall_timeout = "2m")]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
