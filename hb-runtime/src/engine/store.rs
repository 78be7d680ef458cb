//! The engine's SQLite file: schema, opening checks, the batching writer thread and reads.
//!
//! One writer thread owns the write connection. Writes arrive over a channel; the thread drains
//! every write waiting, applies them in one transaction and commits, then acknowledges them:
//! under load one commit carries thousands of writes. Heartbeat writes for the same activity
//! within one batch coalesce to the newest.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::core::{Ack, Write};
use super::error::EngineError;
use super::record::ActivityRow;
use crate::Payload;
use crate::client::ActivityStatus;

/// What identifies an hb engine file (`PRAGMA application_id`, "hb\0\1").
pub(crate) const APPLICATION_ID: i32 = 0x6862_0001;
/// The schema this build writes and reads (see [`migrate`] for the older ones it upgrades).
pub(crate) const SCHEMA_VERSION: i32 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS activities (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    input BLOB NOT NULL,
    options TEXT NOT NULL,
    details BLOB,
    output BLOB,
    failure TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    scheduled_at INTEGER NOT NULL,
    attempt_started_at INTEGER,
    last_heartbeat_at INTEGER,
    next_attempt_at INTEGER,
    closed_at INTEGER,
    external_attempt INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS activities_by_state ON activities(state);
CREATE INDEX IF NOT EXISTS activities_by_closed ON activities(closed_at) WHERE closed_at IS NOT NULL;
-- Heartbeats of running attempts, apart from the wide activity rows: thousands a second touch
-- few small pages here. A state change folds the latest one into `activities`.
CREATE TABLE IF NOT EXISTS heartbeats (
    id TEXT PRIMARY KEY NOT NULL,
    details BLOB,
    at INTEGER NOT NULL
) WITHOUT ROWID;
-- The newest heartbeat request applied (`requests_applied`): an older one left behind by a
-- failed delete is not applied after it.
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    activity_id TEXT,
    task_token TEXT,
    details BLOB,
    at INTEGER NOT NULL
);
";

/// Where the writer hands the acknowledgements that are the core's (everything but replies),
/// those of one commit together.
pub(crate) type Router = Box<dyn Fn(Vec<(Ack, Result<bool, EngineError>)>) + Send + Sync>;

/// A handle to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    inbox: Arc<Inbox>,
    /// The writer thread: unparked when a write someone waits on arrives, or any write while
    /// it is idle.
    thread: std::thread::Thread,
}

/// Writes waiting for the writer thread, which takes them all at once. Queuing one is a
/// push under a short lock, no system call: the engine queues writes under its own lock (to
/// keep their order) and wakes the writer after releasing it.
struct Inbox {
    queue: Mutex<Queued>,
    /// Set once the engine exists (see [`Writer::route`]).
    router: std::sync::OnceLock<Router>,
    /// Set while the writer sleeps with nothing to do: then any write wakes it.
    idle: std::sync::atomic::AtomicBool,
    /// While the writer gathers heartbeats: when it will commit, in ns since `epoch`
    /// (`u64::MAX` otherwise). A heartbeat due sooner wakes it.
    commit_at: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox {
            queue: Mutex::default(),
            router: std::sync::OnceLock::new(),
            idle: std::sync::atomic::AtomicBool::new(false),
            commit_at: std::sync::atomic::AtomicU64::new(u64::MAX),
            epoch: std::time::Instant::now(),
        }
    }
}

#[derive(Default)]
struct Queued {
    writes: Vec<(Write, Option<Ack>)>,
    /// The writer has stopped: nothing more is taken.
    closed: bool,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `at` in ns since the epoch.
    fn nanos(&self, at: std::time::Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Refuses writes from now on and answers those still queued with `Closed`.
    fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        let refused = std::mem::take(&mut q.writes);
        drop(q);
        self.answer(
            refused
                .into_iter()
                .filter_map(|(_, ack)| Some((ack?, Err(EngineError::Closed))))
                .collect(),
        );
    }

    /// Answers acknowledgements: replies here, the core's through the router.
    fn answer(&self, acks: Vec<(Ack, Result<bool, EngineError>)>) {
        let mut core = Vec::new();
        for (ack, r) in acks {
            match ack {
                Ack::Reply(tx) => {
                    let _ = tx.send(r);
                }
                other => core.push((other, r)),
            }
        }
        if !core.is_empty()
            && let Some(route) = self.router.get()
        {
            route(core);
        }
    }
}

/// Closes the inbox when the writer thread ends, by `Stop` or by a panic: a sender never
/// waits on a writer that is gone.
struct CloseOnExit<'a>(&'a Inbox);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the engine's writer thread panicked; writes are refused from now on");
        }
        self.0.close();
    }
}

