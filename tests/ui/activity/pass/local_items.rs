// An activity declared inside a function body, using types declared there too.
use hb_runtime::prelude::*;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    #[derive(Serialize, Deserialize)]
    struct Local(u8);

    #[activity]
    async fn local(_ctx: ActivityContext, input: Local) -> Result<u8, ActivityError> {
        Ok(input.0)
    }

    let run = hb_runtime::testing::ActivityEnvironment::new()
        .run(local, Local(9))
        .await;
    assert_eq!(run.result.unwrap(), 9);
}
