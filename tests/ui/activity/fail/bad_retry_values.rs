use hb_runtime::prelude::*;

#[activity(retry(backoff = 0.5, max_attempts = -1, initial_interval = "1m", max_interval = "10s", non_retryable = [BadInput, ""]))]
async fn a(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
