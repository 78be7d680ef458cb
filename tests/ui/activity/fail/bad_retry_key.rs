use hb_runtime::prelude::*;

#[activity(retry(max_attempts = 3, backoff_coefficient = 2.0, jitter = true))]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
