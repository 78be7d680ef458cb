// One-argument `Result` aliases: `io::Result<T>` is `Result<T, io::Error>`, and a bare alias
// leaves the error type to inference.
use hb_runtime::prelude::*;

type Result<T> = std::result::Result<T, ActivityError>;

#[activity]
async fn read_len(_ctx: ActivityContext, path: String) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

#[activity]
async fn bare(_ctx: ActivityContext, n: u64) -> Result<u64> {
    Ok(n + 1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = hb_runtime::testing::ActivityEnvironment::new();
    let err = env.run(read_len, "/no/such/file".to_string()).await.result.unwrap_err();
    assert_eq!(err.error_type(), "io::NotFound");
    assert_eq!(env.run(bare, 1).await.result.unwrap(), 2);
}
