// `#[cfg]` removes every generated item with the function; lint attributes reach the body;
// other attributes go on the body function.
#![deny(unused_mut, unused_variables)]
use hb_runtime::prelude::*;

#[cfg(any())]
#[activity]
async fn twice(_ctx: ActivityContext) -> Result<u8, ActivityError> {
    Ok(1)
}

#[cfg(all())]
#[activity(heartbeat_timeout = "3s")]
#[allow(unused_mut, unused_variables)]
#[inline]
async fn twice(ctx: ActivityContext, mut n: u8) -> Result<u8, ActivityError> {
    let unused = 1;
    Ok(n * 2)
}

#[activity]
#[tracing::instrument(skip(ctx), fields(activity = "traced"))]
async fn traced(ctx: ActivityContext, n: u8) -> Result<u8, ActivityError> {
    let _ = &ctx;
    Ok(n)
}

#[deprecated = "use twice"]
#[activity]
async fn old(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = hb_runtime::testing::ActivityEnvironment::new();
    assert_eq!(env.run(twice, 4).await.result.unwrap(), 8);
    assert_eq!(env.run(traced, 5).await.result.unwrap(), 5);
    #[allow(deprecated)]
    let _ = old;
}
