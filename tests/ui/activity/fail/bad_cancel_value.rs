use hb_runtime::prelude::*;

#[activity(cancel = "graceful")]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(cancel = cooperative)]
async fn b(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
