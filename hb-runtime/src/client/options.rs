//! How to start an activity, on every backend.

use std::time::Duration;

use crate::options::{ActivityOptions, RetryPolicy};

/// What a start does when an activity with its id exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IfExists {
    /// Return a handle on the existing activity, running or closed, and ignore this start's
    /// input: starting is idempotent by id (the default on every backend).
    #[default]
    UseExisting,
    /// Refuse with [`ClientError::AlreadyStarted`](super::ClientError::AlreadyStarted).
    Fail,
}

/// How to start an activity: its id (the idempotency key), per-start overrides of the
/// activity's own `#[activity(...)]` options, and where it runs.
///
/// ```
/// use hb_runtime::client::{IfExists, StartOptions};
/// use hb_runtime::RetryPolicy;
/// use std::time::Duration;
///
/// let o = StartOptions::id("batch-42")
///     .heartbeat_timeout(Duration::from_secs(30))
///     .retry(RetryPolicy::new().max_attempts(3))
///     .task_queue("batch-queue") // Temporal: which workers run it
///     .fail_if_exists();
/// assert_eq!(o.activity_id(), "batch-42");
/// assert_eq!(o.if_exists, IfExists::Fail);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StartOptions {
    /// The activity id: unique per backend (per namespace on Temporal).
    pub id: String,
    /// Overrides `heartbeat_timeout`.
    pub heartbeat_timeout: Option<Duration>,
    /// Overrides `start_to_close_timeout`.
    pub start_to_close_timeout: Option<Duration>,
    /// Overrides `schedule_to_close_timeout`.
    pub schedule_to_close_timeout: Option<Duration>,
    /// Overrides the retry policy.
    pub retry: Option<RetryPolicy>,
    /// The task queue, on backends that have them (Temporal; default
    /// `hb_runtime::temporal::DEFAULT_TASK_QUEUE` there, the
    /// default of its workers too). The engine has no queues and ignores it.
    pub task_queue: Option<String>,
    /// What to do when the id exists.
    pub if_exists: IfExists,
}

impl StartOptions {
    /// Start with activity id `id`.
    pub fn id(id: impl Into<String>) -> Self {
        StartOptions {
            id: id.into(),
            heartbeat_timeout: None,
            start_to_close_timeout: None,
            schedule_to_close_timeout: None,
            retry: None,
            task_queue: None,
            if_exists: IfExists::UseExisting,
        }
    }

    /// The activity id.
    pub fn activity_id(&self) -> &str {
        &self.id
    }

    /// Overrides `heartbeat_timeout`.
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = Some(d);
        self
    }

    /// Overrides `start_to_close_timeout`.
    pub fn start_to_close_timeout(mut self, d: Duration) -> Self {
        self.start_to_close_timeout = Some(d);
        self
    }

    /// Overrides `schedule_to_close_timeout`.
    pub fn schedule_to_close_timeout(mut self, d: Duration) -> Self {
        self.schedule_to_close_timeout = Some(d);
        self
    }

    /// Overrides the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Runs it on `queue` (Temporal; the engine ignores it).
    pub fn task_queue(mut self, queue: impl Into<String>) -> Self {
        self.task_queue = Some(queue.into());
        self
    }

    /// What to do when the id exists (default [`IfExists::UseExisting`]).
    pub fn if_exists(mut self, policy: IfExists) -> Self {
        self.if_exists = policy;
        self
    }

    /// Refuse with [`ClientError::AlreadyStarted`](super::ClientError::AlreadyStarted) when
    /// the id exists: `if_exists(IfExists::Fail)`.
    pub fn fail_if_exists(self) -> Self {
        self.if_exists(IfExists::Fail)
    }

    /// The activity's own options with this start's overrides applied.
    pub(crate) fn apply_to(&self, mut o: ActivityOptions) -> ActivityOptions {
        if let Some(d) = self.heartbeat_timeout {
            o.heartbeat_timeout = Some(d);
        }
        if let Some(d) = self.start_to_close_timeout {
            o.start_to_close_timeout = Some(d);
        }
        if let Some(d) = self.schedule_to_close_timeout {
            o.schedule_to_close_timeout = Some(d);
        }
        if let Some(r) = &self.retry {
            o.retry = *r;
        }
        o
    }
}

/// How [`ActivityClient::reset`](super::ActivityClient::reset) starts an activity again, as
/// Temporal's activity reset does: at attempt 1, from the kept checkpoint by default.
///
/// ```
/// use hb_runtime::client::ResetOptions;
///
/// let o = ResetOptions::new();
/// assert!(o.keep_checkpoint && !o.keep_paused);
/// let o = ResetOptions::new().clear_checkpoint().keep_paused();
/// assert!(!o.keep_checkpoint && o.keep_paused);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResetOptions {
    /// Start again from the last checkpoint (default `true`); `false` starts from none
    /// (Temporal: `--clear-heartbeat-details`).
    pub keep_checkpoint: bool,
    /// A paused activity stays paused after the reset (default `false`: a reset unpauses;
    /// Temporal: `--keep-paused`).
    pub keep_paused: bool,
}

impl Default for ResetOptions {
    fn default() -> Self {
        ResetOptions::new()
    }
}

impl ResetOptions {
    /// Keep the checkpoint; unpause a paused activity.
    pub fn new() -> Self {
        ResetOptions {
            keep_checkpoint: true,
            keep_paused: false,
        }
    }

    /// Start again without the checkpoint (the first attempt's body gets the default).
    pub fn clear_checkpoint(mut self) -> Self {
        self.keep_checkpoint = false;
        self
    }

    /// Leave a paused activity paused (its attempt count is still reset).
    pub fn keep_paused(mut self) -> Self {
        self.keep_paused = true;
        self
    }
}
