// Without hb-runtime's `anyhow` feature (the UI tests run with default features), an activity
// returning `anyhow::Error` does not compile, and the error names the feature and `ResultExt`.
use hb_runtime::prelude::*;

#[activity]
async fn alias(_ctx: ActivityContext, n: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(n > 0, "zero items");
    Ok(n)
}

#[activity]
async fn spelled_out(_ctx: ActivityContext) -> Result<(), anyhow::Error> {
    Ok(())
}

fn main() {}
