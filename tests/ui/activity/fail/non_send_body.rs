// Bodies run on a multi-threaded worker: a value that is not Send held across an .await is
// reported.
use hb_runtime::prelude::*;
use std::rc::Rc;

#[activity]
async fn a(ctx: ActivityContext) -> Result<(), ActivityError> {
    let rc = Rc::new(1);
    ctx.flush().await?;
    let _ = rc;
    Ok(())
}

fn main() {}
