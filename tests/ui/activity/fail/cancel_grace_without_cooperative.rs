use hb_runtime::prelude::*;

#[activity(cancel = "abort", cancel_grace = "5s")]
async fn explicit_abort(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(cancel_grace = "5s")]
async fn default_abort(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
