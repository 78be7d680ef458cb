//! The engine's file: created private (0600), written by one process at a time, refused with a
//! clear error and left byte-identical when it is not an hb file (text, foreign SQLite, newer
//! schema, truncated or damaged), recovered after a clean close, rows of unknown types left
//! waiting, and a full disk (simulated with `EngineOptions::max_file_size`) reported as
//! `EngineError::Storage` with nothing stored before lost.
//!
//! The cross-process lock test re-executes this binary as its child (`lock_child`, which does
//! nothing unless `HB_LOCK_CHILD` is set).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hb_runtime::client::{ActivityFailure, ActivityStatus, ClientError, ListFilter, StartOptions};
use hb_runtime::engine::{Engine, EngineError, EngineOptions, Inspector};
use hb_runtime::prelude::*;

/// A fresh, empty scratch directory for one test, removed when the test passes (kept for a
/// look when it fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("engine_files")
            .join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Polls `cond` every 5 ms for at most `limit`.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Drops `engine` (the caller has dropped its clients, handles and workers) and leaves the file
/// whole: once the engine has let go of it, a last connection checkpoints the WAL into the
/// main file and removes it, so the file's bytes say everything.
///
/// (The engine's own close does not always do that: its read-only connection may close after
/// its writer's, and a read-only connection does not checkpoint. Nothing is lost either way —
/// the next open replays the WAL — but these tests compare the main file's bytes.)
async fn close(engine: Engine, path: &Path) {
    drop(engine);
    let inspector = Inspector::open(path).unwrap();
    wait_until(
        "the dropped engine releases the file",
        Duration::from_secs(10),
        || !inspector.engine_running(),
    )
    .await;
    drop(inspector);
    let wal = sibling(path, "-wal");
    wait_until(
        "the WAL is checkpointed and removed",
        Duration::from_secs(10),
        || {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
            drop(conn);
            !wal.exists()
        },
    )
    .await;
}

/// Opening `path` fails with an error `check` accepts, and the file is left exactly as it was
/// (same bytes, no journal or WAL beside it); the read-only Inspector refuses it the same way.
/// Returns the engine's error.
async fn refused_untouched(path: &Path, check: impl Fn(&EngineError) -> bool) -> EngineError {
    let before = fs::read(path).unwrap();
    let err = Engine::open(path)
        .await
        .expect_err("the engine opened a file it should refuse");
    assert!(check(&err), "unexpected error: {err:?}");
    same_bytes(path, &before, &format!("the refused open ({err})"));
    for suffix in ["-wal", "-journal"] {
        assert!(
            !sibling(path, suffix).exists(),
            "the refused open left {suffix} beside the file"
        );
    }
    // The read-only Inspector refuses it too: at open, or (when only pages past the header are
    // damaged) at its first read.
    let inspected = match Inspector::open(path) {
        Err(e) => e,
        Ok(i) => i
            .list(&ListFilter::all())
            .expect_err("the Inspector read a refused file"),
    };
    assert!(
        check(&inspected),
        "unexpected Inspector error: {inspected:?}"
    );
    same_bytes(path, &before, "the Inspector's refusal");
    err
}

/// `path` still holds `before`; says where it differs otherwise.
fn same_bytes(path: &Path, before: &[u8], after_what: &str) {
    let now = fs::read(path).unwrap();
    if now != before {
        let first = now.iter().zip(before).position(|(a, b)| a != b);
        panic!(
            "{} changed after {after_what}: {} bytes before, {} now, first difference at {first:?}",
            path.display(),
            before.len(),
            now.len()
        );
    }
}

#[activity(heartbeat_timeout = "10s")]
async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n * 2)
}

/// Never registered with any worker here.
#[activity(heartbeat_timeout = "10s")]
async fn orphan(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

/// The length and a checksum of its input: proves a stored input came back intact.
#[activity(heartbeat_timeout = "10s")]
async fn measure(_ctx: ActivityContext, blob: String) -> Result<(usize, u64), ActivityError> {
    Ok((blob.len(), checksum(&blob)))
}

fn checksum(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A blob of `len` bytes different for every `seed`.
fn blob(seed: usize, len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + ((i * 7 + seed * 13) % 26) as u8))
        .collect()
}