impl Writer {
    /// Waits until every write queued so far is committed.
    pub(crate) async fn sync(&self) -> Result<(), EngineError> {
        let (ack, rx) = Ack::reply();
        self.send(Write::Barrier, Some(ack));
        rx.await.unwrap_or(Err(EngineError::Closed)).map(|_| ())
    }

    /// Sets where the core's acknowledgements go (once, when the engine is made).
    pub(crate) fn route(&self, router: Router) {
        let _ = self.inbox.router.set(router);
    }

    /// Queues `write` and wakes the writer if it should commit soon; `ack` runs once it is
    /// committed (or failed). Every write but a heartbeat is committed at once; a heartbeat
    /// may wait its `commit_within` for others.
    pub(crate) fn send(&self, write: Write, ack: Option<Ack>) {
        match self.queue(write, ack) {
            Ok(true) => self.wake(),
            Ok(false) => {}
            Err(Some(ack)) => self.inbox.answer(vec![(ack, Err(EngineError::Closed))]),
            Err(None) => {}
        }
    }

    /// Queues `write` without waking the writer: `Ok(true)` when the caller must
    /// [`wake`](Self::wake) it (once its own locks are released). An `ack` the writer can no
    /// longer run (it has stopped) is handed back instead of run here, for callers holding the
    /// engine's lock, which acknowledgements take.
    pub(crate) fn queue(&self, write: Write, ack: Option<Ack>) -> Result<bool, Option<Ack>> {
        use std::sync::atomic::Ordering::SeqCst;
        // A heartbeat wakes the writer only if it would otherwise commit too late for it.
        let due = match (&write, &ack) {
            (Write::Heartbeat { commit_within, .. }, None) => {
                Some(self.inbox.nanos(std::time::Instant::now() + *commit_within))
            }
            _ => None,
        };
        let mut q = self.inbox.lock();
        if q.closed {
            return Err(ack);
        }
        q.writes.push((write, ack));
        drop(q);
        Ok(match due {
            None => true,
            Some(due) => self.inbox.idle.load(SeqCst) || due < self.inbox.commit_at.load(SeqCst),
        })
    }

    /// Wakes the writer thread (it commits what is queued).
    pub(crate) fn wake(&self) {
        self.thread.unpark();
    }
}

/// The lock that keeps a second process from writing the same file.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: std::fs::File,
}

pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes the writer lock of `db`, or says who holds it.
pub(crate) fn lock(db: &Path) -> Result<FileLock, EngineError> {
    use std::io::Write as _;
    let path = lock_path(db);
    let mut file = open_private(&path, false)?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = write!(file, "{}", std::process::id());
            Ok(FileLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(EngineError::Locked {
                path: db.to_path_buf(),
                holder: holder.trim().parse().ok(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(EngineError::io(&path, e)),
    }
}

/// Whether some process holds the writer lock of `db` (without taking it).
pub(crate) fn is_locked(db: &Path) -> bool {
    let Ok(file) = std::fs::File::open(lock_path(db)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

/// Opens (creating if needed) a file readable and writable by its owner only. Never through a
/// symbolic link, and only a plain file with no other name: one planted in a shared
/// directory must not lead hb to write (or truncate) someone else's file.
fn open_private(path: &Path, truncate: bool) -> Result<std::fs::File, EngineError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let refused = |reason: &str| EngineError::Foreign {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused(
                "a symbolic link; hb does not write through one (remove it, or open the file it points to)",
            ),
            _ => EngineError::io(path, e),
        })?;
    let meta = file.metadata().map_err(|e| EngineError::io(path, e))?;
    if !meta.is_file() {
        return Err(refused("not a regular file"));
    }
    if meta.nlink() > 1 {
        return Err(refused(
            "a file with other names (hard links); hb does not write to one",
        ));
    }
    if truncate {
        file.set_len(0).map_err(|e| EngineError::io(path, e))?;
    }
    Ok(file)
}

/// Opens the engine file for writing: creates it (mode 0600) or checks it is an hb file of a
/// schema this build knows, then sets WAL and creates the tables.
pub(crate) fn open_write(path: &Path) -> Result<Connection, EngineError> {
    // Created (mode 0600) or checked here, never through a symbolic link.
    open_private(path, false)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| EngineError::sqlite(path, e))?;
    check_identity(&conn, path, true)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
    )
    .map_err(|e| EngineError::sqlite(path, e))?;
    init(&conn, path)?;
    Ok(conn)
}

/// Creates the tables (if missing) and stamps the file as hb's. An hb file of this schema is
/// not written to at all: a damaged one must be refused before anything touches it.
pub(crate) fn init(conn: &Connection, path: &Path) -> Result<(), EngineError> {
    let stamp = |name: &str| -> Result<i32, EngineError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(|e| EngineError::sqlite(path, e))
    };
    if stamp("application_id")? == APPLICATION_ID {
        match stamp("user_version")? {
            SCHEMA_VERSION => return Ok(()),
            1 => return migrate(conn, path),
            _ => {}
        }
    }
    // The tables and the stamp in one transaction: a file with hb's application_id always has
    // a schema version (check_identity refuses one without).
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA}
         PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK;");
        EngineError::sqlite(path, e)
    })
}

