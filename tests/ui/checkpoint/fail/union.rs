use hb_runtime::prelude::*;

#[derive(Checkpoint)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
