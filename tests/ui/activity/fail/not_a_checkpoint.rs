use hb_runtime::prelude::*;

#[derive(Serialize, Deserialize, Default, Clone)]
struct Progress {
    next: u64,
}

#[activity]
async fn a(_ctx: ActivityContext, #[checkpoint] p: Progress) -> Result<u64, ActivityError> {
    Ok(p.next)
}

fn main() {}
