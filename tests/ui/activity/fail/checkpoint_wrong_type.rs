// A checkpoint of another type than the `#[checkpoint]` parameter's is a type error at the
// argument, not a `CheckpointError::WrongType` at run time.
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Progress {
    next: u64,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Other {
    done: u64,
}

#[activity]
async fn a(ctx: ActivityContext, #[checkpoint] mut p: Progress) -> Result<(), ActivityError> {
    p.next += 1;
    ctx.checkpoint(&p)?;
    ctx.checkpoint(&Other { done: 1 })?;
    let c = ctx.clone();
    c.checkpoint(&p.next)?;
    Ok(())
}

fn main() {}
