use hb_runtime::prelude::*;

struct Worker;

impl Worker {
    #[activity]
    async fn run(&self, _ctx: ActivityContext) -> Result<(), ActivityError> {
        Ok(())
    }
}

fn main() {}
