//! hb activities on a real Temporal server (`temporal server start-dev`), called by name from a
//! Python `temporalio` workflow (`tests/temporal/caller.py`).
//!
//! One server serves every case, started first and stopped last, so this binary runs its own
//! cases (`harness = false`): `cargo test --features temporal --test temporal [-- NAME]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hb_runtime::client::{
    ActivityClient, ActivityFailure, ActivityStatus, ClientError, Handle, ListFilter, ResetOptions,
    StartOptions,
};
use hb_runtime::prelude::*;
use hb_runtime::temporal::{
    AutoHeartbeat, Client, ConnectOptions, Temporal, TemporalError, WorkerHandle, sdk_activity,
};
use serde_json::json;

#[path = "temporal/harness.rs"]
mod harness;
#[path = "temporal/sdk_harness.rs"]
mod sdk_harness;

use harness::{Server, call};

#[activity(heartbeat_timeout = "10s")]
async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n * 2)
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct BatchProgress {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Batch {
    items: u64,
    item_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct BatchReport {
    processed: u64,
    resumed_from: u64,
    attempt: u32,
}

/// Why `process_batch` attempts were stopped, by activity id.
static STOPPED: std::sync::Mutex<Vec<(String, CancelReason)>> = std::sync::Mutex::new(Vec::new());

/// Processes `items` items of `item_ms` each, checkpointing after each.
#[activity(heartbeat_timeout = "10s", cancel = "cooperative", cancel_grace = "5s")]
async fn process_batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: BatchProgress,
    batch: Batch,
) -> Result<BatchReport, ActivityError> {
    let resumed_from = p.next;
    p.total = batch.items;
    while p.next < batch.items {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(batch.item_ms)) => {}
            _ = ctx.cancelled() => {
                let reason = ctx.cancel_reason().unwrap_or(CancelReason::Requested);
                let id = ctx.info().activity_id.clone();
                STOPPED.lock().unwrap().push((id, reason));
                return Err(ActivityError::Cancelled { reason, details: None });
            }
        }
        p.next += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(BatchReport {
        processed: p.next - resumed_from,
        resumed_from,
        attempt: ctx.info().attempt,
    })
}

/// When `awaits_cancel` saw its cancel (seconds since the epoch).
static CANCEL_SEEN: std::sync::Mutex<Option<f64>> = std::sync::Mutex::new(None);

/// Waits for its cancel and notes when it saw it.
#[activity(heartbeat_timeout = "30s")]
async fn awaits_cancel(ctx: ActivityContext) -> Result<(), ActivityError> {
    ctx.cancelled().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    *CANCEL_SEEN.lock().unwrap() = Some(now.as_secs_f64());
    Err(ActivityError::Cancelled {
        reason: ctx.cancel_reason().unwrap_or(CancelReason::Requested),
        details: None,
    })
}

/// Fails with an error type its retry policy lists as non-retryable (the error itself is
/// retryable).
#[activity(heartbeat_timeout = "10s", retry(non_retryable = ["Unlucky"]))]
async fn unlucky(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Err(ActivityError::retryable("Unlucky", "the draw went badly"))
}

/// Counts its attempts in its checkpoint and fails each, retryably, 2 attempts allowed.
#[activity(
    heartbeat_timeout = "10s",
    retry(max_attempts = 2, initial_interval = "100ms")
)]
async fn flaky(ctx: ActivityContext, #[checkpoint] mut tries: u64) -> Result<(), ActivityError> {
    tries += 1;
    ctx.checkpoint(&tries)?;
    ctx.flush().await?;
    Err(ActivityError::retryable("Flaky", "not this time"))
}

/// Checkpoints `progress_to` items, then stops making progress (a stuck dependency): with
/// `stall_timeout`, the pump stops heartbeating, so Temporal times the attempt out.
#[activity(heartbeat_timeout = "10s", stall_timeout = "1s")]
async fn stalls(
    ctx: ActivityContext,
    #[checkpoint] mut p: BatchProgress,
    progress_to: u64,
) -> Result<BatchReport, ActivityError> {
    let resumed_from = p.next;
    if ctx.info().attempt > 1 {
        // The retry finishes.
        return Ok(BatchReport {
            processed: 0,
            resumed_from,
            attempt: ctx.info().attempt,
        });
    }
    p.total = progress_to;
    while p.next < progress_to {
        p.next += 1;
        ctx.checkpoint(&p)?;
    }
    ctx.flush().await?;
    std::future::pending().await
}

/// `process_batch` that says on stdout how far it got (for the parent of a worker process to
/// kill it partway).
#[activity(heartbeat_timeout = "10s")]
async fn logged_batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: BatchProgress,
    batch: Batch,
) -> Result<BatchReport, ActivityError> {
    let resumed_from = p.next;
    p.total = batch.items;
    while p.next < batch.items {
        tokio::time::sleep(Duration::from_millis(batch.item_ms)).await;
        p.next += 1;
        ctx.checkpoint(&p)?;
        println!("item {}", p.next);
    }
    Ok(BatchReport {
        processed: p.next - resumed_from,
        resumed_from,
        attempt: ctx.info().attempt,
    })
}

/// A plain temporalio-sdk activity: no heartbeats, no cancel checks of its own.
mod sdk {
    // The macro also makes `Plain::plain_sleep` (the marker as a value), unused here.
    #![allow(dead_code)]
    use std::time::Duration;

    pub struct Plain;

    #[temporalio_macros::activities]
    impl Plain {
        #[activity(name = "plain_sleep")]
        pub async fn plain_sleep(
            _ctx: temporalio_sdk::activities::ActivityContext,
            ms: u64,
        ) -> Result<String, temporalio_sdk::activities::ActivityError> {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(format!("slept {ms} ms"))
        }

        /// Blocks its thread (no `.await`) for `ms`.
        #[activity(name = "plain_block")]
        pub async fn plain_block(
            _ctx: temporalio_sdk::activities::ActivityContext,
            ms: u64,
        ) -> Result<String, temporalio_sdk::activities::ActivityError> {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(format!("blocked {ms} ms"))
        }
    }

