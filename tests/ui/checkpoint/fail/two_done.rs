use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(done)]
    also_next: u64,
}

fn main() {}