/// Upgrades a file of schema 1 to this one, in one transaction: the column that marks attempts
/// heartbeated by another process, the index retention prunes by, and the table of the newest
/// heartbeat request applied.
fn migrate(conn: &Connection, path: &Path) -> Result<(), EngineError> {
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE activities ADD COLUMN external_attempt INTEGER;
         CREATE INDEX IF NOT EXISTS activities_by_closed ON activities(closed_at) WHERE closed_at IS NOT NULL;
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK;");
        EngineError::sqlite(path, e)
    })?;
    tracing::info!(path = %path.display(), from = 1, to = SCHEMA_VERSION, "engine file upgraded");
    Ok(())
}

/// Flushes every commit to the disk (`PRAGMA synchronous = FULL`).
pub(crate) fn sync_every_commit(conn: &Connection, path: &Path) -> Result<(), EngineError> {
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(|e| EngineError::sqlite(path, e))
}

/// Caps the file's size (`PRAGMA max_page_count`).
pub(crate) fn limit_size(conn: &Connection, path: &Path, bytes: u64) -> Result<(), EngineError> {
    let page: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| EngineError::sqlite(path, e))?;
    let pages = (bytes / page.max(512) as u64).max(1);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
        .map_err(|e| EngineError::sqlite(path, e))
}

