use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Progress {
    #[checkpoint(done)]
    next: String,
    #[checkpoint(total)]
    total: f64,
}

fn main() {}