#[tokio::test]
async fn a_new_file_and_its_companions_are_private() {
    let dir = Scratch::new("mode");
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let _w = engine.worker().register(double).spawn().await.unwrap();
    let h = engine
        .client()
        .start(double, 21, StartOptions::id("d"))
        .await
        .unwrap();
    assert_eq!(h.result().await.unwrap(), 42);
    assert_eq!(mode(&path), 0o600, "the engine file");
    assert_eq!(mode(&sibling(&path, ".lock")), 0o600, "the lock file");
    // SQLite gives the WAL the main file's mode.
    assert_eq!(mode(&sibling(&path, "-wal")), 0o600, "the WAL");
    assert_eq!(mode(&sibling(&path, "-shm")), 0o600, "the WAL index");
}

#[tokio::test]
async fn a_second_open_in_the_same_process_is_locked_and_the_first_keeps_working() {
    let dir = Scratch::new("locked");
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let err = Engine::open(&path).await.unwrap_err();
    match &err {
        EngineError::Locked { path: p, holder } => {
            assert_eq!(p, &path);
            assert_eq!(*holder, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string())
            && message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // The refused open changed nothing: the first engine still runs activities.
    let _w = engine.worker().register(double).spawn().await.unwrap();
    let h = engine
        .client()
        .start(double, 5, StartOptions::id("after-refusal"))
        .await
        .unwrap();
    assert_eq!(h.result().await.unwrap(), 10);
    assert!(Inspector::open(&path).unwrap().engine_running());
}

/// The child of [`a_second_process_opening_the_file_is_locked`]: opens the file its parent
/// holds and checks the refusal.
#[test]
#[ignore = "the child process of a_second_process_opening_the_file_is_locked, which runs it"]
fn lock_child() {
    let Some(path) = std::env::var_os("HB_LOCK_CHILD") else {
        return;
    };
    let parent: u32 = std::env::var("HB_LOCK_HOLDER").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match Engine::open(&path).await {
            Err(EngineError::Locked { holder, .. }) => assert_eq!(holder, Some(parent)),
            other => panic!("expected Locked, got {other:?}"),
        }
        let inspector = Inspector::open(&path).unwrap();
        assert!(inspector.engine_running());
        assert_eq!(inspector.list(&ListFilter::all()).unwrap().len(), 1);
    });
    println!("CHILD-SAW-LOCKED");
}

#[tokio::test]
async fn a_second_process_opening_the_file_is_locked() {
    let dir = Scratch::new("locked-process");
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    engine
        .client()
        .start(orphan, 1, StartOptions::id("held"))
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "lock_child", "--nocapture", "--include-ignored"])
                .env("HB_LOCK_CHILD", &path)
                .env("HB_LOCK_HOLDER", std::process::id().to_string())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-SAW-LOCKED"),
        "the child ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Still ours.
    assert_eq!(
        engine.client().describe("held").await.unwrap().status,
        ActivityStatus::Scheduled
    );
}

#[tokio::test]
async fn a_text_file_is_refused_as_corrupt_and_left_untouched() {
    let dir = Scratch::new("text");
    let path = dir.join("notes.db");
    fs::write(&path, "groceries:\n- milk\n- eggs\n".repeat(200)).unwrap();
    let err = refused_untouched(&path, |e| matches!(e, EngineError::Corrupt { .. })).await;
    assert!(err.to_string().contains("left untouched"), "{err}");
}

#[tokio::test]
async fn a_foreign_sqlite_file_is_refused_as_foreign_and_left_untouched() {
    let dir = Scratch::new("foreign");
    let path = dir.join("app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO users (name) VALUES ('ada'), ('grace');",
        )
        .unwrap();
    }
    let err = refused_untouched(&path, |e| matches!(e, EngineError::Foreign { .. })).await;
    assert!(err.to_string().contains("not an hb engine file"), "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'activities'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "the engine created its tables in a foreign file");
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = Scratch::new("newer");
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    engine
        .client()
        .start(orphan, 7, StartOptions::id("kept"))
        .await
        .unwrap();
    close(engine, &path).await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    assert!(!sibling(&path, "-wal").exists());
    let err = refused_untouched(
        &path,
        |e| matches!(e, EngineError::NewerSchema { found: 99, supported, .. } if *supported < 99),
    )
    .await;
    assert!(err.to_string().contains("upgrade hb"), "{err}");
}

/// An engine file with `n` open activities of 1 KiB inputs, closed.
async fn populated(path: &Path, n: usize) -> u64 {
    let engine = Engine::open(path).await.unwrap();
    let client = engine.client();
    for i in 0..n {
        client
            .start(measure, blob(i, 1024), StartOptions::id(format!("m-{i}")))
            .await
            .unwrap();
    }
    drop(client);
    close(engine, path).await;
    let len = fs::metadata(path).unwrap().len();
    assert!(len >= 8 * 4096, "{len} bytes: expected several pages");
    len
}

