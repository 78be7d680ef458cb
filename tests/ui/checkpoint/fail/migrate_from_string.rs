use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
#[checkpoint(version = 2, migrate_from = "ProgressV1")]
struct Progress {
    next: u64,
}

fn main() {}
