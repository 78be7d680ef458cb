// Every mistake is reported at once.
use hb_runtime::prelude::*;

#[activity(
    heartbeat = "10s",
    stall_timeout = "1m",
    cancel = "later",
    max_checkpoint_size = 0
)]
fn a(input: u64, #[checkpoint] p: u64, #[checkpoint] q: u64, other: String) -> u64 {
    input
}

fn main() {}
