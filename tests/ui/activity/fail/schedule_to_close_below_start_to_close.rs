use hb_runtime::prelude::*;

#[activity(start_to_close_timeout = "1h", schedule_to_close_timeout = "30m")]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
