//! Opening an engine: over a file (the writer lock taken, the file checked, what it holds open
//! read back) or in memory, and starting what runs beside it: the writer thread, the deadline
//! queue, the polling of requests and the pruning of closed activities.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use super::background::{poll_requests, prune, sample_metrics};
use super::core::Core;
use super::store::{self, Reader};
use super::{Engine, EngineError, EngineOptions, Inner, clock, release, timers};

impl Engine {
    /// Opens (or creates, mode 0600) the engine file at `path` and recovers what was running.
    ///
    /// # Errors
    /// [`EngineError::Locked`] when another process has it open, [`EngineError::Foreign`],
    /// [`EngineError::Corrupt`] or [`EngineError::NewerSchema`] for a file hb will not touch,
    /// [`EngineError::Storage`] for I/O failures.
    ///
    /// # Examples
    ///
    /// What a file holds outlives the engine that wrote it:
    ///
    /// ```
    /// use hb_runtime::client::{ActivityStatus, StartOptions};
    /// use hb_runtime::client::ClientError;
    /// use hb_runtime::engine::{Engine, EngineError};
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    ///     Ok(n * 2)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("hb-doc-open-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("hb.db");
    ///
    /// // Started with no worker to run it; one engine at a time writes the file.
    /// let engine = Engine::open(&path).await?;
    /// assert_eq!(engine.path(), path);
    /// engine.client().start(double, 21, StartOptions::id("d")).await?;
    /// assert!(matches!(Engine::open(&path).await, Err(EngineError::Locked { .. })));
    /// drop(engine);
    ///
    /// // Reopened, the file still has it waiting; a worker runs it now.
    /// let engine = Engine::open(&path).await?;
    /// let client = engine.client();
    /// assert_eq!(client.describe("d").await?.status, ActivityStatus::Scheduled);
    /// let _worker = engine.worker().register(double).spawn().await?;
    /// assert_eq!(client.handle(double, "d").result().await?, 42);
    /// # _worker.shutdown().await;
    /// # drop((client, engine));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<Engine, EngineError> {
        Self::open_with(path, EngineOptions::default()).await
    }

    /// [`Engine::open`] with options.
    ///
    /// ```
    /// use hb_runtime::client::StartOptions;
    /// use hb_runtime::client::ClientError;
    /// use hb_runtime::engine::{Engine, EngineError, EngineOptions};
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn measure(_ctx: ActivityContext, text: String) -> Result<usize, ActivityError> {
    ///     Ok(text.len())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("hb-doc-open-with-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("hb.db");
    /// let options = EngineOptions::default().max_file_size(256 << 10);
    /// let engine = Engine::open_with(&path, options).await?;
    /// let client = engine.client();
    /// client.start(measure, "small".into(), StartOptions::id("small")).await?;
    ///
    /// // A start that does not fit under the cap is refused, and nothing of it is stored.
    /// let big = "x".repeat(1 << 20);
    /// let refused = client.start(measure, big, StartOptions::id("big")).await;
    /// assert!(matches!(refused, Err(ClientError::Engine(EngineError::Storage { .. }))));
    /// assert!(matches!(client.describe("big").await, Err(ClientError::NotFound { .. })));
    /// assert!(client.describe("small").await.is_ok());
    /// # drop((client, engine));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let path = path.as_ref().to_path_buf();
        // Everything that touches the disk runs on a blocking thread, recovery's read included.
        let opened = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
            // An engine of this process that had the file may still be releasing it.
            release::wait(&release::key(&path));
            let lock_existed = store::lock_path(&path).exists();
            let lock = store::lock(&path)?;
            let opened = (|| {
                let write = store::open_write(&path)?;
                if options.power_loss_safe {
                    store::sync_every_commit(&write, &path)?;
                }
                if let Some(max) = options.max_file_size {
                    store::limit_size(&write, &path, max)?;
                }
                let read = store::open_read(&path)?;
                let reader = Reader::new(read, path.clone());
                // Everything is read (and a damaged file refused) before the writer starts.
                let rows = reader.recovery()?;
                Ok((write, reader, rows))
            })();
            match opened {
                Ok((write, reader, rows)) => Ok((path, lock, write, reader, rows)),
                Err(e) => {
                    // Leave nothing behind beside a file we refused.
                    drop(lock);
                    if !lock_existed {
                        let _ = std::fs::remove_file(store::lock_path(&path));
                    }
                    Err(e)
                }
            }
        })
        .await
        .map_err(|_| EngineError::Closed)??;
        let (path, lock, write, reader, rows) = opened;
        Ok(Self::start(path, Some(lock), write, reader, rows, &options))
    }

    /// An engine in memory, for tests: the same engine, nothing on disk.
    ///
    /// Each call is a new, empty engine:
    ///
    /// ```
    /// use hb_runtime::client::StartOptions;
    /// use hb_runtime::client::ClientError;
    /// use hb_runtime::engine::{Engine, EngineError};
    /// use hb_runtime::prelude::*;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn noop(_ctx: ActivityContext) -> Result<(), ActivityError> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let a = Engine::in_memory().await?;
    /// let b = Engine::in_memory().await?;
    /// a.client().start(noop, (), StartOptions::id("job")).await?;
    /// assert!(a.client().describe("job").await.is_ok());
    /// assert!(matches!(b.client().describe("job").await, Err(ClientError::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn in_memory() -> Result<Engine, EngineError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let uri = format!(
            "file:hb-memory-{}-{n}?mode=memory&cache=shared",
            std::process::id()
        );
        let path = PathBuf::from(&uri);
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let write = rusqlite::Connection::open_with_flags(&uri, flags)
            .map_err(|e| EngineError::sqlite(&path, e))?;
        store::init(&write, &path)?;
        let read = rusqlite::Connection::open_with_flags(&uri, flags)
            .map_err(|e| EngineError::sqlite(&path, e))?;
        // Connections to one in-memory database share its cache, where a reader would otherwise
        // fail at once (SQLITE_LOCKED, no busy wait) while the writer holds its tables.
        read.pragma_update(None, "read_uncommitted", true)
            .map_err(|e| EngineError::sqlite(&path, e))?;
        // A new database: nothing to recover.
        let reader = Reader::new(read, path.clone());
        Ok(Self::start(
            path,
            None,
            write,
            reader,
            store::Recovered {
                requests_applied: i64::MIN,
                ..Default::default()
            },
            &EngineOptions::default(),
        ))
    }

    /// Starts the engine over an opened file: its writer, deadline queue and request polling,
    /// and what it holds open recovered. Must run on a tokio runtime.
    fn start(
        path: PathBuf,
        lock: Option<store::FileLock>,
        write: rusqlite::Connection,
        reader: Reader,
        recovered: store::Recovered,
        options: &EngineOptions,
    ) -> Engine {
        let reader = Arc::new(reader);
        let (writer, writer_thread) = store::spawn_writer(write, path.clone(), lock);
        let (timers, timer_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            path,
            writer,
            reader,
            core: Mutex::new(Core::new(Arc::new(clock::SystemClock))),
            ready: Notify::new(),
            timers,
            writer_thread: Mutex::new(Some(writer_thread)),
            stop: tokio_util::sync::CancellationToken::new(),
            timers_stop: tokio_util::sync::CancellationToken::new(),
            workers: tokio_util::task::TaskTracker::new(),
            pending_timers: Arc::default(),
            checkpoint_interval: options.checkpoint_interval,
            watchers: Arc::default(),
        });
        let weak = Arc::downgrade(&inner);
        inner.writer.route(Box::new(move |acks| {
            // Callers are answered once this thread has let go of the engine: one that drops
            // its last handle on hearing the answer then drops it itself (its file released
            // as `Drop for Inner` says), not on this thread a moment later.
            let answers = match weak.upgrade() {
                Some(inner) => inner.committed(acks),
                None => return,
            };
            answers.send();
        }));
        let store::Recovered {
            rows,
            requests_applied,
            queued,
        } = recovered;
        let recovered = rows.len();
        inner.change(|core, fx| {
            core.recover(rows, requests_applied, fx);
            // Applied before any worker can take an attempt; the polling reads them again
            // and finds them applied.
            for request in queued {
                core.request(request, fx);
            }
        });
        if recovered > 0 {
            tracing::info!(path = %inner.path.display(), recovered, "engine recovered open activities");
        }
        timers::spawn(
            Arc::downgrade(&inner),
            timer_rx,
            inner.pending_timers.clone(),
            inner.timers_stop.clone(),
        );
        tokio::spawn(poll_requests(Arc::downgrade(&inner), inner.stop.clone()));
        tokio::spawn(sample_metrics(Arc::downgrade(&inner), inner.stop.clone()));
        if let Some(retention) = options.retention {
            tokio::spawn(prune(Arc::downgrade(&inner), inner.stop.clone(), retention));
        }
        Engine { inner }
    }
}
