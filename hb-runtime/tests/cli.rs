//! The `hb` command-line tool, run as a process against real engine files: `ls` (and its
//! `--state` filter), `show`, `watch --once`, `cancel`, `pause`, `unpause` and `reset` reaching
//! a running attempt of an engine in this process, and every kind of file the tool must refuse (missing, empty, foreign
//! SQLite, text, newer schema, corrupt, locked) with exit code 2, one clear line on stderr,
//! and the file left byte for byte as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hb_runtime::client::{ActivityFailure, ActivityStatus, StartOptions};
use hb_runtime::engine::{Engine, Inspector, WorkerHandle};
use hb_runtime::prelude::*;
use tempfile::TempDir;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Items {
    #[checkpoint(done)]
    done: u64,
    #[checkpoint(total)]
    total: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Job {
    items: u64,
    /// Fail for good when this item is reached.
    fail_at: Option<u64>,
    /// Stop making progress (and keep heartbeating) when this item is reached.
    park_at: Option<u64>,
}

#[activity(heartbeat_timeout = "30s", retry(max_attempts = 1))]
async fn crunch(
    ctx: ActivityContext,
    #[checkpoint] mut p: Items,
    job: Job,
) -> Result<u64, ActivityError> {
    p.total = job.items;
    while p.done < job.items {
        if Some(p.done) == job.fail_at {
            ctx.flush().await?;
            return Err(ActivityError::non_retryable(
                "DiskFull",
                format!("no space left for item {}", p.done),
            ));
        }
        if Some(p.done) == job.park_at {
            ctx.flush().await?;
            std::future::pending::<()>().await;
        }
        p.done += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(p.done)
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A directory of its own, removed when it drops (even if the test fails).
fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-cli-{name}-"))
        .tempdir()
        .unwrap()
}

/// The names in `dir`, sorted.
fn file_names(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What one run of the tool did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "hb failed: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self
    }

    /// The `ls` row of activity `id`, split into cells.
    fn row(&self, id: &str) -> Option<Vec<&str>> {
        self.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .map(|l| l.split_whitespace().collect())
    }
}

/// Runs `hb args... --file file` (no `$HB_FILE`, stdin closed, stdout a pipe), killing it after
/// 30 s.
fn hb(file: Option<&Path>, args: &[&str]) -> Run {
    hb_with(file, args, |_| {})
}

fn hb_with(file: Option<&Path>, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hb"));
    cmd.args(args)
        .env_remove("HB_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(file) = file {
        cmd.arg("--file").arg(file);
    }
    adjust(&mut cmd);
    let mut child = cmd.spawn().expect("running the hb binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hb {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// [`hb`] from async code (the engine keeps running on the runtime meanwhile).
async fn hb_async(file: &Path, args: &[&str]) -> Run {
    let file = file.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        hb(Some(&file), &args)
    })
    .await
    .unwrap()
}

/// Polls `check` until it holds (10 s at most).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the file (as another process reads it) shows `id` in `state` with `done` items.
fn file_shows(path: &Path, id: &str, state: ActivityStatus, done: u64) -> bool {
    let Ok(inspector) = Inspector::open(path) else {
        return false;
    };
    inspector
        .get(id)
        .is_ok_and(|d| d.status == state && d.progress.is_some_and(|p| p.done == done))
}

/// An engine on `dir/hb.db` with a worker, holding three activities: `done-1` completed (5/5),
/// `fail-1` failed for good at item 4 of 10, `run-1` running, parked at item 3 of 10.
async fn populated(dir: &TempDir) -> (PathBuf, Engine, WorkerHandle) {
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let worker = engine
        .worker()
        .register(crunch)
        .shutdown_grace(Duration::from_millis(50))
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let job = |items, fail_at, park_at| Job {
        items,
        fail_at,
        park_at,
    };
    let done = client
        .start(crunch, job(5, None, None), StartOptions::id("done-1"))
        .await
        .unwrap();
    assert_eq!(done.result().await.unwrap(), 5);
    let failed = client
        .start(crunch, job(10, Some(4), None), StartOptions::id("fail-1"))
        .await
        .unwrap();
    assert!(matches!(
        failed.result().await,
        Err(ActivityFailure::Application { .. })
    ));
    client
        .start(crunch, job(10, None, Some(3)), StartOptions::id("run-1"))
        .await
        .unwrap();
    eventually("run-1 to be stored running at item 3", || {
        file_shows(&path, "run-1", ActivityStatus::Running, 3)
    })
    .await;
    eventually("fail-1 to be stored as failed", || {
        file_shows(&path, "fail-1", ActivityStatus::Failed, 4)
    })
    .await;
    (path, engine, worker)
}

/// Runs `f` with a fresh runtime on its own thread and drops the runtime, so every engine it
/// opened is gone (its lock released, its WAL checkpointed into the file) when this returns.
fn with_engine_gone<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce(PathBuf) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>
    + Send
    + 'static,
) -> T {
    let p = path.to_path_buf();
    let out = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(f(p));
        drop(rt);
        out
    })
    .join()
    .unwrap();
    // The engine's connections close shortly after; the last read-write connection to close
    // folds the WAL into the file and removes it, so the file's bytes say everything.
    let wal = {
        let mut p = path.as_os_str().to_owned();
        p.push("-wal");
        PathBuf::from(p)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.exists() || Inspector::open(path).is_ok_and(|i| i.engine_running()) {
        assert!(
            Instant::now() < deadline,
            "the engine did not let go of the file"
        );
        if let Ok(conn) = rusqlite::Connection::open(path) {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    out
}

/// An engine file with activities in it and no engine open on it.
fn closed_engine_file(path: &Path) {
    with_engine_gone(path, |p| {
        Box::pin(async move {
            let engine = Engine::open(&p).await.unwrap();
            let _w = engine.worker().register(crunch).spawn().await.unwrap();
            let h = engine
                .client()
                .start(
                    crunch,
                    Job {
                        items: 3,
                        fail_at: None,
                        park_at: None,
                    },
                    StartOptions::id("a-1"),
                )
                .await
                .unwrap();
            h.result().await.unwrap();
        })
    });
}

// ---------------------------------------------------------------------------------------------
// ls, show, watch, cancel against a running engine

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_lists_every_activity_with_its_state_attempt_and_progress() {
    let dir = temp_dir("ls");
    let (path, _engine, _worker) = populated(&dir).await;
    let run = hb_async(&path, &["ls"]).await;
    run.assert_ok();
    let header = run.stdout.lines().next().unwrap();
    for column in [
        "ID",
        "TYPE",
        "STATE",
        "ATTEMPT",
        "PROGRESS",
        "LAST HEARTBEAT",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let done = run.row("done-1").expect("done-1 listed");
    assert_eq!(&done[1..6], ["crunch", "completed", "1", "5/5", "(100%)"]);
    let failed = run.row("fail-1").expect("fail-1 listed");
    assert_eq!(&failed[1..6], ["crunch", "failed", "1", "4/10", "(40%)"]);
    let running = run.row("run-1").expect("run-1 listed");
    assert_eq!(&running[1..6], ["crunch", "running", "1", "3/10", "(30%)"]);
    assert!(
        running[6].ends_with('s') && running[7] == "ago",
        "{running:?}"
    );
    assert_eq!(run.stdout.lines().count(), 4, "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_filters_by_state_and_limits() {
    let dir = temp_dir("ls-state");
    let (path, _engine, _worker) = populated(&dir).await;

    let running = hb_async(&path, &["ls", "--state", "running"]).await;
    running.assert_ok();
    assert!(running.row("run-1").is_some(), "{}", running.stdout);
    assert!(running.row("done-1").is_none() && running.row("fail-1").is_none());

    let closed = hb_async(&path, &["ls", "--state", "completed", "--state", "failed"]).await;
    closed.assert_ok();
    assert!(closed.row("done-1").is_some() && closed.row("fail-1").is_some());
    assert!(closed.row("run-1").is_none(), "{}", closed.stdout);

    let comma = hb_async(&path, &["ls", "-s", "completed,running"]).await;
    comma.assert_ok();
    assert!(comma.row("done-1").is_some() && comma.row("run-1").is_some());
    assert!(comma.row("fail-1").is_none());

    let none = hb_async(&path, &["ls", "--state", "timed_out"]).await;
    none.assert_ok();
    assert!(
        none.stdout.starts_with("no activities in state timed_out"),
        "{none:?}"
    );

    let one = hb_async(&path, &["ls", "--limit", "1"]).await;
    one.assert_ok();
    assert_eq!(one.stdout.lines().count(), 2, "{}", one.stdout);
    assert!(one.stderr.contains("--limit"), "{one:?}");

    let bad = hb_async(&path, &["ls", "--state", "sleeping"]).await;
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(
        bad.stderr.contains("expected one of scheduled, running"),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_comes_from_hb_file_or_defaults_to_hb_db_here() {
    let dir = temp_dir("default-file");
    let (path, _engine, _worker) = populated(&dir).await;
    let (env_run, cwd_run) = tokio::task::spawn_blocking(move || {
        let env_run = hb_with(None, &["ls"], |c| {
            c.env("HB_FILE", &path);
        });
        let cwd_run = hb_with(None, &["ls"], |c| {
            c.current_dir(path.parent().unwrap());
        });
        (env_run, cwd_run)
    })
    .await
    .unwrap();
    assert!(env_run.assert_ok().row("run-1").is_some());
    assert!(cwd_run.assert_ok().row("run-1").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_every_field_the_failure_and_the_checkpoint() {
    let dir = temp_dir("show");
    let (path, _engine, _worker) = populated(&dir).await;

    let failed = hb_async(&path, &["show", "fail-1"]).await;
    failed.assert_ok();
    let out = &failed.stdout;
    for field in [
        "id:",
        "type:",
        "state:",
        "attempt:",
        "progress:",
        "cancel requested:",
        "scheduled:",
        "attempt started:",
        "last heartbeat:",
        "next attempt:",
        "closed:",
        "last failure:",
        "checkpoint (version 1):",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(field)),
            "{field} missing in\n{out}"
        );
    }
    assert!(out.contains("state:            failed"), "{out}");
    assert!(
        out.contains("  DiskFull: no space left for item 4 (non-retryable)"),
        "{out}"
    );
    // The checkpoint, pretty-printed, without hb's envelope keys.
    assert!(
        out.contains("\n  {\n    \"done\": 4,\n    \"total\": 10\n  }\n"),
        "{out}"
    );
    assert!(!out.contains("_hb_"), "{out}");
    // Its one attempt, failed, with why.
    assert!(out.contains("attempts:\n  #  OUTCOME"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("  1  failed") && l.contains("DiskFull")),
        "{out}"
    );

    let raw = hb_async(&path, &["show", "fail-1", "--raw"]).await;
    assert!(raw.assert_ok().stdout.contains("\"_hb_v\": 1"), "{raw:?}");

    let running = hb_async(&path, &["show", "run-1"]).await;
    let out = &running.assert_ok().stdout;
    assert!(out.contains("state:            running"), "{out}");
    assert!(out.contains("progress:         3/10 (30%)"), "{out}");
    assert!(out.contains("last failure:     -"), "{out}");
    assert!(out.contains("\"done\": 3"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("  1  running")), "{out}");

    let missing = hb_async(&path, &["show", "no-such-id"]).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert_eq!(
        missing.stderr, "hb: error: no activity with id `no-such-id`\n",
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_draws_one_frame_of_bars_when_stdout_is_not_a_terminal() {
    let dir = temp_dir("watch");
    let (path, _engine, _worker) = populated(&dir).await;
    for args in [
        &["watch", "--once"][..],
        &["watch", "--interval", "100"][..],
    ] {
        let run = hb_async(&path, args).await;
        run.assert_ok();
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert!(lines[0].contains("1 running · engine running"), "{lines:?}");
        let bar = lines
            .iter()
            .find(|l| l.starts_with("run-1"))
            .unwrap_or_else(|| panic!("no bar for run-1: {lines:?}"));
        assert!(bar.contains("[========="), "{bar}");
        assert!(bar.contains("3/10  30%"), "{bar}");
        assert!(bar.contains("crunch · attempt 1 · heartbeat "), "{bar}");
        assert!(bar.ends_with(" ago"), "{bar}");
        assert_eq!(lines.len(), 2, "closed activities get no bar: {lines:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_running_attempt_of_the_engine_that_has_the_file() {
    let dir = temp_dir("cancel");
    let (path, engine, _worker) = populated(&dir).await;
    let handle = engine.client().handle(crunch, "run-1");
    // A client already waiting for the result, as the activity's starter would be.
    let waiting = tokio::spawn(async move { handle.result().await });
    tokio::task::yield_now().await;

    let run = hb_async(&path, &["cancel", "run-1"]).await;
    run.assert_ok();
    assert!(
        run.stdout
            .starts_with("cancel of run-1 applied by the running engine"),
        "{run:?}"
    );
    let result = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the cancel reached the attempt")
        .unwrap();
    match result {
        Err(ActivityFailure::Cancelled { details }) => {
            let p: Items = hb_runtime::checkpoint::decode_payload(&details.unwrap()).unwrap();
            assert_eq!(p.done, 3, "the last checkpoint comes with the cancellation");
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }

    let again = hb_async(&path, &["cancel", "run-1"]).await;
    again.assert_ok();
    assert_eq!(
        again.stdout,
        "run-1 has already closed (cancelled); nothing to cancel\n"
    );

    let missing = hb_async(&path, &["cancel", "no-such-id"]).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert_eq!(
        missing.stderr,
        "hb: error: no activity with id `no-such-id`\n"
    );
}

#[test]
fn a_cancel_queued_without_an_engine_applies_when_one_opens_the_file() {
    let dir = temp_dir("cancel-later");
    let path = dir.path().join("hb.db");
    // Started, never run: no worker for it in that engine.
    with_engine_gone(&path, |p| {
        Box::pin(async move {
            let engine = Engine::open(&p).await.unwrap();
            engine
                .client()
                .start(
                    crunch,
                    Job {
                        items: 3,
                        fail_at: None,
                        park_at: None,
                    },
                    StartOptions::id("later-1"),
                )
                .await
                .unwrap();
        })
    });
    let run = hb(Some(&path), &["cancel", "later-1"]);
    run.assert_ok();
    assert!(
        run.stdout.contains("no engine has") && run.stdout.contains("next opens the file"),
        "{run:?}"
    );
    let state = with_engine_gone(&path, |p| {
        Box::pin(async move {
            let engine = Engine::open(&p).await.unwrap();
            let handle = engine.client().handle(crunch, "later-1");
            let result = tokio::time::timeout(Duration::from_secs(5), handle.result()).await;
            assert!(
                matches!(result, Ok(Err(ActivityFailure::Cancelled { .. }))),
                "{result:?}"
            );
            handle.describe().await.unwrap().status
        })
    });
    assert_eq!(state, ActivityStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_unpause_and_reset_reach_the_engine_that_has_the_file() {
    let dir = temp_dir("operate");
    let (path, engine, _worker) = populated(&dir).await;
    let client = engine.client();

    // Pause: the running attempt stops, its checkpoint kept, and the activity is paused.
    let run = hb_async(&path, &["pause", "run-1"]).await;
    run.assert_ok();
    assert!(run.stdout.starts_with("pause of run-1 "), "{run:?}");
    eventually("run-1 to be stored paused at item 3", || {
        file_shows(&path, "run-1", ActivityStatus::Paused, 3)
    })
    .await;
    let d = client.describe("run-1").await.unwrap();
    assert_eq!(d.attempt, 1);
    assert!(
        matches!(&d.last_failure, Some(ActivityFailure::Application { error_type, .. }) if error_type == "Paused"),
        "{d:?}"
    );

    // Refusals say why, with exit code 3, and queue nothing.
    let again = hb_async(&path, &["pause", "run-1"]).await;
    assert_eq!(again.code, Some(3), "{again:?}");
    assert_eq!(
        again.stderr,
        "hb: error: cannot pause activity `run-1`: it is paused already\n"
    );
    let closed = hb_async(&path, &["unpause", "done-1"]).await;
    assert_eq!(closed.code, Some(3), "{closed:?}");
    assert!(closed.stderr.contains("it is completed"), "{closed:?}");
    let closed = hb_async(&path, &["reset", "fail-1"]).await;
    assert_eq!(closed.code, Some(3), "{closed:?}");
    assert_eq!(
        closed.stderr,
        "hb: error: cannot reset activity `fail-1`: it is failed\n"
    );
    let missing = hb_async(&path, &["unpause", "no-such-id"]).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert_eq!(
        missing.stderr,
        "hb: error: no activity with id `no-such-id`\n"
    );

    // Reset while paused, keeping the pause: still paused, its attempt count back to 0.
    let run = hb_async(&path, &["reset", "run-1", "--keep-paused"]).await;
    run.assert_ok();
    assert!(
        run.stdout.starts_with(
            "reset of run-1 applied by the running engine: it is now paused (attempt 0)"
        ),
        "{run:?}"
    );

    // Unpause: attempt 1 again (after the reset), from item 3; it parks there again.
    let run = hb_async(&path, &["unpause", "run-1"]).await;
    run.assert_ok();
    assert!(run.stdout.starts_with("unpause of run-1 "), "{run:?}");
    eventually("run-1 to run again from item 3", || {
        file_shows(&path, "run-1", ActivityStatus::Running, 3)
            && Inspector::open(&path).is_ok_and(|i| i.get("run-1").is_ok_and(|d| d.attempt == 1))
    })
    .await;

    // Reset from scratch: the running attempt stops and attempt 1 starts without the
    // checkpoint (it parks at item 3 again, having redone items 1 to 3).
    let run = hb_async(&path, &["reset", "run-1", "--clear-checkpoint"]).await;
    run.assert_ok();
    let handle = client.handle(crunch, "run-1");
    handle.cancel().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), handle.result())
        .await
        .expect("the cancel reached the attempt");
    assert!(
        matches!(result, Err(ActivityFailure::Cancelled { .. })),
        "{result:?}"
    );
}

#[test]
fn a_pause_queued_without_an_engine_applies_when_one_opens_the_file() {
    let dir = temp_dir("pause-later");
    let path = dir.path().join("hb.db");
    with_engine_gone(&path, |p| {
        Box::pin(async move {
            let engine = Engine::open(&p).await.unwrap();
            engine
                .client()
                .start(
                    crunch,
                    Job {
                        items: 3,
                        fail_at: None,
                        park_at: None,
                    },
                    StartOptions::id("later-1"),
                )
                .await
                .unwrap();
        })
    });
    let run = hb(Some(&path), &["pause", "later-1"]);
    run.assert_ok();
    assert!(
        run.stdout.contains("no engine has") && run.stdout.contains("next opens the file"),
        "{run:?}"
    );
    // Opened with a worker: it stays paused; unpaused from the CLI, it runs.
    let path2 = path.clone();
    let (paused, result) = with_engine_gone(&path, move |p| {
        Box::pin(async move {
            let engine = Engine::open(&p).await.unwrap();
            let _w = engine.worker().register(crunch).spawn().await.unwrap();
            let handle = engine.client().handle(crunch, "later-1");
            let deadline = Instant::now() + Duration::from_secs(10);
            while handle.describe().await.unwrap().status != ActivityStatus::Paused {
                assert!(Instant::now() < deadline, "the pause was not applied");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let paused = handle.describe().await.unwrap();
            let run = hb_async(&path2, &["unpause", "later-1"]).await;
            run.assert_ok();
            let result = tokio::time::timeout(Duration::from_secs(10), handle.result())
                .await
                .expect("it ran once unpaused");
            (paused, result)
        })
    });
    assert_eq!((paused.status, paused.attempt), (ActivityStatus::Paused, 0));
    assert_eq!(result.unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// Files the tool refuses

/// Every command on `path` exits 2 with one line on stderr containing `expected`, and leaves
/// the file byte for byte as it was, with no file added or removed beside it other than
/// SQLite's empty `-wal`/`-shm` companions of a WAL-mode file.
fn refused_by_every_command(dir: &TempDir, path: &Path, expected: &str) {
    let before = std::fs::read(path).ok();
    let names = file_names(dir);
    for args in [
        &["ls"][..],
        &["ls", "--state", "running"],
        &["show", "a-1"],
        &["watch", "--once"],
        &["watch"],
        &["cancel", "a-1"],
        &["pause", "a-1"],
        &["unpause", "a-1"],
        &["reset", "a-1", "--clear-checkpoint"],
    ] {
        let run = hb(Some(path), args);
        assert_eq!(run.code, Some(2), "hb {args:?}: {run:#?}");
        assert_eq!(run.stdout, "", "hb {args:?}");
        assert!(
            run.stderr.starts_with("hb: error: ") && run.stderr.contains(expected),
            "hb {args:?}: expected `{expected}` in {:?}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "one line: {:?}", run.stderr);
        assert_eq!(
            std::fs::read(path).ok(),
            before,
            "hb {args:?} changed the file"
        );
        let mut now = file_names(dir);
        now.retain(|n| {
            let companion = n.ends_with("-wal") || n.ends_with("-shm");
            if companion && n.ends_with("-wal") {
                let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
                assert_eq!(len, 0, "hb {args:?} wrote to the WAL");
            }
            !companion || names.contains(n)
        });
        assert_eq!(now, names, "hb {args:?} added or removed files");
    }
}

#[test]
fn a_missing_file_is_not_created() {
    let dir = temp_dir("missing");
    let path = dir.path().join("nothing-here.db");
    refused_by_every_command(&dir, &path, "nothing-here.db does not exist");
    assert!(!path.exists());
    let run = hb(Some(&path), &["ls"]);
    assert!(
        run.stderr.contains("pass --file PATH or set HB_FILE"),
        "{run:?}"
    );
}

#[test]
fn an_empty_file_is_refused() {
    let dir = temp_dir("empty");
    let path = dir.path().join("hb.db");
    std::fs::write(&path, b"").unwrap();
    refused_by_every_command(&dir, &path, "not an hb engine file: an empty SQLite file");
}

#[test]
fn a_foreign_sqlite_file_is_refused() {
    let dir = temp_dir("foreign");
    let path = dir.path().join("notes.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('hi');",
    )
    .unwrap();
    drop(conn);
    refused_by_every_command(
        &dir,
        &path,
        "is not an hb engine file: SQLite application_id is 0x0",
    );
}

#[test]
fn a_text_file_is_refused() {
    let dir = temp_dir("text");
    let path = dir.path().join("hb.db");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    refused_by_every_command(&dir, &path, "is corrupt or not a database");
}

#[test]
fn a_file_of_a_newer_schema_is_refused() {
    let dir = temp_dir("newer");
    let path = dir.path().join("hb.db");
    closed_engine_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    refused_by_every_command(
        &dir,
        &path,
        "has schema version 99, newer than this build of hb supports (5); upgrade hb",
    );
}

#[test]
fn a_corrupt_file_is_refused() {
    let dir = temp_dir("corrupt");
    let path = dir.path().join("hb.db");
    closed_engine_file(&path);
    // Keep the first page (header, schema) and garble every page after it.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() > page, "the file has more than one page");
    for b in &mut bytes[page..] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    refused_by_every_command(&dir, &path, "is corrupt or not a database");
}

#[test]
fn a_file_another_process_holds_exclusively_is_refused() {
    let dir = temp_dir("locked");
    let path = dir.path().join("hb.db");
    closed_engine_file(&path);
    // A program (the sqlite3 shell, a backup tool) in the middle of writing the file, with a
    // rollback journal: readers have to wait for it, then give up.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let before = std::fs::read(&path).unwrap();
    // No reading the file in this process from here on: closing any descriptor of it would
    // drop this process's POSIX locks on it, the exclusive one included.
    conn.execute_batch("BEGIN EXCLUSIVE; UPDATE activities SET attempt = attempt + 1;")
        .unwrap();
    let started = Instant::now();
    let run = hb(Some(&path), &["ls"]);
    let waited = started.elapsed();
    drop(conn);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("hb.db is in use by another process"),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1);
    assert!(
        waited >= Duration::from_secs(4),
        "waited {waited:?} for the lock first"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

// ---------------------------------------------------------------------------------------------
// Hostile contents

#[test]
fn odd_rows_are_shown_safely() {
    let dir = temp_dir("odd");
    let path = dir.path().join("hb.db");
    closed_engine_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    // An id with a terminal escape and a newline, a state from a newer hb, times far out of
    // range, a checkpoint and a failure that are not JSON.
    conn.execute(
        "INSERT INTO activities (id, type, state, attempt, input, options, details, failure,
             scheduled_at, attempt_started_at, last_heartbeat_at, next_attempt_at, closed_at)
         VALUES (?1, 'weird\u{7}type', 42, 7, x'', 'not json', x'1b5b324a6e6f74206a736f6e', '{{{',
             -5, 9223372036854775807, 253402300800000, -1, NULL)",
        ["evil\u{1b}[2J\nid"],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO activities (id, type, state, attempt, input, options, details, scheduled_at, last_heartbeat_at)
         VALUES ('odd-running', 'crunch', 1, 2, x'', '{}', CAST('{\"_hb_v\":1,\"_hb_p\":[12,5],\"x\":1}' AS BLOB), 0, 9223372036854775807)",
        [],
    )
    .unwrap();
    drop(conn);
    let escaped = "evil\\u{1b}[2J\\nid";
    let ls = hb(Some(&path), &["ls"]);
    ls.assert_ok();
    assert!(ls.stdout.contains(escaped), "{ls:?}");
    assert!(ls.stdout.contains("unknown"), "{ls:?}");
    assert!(ls.stdout.contains("12/5 (100%)"), "{ls:?}");
    assert!(!ls.stdout.contains('\u{1b}') && !ls.stdout.contains('\u{7}'));

    let show = hb(Some(&path), &["show", "evil\u{1b}[2J\nid"]);
    show.assert_ok();
    assert!(show.stdout.contains(escaped), "{show:?}");
    assert!(show.stdout.contains("out of range"), "{show:?}");
    assert!(
        show.stdout
            .contains("(not JSON, 12 bytes) \\u{1b}[2Jnot json"),
        "{show:?}"
    );
    assert!(!show.stdout.contains('\u{1b}'));

    let watch = hb(Some(&path), &["watch", "--once"]);
    watch.assert_ok();
    assert!(watch.stdout.contains("odd-running"), "{watch:?}");
    assert!(!watch.stdout.contains('\u{1b}'));

    for args in [&["show", ""][..], &["cancel", ""], &["show", "%"]] {
        let run = hb(Some(&path), args);
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
    }

    // A value of the wrong type in a column: a clear error, not a panic.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE activities SET details = 'text, not a blob' WHERE id = 'odd-running'",
        [],
    )
    .unwrap();
    drop(conn);
    for args in [&["ls"][..], &["show", "odd-running"], &["watch"]] {
        let run = hb(Some(&path), args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains("hb.db"), "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = temp_dir("args");
    let path = dir.path().join("hb.db");
    for args in [
        &["ls", "--limit", "0"][..],
        &["ls", "--limit", "-3"],
        &["watch", "--interval", "0"],
        &["watch", "--interval", "soon"],
        &["show"],
        &["frobnicate"],
        &[],
    ] {
        let run = hb(Some(&path), args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains("error:"), "{args:?}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:?}");
    }
    assert!(!path.exists());
    let help = hb(None, &["--help"]);
    help.assert_ok();
    for command in ["ls", "show", "watch", "cancel", "pause", "unpause", "reset"] {
        assert!(help.stdout.contains(command), "{help:?}");
    }
    let reset = hb(None, &["reset", "--help"]);
    reset.assert_ok();
    for flag in ["--clear-checkpoint", "--keep-paused", "attempt 1"] {
        assert!(reset.stdout.contains(flag), "{reset:?}");
    }
    for args in [
        &["pause"][..],
        &["reset", "x", "--clear"],
        &["unpause", "a", "b"],
    ] {
        let run = hb(Some(&path), args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
    }
}
