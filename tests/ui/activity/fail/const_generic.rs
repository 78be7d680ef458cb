use hb_runtime::prelude::*;

#[activity]
async fn a<const N: usize>(_ctx: ActivityContext) -> Result<usize, ActivityError> {
    Ok(N)
}

fn main() {}
