use hb_runtime::prelude::*;

#[activity]
async fn a(_ctx: ActivityContext, input: impl Serialize) -> Result<(), ActivityError> {
    let _ = input;
    Ok(())
}

fn main() {}
