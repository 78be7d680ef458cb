use hb_runtime::prelude::*;

type MyResult<T> = Result<T, ActivityError>;

#[activity]
async fn plain(_ctx: ActivityContext) -> u64 {
    1
}

#[activity]
async fn alias(_ctx: ActivityContext) -> MyResult<u64> {
    Ok(1)
}

#[activity]
async fn option(_ctx: ActivityContext) -> Option<u64> {
    Some(1)
}

fn main() {}
