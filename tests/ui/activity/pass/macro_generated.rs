// Activities written by a `macro_rules!` macro: parameters and body keep the macro's hygiene,
// the generated glue keeps its own.
use hb_runtime::prelude::*;

macro_rules! adder {
    ($name:ident, $n:expr) => {
        #[activity(heartbeat_timeout = "1s")]
        async fn $name(
            ctx: ActivityContext,
            #[state] base: u64,
            x: u64,
        ) -> Result<u64, ActivityError> {
            let _ = ctx;
            Ok(base + x + $n)
        }
    };
}

adder!(add_one, 1);
adder!(add_two, 2);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = hb_runtime::testing::ActivityEnvironment::new().with_state(100u64);
    assert_eq!(env.run(add_one, 1).await.result.unwrap(), 102);
    assert_eq!(env.run(add_two, 1).await.result.unwrap(), 103);
}
