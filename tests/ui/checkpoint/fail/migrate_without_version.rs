use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct ProgressV1 {
    next: u32,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
#[checkpoint(migrate_from = ProgressV1)]
struct Progress {
    next: u64,
}

impl From<ProgressV1> for Progress {
    fn from(o: ProgressV1) -> Self {
        Progress {
            next: o.next.into(),
        }
    }
}

fn main() {}
