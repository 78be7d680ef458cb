// An activity without a checkpoint, one with a `()` input, and one without any input.
use hb_runtime::prelude::*;

#[activity]
async fn unit_input(_ctx: ActivityContext, (): ()) -> Result<u8, ActivityError> {
    Ok(1)
}

#[activity(start_to_close_timeout = "1m")]
async fn no_input(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn checkpoint_is_unit<A: Activity<Checkpoint = (), Input = ()>>(_: A) {}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    checkpoint_is_unit(unit_input());
    checkpoint_is_unit(no_input());
    let env = hb_runtime::testing::ActivityEnvironment::new();
    assert_eq!(env.run(unit_input, ()).await.result.unwrap(), 1);
    env.run(no_input, ()).await.result.unwrap();
}
