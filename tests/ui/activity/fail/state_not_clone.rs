use hb_runtime::prelude::*;

struct Pool;

#[activity]
async fn a(_ctx: ActivityContext, #[state] pool: Pool) -> Result<(), ActivityError> {
    let _ = pool;
    Ok(())
}

fn main() {}
