use hb_runtime::prelude::*;

#[activity(on_bad_checkpoint = "ignore")]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