#[tokio::test]
async fn a_truncated_file_is_refused_as_corrupt_and_left_untouched() {
    let dir = Scratch::new("truncated");
    let path = dir.join("hb.db");
    let len = populated(&path, 40).await;
    // Keep the header page and one more: the activities are gone, the header still says hb.
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(2 * 4096).unwrap();
    drop(f);
    assert!(len > 2 * 4096);
    refused_untouched(&path, |e| matches!(e, EngineError::Corrupt { .. })).await;
}

/// The header page is sound, so the engine's identity check passes; the damage shows only when
/// the open reads the activities.
#[tokio::test]
async fn a_damaged_file_is_refused_as_corrupt_and_left_untouched() {
    let dir = Scratch::new("damaged");
    let path = dir.join("hb.db");
    populated(&path, 40).await;
    // Scribble over every page after the header page.
    let mut bytes = fs::read(&path).unwrap();
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i as u8).wrapping_mul(31) ^ 0xa5;
    }
    fs::write(&path, &bytes).unwrap();
    refused_untouched(&path, |e| matches!(e, EngineError::Corrupt { .. })).await;
}

/// Found by fuzzing (`fuzz/regressions/engine_file/`): a file with hb's application_id but no
/// schema version was given the schema and stamped before its damage was found, then refused
/// as "left untouched". hb stamps both in one transaction, so such a file is not hb's.
#[tokio::test]
async fn hb_s_application_id_without_a_schema_version_is_refused_untouched() {
    for version in [0, -1] {
        let dir = Scratch::new("unversioned");
        let path = dir.join("hb.db");
        populated(&path, 10).await;
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&format!("PRAGMA user_version = {version};"))
            .unwrap();
        drop(db);
        // Damaged as well: nothing may be written before the damage is found.
        let mut bytes = fs::read(&path).unwrap();
        for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
            *b = (i as u8).wrapping_mul(31) ^ 0xa5;
        }
        fs::write(&path, &bytes).unwrap();
        refused_untouched(&path, |e| {
            matches!(e, EngineError::Foreign { reason, .. } if reason.contains("schema version"))
        })
        .await;
    }
}

#[tokio::test]
async fn reopening_after_a_clean_close_recovers_open_activities() {
    let dir = Scratch::new("reopen");
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let client = engine.client();
    for n in 0..3u64 {
        client
            .start(double, n, StartOptions::id(format!("later-{n}")))
            .await
            .unwrap();
    }
    drop(client);
    close(engine, &path).await;

    let engine = Engine::open(&path).await.unwrap();
    let client = engine.client();
    let waiting = client
        .list(ListFilter::status(ActivityStatus::Scheduled))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 3);
    let _w = engine.worker().register(double).spawn().await.unwrap();
    for n in 0..3u64 {
        let h = client
            .start(double, 1000, StartOptions::id(format!("later-{n}")))
            .await
            .unwrap();
        assert_eq!(
            h.result().await.unwrap(),
            n * 2,
            "the stored input, not 1000"
        );
        let d = h.describe().await.unwrap();
        assert_eq!((d.status, d.attempt), (ActivityStatus::Completed, 1));
    }
    assert_eq!(engine.integrity_check().await.unwrap(), "ok");
}

/// Dropping the last clone of an engine should release its file, so the next `Engine::open`
/// (in this process or another) succeeds at once. Fifty rounds, to catch the race.
#[tokio::test]
async fn dropping_the_last_engine_releases_the_file_at_once() {
    let dir = Scratch::new("drop-releases");
    let path = dir.join("hb.db");
    for round in 0..50u64 {
        let engine = Engine::open(&path)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for n in 0..3 {
            engine
                .client()
                .start(double, n, StartOptions::id(format!("r-{round}-{n}")))
                .await
                .unwrap();
        }
        drop(engine);
    }
    let engine = Engine::open(&path).await.unwrap();
    assert_eq!(
        engine.client().list(ListFilter::all()).await.unwrap().len(),
        150
    );
}

