use hb_runtime::prelude::*;

#[activity]
async fn a<'a>(_ctx: ActivityContext, input: &'a str) -> Result<usize, ActivityError> {
    Ok(input.len())
}

fn main() {}
