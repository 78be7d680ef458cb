use hb_runtime::prelude::*;

#[activity(name = "")]
async fn empty(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(crate = "not a path")]
async fn bad_crate(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
