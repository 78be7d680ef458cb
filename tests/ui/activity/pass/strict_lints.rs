// The expansion is clean under strict lint settings, so users' own lint levels stay theirs.
#![deny(
    warnings,
    rust_2018_idioms,
    unused_qualifications,
    unreachable_pub,
    missing_debug_implementations,
    missing_copy_implementations,
    trivial_casts,
    trivial_numeric_casts,
    unused_lifetimes,
    single_use_lifetimes,
    unused_results,
    non_ascii_idents,
    clippy::all
)]

mod activities {
    use hb_runtime::prelude::*;

    #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
    #[checkpoint(version = 2, migrate_from = u64)]
    pub(crate) struct Progress {
        #[checkpoint(done)]
        done: u64,
        #[checkpoint(total)]
        total: Option<u64>,
    }

    impl From<u64> for Progress {
        fn from(done: u64) -> Self {
            Progress { done, total: None }
        }
    }

    #[activity(heartbeat_timeout = "10s", retry(max_attempts = 3, backoff = 2.0))]
    pub(crate) async fn strict<T>(
        ctx: ActivityContext,
        #[state] s: std::sync::Arc<String>,
        #[checkpoint] p: Progress,
        input: T,
    ) -> Result<T, ActivityError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        let _ = (ctx, s, p.done, p.total);
        Ok(input)
    }
}

fn main() {
    let _ = activities::strict::<u8>;
}
