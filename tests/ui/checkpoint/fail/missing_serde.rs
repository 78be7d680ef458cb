use hb_runtime::prelude::*;

#[derive(Checkpoint, Default, Clone)]
struct Progress {
    next: u64,
}

fn main() {}