    pub use plain::{PlainBlock, PlainSleep};
}

/// What a temporalio-sdk worker of the tests runs.
#[derive(Clone, Copy, PartialEq)]
enum SdkSetup {
    /// `plain_sleep` as written.
    Plain,
    /// `plain_sleep` in [`AutoHeartbeat`].
    AutoHeartbeat,
    /// hb's `process_batch`, registered with `sdk_activity`.
    Hb,
}

/// A temporalio-sdk worker on `queue` running what `setup` says, on a thread of its own (its
/// `run()` future is not `Send`). Returns its shutdown.
fn sdk_worker(
    url: &str,
    queue: &str,
    setup: SdkSetup,
) -> (Box<dyn Fn() + Send>, std::thread::JoinHandle<()>) {
    let queue = queue.to_owned();
    sdk_harness::sdk_worker(url, move || {
        let builder = temporalio_sdk::WorkerOptions::new(queue);
        match setup {
            SdkSetup::Plain => builder.register_activity::<sdk::PlainSleep>(Arc::new(sdk::Plain)),
            SdkSetup::AutoHeartbeat => builder
                .register_activity::<AutoHeartbeat<sdk::PlainSleep>>(Arc::new(sdk::Plain))
                .register_activity::<AutoHeartbeat<sdk::PlainBlock>>(Arc::new(sdk::Plain)),
            SdkSetup::Hb => builder.register_activities(sdk_activity(process_batch)),
        }
        .graceful_shutdown_period(Duration::from_secs(1))
        .build()
    })
}

/// Set (to `url queue`) in a worker process this binary starts of itself.
const CHILD_WORKER: &str = "HB_TEMPORAL_CHILD_WORKER";

/// The worker process: runs `logged_batch` until killed.
fn child_worker(spec: &str) {
    let (url, queue) = spec.split_once(' ').expect("url and queue");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _worker = Temporal::connect(ConnectOptions::new(url))
            .await
            .expect("the child worker connects")
            .worker()
            .task_queue(queue)
            .register(logged_batch)
            .spawn()
            .await
            .expect("the child worker starts");
        println!("ready");
        std::future::pending::<()>().await
    });
}

/// A worker process on `queue`, and its stdout lines.
fn spawn_child(url: &str, queue: &str) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_WORKER, format!("{url} {queue}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start a worker process");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (bounded) for a line of the child's for which `f` holds.
fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    what: &str,
    f: impl Fn(&str) -> bool,
) -> String {
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = give_up.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if f(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("gave up waiting for {what}: {e}"),
        }
    }
}

struct Env {
    venv: std::path::PathBuf,
    server: Server,
}

static QUEUE: AtomicU32 = AtomicU32::new(0);

impl Env {
    /// An hb worker on a task queue of its own, with every test activity.
    async fn worker(&self) -> (String, WorkerHandle) {
        let queue = format!(
            "hb-{}-{}",
            std::process::id(),
            QUEUE.fetch_add(1, Ordering::Relaxed)
        );
        let worker = self.worker_on(&queue).await;
        (queue, worker)
    }

    /// An hb worker on `queue`, with every test activity.
    async fn worker_on(&self, queue: &str) -> WorkerHandle {
        self.temporal()
            .await
            .worker()
            .task_queue(queue)
            .register(double)
            .register(process_batch)
            .register(stalls)
            .register(unlucky)
            .register(awaits_cancel)
            .shutdown_grace(Duration::from_secs(1))
            .spawn()
            .await
            .expect("the hb worker starts")
    }

    async fn temporal(&self) -> Temporal {
        Temporal::connect(ConnectOptions::new(self.server.url()))
            .await
            .expect("connected to the server")
    }

    async fn client(&self) -> Client {
        self.temporal().await.client()
    }

    /// Calls `activity` from Python on a worker of its own, stopped afterwards.
    async fn run(
        &self,
        activity: &str,
        input: serde_json::Value,
        extra: &[&str],
    ) -> serde_json::Value {
        let (queue, worker) = self.worker().await;
        let out = self.call(args(&queue, activity, input, extra)).await;
        worker.shutdown().await;
        out
    }

    async fn call(&self, args: Vec<String>) -> serde_json::Value {
        let venv = self.venv.clone();
        let server = &self.server;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The caller blocks (a subprocess): off the runtime's threads.
        tokio::task::block_in_place(|| call(&venv, server, &args))
    }
}

