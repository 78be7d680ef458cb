//! Engine files from outside: a real engine file (made once per process: completed, failed,
//! waiting, retried and "crashed while running" activities, a heartbeat row, queued requests)
//! has its cells overwritten with fuzzer-chosen values, rows copied or deleted, its schema and
//! stamps changed and raw bytes written over its pages; then `Engine::open` must refuse it with
//! an error or recover it, never panic or hang.
//!
//! Checked beyond the absence of panics:
//! - a file refused as foreign, newer or corrupt is left byte-identical (the error says so),
//!   except for the known finding in `restamped`;
//! - once open, `list`, `describe` of every listed id, cancels, starts over stored ids,
//!   `result()`, heartbeats by token, a worker running what was recovered, `close` and the
//!   read-only `Inspector` all return;
//! - a listed id is found by `describe` (nothing deletes rows unless retention is on);
//! - dropping the engine releases the file within seconds.
//!
//! One tokio runtime serves every execution (an engine needs one), and the engine is dropped
//! outside it, where the drop waits for its writer thread.

#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use hb_fuzz::engine_file::{now_ms, prepare, sibling, Edit, Patch};
use hb_runtime::backend::TaskToken;
use hb_runtime::client::{ClientError, ListFilter, StartOptions};
use hb_runtime::engine::__fuzz::parse_task_token;
use hb_runtime::engine::{
    request_cancel, request_heartbeat, Engine, EngineError, EngineOptions, Inspector,
};
use hb_runtime::prelude::*;
use hb_runtime::Payload;
use libfuzzer_sys::fuzz_target;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

#[activity(heartbeat_timeout = "10s")]
async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n.wrapping_mul(2))
}

/// Counts to `to`, three steps an attempt at most (a stored `to` may be anything).
#[activity(
    heartbeat_timeout = "10s",
    retry(max_attempts = 3, initial_interval = "1ms")
)]
async fn count_to(
    ctx: ActivityContext,
    #[checkpoint] mut next: u64,
    to: u64,
) -> Result<u64, ActivityError> {
    for _ in 0..3 {
        if next >= to {
            return Ok(next);
        }
        next += 1;
        ctx.checkpoint(&next)?;
        tokio::task::yield_now().await;
    }
    Err(ActivityError::retryable("NotYet", "three steps an attempt"))
}

#[activity(heartbeat_timeout = "10s")]
async fn failing(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Err(ActivityError::non_retryable("Broken", "always fails"))
}

/// Never registered with a worker: its row waits.
#[activity(heartbeat_timeout = "10s")]
async fn orphan(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
#[checkpoint(version = 2)]
struct Step {
    #[checkpoint(done)]
    step: u64,
    #[checkpoint(total)]
    of: u64,
}

/// Hands out its task token, checkpoints, and waits until it is stopped.
#[activity(heartbeat_timeout = "10s")]
async fn stuck(
    ctx: ActivityContext,
    #[state] tokens: UnboundedSender<TaskToken>,
    #[checkpoint] mut step: Step,
) -> Result<(), ActivityError> {
    step.step += 1;
    step.of = 10;
    ctx.checkpoint(&step)?;
    let _ = tokens.send(ctx.info().task_token.clone());
    std::future::pending().await
}

/// What one execution does to the file, then with the engine.
#[derive(Arbitrary, Debug)]
struct Case {
    /// The first 12 are applied.
    edits: Vec<Edit>,
    /// The first 4 are applied.
    patches: Vec<Patch>,
    options: Options,
    /// The first 4 are done.
    actions: Vec<Action>,
}

#[derive(Arbitrary, Debug)]
struct Options {
    retention_ms: Option<u16>,
    checkpoint_interval_ms: Option<u16>,
    max_file_size: Option<u32>,
    power_loss_safe: bool,
    /// Run the file's activities with a worker for this many ms (modulo 4).
    worker_ms: Option<u8>,
    inspector: bool,
    integrity_check: bool,
    close: bool,
}

/// What to do once the engine is open, with an activity of the file.
#[derive(Arbitrary, Debug)]
enum Action {
    Describe(u8),
    Cancel(u8),
    /// Start `double` under a stored id: an existing activity's handle, or `WrongType`.
    Start(u8),
    /// Wait a moment for its result.
    Result(u8),
    /// Heartbeat its attempt `attempt` by task token.
    Heartbeat(u8, u32),
    /// Queue a cancel through the file, as the CLI does.
    RequestCancel(u8),
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    seed: Vec<u8>,
    dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let root = scratch_root();
        let seed_dir = root.join("seed");
        fs::create_dir_all(&seed_dir).expect("the scratch directory");
        let seed = make_seed(&runtime, &seed_dir.join("hb.db"));
        let _ = fs::remove_dir_all(&seed_dir);
        let dir = root.join("run");
        fs::create_dir_all(&dir).expect("the scratch directory");
        Fixture { runtime, seed, dir }
    })
}