#[tokio::test]
async fn a_row_of_a_type_no_worker_registered_waits_scheduled_while_others_run() {
    let dir = Scratch::new("unknown-type");
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    engine
        .client()
        .start(orphan, 1, StartOptions::id("from-elsewhere"))
        .await
        .unwrap();
    close(engine, &path).await;
    // A row naming a type this program does not have at all (another program's, or a renamed
    // activity).
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let changed = conn
            .execute(
                "UPDATE activities SET type = 'billing.Gone' WHERE id = 'from-elsewhere'",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }

    let engine = Engine::open(&path).await.unwrap();
    let _w = engine.worker().register(double).spawn().await.unwrap();
    let client = engine.client();
    for n in 0..3u64 {
        let h = client
            .start(double, n, StartOptions::id(format!("runs-{n}")))
            .await
            .unwrap();
        assert_eq!(h.result().await.unwrap(), n * 2);
    }
    // An absence can only be watched for a while: the others ran and finished, and during
    // 300 ms more the unknown one is still waiting, untouched.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = client.describe("from-elsewhere").await.unwrap();
    assert_eq!(d.activity_type, "billing.Gone");
    assert_eq!((d.status, d.attempt), (ActivityStatus::Scheduled, 0));
    assert!(d.last_failure.is_none());
    let waiting = client
        .list(ListFilter::status(ActivityStatus::Scheduled))
        .await
        .unwrap();
    assert_eq!(
        waiting.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["from-elsewhere"]
    );
    // Not lost: it can still be cancelled, as anything waiting can.
    client.cancel("from-elsewhere").await.unwrap();
    assert_eq!(
        client.describe("from-elsewhere").await.unwrap().status,
        ActivityStatus::Cancelled
    );
}

/// Starts `measure` activities with 2 KiB inputs until one fails; returns the stored ones and
/// the error.
async fn fill(engine: &Engine, prefix: &str) -> (Vec<(String, String)>, ClientError) {
    let client = engine.client();
    let mut stored = Vec::new();
    for i in 0..500 {
        let id = format!("{prefix}-{i}");
        let input = blob(i, 2048);
        match client
            .start(measure, input.clone(), StartOptions::id(&id))
            .await
        {
            Ok(_) => stored.push((id, input)),
            Err(e) => return (stored, e),
        }
    }
    panic!("500 starts of 2 KiB fit under the cap");
}

#[tokio::test]
async fn a_full_disk_fails_start_with_storage_and_loses_nothing_stored() {
    let dir = Scratch::new("full");
    let path = dir.join("hb.db");
    let cap = 64 * 1024;
    let engine = Engine::open_with(&path, EngineOptions::default().max_file_size(cap))
        .await
        .unwrap();
    let (stored, err) = fill(&engine, "fill").await;
    match &err {
        ClientError::Engine(EngineError::Storage { path: p, message }) => {
            assert_eq!(p, &path);
            assert!(message.contains("full"), "{message}");
        }
        other => panic!("expected Storage, got {other:?}"),
    }
    assert!(
        stored.len() >= 5,
        "only {} starts fit in 64 KiB",
        stored.len()
    );
    assert!(fs::metadata(&path).unwrap().len() <= cap);

    // The refused start left nothing; what was stored before is intact and still answers.
    let client = engine.client();
    let refused = format!("fill-{}", stored.len());
    assert!(matches!(
        client.describe(&refused).await,
        Err(ClientError::NotFound { .. })
    ));
    assert!(matches!(
        client
            .start(measure, blob(0, 2048), StartOptions::id(&refused))
            .await,
        Err(ClientError::Engine(EngineError::Storage { .. }))
    ));
    for (id, _) in &stored {
        assert_eq!(
            client.describe(id).await.unwrap().status,
            ActivityStatus::Scheduled
        );
    }
    assert_eq!(
        client.list(ListFilter::all()).await.unwrap().len(),
        stored.len()
    );
    drop(client);
    close(engine, &path).await;

    // Without the cap, everything stored before runs with its input intact.
    let engine = Engine::open(&path).await.unwrap();
    assert_eq!(engine.integrity_check().await.unwrap(), "ok");
    let _w = engine.worker().register(measure).spawn().await.unwrap();
    let client = engine.client();
    assert_eq!(
        client.list(ListFilter::all()).await.unwrap().len(),
        stored.len()
    );
    for (id, input) in &stored {
        let h = client
            .start(measure, String::new(), StartOptions::id(id))
            .await
            .unwrap();
        assert_eq!(
            h.result().await.unwrap(),
            (input.len(), checksum(input)),
            "{id}"
        );
    }
    assert!(matches!(
        client.describe(&refused).await,
        Err(ClientError::NotFound { .. })
    ));
    assert_eq!(engine.integrity_check().await.unwrap(), "ok");
}

