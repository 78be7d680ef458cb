use hb_runtime::prelude::*;

struct Input {
    n: u64,
}

struct Output;

#[activity]
async fn a(_ctx: ActivityContext, input: Input) -> Result<Output, ActivityError> {
    let _ = input.n;
    Ok(Output)
}

fn main() {}
