// A checkpoint parameter without `#[checkpoint]` beside the input: "an activity takes one
// input" says which one to mark.
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Progress {
    next: u64,
}

// The body checkpoints `p`: that is the one to mark.
#[activity]
async fn named_by_the_body(
    ctx: ActivityContext,
    mut p: Progress,
    items: Vec<u64>,
) -> Result<u64, ActivityError> {
    p.next = items.len() as u64;
    ctx.checkpoint(&p)?;
    Ok(p.next)
}

// Nothing says which: both are named.
#[activity]
async fn either(_ctx: ActivityContext, items: Vec<u64>, p: Progress) -> Result<u64, ActivityError> {
    Ok(items.len() as u64 + p.next)
}

fn main() {}