/// Ids whose body ran, for [`a_start_that_fails_to_store_never_runs`].
static RAN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[activity(heartbeat_timeout = "10s")]
async fn record_run(ctx: ActivityContext, _blob: String) -> Result<(), ActivityError> {
    RAN.lock().unwrap().push(ctx.info().activity_id.clone());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_to_store_never_runs() {
    let dir = Scratch::new("full-never-runs");
    let path = dir.join("hb.db");
    let engine = Engine::open_with(&path, EngineOptions::default().max_file_size(64 * 1024))
        .await
        .unwrap();
    let (_stored, err) = fill(&engine, "fill").await;
    assert!(
        matches!(err, ClientError::Engine(EngineError::Storage { .. })),
        "{err:?}"
    );
    // A worker waits for `record_run` attempts while starts of it fail to be stored.
    let _w = engine.worker().register(record_run).spawn().await.unwrap();
    let client = engine.client();
    let mut refused = Vec::new();
    for i in 0..20 {
        let id = format!("never-{i}");
        let r = client
            .start(record_run, blob(i, 4096), StartOptions::id(&id))
            .await;
        assert!(
            matches!(r, Err(ClientError::Engine(EngineError::Storage { .. }))),
            "{r:?}"
        );
        refused.push(id);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ran = RAN.lock().unwrap().clone();
    assert!(
        ran.is_empty(),
        "start() said these were not stored, yet a worker ran them: {ran:?}"
    );
}

/// Gates the first attempt of [`big_output`].
#[derive(Debug)]
struct Gate {
    open: tokio::sync::Semaphore,
    attempts: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            open: tokio::sync::Semaphore::new(0),
            attempts: AtomicUsize::new(0),
        }
    }
}

/// Returns `len` bytes of output; its first attempt waits for the gate.
#[activity(heartbeat_timeout = "500ms", retry(initial_interval = "10ms"))]
async fn big_output(
    ctx: ActivityContext,
    #[state] gate: Arc<Gate>,
    len: usize,
) -> Result<String, ActivityError> {
    gate.attempts.fetch_add(1, Ordering::SeqCst);
    if ctx.info().attempt == 1 {
        let _ = gate.open.acquire().await;
    }
    Ok("x".repeat(len))
}

#[tokio::test]
async fn a_completion_that_does_not_fit_is_reported_and_recovered_after_reopening() {
    let dir = Scratch::new("full-completion");
    let path = dir.join("hb.db");
    let engine = Engine::open_with(&path, EngineOptions::default().max_file_size(64 * 1024))
        .await
        .unwrap();
    let gate = Arc::new(Gate::default());
    let w = engine
        .worker()
        .register(big_output)
        .state(gate.clone())
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(big_output, 40_000, StartOptions::id("big"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.attempts.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the attempt never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (stored, err) = fill(&engine, "fill").await;
    assert!(
        matches!(err, ClientError::Engine(EngineError::Storage { .. })),
        "{err:?}"
    );

    // The 40 KB output cannot be stored: result() says so instead of claiming completion.
    gate.open.add_permits(1);
    match tokio::time::timeout(Duration::from_secs(10), h.result()).await {
        Ok(Err(ActivityFailure::Backend(ClientError::Engine(EngineError::Storage { .. })))) => {}
        other => panic!("expected a storage failure, got {other:?}"),
    }
    // The activity stays open, closing, and its write is retried (after 1 s, then 2 s, ...):
    // a second result() answers with the next try's error, not with "engine closed".
    match tokio::time::timeout(Duration::from_secs(10), h.result()).await {
        Ok(Err(ActivityFailure::Backend(ClientError::Engine(EngineError::Storage { .. })))) => {}
        other => panic!("expected the retried write's storage failure, got {other:?}"),
    }
    // The file still holds the activity as it was: running its first attempt.
    let d = Inspector::open(&path).unwrap().get("big").unwrap();
    assert_eq!((d.status, d.attempt), (ActivityStatus::Running, 1));
    // Closing the engine ends the retries: result() says so at once instead of waiting.
    let waiting = tokio::spawn({
        let h = h.clone();
        async move { h.result().await }
    });
    engine.close().await.unwrap();
    for r in [
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("a waiting result() was answered")
            .unwrap(),
        tokio::time::timeout(Duration::from_secs(10), h.result())
            .await
            .expect("result() after close() answered at once"),
    ] {
        assert!(
            matches!(r, Err(ActivityFailure::Backend(ClientError::Closed))),
            "{r:?}"
        );
    }
    w.shutdown().await;
    drop(h);
    close(engine, &path).await;

    // Reopened without the cap: the attempt times out from its last heartbeat and the retry
    // completes.
    let engine = Engine::open(&path).await.unwrap();
    let _w = engine
        .worker()
        .register(big_output)
        .state(gate.clone())
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(big_output, 0, StartOptions::id("big"))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), h.result())
        .await
        .expect("the recovered activity did not finish within 10 s")
        .unwrap();
    assert_eq!(out.len(), 40_000);
    assert_eq!(h.describe().await.unwrap().attempt, 2);
    assert_eq!(
        engine.client().list(ListFilter::all()).await.unwrap().len(),
        stored.len() + 1
    );
    assert_eq!(engine.integrity_check().await.unwrap(), "ok");
}

