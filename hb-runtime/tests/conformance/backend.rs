//! The three backends behind one face: a [`Bench`] is one scenario's backend (its own engine,
//! engine file or Temporal task queue), with a client (`impl ActivityClient`), workers in this
//! process that shut down gracefully, and a worker that can be killed (a process of its own,
//! or for the in-memory engine a tokio runtime of its own). What differs by nature is in
//! [`Differences`].

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use hb_runtime::BoxFuture;
use hb_runtime::backend::{ClientBackend, StartRequest};
use hb_runtime::client::{
    ActivityClient, ActivityFailure, ClientError, Description, ListFilter, ResetOptions,
    StartOptions,
};
use hb_runtime::engine::{self, Engine, EngineError};
use hb_runtime::temporal::{self, ConnectOptions, Temporal};
use hb_runtime::{Payload, RetryPolicy};

use crate::activities::{AllActivities, Setup};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    InMemory,
    File,
    Temporal,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::InMemory, Kind::File, Kind::Temporal];

    pub fn name(self) -> &'static str {
        match self {
            Kind::InMemory => "in-memory",
            Kind::File => "engine file",
            Kind::Temporal => "temporal",
        }
    }

    /// What this backend does differently by nature; each field is a row of the README's
    /// table of differences.
    pub fn differences(self) -> Differences {
        match self {
            Kind::InMemory | Kind::File => Differences {
                attempt_before_first: 0,
                killed_worker: match self {
                    // The engine lives in the test process, so only the worker can die: its
                    // tokio runtime is shut down, dropping the attempt mid-run.
                    Kind::InMemory => Killed::HeartbeatTimeout,
                    _ => Killed::WorkerLost,
                },
                cancel_within: Duration::from_millis(300),
            },
            Kind::Temporal => Differences {
                attempt_before_first: 1,
                killed_worker: Killed::HeartbeatTimeout,
                // With the next heartbeat: every 0.8 × the 2 s heartbeat timeout at most.
                cancel_within: Duration::from_millis(2_500),
            },
        }
    }
}

/// What a backend does differently by nature (README, "differences"): one field per row.
#[derive(Debug, Clone, Copy)]
pub struct Differences {
    /// `Description::attempt` before an attempt has started (row `Description::attempt`).
    pub attempt_before_first: u32,
    /// How the attempt of a worker that died mid-run is found to have failed (row "a worker
    /// that dies mid-attempt").
    pub killed_worker: Killed,
    /// How soon a cancel reaches a running body (row `cancel`).
    pub cancel_within: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// Reopening the file finds the attempt of the dead process and retries it at once,
    /// failed as `WorkerLost` with its last checkpoint.
    WorkerLost,
    /// The server hears no heartbeat for the heartbeat timeout and fails the attempt with
    /// `Timeout { Heartbeat, last_details }`.
    HeartbeatTimeout,
}

/// One scenario's backend.
pub struct Bench {
    kind: Kind,
    pub diff: Differences,
    /// Unique per scenario and backend: prefixes ids, names the task queue.
    tag: String,
    engine: Mutex<Option<Engine>>,
    file: Option<PathBuf>,
    temporal: Option<(Temporal, String)>,
}

/// Set in a worker process this binary starts of itself: `file PATH` or `temporal URL QUEUE`.
pub const WORKER_PROCESS: &str = "HB_CONFORMANCE_WORKER";