fn args(queue: &str, activity: &str, input: serde_json::Value, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--hb-queue".to_owned(),
        queue.to_owned(),
        "--activity".to_owned(),
        activity.to_owned(),
        "--input".to_owned(),
        input.to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

async fn a_python_workflow_calls_an_hb_activity_by_name(env: &Env) {
    let out = env.run("double", json!(21), &[]).await;
    assert_eq!(out, json!({"ok": 42}));
}

async fn an_input_that_does_not_decode_fails_at_once_without_retries(env: &Env) {
    let out = env
        .run("double", json!("twenty-one"), &["--max-attempts", "5"])
        .await;
    let e = &out["error"];
    assert_eq!(e["kind"], "ApplicationError", "{out}");
    assert_eq!(e["type"], "BadInput", "{out}");
    assert_eq!(e["non_retryable"], true, "{out}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("double") && message.contains("u64"),
        "{message}"
    );
    // What the server stores and every caller sees: the reason, not the value.
    assert!(message.contains("invalid type: string"), "{message}");
    assert!(!message.contains("twenty-one"), "{message}");
}

async fn an_error_type_the_activity_lists_as_non_retryable_is_not_retried_by_the_caller(env: &Env) {
    // The caller's policy would retry 5 times; the activity's own list says no.
    let out = env
        .run("unlucky", json!(null), &["--max-attempts", "5"])
        .await;
    let e = &out["error"];
    assert_eq!(e["kind"], "ApplicationError", "{out}");
    assert_eq!(e["type"], "Unlucky", "{out}");
    assert_eq!(e["non_retryable"], true, "{out}");
}

async fn a_cancel_from_python_reaches_the_activity_and_python_sees_cancelled_error(env: &Env) {
    let out = env
        .run(
            "process_batch",
            json!({"items": 100_000, "item_ms": 5}),
            &["--heartbeat-timeout", "2", "--cancel-after", "1.5"],
        )
        .await;
    let e = &out["error"];
    assert_eq!(e["kind"], "CancelledError", "{out}");
    // The details are the last checkpoint, as JSON any caller reads.
    let details = &e["details"][0];
    assert!(details["next"].as_u64().unwrap_or(0) > 0, "{out}");
    assert_eq!(details["total"], 100_000, "{out}");
}

/// The harness starts the server with pushed cancellation on (`frontend.WorkerCommandsEnabled`,
/// `system.enableCancelActivityWorkerCommand`): a workflow's cancel reaches the attempt at
/// once, not in the reply to its next heartbeat. With a 30 s heartbeat timeout and the
/// flags off, this cancel waited 13 s for that heartbeat (measured here).
async fn a_workflow_s_cancel_is_pushed_to_the_activity_long_before_its_next_heartbeat(env: &Env) {
    *CANCEL_SEEN.lock().unwrap() = None;
    let out = env
        .run(
            "awaits_cancel",
            json!(null),
            &["--heartbeat-timeout", "30", "--cancel-after", "2"],
        )
        .await;
    assert_eq!(out["error"]["kind"], "CancelledError", "{out}");
    let requested = out["cancel_requested_at"]
        .as_f64()
        .expect("when it was sent");
    let seen = CANCEL_SEEN
        .lock()
        .unwrap()
        .expect("the activity saw its cancel");
    let latency = seen - requested;
    println!(
        "pushed cancel: the body saw it {:.0} ms after the workflow sent it",
        latency * 1e3
    );
    // Measured at 10-40 ms with the flags, 13 s without.
    assert!(
        latency < 5.0,
        "the cancel took {latency:.2} s: pushed cancellation is not working (it came with a heartbeat)"
    );
}

async fn a_stalled_attempt_times_out_on_heartbeat_with_its_checkpoint_as_details(env: &Env) {
    let out = env
        .run(
            "stalls",
            json!(7),
            &["--heartbeat-timeout", "2", "--max-attempts", "1"],
        )
        .await;
    let e = &out["error"];
    assert_eq!(e["kind"], "TimeoutError", "{out}");
    assert_eq!(e["timeout_type"], "HEARTBEAT", "{out}");
    assert_eq!(e["details"][0]["next"], 7, "{out}");
    assert_eq!(e["details"][0]["total"], 7, "{out}");
}

async fn a_stalled_attempt_is_retried_from_its_checkpoint(env: &Env) {
    let out = env
        .run(
            "stalls",
            json!(5),
            &["--heartbeat-timeout", "2", "--max-attempts", "2"],
        )
        .await;
    assert_eq!(
        out,
        json!({"ok": {"processed": 0, "resumed_from": 5, "attempt": 2}})
    );
}

async fn a_killed_worker_s_retry_resumes_from_the_last_checkpoint(env: &Env) {
    const ITEMS: u64 = 600;
    let queue = format!("hb-{}-kill", std::process::id());
    let url = env.server.url();
    let (mut first, lines) = spawn_child(&url, &queue);
    wait_line(&lines, "the first worker", |l| l == "ready");
    let caller = {
        let (venv, address) = (env.venv.clone(), env.server.address.clone());
        let args = args(
            &queue,
            "logged_batch",
            json!({"items": ITEMS, "item_ms": 10}),
            &["--heartbeat-timeout", "2", "--max-attempts", "3"],
        );
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            harness::call_at(&venv, &address, &args)
        })
    };
    let killed_at: u64 = wait_line(&lines, "item 300", |l| l == "item 300")
        .trim_start_matches("item ")
        .parse()
        .unwrap();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let (mut second, _lines) = spawn_child(&url, &queue);
    let out = tokio::task::block_in_place(|| caller.join().expect("the caller thread"));
    let _ = second.kill();
    let _ = second.wait();
    let report = &out["ok"];
    let resumed_from = report["resumed_from"]
        .as_u64()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(report["attempt"], 2, "{out}");
    assert!(
        resumed_from > 0 && resumed_from <= killed_at,
        "resumed from {resumed_from}, killed at {killed_at}: {out}"
    );
    assert_eq!(
        report["processed"].as_u64().unwrap() + resumed_from,
        ITEMS,
        "{out}"
    );
}

/// Polls `describe` (bounded) until the activity reports progress.
async fn wait_for_progress<A: Activity>(h: &Handle<A>) -> hb_runtime::client::Description {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = h.describe().await.expect("describe");
        if d.progress.is_some_and(|p| p.done > 0) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "no progress reported: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_standalone_activity_is_started_awaited_described_and_cancelled_through_the_hb_client(
    env: &Env,
) {
    let (queue, worker) = env.worker().await;
    let client = env.client().await;
    let id = format!("standalone-{}", std::process::id());
    let options = || {
        StartOptions::id(&id)
            .task_queue(&queue)
            .heartbeat_timeout(Duration::from_secs(2))
    };
    let batch = || Batch {
        items: 40,
        item_ms: 50,
    };
    let h = client
        .start(process_batch, batch(), options())
        .await
        .unwrap();
    let again = client
        .start(process_batch, batch(), options())
        .await
        .expect("a second start of a running id is the running activity");
    assert_eq!(again.id(), h.id());
    assert!(
        matches!(
            client.start(process_batch, batch(), options().fail_if_exists()).await,
            Err(ClientError::AlreadyStarted { ref activity_type, .. }) if activity_type == "process_batch"
        ),
        "a second start with fail_if_exists is refused"
    );
    let d = wait_for_progress(&h).await;
    assert_eq!(d.activity_type, "process_batch");
    assert_eq!(d.attempt, 1);
    assert_eq!(d.progress.unwrap().total, Some(40));
    assert!(d.last_heartbeat.is_some());
    assert_eq!(
        h.result().await.unwrap(),
        BatchReport {
            processed: 40,
            resumed_from: 0,
            attempt: 1
        }
    );

    let long = running_batch(env, &queue, &format!("{id}-cancelled"), 100_000).await;
    long.cancel().await.unwrap();
    match long.result().await {
        Err(ActivityFailure::Cancelled { details: Some(d) }) => {
            let p: BatchProgress = hb_runtime::checkpoint::decode_payload(&d).unwrap();
            assert!(p.next > 0 && p.total == 100_000, "{p:?}");
        }
        other => panic!("expected Cancelled with the checkpoint, got {other:?}"),
    }
    worker.shutdown().await;
}