/// Opens the engine file read-only (for the CLI and describe/list): never creates or changes it.
pub(crate) fn open_read(path: &Path) -> Result<Connection, EngineError> {
    if !path.exists() {
        return Err(EngineError::Missing {
            path: path.to_path_buf(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| EngineError::sqlite(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| EngineError::sqlite(path, e))?;
    check_identity(&conn, path, false)?;
    Ok(conn)
}

/// Refuses files that are not SQLite, belong to something else, or have a newer schema.
fn check_identity(conn: &Connection, path: &Path, may_init: bool) -> Result<(), EngineError> {
    let pragma = |name: &str| -> Result<i32, EngineError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(|e| EngineError::sqlite(path, e))
    };
    let app = pragma("application_id")?;
    let version = pragma("user_version")?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| EngineError::sqlite(path, e))?;
    if app == 0 && tables == 0 {
        return if may_init {
            Ok(())
        } else {
            Err(EngineError::Foreign {
                path: path.to_path_buf(),
                reason: "an empty SQLite file, not an hb engine file".into(),
            })
        };
    }
    if app != APPLICATION_ID {
        return Err(EngineError::Foreign {
            path: path.to_path_buf(),
            reason: format!("SQLite application_id is {app:#x}, not hb's {APPLICATION_ID:#x}"),
        });
    }
    if version < 1 {
        // hb stamps its application_id and a schema version together: a file with the one
        // and not the other was not written by hb (or was damaged). Refused before anything
        // is written to it (found by fuzzing: such a file was stamped, then refused).
        return Err(EngineError::Foreign {
            path: path.to_path_buf(),
            reason: format!("hb's application_id with schema version {version}"),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(EngineError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The writes the writer's buffers keep room for between batches.
const KEEP_CAPACITY: usize = 1024;

/// The most writes one transaction carries.
const MAX_BATCH: usize = 16_384;
/// The longest a heartbeat waits in the writer for others to share its commit (see
/// [`heartbeat_commit_within`]).
pub(crate) const MAX_HEARTBEAT_COMMIT_DELAY: std::time::Duration =
    std::time::Duration::from_millis(50);

/// How long a heartbeat of an activity with `heartbeat_timeout` may wait in the writer before
/// it is committed: 1/40 of the timeout, between 5 and 50 ms. Every other write is committed
/// at once. So 10,000 activities heartbeating every second (timeout 2 s) make 20 commits a
/// second, each rewriting the pages of the `heartbeats` table once, instead of hundreds of
/// commits rewriting the same pages; a crash loses at most that much of the newest heartbeats
/// (the retry resumes from a checkpoint at most that much older).
pub(crate) fn heartbeat_commit_within(
    heartbeat_timeout: Option<std::time::Duration>,
) -> std::time::Duration {
    heartbeat_timeout.map_or(MAX_HEARTBEAT_COMMIT_DELAY, |t| {
        (t / 40).clamp(
            std::time::Duration::from_millis(5),
            MAX_HEARTBEAT_COMMIT_DELAY,
        )
    })
}

/// The soonest commit the heartbeats of `writes` ask for (`None`: there are other writes).
fn heartbeat_deadline(writes: &[(Write, Option<Ack>)]) -> Option<std::time::Duration> {
    let mut soonest = MAX_HEARTBEAT_COMMIT_DELAY;
    for (w, ack) in writes {
        match w {
            Write::Heartbeat { commit_within, .. } if ack.is_none() => {
                soonest = soonest.min(*commit_within);
            }
            _ => return None,
        }
    }
    Some(soonest)
}

/// Starts the writer thread over `conn`. It holds the file's lock until it has committed every
/// write, checkpointed the WAL into the file and closed its connection.
pub(crate) fn spawn_writer(
    conn: Connection,
    path: PathBuf,
    lock: Option<FileLock>,
) -> (Writer, std::thread::JoinHandle<()>) {
    let inbox = Arc::new(Inbox::default());
    let queued = inbox.clone();
    let thread = std::thread::Builder::new()
        .name("hb-writer".into())
        .spawn(move || {
            let conn = {
                let _closing = CloseOnExit(&queued);
                writer_loop(conn, path, &queued)
            };
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
            drop(conn);
            drop(lock);
        })
        .expect("spawning the hb engine writer thread");
    let writer = Writer {
        inbox,
        thread: thread.thread().clone(),
    };
    (writer, thread)
}

fn writer_loop(mut conn: Connection, path: PathBuf, inbox: &Inbox) -> Connection {
    use std::sync::atomic::Ordering::SeqCst;
    let take = |batch: &mut Vec<(Write, Option<Ack>)>| {
        let mut q = inbox.lock();
        if batch.is_empty() {
            std::mem::swap(batch, &mut q.writes);
        } else {
            batch.append(&mut q.writes);
        }
    };
    let mut batch = Vec::with_capacity(KEEP_CAPACITY);
    loop {
        take(&mut batch);
        if batch.is_empty() {
            // Idle: any write wakes this thread (its sender sees `idle`); one queued between
            // the take and here is seen by the check below.
            inbox.idle.store(true, SeqCst);
            if inbox.lock().writes.is_empty() {
                std::thread::park();
            }
            inbox.idle.store(false, SeqCst);
            continue;
        }
        let start = std::time::Instant::now();
        // Heartbeats alone: gather more until the soonest of them is due (senders do not wake
        // this thread for heartbeats while it is busy), or until any other write arrives (its
        // sender wakes this thread): then commit them all together.
        if let Some(within) = heartbeat_deadline(&batch) {
            let mut until = start + within;
            loop {
                let now = std::time::Instant::now();
                if now >= until || batch.len() >= MAX_BATCH {
                    break;
                }
                // Published before parking: a heartbeat due sooner wakes this thread (one
                // queued while no commit time was published always does).
                inbox.commit_at.store(inbox.nanos(until), SeqCst);
                std::thread::park_timeout(until - now);
                let seen = batch.len();
                take(&mut batch);
                // What arrived came after `now`.
                match heartbeat_deadline(&batch[seen..]) {
                    Some(within) => until = until.min(now + within),
                    None => break,
                }
            }
            inbox.commit_at.store(u64::MAX, SeqCst);
        }
        // `Stop` ends the thread once everything queued before it is committed; what came
        // after it is refused.
        let stop = batch.iter().position(|(w, _)| matches!(w, Write::Stop));
        let late = match stop {
            Some(i) => batch.split_off(i + 1),
            None => Vec::new(),
        };
        let mut apply_batch = |b: &mut [(Write, Option<Ack>)]| {
            apply(&mut conn, b).map_err(|e| EngineError::sqlite(&path, e))
        };
        if batch.len() <= MAX_BATCH {
            inbox.answer(commit(&mut batch, &mut apply_batch));
        } else {
            // A backlog: transactions of at most MAX_BATCH writes, in order.
            let mut chunk = Vec::with_capacity(MAX_BATCH);
            for w in batch.drain(..) {
                chunk.push(w);
                if chunk.len() == MAX_BATCH {
                    inbox.answer(commit(&mut chunk, &mut apply_batch));
                }
            }
            inbox.answer(commit(&mut chunk, &mut apply_batch));
        }
        // A burst (thousands of starts) leaves a large buffer behind; it takes turns with the
        // inbox's, so neither keeps a burst's size once it is over.
        if batch.capacity() > 4 * KEEP_CAPACITY {
            batch = Vec::with_capacity(KEEP_CAPACITY);
        }
        if stop.is_some() {
            inbox.answer(
                late.into_iter()
                    .filter_map(|(_, ack)| Some((ack?, Err(EngineError::Closed))))
                    .collect(),
            );
            inbox.close();
            break;
        }
    }
    conn
}

/// Stores a batch of writes in one transaction; answers, per write, whether it changed a row.
pub(crate) type Apply<'a> =
    dyn FnMut(&mut [(Write, Option<Ack>)]) -> Result<Vec<bool>, EngineError> + 'a;

/// Commits `batch` through `apply` in one transaction (or, if that fails, each write alone)
/// and returns the acknowledgements with their results, in order; `batch` is left empty.
pub(crate) fn commit(
    batch: &mut Vec<(Write, Option<Ack>)>,
    apply: &mut Apply<'_>,
) -> Vec<(Ack, Result<bool, EngineError>)> {
    let mut acks = Vec::new();
    if batch.is_empty() {
        return acks;
    }
    match apply(batch) {
        Ok(changed) => {
            for ((_, ack), changed) in batch.drain(..).zip(changed) {
                if let Some(ack) = ack {
                    acks.push((ack, Ok(changed)));
                }
            }
        }
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %e, writes = batch.len(), "engine batch failed; storing its writes one by one");
            // One bad write (a full disk for one large input) must not fail the writes batched
            // with it: replay them one by one, so only the ones that fail report it.
            let mut first_error = None;
            for (w, ack) in batch.drain(..) {
                let mut one = [(w, None)];
                let mut r = apply(&mut one).map(|changed| changed[0]);
                let [(w, _)] = one;
                match &r {
                    Err(e) => {
                        tracing::error!(error = %e, "engine write failed; it was not stored");
                        first_error.get_or_insert_with(|| e.clone());
                    }
                    // "Everything before me is stored" does not hold once a write failed.
                    Ok(_) if matches!(w, Write::Barrier) => {
                        if let Some(e) = &first_error {
                            r = Err(e.clone());
                        }
                    }
                    Ok(_) => {}
                }
                if let Some(ack) = lost(&w, ack, &r) {
                    acks.push((ack, r));
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "engine write failed; it was not stored");
            for (w, ack) in batch.drain(..) {
                let r = Err(e.clone());
                if let Some(ack) = lost(&w, ack, &r) {
                    acks.push((ack, r));
                }
            }
        }
    }
    acks
}

/// The acknowledgement of `w` with result `r`: its own, or for a failed write the core must
/// hear of (a heartbeat, or a fold of one), a report of it.
fn lost(w: &Write, ack: Option<Ack>, r: &Result<bool, EngineError>) -> Option<Ack> {
    match (w, ack) {
        (_, Some(ack)) => Some(ack),
        (Write::Heartbeat { id, .. }, None) if r.is_err() => Some(Ack::Lost(id.clone())),
        (
            Write::Started { fold: true, id, .. } | Write::Transition { fold: true, id, .. },
            None,
        ) if r.is_err() => Some(Ack::Unfolded(id.clone())),
        _ => None,
    }
}

/// Applies `batch` to the file in one transaction: every write or none.
pub(crate) fn apply(
    conn: &mut Connection,
    batch: &mut [(Write, Option<Ack>)],
) -> rusqlite::Result<Vec<bool>> {
    let mut changed = vec![true; batch.len()];
    // Only the newest heartbeat of each activity in the batch is written.
    let mut newest_heartbeat: foldhash::HashMap<&str, usize> = foldhash::HashMap::default();
    // Activities whose newest heartbeat in the batch carries details: older ones are skipped.
    let mut newest_with_details: foldhash::HashSet<&str> = foldhash::HashSet::default();
    for (i, (w, _)) in batch.iter().enumerate() {
        if let Write::Heartbeat { id, .. } = w {
            newest_heartbeat.insert(id, i);
        }
    }
    for (id, i) in &newest_heartbeat {
        if let (
            Write::Heartbeat {
                details: Some(_), ..
            },
            _,
        ) = &batch[*i]
        {
            newest_with_details.insert(id);
        }
    }
    let tx = conn.transaction()?;
    {
        // Prepared when first needed: most batches (a heartbeat, a start) use one or two.
        let mut sql = Statements {
            conn: &tx,
            cached: Default::default(),
        };
        for (i, (w, _)) in batch.iter().enumerate() {
            match w {
                Write::Insert(row) => {
                    changed[i] = 1
                        == sql.get(Sql::Insert)?.execute(params![
                            &*row.id,
                            row.activity_type,
                            row.state as i64,
                            row.attempt,
                            row.input,
                            row.options,
                            row.details,
                            row.scheduled_at,
                            row.next_attempt_at,
                        ])?;
                }
                Write::Started {
                    fold: has_heartbeat,
                    id,
                    attempt,
                    at,
                } => {
                    // A timed-out attempt's last checkpoint may still sit in `heartbeats`.
                    if *has_heartbeat {
                        sql.get(Sql::Fold)?.execute(params![&**id])?;
                        sql.get(Sql::Forget)?.execute(params![&**id])?;
                    }
                    sql.get(Sql::Started)?.execute(params![
                        &**id,
                        ActivityStatus::Running as i64,
                        attempt,
                        at
                    ])?;
                }
                Write::Heartbeat {
                    id, details, at, ..
                } => {
                    // Every heartbeat is applied in order: one without details keeps the
                    // details of an earlier one (the statement coalesces), so only the newest
                    // of each activity is skipped-to when it carries details itself.
                    let newest = newest_heartbeat.get(&**id) == Some(&i);
                    if newest || details.is_some() && !newest_with_details.contains(&**id) {
                        sql.get(Sql::Heartbeat)?.execute(params![
                            &**id,
                            details.as_ref().map(Payload::data),
                            at
                        ])?;
                    }
                }
                Write::Transition {
                    fold: has_heartbeat,
                    id,
                    state,
                    attempt,
                    details,
                    output,
                    failure,
                    next_attempt_at,
                    closed_at,
                } => {
                    if *has_heartbeat {
                        sql.get(Sql::Fold)?.execute(params![&**id])?;
                        sql.get(Sql::Forget)?.execute(params![&**id])?;
                    }
                    sql.get(Sql::Transition)?.execute(params![
                        &**id,
                        *state as i64,
                        attempt,
                        details.as_ref().map(Payload::data),
                        output.as_ref().map(Payload::data),
                        failure,
                        next_attempt_at,
                        closed_at
                    ])?;
                }
                Write::CancelRequested { id } => {
                    sql.get(Sql::Cancel)?.execute(params![&**id])?;
                }
                Write::External { id, attempt } => {
                    sql.get(Sql::External)?.execute(params![&**id, attempt])?;
                }
                Write::DeleteRequest { seq } => {
                    sql.get(Sql::DeleteRequest)?.execute(params![seq])?;
                }
                Write::Prune {
                    closed_before,
                    limit,
                } => {
                    // A heartbeat left unfolded must not outlive its activity (a new one with
                    // the same id would show it).
                    sql.get(Sql::PruneHeartbeats)?
                        .execute(params![closed_before, limit])?;
                    let deleted = sql
                        .get(Sql::Prune)?
                        .execute(params![closed_before, limit])?;
                    changed[i] = deleted >= *limit as usize;
                    if deleted > 0 {
                        tracing::debug!(deleted, closed_before, "pruned closed activities");
                    }
                }
                Write::RequestHeartbeat {
                    id,
                    details,
                    at,
                    seq,
                } => {
                    sql.get(Sql::Heartbeat)?.execute(params![
                        &**id,
                        details.as_ref().map(Payload::data),
                        at
                    ])?;
                    sql.get(Sql::DeleteRequest)?.execute(params![seq])?;
                    sql.get(Sql::RequestsApplied)?.execute(params![seq])?;
                }
                Write::Stop | Write::Barrier => {}
            }
        }
    }
    tx.commit()?;
    Ok(changed)
}

/// The statements of [`apply`].
#[derive(Clone, Copy)]
enum Sql {
    Insert,
    Started,
    Heartbeat,
    Fold,
    Forget,
    Transition,
    Cancel,
    External,
    DeleteRequest,
    RequestsApplied,
    Prune,
    PruneHeartbeats,
}

const SQL: [&str; 12] = [
    "INSERT OR IGNORE INTO activities (id, type, state, attempt, input, options, details, scheduled_at, next_attempt_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    "UPDATE activities SET state = ?2, attempt = ?3, attempt_started_at = ?4, last_heartbeat_at = NULL WHERE id = ?1",
    "INSERT INTO heartbeats (id, details, at) VALUES (?1, ?2, ?3)
     ON CONFLICT (id) DO UPDATE SET details = coalesce(excluded.details, details), at = excluded.at",
    "UPDATE activities SET details = coalesce(h.details, activities.details), last_heartbeat_at = h.at
     FROM (SELECT details, at FROM heartbeats WHERE id = ?1) AS h WHERE activities.id = ?1",
    "DELETE FROM heartbeats WHERE id = ?1",
    "UPDATE activities SET state = ?2, attempt = ?3, details = coalesce(?4, details), output = ?5,
     failure = coalesce(?6, failure), next_attempt_at = ?7, closed_at = ?8 WHERE id = ?1",
    "UPDATE activities SET cancel_requested = 1 WHERE id = ?1",
    "UPDATE activities SET external_attempt = ?2 WHERE id = ?1",
    "DELETE FROM requests WHERE seq = ?1",
    "INSERT INTO meta (key, value) VALUES ('requests_applied', ?1)
     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
    "DELETE FROM activities WHERE id IN
     (SELECT id FROM activities WHERE closed_at IS NOT NULL AND closed_at < ?1 ORDER BY closed_at, id LIMIT ?2)",
    "DELETE FROM heartbeats WHERE id IN
     (SELECT id FROM activities WHERE closed_at IS NOT NULL AND closed_at < ?1 ORDER BY closed_at, id LIMIT ?2)",
];

/// The statements one transaction of [`apply`] has prepared.
struct Statements<'c> {
    conn: &'c Connection,
    cached: [Option<rusqlite::CachedStatement<'c>>; 12],
}

impl<'c> Statements<'c> {
    fn get(&mut self, s: Sql) -> rusqlite::Result<&mut rusqlite::CachedStatement<'c>> {
        let slot = &mut self.cached[s as usize];
        if slot.is_none() {
            *slot = Some(self.conn.prepare_cached(SQL[s as usize])?);
        }
        Ok(slot.as_mut().expect("prepared above"))
    }
}

/// The columns of an activity row, the latest heartbeat folded in (from `ROW_FROM`).
const ROW_COLUMNS: &str = "a.id, a.type, a.state, a.attempt, a.input, a.options,
    coalesce(h.details, a.details), a.output, a.failure, a.cancel_requested, a.scheduled_at,
    a.attempt_started_at, coalesce(h.at, a.last_heartbeat_at), a.next_attempt_at, a.closed_at";
const ROW_FROM: &str = "activities a LEFT JOIN heartbeats h ON h.id = a.id";

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActivityRow> {
    let state: i64 = r.get(2)?;
    Ok(ActivityRow {
        id: Arc::from(r.get::<_, String>(0)?),
        activity_type: r.get(1)?,
        state: ActivityStatus::from_i64(state).unwrap_or(ActivityStatus::Unknown),
        attempt: r.get(3)?,
        input: r.get(4)?,
        options: r.get(5)?,
        details: r.get(6)?,
        output: r.get(7)?,
        failure: r.get(8)?,
        cancel_requested: r.get::<_, i64>(9)? != 0,
        scheduled_at: r.get(10)?,
        attempt_started_at: r.get(11)?,
        last_heartbeat_at: r.get(12)?,
        next_attempt_at: r.get(13)?,
        closed_at: r.get(14)?,
        // Only recovery reads it (an engine's own file, upgraded to this schema).
        external_attempt: if r.as_ref().column_count() > 15 {
            r.get(15)?
        } else {
            None
        },
    })
}

/// The row of activity `id`, its latest heartbeat folded in.
pub(crate) fn get_row(c: &Connection, id: &str) -> rusqlite::Result<Option<ActivityRow>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {ROW_COLUMNS} FROM {ROW_FROM} WHERE a.id = ?1")
    });
    c.prepare_cached(&SQL)?.query_row([id], row_from).optional()
}

/// Rows in `states` (all when empty), newest first, at most `limit`.
pub(crate) fn list_rows(
    c: &Connection,
    states: &[ActivityStatus],
    limit: usize,
) -> rusqlite::Result<Vec<ActivityRow>> {
    let filter = if states.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = states.iter().map(|s| (*s as i64).to_string()).collect();
        format!("WHERE a.state IN ({})", list.join(","))
    };
    let mut stmt = c.prepare(&format!(
        "SELECT {ROW_COLUMNS} FROM {ROW_FROM} {filter} ORDER BY a.scheduled_at DESC, a.id LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit as i64], row_from)?;
    rows.collect()
}

/// Every activity not yet closed, for recovery (with what only recovery reads).
pub(crate) fn open_rows(c: &Connection) -> rusqlite::Result<Vec<ActivityRow>> {
    let open = [
        ActivityStatus::Scheduled,
        ActivityStatus::Running,
        ActivityStatus::BackingOff,
    ]
    .map(|s| (s as i64).to_string())
    .join(",");
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS}, a.external_attempt FROM {ROW_FROM} WHERE a.state IN ({open}) ORDER BY a.scheduled_at DESC, a.id"
    ))?;
    let rows = stmt.query_map([], row_from)?;
    rows.collect()
}

