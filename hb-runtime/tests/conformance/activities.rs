//! The activities every scenario runs, on every backend, and what their bodies tell the
//! scenarios (how far they got, when they saw a cancel, and why).
//!
//! What a body does is decided by its input and, for the pace of `batch`, by [`finish_fast`]:
//! a scenario lets an attempt run slowly until it has done what it wanted to the running
//! attempt (cancel, pause, shut its worker down), then lets the retry finish at once.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hb_runtime::prelude::*;
use hb_runtime::worker::Worker;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Progress {
    #[checkpoint(done)]
    pub next: u64,
    #[checkpoint(total)]
    pub total: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Job {
    pub items: u64,
    /// How long an item takes until [`finish_fast`] is called for the activity.
    pub item_ms: u64,
    /// On attempt 1, fail retryably once this many items are checkpointed.
    pub fail_at: Option<u64>,
}

impl Job {
    /// A job that runs 20 s unless the scenario lets it [`finish_fast`] or stops it.
    pub fn endless() -> Job {
        Job {
            items: 2_000,
            item_ms: 10,
            fail_at: None,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
pub struct Report {
    pub processed: u64,
    pub resumed_from: u64,
    pub attempt: u32,
}

/// Activities whose remaining items run without delay, by id.
static FAST: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// When and why each activity's body saw its cancellation, by id (the latest).
static STOPPED: Mutex<Option<HashMap<String, (Instant, CancelReason)>>> = Mutex::new(None);
/// How many items each activity's `batch` body has done, by id.
static DONE: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
/// Set in a worker process: `batch` prints `item N` for each item done.
pub static PRINT_ITEMS: AtomicBool = AtomicBool::new(false);

/// Lets activity `id`'s items run without delay from now on.
pub fn finish_fast(id: &str) {
    FAST.lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(id.to_owned());
}

fn is_fast(id: &str) -> bool {
    FAST.lock()
        .unwrap()
        .as_ref()
        .is_some_and(|s| s.contains(id))
}

/// When and why activity `id`'s body last saw a cancellation.
pub fn stopped(id: &str) -> Option<(Instant, CancelReason)> {
    STOPPED
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(id).copied())
}

/// How many items activity `id`'s `batch` body (in this process) has done.
pub fn items_done(id: &str) -> u64 {
    DONE.lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(id).copied())
        .unwrap_or(0)
}

fn record_stop(id: &str, reason: CancelReason) {
    STOPPED
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(id.to_owned(), (Instant::now(), reason));
}

/// Processes `job.items` items, checkpointing after each; sees a cancel between items
/// (cooperative, so it can say when it saw it).
#[activity(heartbeat_timeout = "2s", cancel = "cooperative", cancel_grace = "2s")]
pub async fn batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    job: Job,
) -> Result<Report, ActivityError> {
    let id = ctx.info().activity_id.clone();
    let attempt = ctx.info().attempt;
    let resumed_from = p.next;
    p.total = job.items;
    while p.next < job.items {
        if job.fail_at == Some(p.next) && attempt == 1 {
            return Err(ActivityError::retryable("Transient", "try again"));
        }
        if ctx.is_cancelled() || !is_fast(&id) {
            // A zero sleep still waits for the timer wheel's next tick: a fast run skips it.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(job.item_ms)) => {}
                _ = ctx.cancelled() => {
                    let reason = ctx.cancel_reason().unwrap_or(CancelReason::Requested);
                    record_stop(&id, reason);
                    return Err(ActivityError::Cancelled { reason, details: None });
                }
            }
        }
        p.next += 1;
        ctx.checkpoint(&p)?;
        DONE.lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(id.clone(), p.next);
        if PRINT_ITEMS.load(Ordering::Relaxed) {
            println!("item {}", p.next);
        }
    }
    Ok(Report {
        processed: p.next - resumed_from,
        resumed_from,
        attempt,
    })
}

/// Checkpoints `progress_to` items, then stops making progress on its first attempt (a stuck
/// dependency): `stall_timeout` makes the pump stop heartbeating, so the backend times the
/// attempt out. A later attempt finishes at once.
#[activity(heartbeat_timeout = "2s", stall_timeout = "300ms")]
pub async fn stalling(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    progress_to: u64,
) -> Result<Report, ActivityError> {
    let resumed_from = p.next;
    let attempt = ctx.info().attempt;
    if attempt == 1 {
        p.total = progress_to;
        while p.next < progress_to {
            p.next += 1;
            ctx.checkpoint(&p)?;
        }
        ctx.flush().await?;
        std::future::pending::<()>().await;
    }
    Ok(Report {
        processed: 0,
        resumed_from,
        attempt,
    })
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Failure {
    pub error_type: String,
    pub non_retryable: bool,
}

/// Counts its attempts in its checkpoint and fails every one with `f`. Its own policy lists
/// `Unlucky` as non-retryable.
#[activity(
    heartbeat_timeout = "2s",
    retry(max_attempts = 5, initial_interval = "100ms", non_retryable = ["Unlucky"])
)]
pub async fn failing(
    ctx: ActivityContext,
    #[checkpoint] mut tries: u64,
    f: Failure,
) -> Result<(), ActivityError> {
    tries += 1;
    ctx.checkpoint(&tries)?;
    if f.non_retryable {
        Err(ActivityError::non_retryable(
            f.error_type,
            "no point retrying",
        ))
    } else {
        Err(ActivityError::retryable(f.error_type, "not this time"))
    }
}

/// Takes a number; `strict_text` is the same activity type as a caller built against another
/// input type sees it, so its input does not decode on the worker.
#[activity(name = "strict", heartbeat_timeout = "2s")]
pub async fn strict(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n * 2)
}

#[activity(name = "strict", heartbeat_timeout = "2s")]
pub async fn strict_text(_ctx: ActivityContext, _text: String) -> Result<u64, ActivityError> {
    Err(ActivityError::non_retryable("NeverRun", "callers only"))
}

/// What a scenario's worker runs and is given (registrations, `#[state]`, limits), on any
/// backend: the worker builder is the same on each.
pub trait Setup: Send + Sync + 'static {
    fn apply<B>(&self, w: Worker<B>) -> Worker<B>;
}

/// Every activity of the suite, with a 500 ms shutdown grace.
#[derive(Debug, Clone, Copy)]
pub struct AllActivities;

impl Setup for AllActivities {
    fn apply<B>(&self, w: Worker<B>) -> Worker<B> {
        w.register(batch)
            .register(stalling)
            .register(failing)
            .register(strict)
            .shutdown_grace(Duration::from_millis(500))
    }
}
