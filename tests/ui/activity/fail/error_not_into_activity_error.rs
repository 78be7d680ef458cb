use hb_runtime::prelude::*;

#[derive(Debug)]
struct MyError;

#[activity]
async fn a(_ctx: ActivityContext) -> Result<(), MyError> {
    Err(MyError)
}

fn main() {}
