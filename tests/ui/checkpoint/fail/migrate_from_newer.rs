use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
#[checkpoint(version = 5)]
struct Other {
    next: u32,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
#[checkpoint(version = 2, migrate_from = Other)]
struct Progress {
    next: u64,
}

impl From<Other> for Progress {
    fn from(o: Other) -> Self {
        Progress {
            next: o.next.into(),
        }
    }
}

fn main() {}
