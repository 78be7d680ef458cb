// Type parameters, bounds in both places, and a `where` clause; the activity is named with a
// turbofish in value position and as a type in type position.
use hb_runtime::prelude::*;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

#[derive(Serialize, Deserialize)]
struct Wrapped<T> {
    value: T,
}

#[activity(heartbeat_timeout = "5s")]
async fn unwrap_it<T: Clone + Debug, U>(
    ctx: ActivityContext,
    input: Wrapped<T>,
) -> Result<T, ActivityError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    U: Default,
{
    let _ = ctx;
    let _unused = U::default();
    Ok(input.value.clone())
}

fn name_of<A: Activity>(_: A) -> &'static str {
    A::NAME
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = hb_runtime::testing::ActivityEnvironment::new()
        .run(
            unwrap_it::<String, u8>,
            Wrapped {
                value: "x".to_string(),
            },
        )
        .await;
    assert_eq!(run.result.unwrap(), "x");

    // Type namespace: the function's name is also the activity type.
    let marker: unwrap_it<u64, ()> = unwrap_it::<u64, ()>();
    let copy = marker;
    assert_eq!(name_of(copy), "unwrap_it");
    assert_eq!(format!("{marker:?}"), "unwrap_it");
    let _default: unwrap_it<u64, ()> = Default::default();
}
