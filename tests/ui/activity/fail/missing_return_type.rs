use hb_runtime::prelude::*;

#[activity]
async fn a(_ctx: ActivityContext, n: u64) {
    let _ = n;
}

fn main() {}