/// The caller of the "one client model": written once against `ActivityClient`.
async fn run<C: ActivityClient>(
    c: &C,
    id: &str,
) -> Result<BatchReport, Box<dyn std::error::Error>> {
    let batch = Batch {
        items: 20,
        item_ms: 5,
    };
    let h = c.start(process_batch, batch, StartOptions::id(id)).await?;
    println!("{:?}", h.describe().await?.progress);
    Ok(h.result().await?)
}

/// What every backend answers the same way, through `ActivityClient` alone.
async fn same_answers<C: ActivityClient>(c: &C, tag: &str) {
    let id = format!("{tag}-batch");
    let report = run(c, &id).await.expect("the caller runs");
    assert_eq!((report.processed, report.attempt), (20, 1), "{tag}");

    // Starting is idempotent by id, unless asked otherwise; another type is refused.
    let again = Batch {
        items: 99,
        item_ms: 0,
    };
    let same = c
        .start(process_batch, again, StartOptions::id(&id))
        .await
        .unwrap();
    assert_eq!(same.result().await.unwrap(), report, "{tag}");
    let strict = StartOptions::id(&id).fail_if_exists();
    let refused = c
        .start(
            process_batch,
            Batch {
                items: 1,
                item_ms: 0,
            },
            strict,
        )
        .await;
    assert!(
        matches!(&refused, Err(ClientError::AlreadyStarted { activity_type, .. }) if activity_type == "process_batch"),
        "{tag}: {refused:?}"
    );
    let other = c.start(double, 1, StartOptions::id(&id)).await;
    assert!(
        matches!(&other, Err(ClientError::WrongType { found, expected, .. }) if found == "process_batch" && expected == "double"),
        "{tag}: {other:?}"
    );

    // Describe: status, progress, checkpoint, output; it serialises.
    let d = c.describe(&id).await.unwrap();
    assert_eq!(d.status, ActivityStatus::Completed, "{tag}: {d:?}");
    assert_eq!(d.attempt, 1, "{tag}");
    assert_eq!(
        d.progress.map(|p| (p.done, p.total)),
        Some((20, Some(20))),
        "{tag}"
    );
    assert_eq!(
        d.checkpoint::<BatchProgress>().map(|p| p.next),
        Some(20),
        "{tag}"
    );
    let output: BatchReport = d.output.as_ref().expect("the output").decode().unwrap();
    assert_eq!(output, report, "{tag}");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["details"]["next"].as_u64()),
        (Some("completed"), Some(20)),
        "{tag}"
    );

    // Cancelling a closed activity changes nothing; an unknown id is NotFound.
    c.cancel(&id).await.unwrap();
    assert_eq!(
        c.describe(&id).await.unwrap().status,
        ActivityStatus::Completed,
        "{tag}"
    );
    let missing = format!("{tag}-missing");
    assert_eq!(
        c.describe(&missing).await.unwrap_err(),
        ClientError::NotFound {
            id: missing.clone()
        },
        "{tag}"
    );

    // An output the caller's type does not decode.
    match c.handle(double, &id).result().await {
        Err(ActivityFailure::BadOutput { activity_type, .. }) => {
            assert_eq!(activity_type, "double")
        }
        other => panic!("{tag}: expected BadOutput, got {other:?}"),
    }

    // Retries spent: the last attempt's failure, with the last checkpoint.
    let h = c
        .start(flaky, (), StartOptions::id(format!("{tag}-flaky")))
        .await
        .unwrap();
    let failure = h.result().await.unwrap_err();
    match &failure {
        ActivityFailure::RetriesExhausted { attempts: 2, last } => assert!(
            matches!(&**last, ActivityFailure::Application { error_type, non_retryable: false, .. } if error_type == "Flaky"),
            "{tag}: {failure:?}"
        ),
        other => panic!("{tag}: expected RetriesExhausted, got {other:?}"),
    }
    let last: u64 =
        hb_runtime::checkpoint::decode_payload(failure.last_details().expect("details")).unwrap();
    assert_eq!(last, 2, "{tag}");
    assert_eq!(
        h.describe().await.unwrap().status,
        ActivityStatus::Failed,
        "{tag}"
    );

    // A type the retry policy lists ends it at once.
    let h = c
        .start(unlucky, (), StartOptions::id(format!("{tag}-unlucky")))
        .await
        .unwrap();
    match h.result().await {
        Err(f @ ActivityFailure::Application { .. }) => {
            // The type is named once.
            assert_eq!(f.to_string(), "Unlucky: the draw went badly", "{tag}");
        }
        other => panic!("{tag}: expected the Unlucky failure, got {other:?}"),
    }

    // Listed (the server's visibility store follows within a moment).
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = c
            .list(ListFilter::status(ActivityStatus::Completed))
            .await
            .unwrap();
        if all
            .iter()
            .any(|d| d.id == id && d.activity_type == "process_batch")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{tag}: {id} never listed: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn one_caller_written_against_activity_client_gets_the_same_answers_from_the_engine_and_temporal(
    env: &Env,
) {
    let engine = hb_runtime::engine::Engine::in_memory().await.unwrap();
    let engine_worker = engine
        .worker()
        .register(process_batch)
        .register(double)
        .register(flaky)
        .register(unlucky)
        .spawn()
        .await
        .unwrap();
    same_answers(&engine.client(), &format!("engine-{}", std::process::id())).await;
    engine_worker.shutdown().await;

    // Starts name no task queue: a worker on the default one runs them.
    let temporal = env.temporal().await;
    let worker = temporal
        .worker()
        .register(process_batch)
        .register(double)
        .register(flaky)
        .register(unlucky)
        .shutdown_grace(Duration::from_secs(1))
        .spawn()
        .await
        .unwrap();
    same_answers(
        &temporal.client(),
        &format!("temporal-{}", std::process::id()),
    )
    .await;
    worker.shutdown().await;
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < give_up, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_long_running_worker_keeps_nothing_for_the_attempts_it_finished(env: &Env) {
    let pump = hb_runtime::backend::Pump::global();
    let pumped_before = pump.stats().active;
    let (queue, worker) = env.worker().await;
    let client = env.client().await;
    let id = |what: &str, i: u64| format!("forget-{what}-{}-{i}", std::process::id());
    // Rounds of completions, failures (bad input) and cancels through one worker.
    for round in 0..3u64 {
        let mut done = Vec::new();
        for i in 0..40 {
            let n = round * 100 + i;
            done.push((
                n,
                client
                    .start(double, n, StartOptions::id(id("ok", n)).task_queue(&queue))
                    .await
                    .unwrap(),
            ));
        }
        let long = running_batch(env, &queue, &id("cancel", round), 100_000).await;
        for (n, h) in done {
            assert_eq!(h.result().await.unwrap(), n * 2);
        }
        eventually("only the long attempt runs", || worker.running() == 1).await;
        long.cancel().await.unwrap();
        assert!(matches!(
            long.result().await,
            Err(ActivityFailure::Cancelled { .. })
        ));
        eventually("the worker forgets every finished attempt", || {
            worker.running() == 0
        })
        .await;
        eventually("the pump forgets every finished attempt", || {
            pump.stats().active <= pumped_before
        })
        .await;
    }
    worker.shutdown().await;
}

/// A `process_batch` of `items` items of 10 ms, started through hb's client on `queue` with a
/// 2 s heartbeat timeout, once it has reported progress.
async fn running_batch(env: &Env, queue: &str, id: &str, items: u64) -> Handle<process_batch> {
    let h = env
        .client()
        .await
        .start(
            process_batch,
            Batch { items, item_ms: 10 },
            StartOptions::id(id)
                .task_queue(queue)
                .heartbeat_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    wait_for_progress(&h).await;
    h
}

/// `report` is attempt `attempt` of `items` items, resumed from a checkpoint.
fn assert_resumed(report: &BatchReport, attempt: u32, items: u64) {
    assert_eq!(report.attempt, attempt, "{report:?}");
    assert!(report.resumed_from > 0, "{report:?}");
    assert_eq!(report.resumed_from + report.processed, items, "{report:?}");
}

async fn a_worker_shutdown_s_retry_resumes_from_the_checkpoint_on_another_worker(env: &Env) {
    let (queue, first) = env.worker().await;
    let id = format!("shutdown-{}", std::process::id());
    let h = running_batch(env, &queue, &id, 300).await;
    // Graceful: after the 1 s grace the attempt is cancelled with WorkerShutdown, flushes its
    // checkpoint and reports; the server retries it on the next worker of the queue.
    first.shutdown().await;
    let second = env.worker_on(&queue).await;
    assert_resumed(&h.result().await.expect("the retry finishes"), 2, 300);
    second.shutdown().await;
}

async fn a_reset_restarts_the_activity_from_its_checkpoint_instead_of_failing_it(env: &Env) {
    let (queue, worker) = env.worker().await;
    let id = format!("reset-{}", std::process::id());
    let h = running_batch(env, &queue, &id, 400).await;
    // Through hb's client (ResetActivityExecution), as `temporal activity reset` does.
    h.reset(ResetOptions::new())
        .await
        .expect("the server takes the reset");
    // The attempt stops with a retryable ActivityReset failure; the server starts the
    // activity again (attempt 1) with the details it kept.
    assert_resumed(
        &h.result().await.expect("a reset activity runs again"),
        1,
        400,
    );
    let stopped = STOPPED.lock().unwrap().clone();
    assert!(
        stopped.contains(&(id.clone(), CancelReason::Reset)),
        "the attempt was stopped as reset: {stopped:?}"
    );
    worker.shutdown().await;
}

async fn a_reset_that_clears_the_checkpoint_starts_the_activity_from_scratch(env: &Env) {
    let (queue, worker) = env.worker().await;
    let id = format!("reset-clear-{}", std::process::id());
    let h = running_batch(env, &queue, &id, 300).await;
    h.reset(ResetOptions::new().clear_checkpoint())
        .await
        .expect("the server takes the reset");
    let report = h.result().await.expect("a reset activity runs again");
    // Attempt 1 again, from no checkpoint: the stopped attempt's last details (recorded as
    // it stopped) do not come back.
    assert_eq!(
        (report.attempt, report.resumed_from, report.processed),
        (1, 0, 300),
        "{report:?}"
    );
    worker.shutdown().await;
}

async fn a_pause_stops_the_attempt_without_cancelling_and_unpause_resumes_from_the_checkpoint(
    env: &Env,
) {
    const ITEMS: u64 = 400;
    let (queue, worker) = env.worker().await;
    let id = format!("paused-{}", std::process::id());
    let h = running_batch(env, &queue, &id, ITEMS).await;
    let ids = ["--activity-id", id.as_str()];
    // Unpausing what is not paused is refused, as the server refuses it.
    match h.unpause().await {
        Err(ClientError::NotAllowed {
            operation: "unpause",
            status: ActivityStatus::Running,
            ..
        }) => {}
        other => panic!("expected NotAllowed (running), got {other:?}"),
    }
    // Through hb's client (PauseActivityExecution); the unpause below through the CLI.
    h.pause().await.expect("the server takes the pause");
    // The attempt stops (the pause reaches it in a heartbeat reply) and the activity waits,
    // paused, with its checkpoint.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    let paused = loop {
        let d = h.describe().await.unwrap();
        if d.status == ActivityStatus::Paused && d.last_failure.is_some() {
            break d;
        }
        assert!(tokio::time::Instant::now() < give_up, "never paused: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at = paused.progress.expect("the checkpoint is kept").done;
    assert!(at > 0 && at < ITEMS, "{paused:?}");
    assert_ne!(
        paused.status,
        ActivityStatus::Cancelled,
        "a pause is not a cancellation: {paused:?}"
    );
    // The attempt reported the pause itself (not a cancel the server would refuse, leaving a
    // heartbeat timeout as the failure).
    let failure = paused
        .last_failure
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        failure.to_lowercase().contains("paused"),
        "the attempt's failure names the pause: {paused:?}"
    );
    match h.pause().await {
        Err(ClientError::NotAllowed {
            operation: "pause",
            status: ActivityStatus::Paused,
            ..
        }) => {}
        other => panic!("expected NotAllowed (paused), got {other:?}"),
    }
    tokio::task::block_in_place(|| {
        harness::cli(
            &env.venv,
            &env.server,
            &[&["activity", "unpause"][..], &ids].concat(),
        )
    });
    assert_resumed(
        &h.result().await.expect("it finishes once unpaused"),
        2,
        ITEMS,
    );
    worker.shutdown().await;
}

async fn a_plain_temporalio_activity_with_auto_heartbeat_outlives_its_heartbeat_timeout_and_can_be_cancelled(
    env: &Env,
) {
    let url = env.server.url();
    let pid = std::process::id();
    // 6 s of work with a 1 s heartbeat timeout: without heartbeats it times out.
    let slow = json!(6_000);
    let hb_timeout = ["--heartbeat-timeout", "1", "--max-attempts", "1"];

    let bare = format!("plain-{pid}");
    let (stop, thread) = sdk_worker(&url, &bare, SdkSetup::Plain);
    let out = env
        .call(args(&bare, "plain_sleep", slow.clone(), &hb_timeout))
        .await;
    assert_eq!(out["error"]["kind"], "TimeoutError", "unwrapped: {out}");
    assert_eq!(
        out["error"]["timeout_type"], "HEARTBEAT",
        "unwrapped: {out}"
    );
    stop();
    tokio::task::block_in_place(|| thread.join().unwrap());

    let wrapped = format!("auto-{pid}");
    let (stop, thread) = sdk_worker(&url, &wrapped, SdkSetup::AutoHeartbeat);
    let out = env
        .call(args(&wrapped, "plain_sleep", slow, &hb_timeout))
        .await;
    assert_eq!(out, json!({"ok": "slept 6000 ms"}), "wrapped");
    // A body that blocks its thread still heartbeats (the wrapper's own task does).
    let out = env
        .call(args(&wrapped, "plain_block", json!(4_000), &hb_timeout))
        .await;
    assert_eq!(
        out,
        json!({"ok": "blocked 4000 ms"}),
        "wrapped, blocking: {out}"
    );
    let out = env
        .call(args(
            &wrapped,
            "plain_sleep",
            json!(600_000),
            &["--heartbeat-timeout", "1", "--cancel-after", "2"],
        ))
        .await;
    assert_eq!(
        out["error"]["kind"], "CancelledError",
        "wrapped, cancelled: {out}"
    );
    stop();
    tokio::task::block_in_place(|| thread.join().unwrap());
}

async fn an_hb_activity_registered_into_a_temporalio_sdk_worker_runs_and_is_cancelled(env: &Env) {
    let queue = format!("sdk-hb-{}", std::process::id());
    let (stop, thread) = sdk_worker(&env.server.url(), &queue, SdkSetup::Hb);
    let out = env
        .call(args(
            &queue,
            "process_batch",
            json!({"items": 20, "item_ms": 10}),
            &["--heartbeat-timeout", "2"],
        ))
        .await;
    assert_eq!(
        out,
        json!({"ok": {"processed": 20, "resumed_from": 0, "attempt": 1}})
    );
    let out = env
        .call(args(
            &queue,
            "process_batch",
            json!({"items": 100_000, "item_ms": 5}),
            &["--heartbeat-timeout", "2", "--cancel-after", "1.5"],
        ))
        .await;
    assert_eq!(out["error"]["kind"], "CancelledError", "{out}");
    assert!(
        out["error"]["details"][0]["next"].as_u64().unwrap_or(0) > 0,
        "{out}"
    );
    let out = env
        .call(args(
            &queue,
            "process_batch",
            json!("not a batch"),
            &["--max-attempts", "5"],
        ))
        .await;
    assert_eq!(out["error"]["type"], "BadInput", "{out}");
    assert_eq!(out["error"]["non_retryable"], true, "{out}");
    stop();
    tokio::task::block_in_place(|| thread.join().unwrap());
}

/// A namespace of its own on the test server, registered now.
fn new_namespace(env: &Env, what: &str) -> String {
    let namespace = format!("hb-{what}-{}", std::process::id());
    tokio::task::block_in_place(|| {
        harness::cli(
            &env.venv,
            &env.server,
            &["operator", "namespace", "create", "--namespace", &namespace],
        )
    });
    namespace
}

/// Deletes `namespace` from the test server (its workers' next poll fails with `NotFound`).
fn delete_namespace(env: &Env, namespace: &str) {
    tokio::task::block_in_place(|| {
        harness::cli(
            &env.venv,
            &env.server,
            &[
                "operator",
                "namespace",
                "delete",
                "--namespace",
                namespace,
                "--yes",
            ],
        )
    });
}

/// `f` within `bound`, or a panic naming `what`.
async fn within<T>(bound: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(bound, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {bound:?}"))
}

async fn a_worker_whose_namespace_is_deleted_stops_its_attempts_and_wait_returns_the_poll_error(
    env: &Env,
) {
    let namespace = new_namespace(env, "gone");
    let connect = ConnectOptions::new(env.server.url()).namespace(&namespace);
    let queue = format!("gone-{}", std::process::id());
    let temporal = Temporal::connect(connect)
        .await
        .expect("connected to the server");
    let worker = temporal
        .worker()
        .task_queue(&queue)
        .register(process_batch)
        .shutdown_grace(Duration::from_secs(1))
        .spawn()
        .await
        .expect("the hb worker starts");
    // Core lets a poll fail with a "fatal" code for 60 s before it gives up (proxies answer
    // oddly while starting), so the worker learns of the deletion about a minute after the
    // next poll. A 300 s heartbeat timeout keeps the attempt from learning it first from a
    // heartbeat's reply (its pump heartbeats every 150 s).
    let client = temporal.client();
    let id = format!("gone-{}", std::process::id());
    client
        .start(
            process_batch,
            Batch {
                items: 100_000,
                item_ms: 10,
            },
            StartOptions::id(&id)
                .task_queue(&queue)
                .heartbeat_timeout(Duration::from_secs(300)),
        )
        .await
        .unwrap();
    eventually("the attempt runs", || worker.running() == 1).await;
    BESIDE_STARTED.add_permits(1);

    delete_namespace(env, &namespace);
    // The next poll (within the test server's 5 s long poll) fails, for good after core's
    // 60 s: the worker stops by itself.
    match within(Duration::from_secs(90), "the worker's end", worker.wait()).await {
        Err(TemporalError::Poll {
            namespace: ns,
            task_queue,
            code,
            message,
        }) => {
            assert_eq!(
                (ns.as_str(), task_queue.as_str()),
                (namespace.as_str(), queue.as_str())
            );
            assert_eq!(code, "NotFound", "{message}");
            assert!(message.contains(&namespace), "{message}");
        }
        other => panic!("expected the poll error, got {other:?}"),
    }
    assert!(!worker.is_polling());
    // The running attempt was given the grace, then stopped as for a shutdown (its
    // checkpoint flushed: the server, its namespace gone, can no longer show it).
    assert_eq!(worker.running(), 0);
    let stopped = STOPPED.lock().unwrap().clone();
    assert!(
        stopped.contains(&(id.clone(), CancelReason::WorkerShutdown)),
        "the attempt was stopped by the worker's shutdown: {stopped:?}"
    );
    // Its owner can still shut it down (at once: it is over), and ask again.
    within(Duration::from_secs(5), "shutdown", worker.shutdown()).await;
    assert!(matches!(
        worker.wait().await,
        Err(TemporalError::Poll { .. })
    ));
}

async fn wait_returns_ok_after_a_requested_shutdown_and_shutdown_returns_promptly(env: &Env) {
    let (queue, worker) = env.worker().await;
    assert!(worker.is_polling());
    // An attempt still running at the shutdown: cancelled after the 1 s grace.
    let id = format!("wait-ok-{}", std::process::id());
    running_batch(env, &queue, &id, 100_000).await;
    // A waiter from before the shutdown sees its end too.
    let (ended, ()) = within(Duration::from_secs(15), "the shutdown", async {
        tokio::join!(worker.wait(), worker.shutdown())
    })
    .await;
    assert!(ended.is_ok(), "{ended:?}");
    assert!(!worker.is_polling());
    assert_eq!(worker.running(), 0);
    let stopped = STOPPED.lock().unwrap().clone();
    assert!(
        stopped.contains(&(id.clone(), CancelReason::WorkerShutdown)),
        "{stopped:?}"
    );
    assert!(worker.wait().await.is_ok(), "wait answers again");
    within(
        Duration::from_secs(1),
        "a second shutdown",
        worker.shutdown(),
    )
    .await;
}

/// The process's Prometheus recorder, installed by the first case that needs it (cases
/// before it ran without one: their handles record nothing).
fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this process");
        handle
    })
}