/// A request another process left in the file (`hb cancel`, a heartbeat by task token).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) seq: i64,
    pub(crate) kind: String,
    pub(crate) activity_id: Option<String>,
    pub(crate) task_token: Option<String>,
    pub(crate) details: Option<Vec<u8>>,
}

/// The newest heartbeat request applied (see the `meta` table).
pub(crate) fn requests_applied(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT value FROM meta WHERE key = 'requests_applied'")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(i64::MIN))
}

/// The requests queued in the file, oldest first (at most 1,000).
pub(crate) fn read_requests(c: &Connection) -> rusqlite::Result<Vec<Request>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, kind, activity_id, task_token, details FROM requests ORDER BY seq LIMIT 1000",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Request {
            seq: r.get(0)?,
            kind: r.get(1)?,
            activity_id: r.get(2)?,
            task_token: r.get(3)?,
            details: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// A read connection shared by describe/list.
pub(crate) struct Reader {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Reader {
    pub(crate) fn new(conn: Connection, path: PathBuf) -> Self {
        Reader {
            conn: Mutex::new(conn),
            path,
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, EngineError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn).map_err(|e| EngineError::sqlite(&self.path, e))
    }

    pub(crate) fn get(&self, id: &str) -> Result<Option<ActivityRow>, EngineError> {
        self.with(|c| get_row(c, id))
    }

