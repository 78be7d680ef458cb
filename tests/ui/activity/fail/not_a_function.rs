use hb_runtime::prelude::*;

#[activity(heartbeat_timeout = "10s")]
struct NotAnActivity;

fn main() {
    let _ = NotAnActivity;
}
