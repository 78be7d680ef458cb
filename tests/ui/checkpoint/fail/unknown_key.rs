use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
#[checkpoint(version = 2, migrate = Old, schema = "x")]
struct Progress {
    next: u64,
}

fn main() {}
