// A checkpoint parameter without `#[checkpoint]`: the activity's checkpoint type is `()`, so
// every `ctx.checkpoint(..)` would fail at run time.
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Progress {
    next: u64,
}

#[activity]
async fn alone(ctx: ActivityContext, mut p: Progress) -> Result<(), ActivityError> {
    p.next += 1;
    ctx.checkpoint(&p)?;
    Ok(())
}

#[activity]
async fn nothing_to_mark(ctx: ActivityContext) -> Result<(), ActivityError> {
    ctx.checkpoint(&1u64)?;
    Ok(())
}

fn main() {}
