use hb_runtime::prelude::*;

#[activity]
async fn a(ctx: &ActivityContext) -> Result<(), ActivityError> {
    let _ = ctx;
    Ok(())
}

fn main() {}