// ---------------------------------------------------------------------------------------------
// Issue 9: recovery that does not wait, clocks that step back, retention, links, release

/// Opens `path`, starts `id` of `orphan` (no worker here, so it stays scheduled), and lets the
/// file go; then `edit` changes its row as a crash or a clock step would have left it.
async fn stored_then(path: &Path, id: &str, options: StartOptions, edit: &str) {
    let engine = Engine::open(path).await.unwrap();
    engine.client().start(orphan, 7, options).await.unwrap();
    close(engine, path).await;
    let conn = rusqlite::Connection::open(path).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let changed = conn
        .execute(&edit.replace("$NOW", &now.to_string()), [id])
        .unwrap();
    assert_eq!(changed, 1, "{edit}");
}

/// Runs `orphan` after all (registered here under its own name).
#[activity(name = "orphan", heartbeat_timeout = "10s")]
async fn orphan_now(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

/// Issue 9, failure 14: the engine holds its file's lock, so at a reopen every attempt still
/// marked running belongs to a dead process. It is retried at once (`WorkerLost`), not after
/// its heartbeat timeout (an hour here; before, the retry waited for it).
#[tokio::test]
async fn at_a_reopen_the_attempts_of_a_dead_process_are_retried_at_once() {
    let dir = Scratch::new("lost-attempt");
    let path = dir.join("hb.db");
    let hour = StartOptions::id("lost").heartbeat_timeout(Duration::from_secs(3600));
    stored_then(
        &path,
        "lost",
        hour,
        "UPDATE activities SET state = 1, attempt = 1, attempt_started_at = $NOW, last_heartbeat_at = $NOW WHERE id = ?1",
    )
    .await;
    let engine = Engine::open(&path).await.unwrap();
    let _w = engine.worker().register(orphan_now).spawn().await.unwrap();
    let h = engine.client().handle(orphan_now, "lost");
    let out = tokio::time::timeout(Duration::from_secs(10), h.result())
        .await
        .expect("retried at once, not after its heartbeat timeout");
    assert_eq!(out.unwrap(), 7);
    let d = h.describe().await.unwrap();
    assert_eq!(d.attempt, 2);
    match d.last_failure {
        // The last failure is the lost attempt's (attempt 2 completed).
        None => {}
        Some(ActivityFailure::Application { error_type, .. }) => {
            assert_eq!(error_type, "WorkerLost")
        }
        other => panic!("{other:?}"),
    }
    _w.shutdown().await;
}

/// ... unless another process heartbeats its work by task token through the file: that one
/// may be alive, and keeps its heartbeat timeout.
#[tokio::test]
async fn at_a_reopen_an_attempt_heartbeated_from_another_process_keeps_its_timeout() {
    let dir = Scratch::new("external-attempt");
    let path = dir.join("hb.db");
    let short = StartOptions::id("ext").heartbeat_timeout(Duration::from_millis(300));
    stored_then(
        &path,
        "ext",
        short,
        "UPDATE activities SET state = 1, attempt = 1, attempt_started_at = $NOW, last_heartbeat_at = $NOW, external_attempt = 1 WHERE id = ?1",
    )
    .await;
    let engine = Engine::open(&path).await.unwrap();
    let h = engine.client().handle(orphan_now, "ext");
    assert_eq!(h.describe().await.unwrap().status, ActivityStatus::Running);
    let _w = engine.worker().register(orphan_now).spawn().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), h.result())
        .await
        .expect("retried after its timeout");
    assert_eq!(out.unwrap(), 7);
    let d = h.describe().await.unwrap();
    assert_eq!(d.attempt, 2);
    _w.shutdown().await;
}

