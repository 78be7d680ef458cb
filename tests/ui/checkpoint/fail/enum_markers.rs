use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
enum Phase {
    #[default]
    Start,
    #[checkpoint(done)]
    Running {
        #[checkpoint(done)]
        line: u64,
    },
}

fn main() {}