impl Bench {
    pub async fn new(kind: Kind, scenario: &str, env: &crate::Env) -> Bench {
        let tag = format!("{}-{}-{}", scenario, kind_tag(kind), std::process::id());
        let (engine, file, temporal) = match kind {
            Kind::InMemory => (Some(Engine::in_memory().await.unwrap()), None, None),
            Kind::File => {
                let path = env.dir.path().join(format!("{tag}.db"));
                (Some(Engine::open(&path).await.unwrap()), Some(path), None)
            }
            Kind::Temporal => {
                let server = env.server.as_ref().expect("the Temporal server");
                let t = Temporal::connect(ConnectOptions::new(&server.address))
                    .await
                    .expect("connected to the Temporal server");
                (None, None, Some((t, server.url())))
            }
        };
        Bench {
            kind,
            diff: kind.differences(),
            tag,
            engine: Mutex::new(engine),
            file,
            temporal,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// An activity id unique to this scenario and backend.
    pub fn id(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }

    /// Start options every scenario uses: the id, this bench's task queue (the engine ignores
    /// it), a 2 s heartbeat timeout and retries 100 ms apart.
    pub fn opts(&self, id: &str) -> StartOptions {
        StartOptions::id(id)
            .task_queue(&self.tag)
            .heartbeat_timeout(Duration::from_secs(2))
            .retry(RetryPolicy::new().initial_interval(Duration::from_millis(100)))
    }

    pub fn client(&self) -> AnyClient {
        match &self.temporal {
            Some((t, _)) => AnyClient::Temporal(t.client()),
            None => AnyClient::Engine(self.engine().client()),
        }
    }

    fn engine(&self) -> Engine {
        self.engine
            .lock()
            .unwrap()
            .clone()
            .expect("the engine is open (not handed to a worker process)")
    }

    /// A worker in this process running every activity of the suite.
    pub async fn worker(&self) -> AnyWorker {
        self.worker_with(AllActivities).await
    }

    /// A worker in this process set up by `setup`.
    pub async fn worker_with(&self, setup: impl Setup) -> AnyWorker {
        match &self.temporal {
            Some((t, _)) => AnyWorker::Temporal(
                setup
                    .apply(t.worker().task_queue(&self.tag))
                    .spawn()
                    .await
                    .expect("the worker starts"),
            ),
            None => AnyWorker::Engine(
                setup
                    .apply(self.engine().worker())
                    .spawn()
                    .await
                    .expect("the worker starts"),
            ),
        }
    }

    /// A worker that can be killed: in a process of its own, which prints `item N` as
    /// `batch` goes (the engine file is handed to it: every handle and client of this bench
    /// must have been dropped); for the in-memory engine, which lives in this process, on a
    /// tokio runtime of its own.
    pub async fn killable_worker(&self) -> KillableWorker {
        let spec = match (&self.file, &self.temporal) {
            (Some(path), _) => {
                let engine = self.engine.lock().unwrap().take().expect("the engine");
                engine.close().await.expect("the engine closes");
                drop(engine);
                format!("file {}", path.display())
            }
            (_, Some((_, url))) => format!("temporal {url} {}", self.tag),
            (None, None) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let worker = AllActivities.apply(self.engine().worker());
                let handle = rt.spawn(async move { worker.spawn().await.unwrap() });
                // Never shut down: the runtime's end drops it.
                std::mem::forget(handle.await.unwrap());
                return KillableWorker::Runtime(Some(rt));
            }
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(WORKER_PROCESS, spec)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker process");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        KillableWorker::Process { child, lines }
    }

    /// Kills the worker: SIGKILL for a process (an engine file is then opened again here);
    /// the runtime shut down at once, its tasks dropped, for the in-memory engine's.
    ///
    /// Returns how many items `batch` `id` had done when it died (what it printed, or what
    /// its body counted once its runtime had stopped).
    pub async fn kill(&self, mut w: KillableWorker, id: &str) -> u64 {
        let done = match &mut w {
            KillableWorker::Runtime(rt) => {
                // Shut down on a thread of its own (not on an async one), waiting for the
                // body's thread to let go of it.
                let rt = rt.take().unwrap();
                let (tx, stopped) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    rt.shutdown_timeout(Duration::from_secs(5));
                    let _ = tx.send(());
                });
                stopped.await.unwrap();
                crate::activities::items_done(id)
            }
            KillableWorker::Process { child, lines } => {
                child.kill().unwrap();
                child.wait().unwrap();
                // What it printed before it died (the pipe ends with it).
                let mut done = 0;
                while let Some(line) = lines.recv().await {
                    if let Some(n) = line.strip_prefix("item ").and_then(|s| s.parse().ok()) {
                        done = n;
                    }
                }
                done
            }
        };
        if let Some(path) = &self.file {
            let engine = open_retrying(path).await;
            *self.engine.lock().unwrap() = Some(engine);
        }
        done
    }

    /// How [`kill`](Self::kill) kills, for the matrix.
    pub fn kill_means(&self) -> &'static str {
        match self.kind() {
            Kind::InMemory => "its worker's runtime dropped",
            Kind::File => "SIGKILL of the process owning the file, reopened",
            Kind::Temporal => "SIGKILL of the worker process",
        }
    }
}

fn kind_tag(kind: Kind) -> &'static str {
    match kind {
        Kind::InMemory => "mem",
        Kind::File => "file",
        Kind::Temporal => "tmp",
    }
}

