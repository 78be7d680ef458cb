//! Crash recovery, for real: a child process runs batch activities on an engine file and is
//! killed with SIGKILL several times at random points, restarted each time, then left to finish.
//!
//! The test binary is its own child: `crash_recovery_child` does nothing unless
//! `HB_CRASH_CHILD=<dir>` is set, and the parent re-executes the binary with
//! `--exact crash_recovery_child --include-ignored`. Every item the child processes is appended
//! to `<dir>/items.log` as `activity_id item attempt run` *before* it is checkpointed, so the log
//! is a superset of what the engine file says was done: it shows which items were processed at
//! least once and which were redone after a crash.
//!
//! The kill points come from a seeded xorshift generator; the seed is printed and can be set
//! with `HB_CRASH_SEED=<n>` to replay a run's choices.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hb_runtime::client::{ActivityStatus, StartOptions};
use hb_runtime::engine::{Engine, Inspector};
use hb_runtime::prelude::*;

/// Set (to the scratch directory) in the child's environment.
const CHILD_ENV: &str = "HB_CRASH_CHILD";
/// Which run of the child this is (0, 1, ...), for the log.
const RUN_ENV: &str = "HB_CRASH_RUN";
/// Replays the kill points of an earlier run.
const SEED_ENV: &str = "HB_CRASH_SEED";
/// The name of the child test, as `--exact` wants it.
const CHILD_TEST: &str = "crash_recovery_child";

const ACTIVITIES: usize = 6;
const ITEMS: u64 = 300;
/// Each item sleeps this long: a lower bound on its duration (a tokio sleep never ends early).
const ITEM_MS: u64 = 3;
/// Must match `heartbeat_interval` of [`crash_batch`].
const HEARTBEAT_INTERVAL_MS: u64 = 50;
/// Kills after the child has logged some items.
const KILLS_AFTER_ITEMS: usize = 5;
/// Kills at a random time after the child was spawned (possibly before it opened the file,
/// possibly while it recovers).
const KILLS_AFTER_TIME: usize = 1;
/// The most items a kill waits for: with 6 activities of 300 items (1,800 in all) and at most
/// this many per killed run (plus the few logged while the kill is delivered, plus at most
/// ~150 ms of work for the timed kill), every kill lands before the work is done.
const MAX_ITEMS_BEFORE_KILL: usize = 220;
const MAX_MS_BEFORE_KILL: u64 = 150;

/// The most items of one activity a crash may make the retry redo.
///
/// At the kill, the file holds the checkpoint of the last heartbeat the engine's batching
/// writer thread committed. The pump (on its own thread) sends the attempt's latest checkpoint
/// every `heartbeat_interval` (50 ms), and an item takes at least `ITEM_MS` (3 ms), so one
/// interval covers at most ceil(50 / 3) = 17 items. The newest heartbeat may still sit in the
/// writer's batch, uncommitted, when the process dies; then the file holds the one sent an
/// interval before it. So a crash loses at most one interval of items, plus the items processed
/// while the newest heartbeat waited in the batch (`WRITER_SLACK_MS`: up to 7.5 ms, 1/40 of the
/// heartbeat timeout, for other heartbeats to share its commit, the commit itself, and the
/// pump's and the writer's scheduling jitter on a busy machine), plus 1 for the item logged but
/// not yet checkpointed (the log is written first): ceil((50 + 25) / 3) + 1 = 26. (Measured
/// here, idle or with three busy loops on the two cores: at most 13.)
const WRITER_SLACK_MS: u64 = 25;
const REDO_BOUND: u64 = (HEARTBEAT_INTERVAL_MS + WRITER_SLACK_MS).div_ceil(ITEM_MS) + 1;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
    /// The sum of the values of the items before `next`: only right if every item was
    /// counted exactly once in the checkpointed state.
    sum: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Job {
    items: u64,
    item_ms: u64,
    salt: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Summary {
    items: u64,
    sum: u64,
}

/// Where the child logs processed items.
#[derive(Debug)]
struct ItemLog {
    path: PathBuf,
    run: u32,
}

fn value(salt: u64, item: u64) -> u64 {
    item * 1_000 + salt
}

fn expected(job: &Job) -> Summary {
    Summary {
        items: job.items,
        sum: (0..job.items).map(|i| value(job.salt, i)).sum(),
    }
}

fn jobs() -> Vec<(String, Job)> {
    (0..ACTIVITIES as u64)
        .map(|n| {
            (
                format!("crash-{n}"),
                Job {
                    items: ITEMS,
                    item_ms: ITEM_MS,
                    salt: n,
                },
            )
        })
        .collect()
}

/// Processes `job.items` items, logging each (append, one `write` per line) before
/// checkpointing it.
#[activity(
    heartbeat_timeout = "300ms",
    heartbeat_interval = "50ms",
    retry(max_attempts = 100, initial_interval = "10ms", max_interval = "50ms")
)]
async fn crash_batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    #[state] log: Arc<ItemLog>,
    job: Job,
) -> Result<Summary, ActivityError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log.path)
        .map_err(|e| ActivityError::retryable("Log", e.to_string()))?;
    let id = ctx.info().activity_id.clone();
    let attempt = ctx.info().attempt;
    p.total = job.items;
    while p.next < job.items {
        tokio::time::sleep(Duration::from_millis(job.item_ms)).await;
        let line = format!("{id} {} {attempt} {}\n", p.next, log.run);
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| ActivityError::retryable("Log", e.to_string()))?;
        p.sum += value(job.salt, p.next);
        p.next += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(Summary {
        items: p.next,
        sum: p.sum,
    })
}

