// An undocumented public activity still trips missing_docs, on the function's name.
#![deny(missing_docs)]
//! Crate docs.

/// Activities.
pub mod activities {
    use hb_runtime::prelude::*;

    #[activity]
    pub async fn undocumented(_ctx: ActivityContext) -> Result<(), ActivityError> {
        Ok(())
    }
}

fn main() {}
