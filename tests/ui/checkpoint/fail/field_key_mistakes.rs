use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
#[checkpoint(done)]
struct Progress {
    #[checkpoint(completed)]
    next: u64,
    #[checkpoint(total = true)]
    total: u64,
    #[checkpoint(version = 2)]
    other: u64,
}

fn main() {}
