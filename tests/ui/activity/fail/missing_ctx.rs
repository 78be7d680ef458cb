use hb_runtime::prelude::*;

#[activity]
async fn no_ctx(input: u64) -> Result<u64, ActivityError> {
    Ok(input)
}

#[activity]
async fn no_params() -> Result<(), ActivityError> {
    Ok(())
}

#[activity]
async fn ctx_second(input: u64, ctx: ActivityContext) -> Result<u64, ActivityError> {
    let _ = ctx;
    Ok(input)
}

fn main() {}