/// The value of `name{labels}` (all its labels given, in any order) in a scrape.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    scrape.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        let rest = rest.strip_suffix('}')?;
        let have: Vec<&str> = rest.split(',').filter(|l| !l.is_empty()).collect();
        (metric == name
            && have.len() == wanted.len()
            && wanted.iter().all(|w| have.contains(&w.as_str())))
        .then(|| value.parse().ok())
        .flatten()
    })
}

async fn metrics_reach_the_recorder_labelled_by_task_queue_with_core_s_own(env: &Env) {
    let scraper = prometheus();
    let (queue, worker) = env.worker().await;
    let client = env.client().await;
    let id = format!("metrics-{}", std::process::id());
    let h = client
        .start(double, 21, StartOptions::id(&id).task_queue(&queue))
        .await
        .unwrap();
    assert_eq!(h.result().await.unwrap(), 42);
    let labels = [("activity_type", "double"), ("task_queue", queue.as_str())];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let scrape = loop {
        let scrape = scraper.render();
        let slots = sample(
            &scrape,
            hb_runtime::metrics::WORKER_TASK_SLOTS_AVAILABLE,
            &[("worker", queue.as_str())],
        );
        if sample(&scrape, hb_runtime::metrics::ACTIVITY_COMPLETED, &labels) == Some(1.0)
            && slots.is_some()
        {
            break scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the metrics of {id} are not in the scrape:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(&scrape, hb_runtime::metrics::ACTIVITY_STARTED, &labels),
        Some(1.0)
    );
    let waited = format!(
        "{}_count",
        hb_runtime::metrics::ACTIVITY_SCHEDULE_TO_START_LATENCY
    );
    assert_eq!(sample(&scrape, &waited, &labels), Some(1.0));
    // Core's own metrics, through the same recorder, with their labels.
    let core = scrape
        .lines()
        .find(|l| l.starts_with("temporal_") && l.contains(&format!("task_queue=\"{queue}\"")));
    assert!(core.is_some(), "no temporal_* metric of {queue}:\n{scrape}");
    worker.shutdown().await;
}

async fn a_watch_follows_a_standalone_activity_by_describing_it_until_it_closes(env: &Env) {
    use futures_util::StreamExt;
    let (queue, worker) = env.worker().await;
    let client = env.client().await;
    let id = format!("watched-{}", std::process::id());
    let h = client
        .start(
            process_batch,
            Batch {
                items: 30,
                item_ms: 50,
            },
            StartOptions::id(&id)
                .task_queue(&queue)
                .heartbeat_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let mut changes = Box::pin(h.watch());
    let mut seen = Vec::new();
    while let Some(d) = tokio::time::timeout(Duration::from_secs(30), changes.next())
        .await
        .expect("a change or the end within 30 s")
    {
        let d = d.unwrap();
        seen.push((d.status, d.progress.map(|p| p.done)));
    }
    // (The server keeps the last heartbeat's details: a completed activity shows the progress
    // of its last heartbeat, not of its end.)
    let (status, _) = *seen.last().expect("at least the closing description");
    assert_eq!(status, ActivityStatus::Completed, "{seen:?}");
    assert!(
        seen.iter().any(|(s, _)| *s == ActivityStatus::Running),
        "{seen:?}"
    );
    let progress: Vec<u64> = seen.iter().filter_map(|(_, p)| *p).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    worker.shutdown().await;
}

type Case = for<'a> fn(&'a Env) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        [$((stringify!($name), (|env| Box::pin($name(env))) as Case)),*]
    };
}

