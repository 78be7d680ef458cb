// A body returning the wrong type is reported against the return type as written.
use hb_runtime::prelude::*;

#[activity]
async fn a(_ctx: ActivityContext, n: u64) -> Result<String, ActivityError> {
    Ok(n)
}

fn main() {}
