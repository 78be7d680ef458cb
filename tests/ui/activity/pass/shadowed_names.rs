// The expansion names nothing from the caller's scope: local types called `Result`, `Option`,
// `Box`, `Duration`, `Activity`, `PhantomData`, `Send`, `Clone`, `Default`... change nothing.
#![allow(dead_code, non_camel_case_types, unused_macros)]

use hb_runtime::prelude::{
    activity, ActivityContext, ActivityError, Checkpoint, Deserialize, Serialize,
};

struct Result;
struct Option;
struct Box;
struct Duration;
struct PhantomData;
struct Vec;
struct String;
trait Activity {}
trait Send {}
trait Sync {}
trait Clone {}
trait Copy {}
trait Default {}
trait Debug {}
trait Into {}
trait From {}
trait Future {}
trait Checkpoint2 {}
fn state() {}
fn into_activity_error() {}
mod core {}
mod std {}
macro_rules! panic {
    () => {};
}
macro_rules! unreachable {
    () => {};
}
macro_rules! assert {
    () => {};
}

#[derive(Checkpoint, Serialize, Deserialize, ::core::default::Default, ::core::clone::Clone)]
#[checkpoint(version = 2, migrate_from = u64)]
struct Progress {
    #[checkpoint(done)]
    done: u32,
    #[checkpoint(total)]
    total: ::core::option::Option<u32>,
}

impl ::core::convert::From<u64> for Progress {
    fn from(done: u64) -> Self {
        Progress {
            done: done as u32,
            total: None,
        }
    }
}

#[activity(heartbeat_timeout = "10s", retry(max_attempts = 2))]
async fn shadowed(
    ctx: ActivityContext,
    #[state] s: ::std::sync::Arc<u8>,
    #[checkpoint] p: Progress,
    input: u64,
) -> ::core::result::Result<u64, ActivityError> {
    let _ = (ctx, p);
    ::core::result::Result::Ok(input + *s as u64)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = hb_runtime::testing::ActivityEnvironment::new()
        .with_state(::std::sync::Arc::new(1u8))
        .run(shadowed, 41)
        .await;
    ::core::assert_eq!(run.result.unwrap(), 42);
}
