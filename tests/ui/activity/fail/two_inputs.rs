use hb_runtime::prelude::*;

#[activity]
async fn a(_ctx: ActivityContext, left: u64, right: u64) -> Result<u64, ActivityError> {
    Ok(left + right)
}

fn main() {}
