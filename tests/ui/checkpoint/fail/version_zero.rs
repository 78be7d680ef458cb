use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
#[checkpoint(version = 0)]
struct Progress {
    next: u64,
}

fn main() {}
