// Parameters keep their patterns: `mut`, destructuring, `_`.
use hb_runtime::prelude::*;

#[derive(Serialize, Deserialize)]
struct Pair {
    left: u32,
    right: u32,
}

#[activity]
async fn add(
    _: ActivityContext,
    #[checkpoint] mut seen: u64,
    Pair { left, right }: Pair,
) -> Result<u32, ActivityError> {
    seen += 1;
    let _ = seen;
    Ok(left + right)
}

#[activity]
async fn swap(
    mut ctx: ActivityContext,
    (a, b): (u8, String),
) -> Result<(String, u8), ActivityError> {
    let _ = &mut ctx;
    Ok((b, a))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = hb_runtime::testing::ActivityEnvironment::new();
    assert_eq!(
        env.run(add, Pair { left: 1, right: 2 })
            .await
            .result
            .unwrap(),
        3
    );
    assert_eq!(
        env.run(swap, (1, "x".into())).await.result.unwrap(),
        ("x".to_string(), 1)
    );
}
