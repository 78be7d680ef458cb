//! The worker builder both backends share: which activities a worker runs, how many at once,
//! the `#[state]` it provides, its shutdown grace and its interceptors.
//!
//! `engine.worker()` and `Temporal::worker()` (feature `temporal`) return a [`Worker`] of
//! their backend; its setters are the same on both, and `spawn` starts it there.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::activity::{Activity, IntoActivity};
use crate::intercept::Interceptor;
use crate::runner::DynActivity;
use crate::state::{MissingState, StateMap};

/// A worker being configured for backend `B`: register activities, set limits, then `spawn`
/// it (`spawn` is the backend's: see `hb_runtime::engine` and `hb_runtime::temporal`).
///
/// ```
/// use hb_runtime::client::{ActivityClient, StartOptions};
/// use hb_runtime::engine::Engine;
/// use hb_runtime::prelude::*;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct Greeting(String);
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn greet(ctx: ActivityContext, #[state] g: Arc<Greeting>, name: String) -> Result<String, ActivityError> {
///     Ok(format!("{} {name}", g.0))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let worker = engine
///     .worker()
///     .register(greet)
///     .state(Arc::new(Greeting("hello".into())))
///     .max_concurrent(16)
///     .shutdown_grace(Duration::from_secs(5))
///     .spawn()
///     .await?;
/// let h = engine.client().start(greet, "hb".to_string(), StartOptions::id("g1")).await?;
/// assert_eq!(h.result().await?, "hello hb");
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
#[must_use = "a worker does nothing until it is spawned"]
pub struct Worker<B> {
    pub(crate) backend: B,
    pub(crate) config: WorkerConfig,
}

/// What a [`Worker`] was configured with; the backends' `spawn` reads it.
pub(crate) struct WorkerConfig {
    pub(crate) activities: HashMap<&'static str, Arc<dyn DynActivity>>,
    /// Names registered more than once (refused at spawn).
    duplicates: Vec<&'static str>,
    pub(crate) max_concurrent: usize,
    pub(crate) state: StateMap,
    pub(crate) shutdown_grace: Duration,
    pub(crate) interceptors: Vec<Arc<dyn Interceptor>>,
    /// The task queue, on backends that have them.
    pub(crate) task_queue: Option<String>,
}

impl<B: fmt::Debug> fmt::Debug for Worker<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.config.activities.keys().collect();
        names.sort();
        f.debug_struct("Worker")
            .field("backend", &self.backend)
            .field("activities", &names)
            .field("max_concurrent", &self.config.max_concurrent)
            .field("state", &self.config.state)
            .field("shutdown_grace", &self.config.shutdown_grace)
            .field("task_queue", &self.config.task_queue)
            .finish_non_exhaustive()
    }
}

impl<B> Worker<B> {
    #[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
    pub(crate) fn new(backend: B) -> Self {
        Worker {
            backend,
            config: WorkerConfig {
                activities: HashMap::new(),
                duplicates: Vec::new(),
                max_concurrent: 100,
                state: StateMap::new(),
                shutdown_grace: Duration::from_secs(10),
                interceptors: Vec::new(),
                task_queue: None,
            },
        }
    }

    /// Runs `activity` (an `#[activity]` function's name). Registering two activities of one
    /// name (or one twice) makes `spawn` fail with [`ConfigError::Duplicate`].
    pub fn register<F: IntoActivity>(mut self, activity: F) -> Self {
        let name = <F::Activity as Activity>::NAME;
        let previous = self
            .config
            .activities
            .insert(name, Arc::new(activity.into_activity()));
        if previous.is_some() && !self.config.duplicates.contains(&name) {
            self.config.duplicates.push(name);
        }
        self
    }

    /// Runs at most `n` attempts at once (default 100; at least 1).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        // A semaphore's limit (the engine's shutdown waits for all permits at once, as a u32).
        self.config.max_concurrent = n.clamp(
            1,
            tokio::sync::Semaphore::MAX_PERMITS.min(u32::MAX as usize),
        );
        self
    }

    /// Provides a resource activities take as a `#[state]` parameter.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.config.state.insert(value);
        self
    }

    /// How long a stopping worker lets running attempts finish before cancelling them with
    /// [`CancelReason::WorkerShutdown`](crate::CancelReason::WorkerShutdown) (default 10 s).
    /// The backend retries them, from their last checkpoint.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Adds an interceptor around every attempt.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.config.interceptors.push(Arc::new(interceptor));
        self
    }
}

impl WorkerConfig {
    /// What every backend refuses to spawn: no activity, one registered twice, a `#[state]`
    /// the worker was not given.
    #[cfg_attr(not(any(feature = "engine", feature = "temporal")), allow(dead_code))]
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.activities.is_empty() {
            return Err(ConfigError::NoActivity);
        }
        if let Some(name) = self.duplicates.first() {
            return Err(ConfigError::Duplicate {
                activity_type: (*name).to_owned(),
            });
        }
        for a in self.activities.values() {
            a.check_state(&self.state)?;
        }
        Ok(())
    }
}

/// Why a worker's configuration was refused at `spawn`, on every backend.
///
/// ```
/// use hb_runtime::engine::{Engine, EngineError};
/// use hb_runtime::prelude::*;
/// use hb_runtime::worker::ConfigError;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let twice = engine.worker().register(double).register(double).spawn().await;
/// assert!(matches!(
///     twice,
///     Err(EngineError::Config(ConfigError::Duplicate { ref activity_type })) if activity_type == "double"
/// ));
/// let none = engine.worker().spawn().await;
/// assert!(matches!(none, Err(EngineError::Config(ConfigError::NoActivity))));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No activity was registered.
    #[error("no activity registered: call .register(..) before .spawn()")]
    NoActivity,
    /// Two registered activities have one name (or one was registered twice): a worker runs
    /// one activity per name.
    #[error(
        "activity `{activity_type}` was registered twice: a worker runs one activity per name \
         (two `#[activity]` functions of one name need `#[activity(name = \"...\")]`)"
    )]
    Duplicate {
        /// The name.
        activity_type: String,
    },
    /// A registered activity takes a `#[state]` the worker was not given.
    #[error(transparent)]
    MissingState(#[from] MissingState),
}
