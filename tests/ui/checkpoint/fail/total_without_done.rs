use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Progress {
    next: u64,
    #[checkpoint(total)]
    total: u64,
}

fn main() {}