    /// Rows in `states` (all when empty), newest first, at most `limit`.
    pub(crate) fn list(
        &self,
        states: &[ActivityStatus],
        limit: usize,
    ) -> Result<Vec<ActivityRow>, EngineError> {
        self.with(|c| list_rows(c, states, limit))
    }

    /// Every activity not yet closed, and the newest request applied (for recovery).
    pub(crate) fn recovery(&self) -> Result<(Vec<ActivityRow>, i64), EngineError> {
        self.with(|c| Ok((open_rows(c)?, requests_applied(c)?)))
    }

    /// Requests other processes left in the file, oldest first.
    pub(crate) fn requests(&self) -> Result<Vec<Request>, EngineError> {
        self.with(read_requests)
    }

    /// `PRAGMA integrity_check` of the file.
    pub(crate) fn integrity_check(&self) -> Result<String, EngineError> {
        self.with(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
    }
}

/// Adds a request row from outside the engine process (the CLI, an external heartbeater).
pub(crate) fn insert_request(
    path: &Path,
    kind: &str,
    activity_id: Option<&str>,
    task_token: Option<&str>,
    details: Option<&[u8]>,
    at: i64,
) -> Result<(), EngineError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| EngineError::sqlite(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| EngineError::sqlite(path, e))?;
    check_identity(&conn, path, false)?;
    conn.execute(
        "INSERT INTO requests (kind, activity_id, task_token, details, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![kind, activity_id, task_token, details, at],
    )
    .map_err(|e| EngineError::sqlite(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hb-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("hb.db")
    }

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_write_connection_syncs_normally_and_fully_when_asked() {
        let path = scratch("sync");
        let conn = open_write(&path).unwrap();
        assert_eq!(synchronous(&conn), 1, "NORMAL by default");
        sync_every_commit(&conn, &path).unwrap();
        assert_eq!(synchronous(&conn), 2, "FULL for power_loss_safe");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    fn heartbeat(within_ms: u64) -> Write {
        Write::Heartbeat {
            id: Arc::from("a"),
            details: None,
            at: 0,
            commit_within: std::time::Duration::from_millis(within_ms),
        }
    }

    #[test]
    fn a_heartbeat_wakes_the_writer_only_when_it_would_commit_too_late() {
        use std::sync::atomic::Ordering::SeqCst;
        let writer = Writer {
            inbox: Arc::new(Inbox::default()),
            thread: std::thread::current(),
        };
        let inbox = &writer.inbox;
        // Gathering heartbeats until 50 ms from now.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        inbox.commit_at.store(inbox.nanos(until), SeqCst);
        assert!(
            matches!(writer.queue(heartbeat(5), None), Ok(true)),
            "due sooner"
        );
        assert!(
            matches!(writer.queue(heartbeat(500), None), Ok(false)),
            "due later"
        );
        // Anything else, or any heartbeat while the writer is idle, wakes it.
        assert!(matches!(writer.queue(Write::Barrier, None), Ok(true)));
        inbox.idle.store(true, SeqCst);
        assert!(matches!(writer.queue(heartbeat(500), None), Ok(true)));
        assert_eq!(inbox.lock().writes.len(), 4);
        // Once closed, writes are refused and their acknowledgements handed back.
        inbox.close();
        let (ack, _rx) = Ack::reply();
        assert!(matches!(
            writer.queue(Write::Barrier, Some(ack)),
            Err(Some(_))
        ));
        assert!(inbox.lock().writes.is_empty());
    }

    #[test]
    fn heartbeats_wait_a_fortieth_of_their_timeout_between_5_and_50_ms() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(heartbeat_commit_within(None), ms(50));
        assert_eq!(heartbeat_commit_within(Some(ms(100))), ms(5));
        assert_eq!(heartbeat_commit_within(Some(ms(400))), ms(10));
        assert_eq!(heartbeat_commit_within(Some(ms(2000))), ms(50));
        assert_eq!(heartbeat_commit_within(Some(ms(3_600_000))), ms(50));
    }
}
