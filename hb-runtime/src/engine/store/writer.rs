//! The writer thread: the one owner of the write connection. Writes are queued with a push
//! under a short lock; the thread takes every write waiting, commits them in one transaction
//! and acknowledges them. Heartbeats alone may wait a few milliseconds for others to share
//! their commit; anything else is committed at once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;

use super::super::core::{Ack, Write};
use super::super::error::EngineError;
use super::apply::{apply, commit};
use super::lock::FileLock;

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
    let metrics = crate::metrics::WriterMetrics::new();
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
            let started = std::time::Instant::now();
            let applied = apply(&mut conn, b).map_err(|e| EngineError::sqlite(&path, e));
            metrics.committed(b.len(), started.elapsed(), applied.is_ok());
            applied
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

#[cfg(test)]
mod tests {
    use super::*;

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
