// `crate = "..."` for crates that re-export hb_runtime under another path.
mod sdk {
    pub use hb_runtime as hb;
}

use hb_runtime::prelude::{
    activity, ActivityContext, ActivityError, Checkpoint, Deserialize, Serialize,
};

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
#[checkpoint(crate = "sdk::hb", version = 3)]
struct Count(#[checkpoint(done)] u32);

#[activity(crate = "sdk::hb", heartbeat_timeout = "1s")]
async fn count(
    ctx: ActivityContext,
    #[checkpoint] mut c: Count,
    n: u32,
) -> Result<u32, ActivityError> {
    c.0 += n;
    ctx.checkpoint(&c)?;
    Ok(c.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(<Count as sdk::hb::Checkpoint>::VERSION, 3);
    let run = sdk::hb::testing::ActivityEnvironment::new()
        .run(count, 2)
        .await;
    assert_eq!(*run.result.as_ref().unwrap(), 2);
    assert_eq!(run.last_checkpoint.unwrap().progress().unwrap().done, 2);
}
