use hb_runtime::prelude::*;

#[activity(retry = 3)]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