/// The child: (re)starts the activities idempotently, runs them to the end and writes the
/// `done` marker. Does nothing unless run by [`activities_survive_repeated_sigkill`].
#[test]
#[ignore = "the child process of activities_survive_repeated_sigkill, which runs it"]
fn crash_recovery_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let run: u32 = std::env::var(RUN_ENV)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let engine = Engine::open(dir.join("hb.db")).await.unwrap();
        let log = Arc::new(ItemLog {
            path: dir.join("items.log"),
            run,
        });
        let _worker = engine
            .worker()
            .register(crash_batch)
            .state(log)
            .max_concurrent(ACTIVITIES)
            .spawn()
            .await
            .unwrap();
        let client = engine.client();
        let mut handles = Vec::new();
        for (id, job) in jobs() {
            let h = client
                .start(crash_batch, job.clone(), StartOptions::id(id))
                .await
                .unwrap();
            handles.push((h, job));
        }
        let mut report = String::new();
        for (h, job) in handles {
            let summary = tokio::time::timeout(Duration::from_secs(40), h.result())
                .await
                .unwrap_or_else(|_| panic!("{} did not finish within 40 s", h.id()))
                .unwrap_or_else(|e| panic!("{} failed: {e}", h.id()));
            assert_eq!(summary, expected(&job), "the result of {}", h.id());
            report.push_str(&format!("{} {} {}\n", h.id(), summary.items, summary.sum));
        }
        fs::write(dir.join("done.tmp"), report).unwrap();
        fs::rename(dir.join("done.tmp"), dir.join("done")).unwrap();
    });
}

/// A tiny xorshift64* generator: the kill points only need to be spread and replayable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Once the run has logged this many items.
    AfterItems(usize),
    /// This long after the spawn.
    AfterMs(u64),
}

/// One logged item.
#[derive(Debug, Clone)]
struct Line {
    id: String,
    item: u64,
    attempt: u32,
    run: u32,
}

fn lines_in(path: &Path) -> usize {
    fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

fn spawn_child(dir: &Path, run: u32) -> Child {
    let out = File::create(dir.join(format!("child-{run}.out"))).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
        .env(CHILD_ENV, dir)
        .env(RUN_ENV, run.to_string())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawning the child test process")
}

fn child_output(dir: &Path, run: u32) -> String {
    let out = fs::read_to_string(dir.join(format!("child-{run}.out"))).unwrap_or_default();
    let tail: Vec<&str> = out.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Kills `child` with SIGKILL at `kill`; panics if it ended on its own first (the kill
/// points are chosen so that it cannot have finished its work).
fn run_and_kill(mut child: Child, dir: &Path, run: u32, kill: Kill, log: &Path) -> usize {
    let before = lines_in(log);
    let spawned = Instant::now();
    let deadline = spawned + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "run {run}: the child exited ({status}) before it was killed at {kill:?}; its output:\n{}",
                child_output(dir, run)
            );
        }
        let due = match kill {
            Kill::AfterItems(n) => lines_in(log) >= before + n,
            Kill::AfterMs(ms) => spawned.elapsed() >= Duration::from_millis(ms),
        };
        if due {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run {run}: the child logged {} items in 20 s, waiting for {kill:?}; its output:\n{}",
            lines_in(log) - before,
            child_output(dir, run)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no clean close.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "run {run}: the child was killed but exited with {status}"
    );
    assert!(
        !dir.join("done").exists(),
        "run {run}: the child finished before the kill"
    );
    // A line cut by the kill (not expected: each line is one small `write`) is closed so the
    // next run's lines stay apart; the cut line does not parse and is not counted.
    let bytes = fs::read(log).unwrap_or_default();
    if bytes.last().is_some_and(|&c| c != b'\n') {
        OpenOptions::new()
            .append(true)
            .open(log)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
    }
    lines_in(log) - before
}

fn parse_log(path: &Path) -> (Vec<Line>, usize) {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = Vec::new();
    let mut cut = 0;
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.as_slice() {
            [id, item, attempt, run] => lines.push(Line {
                id: (*id).to_owned(),
                item: item.parse().unwrap(),
                attempt: attempt.parse().unwrap(),
                run: run.parse().unwrap(),
            }),
            _ => cut += 1,
        }
    }
    (lines, cut)
}

/// How many items one attempt redid: the attempt started at item `first` while items up to
/// `high` had been processed (logged) before it.
#[derive(Debug)]
struct Redo {
    id: String,
    attempt: u32,
    run: u32,
    first: u64,
    high: u64,
}

