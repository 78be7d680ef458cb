// Docs on an activity survive the expansion: with `missing_docs` denied, a documented public
// activity compiles (the generated type alias documents itself; the marker type is hidden).
#![deny(missing_docs)]
//! A library-like crate.

/// Activities.
pub mod activities {
    use hb_runtime::prelude::*;

    /// Says hello.
    ///
    /// More words.
    #[activity(heartbeat_timeout = "10s", retry(max_attempts = 3))]
    pub async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
        Ok(format!("hello {name}"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = hb_runtime::testing::ActivityEnvironment::new()
        .run(activities::greet, "you".to_string())
        .await;
    assert_eq!(run.result.unwrap(), "hello you");
}
