use hb_runtime::prelude::*;

#[activity(heartbeat_timeout = "10s")]
fn a(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

fn main() {
    // The name still works as an activity, so this line adds no error.
    let _ = <a as Activity>::NAME;
}