/// Issue 9, failure 3: a wall clock that stepped back across a restart (a VM restore, a board
/// without a clock, NTP not synced yet) leaves stored times in the future. They count as now:
/// the retry due "in ten years" and the schedule-to-close timeout of an activity scheduled
/// "in ten years" come within their own durations, not when the clock catches up.
#[tokio::test]
async fn stored_times_in_the_future_do_not_hold_recovery_back() {
    let dir = Scratch::new("clock-back");
    let path = dir.join("hb.db");
    let ten_years = 10 * 365 * 24 * 3600 * 1000_i64;
    let retry = hb_runtime::RetryPolicy::new().initial_interval(Duration::from_millis(50));
    stored_then(
        &path,
        "retry",
        StartOptions::id("retry").retry(retry),
        &format!("UPDATE activities SET state = 2, attempt = 1, next_attempt_at = $NOW + {ten_years} WHERE id = ?1"),
    )
    .await;
    let engine = Engine::open(&path).await.unwrap();
    // Of a type no worker runs here: it waits until its schedule-to-close timeout.
    engine
        .client()
        .start(
            measure,
            "m".into(),
            StartOptions::id("deadline").schedule_to_close_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    close(engine, &path).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        &format!(
            "UPDATE activities SET scheduled_at = scheduled_at + {ten_years} WHERE id = 'deadline'"
        ),
        [],
    )
    .unwrap();
    drop(conn);

    let engine = Engine::open(&path).await.unwrap();
    let _w = engine.worker().register(orphan_now).spawn().await.unwrap();
    let client = engine.client();
    let retried = tokio::time::timeout(
        Duration::from_secs(10),
        client.handle(orphan_now, "retry").result(),
    )
    .await
    .expect("the retry came within its interval");
    assert_eq!(retried.unwrap(), 7);
    let timed_out = tokio::time::timeout(
        Duration::from_secs(10),
        client.handle(measure, "deadline").result(),
    )
    .await
    .expect("the schedule-to-close timeout fired within its duration");
    assert!(
        matches!(
            timed_out,
            Err(ActivityFailure::Timeout {
                kind: hb_runtime::client::TimeoutKind::ScheduleToClose,
                ..
            })
        ),
        "{timed_out:?}"
    );
    _w.shutdown().await;
}

/// Issue 9, failure 12: closed activities older than the retention are pruned in the
/// background; open ones and recent closed ones stay, and an id pruned starts anew.
#[tokio::test]
async fn retention_prunes_closed_activities_and_keeps_open_ones() {
    let dir = Scratch::new("retention");
    let path = dir.join("hb.db");
    let options = EngineOptions::default().retention(Duration::from_millis(300));
    let engine = Engine::open_with(&path, options).await.unwrap();
    let client = engine.client();
    let _w = engine.worker().register(double).spawn().await.unwrap();
    for n in 0..2_500u64 {
        client
            .start(double, n, StartOptions::id(format!("done-{n}")))
            .await
            .unwrap();
    }
    wait_until("they complete", Duration::from_secs(20), || {
        engine.stats().open == 0
    })
    .await;
    client
        .start(orphan, 1, StartOptions::id("open"))
        .await
        .unwrap();
    let inspector = Inspector::open(&path).unwrap();
    let all = || {
        let mut f = ListFilter::all();
        f.limit = Some(10_000);
        inspector.list(&f).unwrap()
    };
    wait_until(
        "the closed activities are pruned (in batches of 1,000)",
        Duration::from_secs(20),
        || all().len() == 1,
    )
    .await;
    assert_eq!(all()[0].id, "open", "the open one stays");
    assert!(matches!(
        client.describe("done-0").await,
        Err(ClientError::NotFound { .. })
    ));
    // The id starts anew.
    let again = client
        .start(double, 21, StartOptions::id("done-0"))
        .await
        .unwrap();
    assert_eq!(again.result().await.unwrap(), 42);
    _w.shutdown().await;
}