impl Redo {
    fn redone(&self) -> u64 {
        (self.high + 1).saturating_sub(self.first)
    }
}

/// Every attempt after an activity's first, with where it resumed.
fn redos(lines: &[Line]) -> Vec<Redo> {
    let mut high: BTreeMap<&str, u64> = BTreeMap::new();
    let mut current: BTreeMap<&str, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for l in lines {
        let new_attempt = current.get(l.id.as_str()) != Some(&l.attempt);
        if new_attempt {
            current.insert(&l.id, l.attempt);
            if let Some(&h) = high.get(l.id.as_str()) {
                out.push(Redo {
                    id: l.id.clone(),
                    attempt: l.attempt,
                    run: l.run,
                    first: l.item,
                    high: h,
                });
            }
        }
        let h = high.entry(&l.id).or_insert(l.item);
        *h = (*h).max(l.item);
    }
    out
}

#[test]
fn activities_survive_repeated_sigkill() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("kill points from {SEED_ENV}={seed}");
    let mut rng = Rng::new(seed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("crash-recovery-{}-{seed}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    println!(
        "scratch directory (kept if the test fails): {}",
        dir.display()
    );
    let db = dir.join("hb.db");
    let log = dir.join("items.log");

    let mut kills: Vec<Kill> = (0..KILLS_AFTER_ITEMS)
        .map(|_| Kill::AfterItems(rng.range(1, MAX_ITEMS_BEFORE_KILL as u64) as usize))
        .collect();
    for _ in 0..KILLS_AFTER_TIME {
        let at = rng.range(0, kills.len() as u64) as usize;
        kills.insert(at, Kill::AfterMs(rng.range(0, MAX_MS_BEFORE_KILL)));
    }

    let started = Instant::now();
    let mut run = 0;
    for kill in &kills {
        let child = spawn_child(&dir, run);
        let logged = run_and_kill(child, &dir, run, *kill, &log);
        println!("run {run}: killed at {kill:?} after {logged} items");
        run += 1;
    }

    // The last run finishes.
    let mut child = spawn_child(&dir, run);
    let deadline = Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "the last run did not finish within 45 s; its output:\n{}",
                child_output(&dir, run)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        status.success() && dir.join("done").exists(),
        "the last run failed ({status}); its output:\n{}",
        child_output(&dir, run)
    );
    println!(
        "{} runs ({} killed) in {:.1?}",
        run + 1,
        kills.len(),
        started.elapsed()
    );

    // Every activity completed with the right result, as the file says after the crashes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = Engine::open(&db).await.unwrap();
        let client = engine.client();
        for (id, job) in jobs() {
            let h = client
                .start(crash_batch, job.clone(), StartOptions::id(&id))
                .await
                .unwrap();
            let d = h.describe().await.unwrap();
            assert_eq!(d.status, ActivityStatus::Completed, "{id}");
            assert_eq!(h.result().await.unwrap(), expected(&job), "{id}");
        }
    });

    // Every item was processed at least once.
    let (lines, cut) = parse_log(&log);
    let mut seen: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for l in &lines {
        seen.entry(&l.id)
            .or_insert_with(|| vec![false; ITEMS as usize])[l.item as usize] = true;
    }
    assert_eq!(seen.len(), ACTIVITIES, "activities in the log");
    for (id, items) in &seen {
        let missing: Vec<usize> = (0..items.len()).filter(|&i| !items[i]).collect();
        assert!(
            missing.is_empty(),
            "{id}: items never processed: {missing:?}"
        );
    }

    // Each retry resumed from a checkpoint no further back than the bound, and never skipped
    // ahead of what had been processed.
    let redos = redos(&lines);
    let crashed_runs: std::collections::BTreeSet<u32> = redos.iter().map(|r| r.run).collect();
    let max = redos.iter().map(Redo::redone).max().unwrap_or(0);
    println!(
        "{} retries in runs {crashed_runs:?}; items redone per retry: max {max}, bound {REDO_BOUND}; {} items logged for {} ({cut} cut lines)",
        redos.len(),
        lines.len(),
        ACTIVITIES as u64 * ITEMS,
    );
    for r in &redos {
        assert!(
            r.first <= r.high + 1,
            "{} attempt {} (run {}) resumed at item {}, past the {} items processed",
            r.id,
            r.attempt,
            r.run,
            r.first,
            r.high + 1
        );
        assert!(
            r.redone() <= REDO_BOUND,
            "{} attempt {} (run {}) redid {} items (resumed at {} after {} were processed); the bound is {REDO_BOUND}",
            r.id,
            r.attempt,
            r.run,
            r.redone(),
            r.first,
            r.high + 1
        );
    }
    assert!(
        crashed_runs.len() >= 4,
        "retries after at least 4 of the kills (runs {crashed_runs:?})"
    );

    // The file is sound.
    assert_eq!(
        Inspector::open(&db).unwrap().integrity_check().unwrap(),
        "ok"
    );
    fs::remove_dir_all(&dir).unwrap();
}
