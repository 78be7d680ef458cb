use hb_runtime::prelude::*;

#[activity]
async fn a(
    _ctx: ActivityContext,
    #[state(shared)] s: std::sync::Arc<u8>,
    #[state]
    #[checkpoint]
    c: u64,
) -> Result<(), ActivityError> {
    let _ = (s, c);
    Ok(())
}

fn main() {}
