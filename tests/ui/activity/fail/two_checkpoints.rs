use hb_runtime::prelude::*;

#[activity]
async fn a(
    _ctx: ActivityContext,
    #[checkpoint] first: u64,
    #[checkpoint] second: u32,
) -> Result<(), ActivityError> {
    let _ = (first, second);
    Ok(())
}

fn main() {}
