use hb_runtime::prelude::*;

#[activity(max_checkpoint_size = 4194304)]
async fn too_big(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(max_checkpoint_size = 0)]
async fn zero(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(max_checkpoint_size = "256KiB")]
async fn string(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