/// Cases that spend most of their time waiting on the server (core gives up on a deleted
/// namespace only after a minute) run beside the others instead of after them. Each adds a
/// permit to [`BESIDE_STARTED`] once its own attempts run, so that the others, which count the
/// process's running attempts (`Pump::global`), start counting after it.
const BESIDE: &[&str] =
    &["a_worker_whose_namespace_is_deleted_stops_its_attempts_and_wait_returns_the_poll_error"];
static BESIDE_STARTED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs one case on `rt` within 2 minutes, prints its outcome and says whether it passed.
fn run_case(name: &str, case: Case, env: &Env, rt: &tokio::runtime::Runtime) -> bool {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(120), case(env))
                .await
                .unwrap_or_else(|_| panic!("{name} took over 2 minutes"))
        })
    }));
    let passed = outcome.is_ok();
    println!("test {name} ... {}", if passed { "ok" } else { "FAILED" });
    passed
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_WORKER) {
        child_worker(&spec);
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases = cases![
        a_python_workflow_calls_an_hb_activity_by_name,
        an_input_that_does_not_decode_fails_at_once_without_retries,
        an_error_type_the_activity_lists_as_non_retryable_is_not_retried_by_the_caller,
        a_cancel_from_python_reaches_the_activity_and_python_sees_cancelled_error,
        a_workflow_s_cancel_is_pushed_to_the_activity_long_before_its_next_heartbeat,
        a_stalled_attempt_times_out_on_heartbeat_with_its_checkpoint_as_details,
        a_stalled_attempt_is_retried_from_its_checkpoint,
        a_killed_worker_s_retry_resumes_from_the_last_checkpoint,
        a_standalone_activity_is_started_awaited_described_and_cancelled_through_the_hb_client,
        one_caller_written_against_activity_client_gets_the_same_answers_from_the_engine_and_temporal,
        a_long_running_worker_keeps_nothing_for_the_attempts_it_finished,
        a_worker_shutdown_s_retry_resumes_from_the_checkpoint_on_another_worker,
        a_reset_restarts_the_activity_from_its_checkpoint_instead_of_failing_it,
        a_reset_that_clears_the_checkpoint_starts_the_activity_from_scratch,
        a_pause_stops_the_attempt_without_cancelling_and_unpause_resumes_from_the_checkpoint,
        a_plain_temporalio_activity_with_auto_heartbeat_outlives_its_heartbeat_timeout_and_can_be_cancelled,
        an_hb_activity_registered_into_a_temporalio_sdk_worker_runs_and_is_cancelled,
        a_worker_whose_namespace_is_deleted_stops_its_attempts_and_wait_returns_the_poll_error,
        wait_returns_ok_after_a_requested_shutdown_and_shutdown_returns_promptly,
        metrics_reach_the_recorder_labelled_by_task_queue_with_core_s_own,
        a_watch_follows_a_standalone_activity_by_describing_it_until_it_closes,
    ];
    let chosen: Vec<_> = cases
        .iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if chosen.is_empty() {
        println!("running 0 tests");
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let venv = harness::venv();
    let server = Server::start(&venv);
    let env = Env { venv, server };
    println!("running {} tests", chosen.len());
    let (beside, in_turn): (Vec<_>, Vec<_>) =
        chosen.iter().partition(|(name, _)| BESIDE.contains(name));
    let mut failed = Vec::new();
    std::thread::scope(|scope| {
        // Each case beside the others has a thread and a runtime of its own; the others start
        // once it has signalled (or after a minute, when it failed before it could).
        let beside: Vec<_> = beside
            .into_iter()
            .map(|&(name, case)| {
                let env = &env;
                let thread = scope.spawn(move || run_case(name, case, env, &runtime()));
                runtime().block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(60), BESIDE_STARTED.acquire())
                        .await;
                });
                (name, thread)
            })
            .collect();
        let rt = runtime();
        for &(name, case) in in_turn {
            if !run_case(name, case, &env, &rt) {
                failed.push(name);
            }
        }
        for (name, thread) in beside {
            if !thread.join().unwrap_or(false) {
                failed.push(name);
            }
        }
    });
    drop(env);
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        chosen.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
