// `name = "..."` sets the activity type name; the Rust name stays the function's.
use hb_runtime::prelude::*;

#[activity(name = "billing.charge-card")]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

#[activity]
async fn r#match(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {
    assert_eq!(<charge as Activity>::NAME, "billing.charge-card");
    assert_eq!(<r#match as Activity>::NAME, "match");
}
