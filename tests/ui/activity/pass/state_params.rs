// `#[state]` parameters are cloned from worker state; a missing one fails the attempt.
use hb_runtime::prelude::*;
use std::sync::Arc;

#[derive(Debug)]
struct Db {
    url: String,
}

#[derive(Clone)]
struct Prefix(&'static str);

#[activity(heartbeat_timeout = "10s")]
async fn lookup(
    _ctx: ActivityContext,
    #[state] db: Arc<Db>,
    key: String,
    #[state] prefix: Prefix,
) -> Result<String, ActivityError> {
    Ok(format!("{}{}/{key}", prefix.0, db.url))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = hb_runtime::testing::ActivityEnvironment::new()
        .with_state(Arc::new(Db {
            url: "sqlite://x".into(),
        }))
        .with_state(Prefix("db:"));
    let run = env.run(lookup, "k".to_string()).await;
    assert_eq!(run.result.unwrap(), "db:sqlite://x/k");

    let mut state = hb_runtime::StateMap::new();
    state.insert(Prefix("p"));
    let missing = lookup().check_state(&state).unwrap_err();
    assert!(missing.type_name.contains("Db"), "{missing}");

    let run = hb_runtime::testing::ActivityEnvironment::new()
        .run(lookup, "k".to_string())
        .await;
    assert_eq!(run.result.unwrap_err().error_type(), "MissingState");
}
