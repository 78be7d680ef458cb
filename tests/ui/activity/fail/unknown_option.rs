use hb_runtime::prelude::*;

#[activity(frobnicate = 1)]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