/// Opens `path`, waiting (bounded) while another engine of this or another process releases
/// it.
async fn open_retrying(path: &std::path::Path) -> Engine {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match Engine::open(path).await {
            Ok(e) => return e,
            Err(EngineError::Locked { .. }) if tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}

/// A worker that [`Bench::kill`] kills.
pub enum KillableWorker {
    Process {
        child: Child,
        lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    },
    /// Taken when killed.
    Runtime(Option<tokio::runtime::Runtime>),
}

impl KillableWorker {
    /// Waits (bounded) until `batch` (the only activity this worker runs, `id`) has done at
    /// least `n` items; returns how many it had.
    pub async fn items_done(&mut self, id: &str, n: u64) -> u64 {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let done = match self {
                KillableWorker::Process { lines, .. } => {
                    let line = tokio::time::timeout_at(give_up, lines.recv())
                        .await
                        .unwrap_or_else(|_| panic!("the worker did not reach item {n}"))
                        .expect("the worker process ended");
                    line.strip_prefix("item ").and_then(|s| s.parse().ok())
                }
                KillableWorker::Runtime(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    assert!(
                        tokio::time::Instant::now() < give_up,
                        "the worker did not reach item {n}"
                    );
                    Some(crate::activities::items_done(id))
                }
            };
            if let Some(done) = done
                && done >= n
            {
                return done;
            }
        }
    }
}

impl Drop for KillableWorker {
    fn drop(&mut self) {
        match self {
            KillableWorker::Process { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            // Not dropped: that would block this (async) thread.
            KillableWorker::Runtime(rt) => {
                if let Some(rt) = rt.take() {
                    rt.shutdown_background();
                }
            }
        }
    }
}

/// The body of a worker process (see [`WORKER_PROCESS`]): runs every activity until killed.
pub fn worker_process(spec: &str) {
    crate::activities::PRINT_ITEMS.store(true, std::sync::atomic::Ordering::Relaxed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let parts: Vec<&str> = spec.splitn(3, ' ').collect();
        let _worker = match parts[..] {
            ["file", path] => {
                let engine = open_retrying(std::path::Path::new(path)).await;
                let w = AllActivities.apply(engine.worker()).spawn().await.unwrap();
                AnyWorker::Engine(w)
            }
            ["temporal", url, queue] => {
                let t = Temporal::connect(ConnectOptions::new(url)).await.unwrap();
                let w = AllActivities
                    .apply(t.worker().task_queue(queue))
                    .spawn()
                    .await
                    .unwrap();
                AnyWorker::Temporal(w)
            }
            _ => panic!("bad {WORKER_PROCESS}: {spec}"),
        };
        std::future::pending::<()>().await
    });
}

pub enum AnyWorker {
    Engine(engine::WorkerHandle),
    Temporal(temporal::WorkerHandle),
}

impl AnyWorker {
    /// Graceful: running attempts get the worker's shutdown grace, then are cancelled with
    /// `WorkerShutdown`.
    pub async fn shutdown(self) {
        match self {
            AnyWorker::Engine(w) => w.shutdown().await,
            AnyWorker::Temporal(w) => w.shutdown().await,
        }
    }
}

/// The client of either backend: the scenarios hold only `impl ActivityClient`.
#[derive(Debug, Clone)]
pub enum AnyClient {
    Engine(engine::Client),
    Temporal(temporal::Client),
}

impl ActivityClient for AnyClient {}

macro_rules! delegate {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            AnyClient::Engine($c) => $e,
            AnyClient::Temporal($c) => $e,
        }
    };
}

impl ClientBackend for AnyClient {
    fn start_activity(&self, request: StartRequest) -> BoxFuture<'_, Result<(), ClientError>> {
        delegate!(self, c => c.start_activity(request))
    }

    fn activity_output<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Payload, ActivityFailure>> {
        delegate!(self, c => c.activity_output(id))
    }

    fn describe_activity<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Description, ClientError>> {
        delegate!(self, c => c.describe_activity(id))
    }

    fn cancel_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        delegate!(self, c => c.cancel_activity(id))
    }

    fn pause_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        delegate!(self, c => c.pause_activity(id))
    }

    fn unpause_activity<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        delegate!(self, c => c.unpause_activity(id))
    }

    fn reset_activity<'a>(
        &'a self,
        id: &'a str,
        options: ResetOptions,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        delegate!(self, c => c.reset_activity(id, options))
    }

    fn list_activities(
        &self,
        filter: ListFilter,
    ) -> BoxFuture<'_, Result<Vec<Description>, ClientError>> {
        delegate!(self, c => c.list_activities(filter))
    }
}
