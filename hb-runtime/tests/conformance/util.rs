//! What the scenarios share: their outcome, bounded waits, and a batch that is running.

use std::time::Duration;

use hb_runtime::CancelReason;
use hb_runtime::client::{ActivityClient, Description, Handle};

use crate::activities::{Job, batch, stopped};
use crate::backend::Bench;

/// How a scenario ended on one backend (a failure is a panic: an assertion).
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Passed; with a note printed under the matrix.
    Pass(Option<String>),
    /// Passed with a measurement shown in the matrix's cell (a cancel latency), and a note.
    Measured { cell: String, note: String },
    /// The backend cannot do this by nature: why. (No scenario needs it today: each backend
    /// can do every scenario, its differences being parameters.)
    #[allow(dead_code)]
    Skip(String),
}

impl Outcome {
    pub fn pass() -> Outcome {
        Outcome::Pass(None)
    }
}

/// Polls `h`'s description every 50 ms until `f` holds (at most 30 s); returns it.
pub async fn describe_until<A: hb_runtime::Activity>(
    h: &Handle<A>,
    what: &str,
    f: impl Fn(&Description) -> bool,
) -> Description {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = h.describe().await.expect("describe");
        if f(&d) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{}: never {what}: {d:?}",
            h.id()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 30 s) until activity `id`'s body has seen a cancellation for `reason`;
/// returns when it saw it.
pub async fn body_stopped(id: &str, reason: CancelReason) -> std::time::Instant {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((at, r)) = stopped(id)
            && r == reason
        {
            return at;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{id}: the body never saw {reason:?} (last: {:?})",
            stopped(id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts an endless `batch` as `id` and waits until the backend shows its progress.
pub async fn running_batch(b: &Bench, c: &impl ActivityClient, id: &str) -> Handle<batch> {
    let h = c.start(batch, Job::endless(), b.opts(id)).await.unwrap();
    describe_until(&h, "made progress", |d| {
        d.progress.is_some_and(|p| p.done > 0)
    })
    .await;
    h
}

/// `f` within `bound`, or a panic naming `what`.
pub async fn within<T>(bound: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(bound, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {bound:?}"))
}