/// Issue 9, failure 9: a lock file planted as a symbolic link (or a hard link) in a shared
/// directory is refused, and the file it points to is left as it was; the same for the engine
/// file itself.
#[tokio::test]
async fn a_planted_link_as_the_lock_file_or_the_file_is_refused() {
    let dir = Scratch::new("planted-link");
    let victim = dir.join("victim.txt");
    fs::write(&victim, "precious").unwrap();
    for (planted, how) in [
        ("hb.db.lock", "symlink"),
        ("hb.db.lock", "hardlink"),
        ("hb.db", "symlink"),
    ] {
        let path = dir.join("hb.db");
        let _ = fs::remove_file(dir.join("hb.db"));
        let _ = fs::remove_file(dir.join("hb.db.lock"));
        let at = dir.join(planted);
        match how {
            "symlink" => std::os::unix::fs::symlink(&victim, &at).unwrap(),
            _ => fs::hard_link(&victim, &at).unwrap(),
        }
        match Engine::open(&path).await {
            Err(EngineError::Foreign { reason, .. }) => {
                assert!(reason.contains("link"), "{how} {planted}: {reason}")
            }
            other => panic!("{how} {planted}: expected a refusal, got {other:?}"),
        }
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "precious",
            "{how} {planted}"
        );
        fs::remove_file(&at).unwrap();
    }
}

/// Issue 9, failure 8: dropping the last handle of an engine on a runtime's thread does not
/// wait there for the writer to commit and release the file; an `Engine::open` of the file in
/// this process waits for it instead (on a blocking thread).
#[tokio::test(flavor = "current_thread")]
async fn dropping_an_engine_on_a_runtime_thread_does_not_block_it() {
    let dir = Scratch::new("drop-nonblocking");
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let (tx, mut tokens) = tokio::sync::mpsc::unbounded_channel();
    let w = engine
        .worker()
        .register(hands_out_token)
        .state(tx)
        .spawn()
        .await
        .unwrap();
    engine
        .client()
        .start(hands_out_token, (), StartOptions::id("busy"))
        .await
        .unwrap();
    let token = tokens.recv().await.unwrap();
    w.shutdown().await;
    // A 64 MiB checkpoint queued last: the writer's final commit takes a while.
    let big = hb_runtime::Payload::json(&"x".repeat(64 << 20)).unwrap();
    let _ = engine.client().heartbeat(&token, Some(&big));
    drop(big);
    let inspector = Inspector::open(&path).unwrap();
    drop(engine);
    assert!(
        inspector.engine_running(),
        "the drop waited for the writer to release the file"
    );
    // Reopened in this process: waits for the release, then finds the checkpoint stored.
    let engine = Engine::open(&path).await.unwrap();
    let d = engine.client().describe("busy").await.unwrap();
    assert_eq!(d.details.map(|p| p.len()), Some((64 << 20) + 2));
}

/// Hands its token out and waits.
#[activity(heartbeat_timeout = "1h")]
async fn hands_out_token(
    ctx: ActivityContext,
    #[state] tokens: tokio::sync::mpsc::UnboundedSender<hb_runtime::backend::TaskToken>,
) -> Result<(), ActivityError> {
    tokens.send(ctx.info().task_token.clone()).ok();
    std::future::pending().await
}

/// A file of schema 1 (before issue 9) is upgraded when an engine opens it: what it held is
/// kept, and it runs.
#[tokio::test]
async fn a_file_of_schema_1_is_upgraded_and_keeps_what_it_held() {
    let dir = Scratch::new("schema-1");
    let path = dir.join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    engine
        .client()
        .start(orphan, 5, StartOptions::id("old"))
        .await
        .unwrap();
    close(engine, &path).await;
    // Back to schema 1, as an earlier hb wrote it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP INDEX activities_by_closed; DROP TABLE meta; DROP TABLE attempts;
         ALTER TABLE activities DROP COLUMN external_attempt;
         ALTER TABLE activities DROP COLUMN attempt_base; ALTER TABLE activities DROP COLUMN operator;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    // Read while still schema 1 (the CLI does), then opened by an engine.
    assert_eq!(
        Inspector::open(&path).unwrap().get("old").unwrap().status,
        ActivityStatus::Scheduled
    );
    let engine = Engine::open(&path).await.unwrap();
    let _w = engine.worker().register(orphan_now).spawn().await.unwrap();
    assert_eq!(
        engine
            .client()
            .handle(orphan_now, "old")
            .result()
            .await
            .unwrap(),
        5
    );
    _w.shutdown().await;
    drop(engine);
    let version: i32 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
    // Schema 5's indexes replaced the index by state alone.
    let indexes: Vec<String> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'activities' AND sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        indexes,
        [
            "activities_by_closed",
            "activities_by_state_time",
            "activities_by_type_time"
        ]
    );
}