/// `/dev/shm/hb-fuzz-<pid>` (memory, so fsyncs cost nothing), or the same under the temp
/// directory. Directories of processes that are gone are removed.
fn scratch_root() -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    if let Ok(entries) = fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("hb-fuzz-"));
            if let Some(pid) = pid {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
    base.join(format!("hb-fuzz-{}", std::process::id()))
}
/// Waits until no engine holds `path` (its lock file is free); panics after 10 s.
fn wait_released(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let lock = sibling(path, ".lock");
    loop {
        let free = match fs::File::open(&lock) {
            Err(_) => true,
            Ok(f) => f.try_lock().is_ok(),
        };
        if free {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped engine still holds {} after 10 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A small engine file with a bit of everything, closed cleanly; its bytes.
/// A worker running every activity of the fixture, handing task tokens to `tx`.
async fn spawn_worker(
    engine: &Engine,
    tx: tokio::sync::mpsc::UnboundedSender<TaskToken>,
) -> Result<hb_runtime::engine::WorkerHandle, EngineError> {
    engine
        .worker()
        .register(double)
        .register(count_to)
        .register(failing)
        .register(stuck)
        .state(tx)
        .shutdown_grace(Duration::from_millis(1))
        .spawn()
        .await
}

fn make_seed(runtime: &tokio::runtime::Runtime, path: &Path) -> Vec<u8> {
    let (engine, token) = runtime.block_on(async {
        let options = EngineOptions::default().keep_closed_forever();
        let engine = Engine::open_with(path, options).await.expect("a new file");
        let (tx, mut tokens) = unbounded_channel::<TaskToken>();
        let worker = spawn_worker(&engine, tx).await.expect("a worker");
        let client = engine.client();
        let done = client.start(double, 21, StartOptions::id("done")).await;
        assert_eq!(done.unwrap().result().await.unwrap(), 42);
        let counted = client.start(count_to, 2, StartOptions::id("counted")).await;
        assert_eq!(counted.unwrap().result().await.unwrap(), 2);
        let failed = client.start(failing, (), StartOptions::id("failed")).await;
        assert!(failed.unwrap().result().await.is_err());
        client
            .start(orphan, 7, StartOptions::id("queued"))
            .await
            .unwrap();
        client
            .start(stuck, (), StartOptions::id("stuck"))
            .await
            .unwrap();
        let token = tokens.recv().await.expect("the stuck attempt's token");
        // The engine's own token, in the format the `task_token` target restates.
        assert_eq!(
            parse_task_token(token.as_bytes()),
            Some(("stuck".to_owned(), 1))
        );
        assert_eq!(token.as_bytes(), b"stuck#1");
        // A heartbeat through the file, applied: the `meta` row.
        let step = Payload::json(&serde_json::json!({"_hb_v": 2, "step": 5, "of": 10})).unwrap();
        request_heartbeat(path, &token, Some(&step)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let applied = || -> rusqlite::Result<bool> {
            let conn = rusqlite::Connection::open(path)?;
            let pending: i64 = conn.query_row("SELECT count(*) FROM requests", [], |r| r.get(0))?;
            let noted: i64 = conn.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?;
            Ok(pending == 0 && noted == 1)
        };
        while !applied().unwrap() {
            assert!(
                Instant::now() < deadline,
                "the heartbeat request was not applied"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        worker.shutdown().await;
        engine.close().await.unwrap();
        (engine, token)
    });
    drop(engine);
    wait_released(path);
    // Requests left for the next engine, and the stuck attempt as a crash leaves it: running,
    // its newest checkpoint in the `heartbeats` table.
    request_cancel(path, "queued").unwrap();
    let step = Payload::json(&serde_json::json!({"_hb_v": 2, "step": 6})).unwrap();
    request_heartbeat(path, &token, Some(&step)).unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let now = now_ms();
    conn.execute(
        "UPDATE activities SET state = 1, attempt = attempt + 1, attempt_started_at = ?1,
             last_heartbeat_at = ?1, next_attempt_at = NULL WHERE id = 'stuck'",
        [now],
    )
    .unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO heartbeats (id, details, at)
             VALUES ('stuck', '{\"_hb_v\":2,\"_hb_p\":[7,10],\"step\":7,\"of\":10}', ?1)",
        [now],
    )
    .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    let seed = fs::read(path).unwrap();
    assert!(
        !sibling(path, "-wal").exists(),
        "the seed's WAL was not removed"
    );
    seed
}

/// Removes the file and everything an engine or SQLite puts beside it.
fn remove_all(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
        let _ = fs::remove_file(sibling(path, suffix));
    }
}

fuzz_target!(|case: Case| {
    let fixture = fixture();
    let path = fixture.dir.join("hb.db");
    remove_all(&path);
    prepare(&path, &fixture.seed, &case.edits, &case.patches);
    let before = fs::read(&path).expect("read the file");

    let mut options = EngineOptions::default()
        .keep_closed_forever()
        .power_loss_safe(case.options.power_loss_safe);
    if let Some(ms) = case.options.retention_ms {
        options = options.retention(Duration::from_millis(u64::from(ms)));
    }
    if let Some(ms) = case.options.checkpoint_interval_ms {
        options = options.checkpoint_interval(Duration::from_millis(u64::from(ms)));
    }
    if let Some(bytes) = case.options.max_file_size {
        options = options.max_file_size(u64::from(bytes));
    }

    let engine = fixture.runtime.block_on(async {
        match tokio::time::timeout(Duration::from_secs(20), exercise(&path, options, &case)).await {
            Ok(engine) => engine,
            Err(_) => panic!("hang: the engine did not answer within 20 s"),
        }
    });
    match engine {
        Ok(engine) => {
            drop(engine);
            wait_released(&path);
        }
        Err(
            e @ (EngineError::Foreign { .. }
            | EngineError::NewerSchema { .. }
            | EngineError::Corrupt { .. }),
        ) => {
            let after = fs::read(&path).expect("read the file");
            if after != before {
                let first = after.iter().zip(&before).position(|(a, b)| a != b);
                panic!(
                    "refused ({e}) but changed the file: {} bytes before, {} after, first \
                     difference at byte {first:?}",
                    before.len(),
                    after.len()
                );
            }
            for suffix in ["-wal", "-journal"] {
                assert!(
                    !sibling(&path, suffix).exists(),
                    "refused ({e}) but left {suffix} beside the file"
                );
            }
        }
        Err(_) => {}
    }
    remove_all(&path);
});

/// Opens the file and uses what it holds; the engine is returned to be dropped outside the
/// runtime.
async fn exercise(path: &Path, options: EngineOptions, case: &Case) -> Result<Engine, EngineError> {
    let engine = Engine::open_with(path, options).await?;
    let client = engine.client();
    let listed = client.list(ListFilter::all()).await;
    let ids: Vec<String> = match &listed {
        Ok(list) => list.iter().map(|d| d.id.clone()).collect(),
        Err(_) => Vec::new(),
    };
    for d in listed.iter().flatten().take(32) {
        let _ = format!("{d:?}");
        let _ = d.checkpoint::<u64>();
        let _ = d.checkpoint::<Step>();
        if let Some(f) = &d.last_failure {
            let _ = f.to_string();
        }
        match client.describe(&d.id).await {
            Err(ClientError::NotFound { .. }) if case.options.retention_ms.is_none() => {
                panic!("{:?} is listed but not found", d.id)
            }
            _ => {}
        }
    }
    let id = |i: &u8| ids.get(usize::from(*i) % ids.len().max(1)).cloned();
    for action in case.actions.iter().take(4) {
        match action {
            Action::Describe(i) => {
                if let Some(id) = id(i) {
                    let _ = client.describe(&id).await;
                }
            }
            Action::Cancel(i) => {
                if let Some(id) = id(i) {
                    let _ = client.cancel(&id).await;
                }
            }
            Action::Start(i) => {
                if let Some(id) = id(i) {
                    let _ = client.start(double, 1, StartOptions::id(id)).await;
                }
            }
            Action::Result(i) => {
                if let Some(id) = id(i) {
                    let handle = client.handle(double, id);
                    let _ = tokio::time::timeout(Duration::from_millis(1), handle.result()).await;
                }
            }
            Action::Heartbeat(i, attempt) => {
                if let Some(id) = id(i) {
                    let token = TaskToken::new(format!("{id}#{attempt}"));
                    let _ = client.heartbeat(&token, None);
                }
            }
            Action::RequestCancel(i) => {
                if let Some(id) = id(i) {
                    let _ = request_cancel(path, &id);
                }
            }
        }
    }
    if case.options.inspector {
        if let Ok(inspector) = Inspector::open(path) {
            let _ = inspector.list(&ListFilter::all());
            let _ = inspector.engine_running();
        }
    }
    if case.options.integrity_check {
        let _ = engine.integrity_check().await;
    }
    if let Some(ms) = case.options.worker_ms {
        let (tx, _) = unbounded_channel::<TaskToken>();
        let worker = spawn_worker(&engine, tx).await;
        if let Ok(worker) = worker {
            tokio::time::sleep(Duration::from_millis(u64::from(ms % 4))).await;
            worker.shutdown().await;
        }
    }
    if case.options.close {
        let _ = engine.close().await;
    }
    Ok(engine)
}
