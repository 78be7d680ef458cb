//! The options of an engine ([`EngineOptions`]): durability, the file's size cap, how often
//! checkpoints are stored, and how long closed activities are kept.

use std::time::Duration;

/// How often a running attempt's changed checkpoint is stored by default (see
/// [`EngineOptions::checkpoint_interval`]).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a closed activity stays in the file by default (see [`EngineOptions::retention`]).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Options of [`Engine::open_with`](super::Engine::open_with).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    pub(super) max_file_size: Option<u64>,
    pub(super) power_loss_safe: bool,
    pub(super) checkpoint_interval: Duration,
    pub(super) retention: Option<Duration>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_file_size: None,
            power_loss_safe: false,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            retention: Some(DEFAULT_RETENTION),
        }
    }
}

impl EngineOptions {
    /// How often a running attempt's checkpoint is stored when it changed (default 1 s),
    /// whatever its heartbeat interval: what bounds the work a crash loses, and how fresh
    /// `describe()` and `hb ls` are from another process. An unchanged checkpoint is not
    /// written again; liveness heartbeats still come every heartbeat interval. An interval at
    /// least as long as an activity's heartbeat interval stores its checkpoints with its
    /// heartbeats only.
    ///
    /// ```
    /// use std::time::Duration;
    /// let o = hb_runtime::engine::EngineOptions::default()
    ///     .checkpoint_interval(Duration::from_millis(250));
    /// # let _ = o;
    /// ```
    pub fn checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_interval = every;
        self
    }

    /// Caps the file at about `bytes`: a write that would grow it further fails as a full disk
    /// would ([`EngineError::Storage`](super::EngineError::Storage), nothing of that write
    /// stored), instead of filling the disk.
    ///
    /// ```
    /// let o = hb_runtime::engine::EngineOptions::default().max_file_size(64 << 20);
    /// # let _ = o;
    /// ```
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = Some(bytes);
        self
    }

    /// Survives power loss and operating-system crashes too, not only the process dying:
    /// every commit is flushed to the disk (`fsync` of the WAL; SQLite's
    /// `synchronous = FULL`) before what it carries is acknowledged. Off by default
    /// (`synchronous = NORMAL`: safe against `kill -9`; a power loss may take back the last
    /// commits). Each commit then costs a disk flush; the writer's batching keeps that to one
    /// flush per batch, not per activity.
    ///
    /// ```
    /// let o = hb_runtime::engine::EngineOptions::default().power_loss_safe(true);
    /// # let _ = o;
    /// ```
    pub fn power_loss_safe(mut self, on: bool) -> Self {
        self.power_loss_safe = on;
        self
    }

    /// How long a closed activity (completed, failed, cancelled, timed out) stays in the file,
    /// counted from when it closed (default 7 days), like a Temporal namespace's retention
    /// period. Older ones are deleted in the background, a thousand at a time between the
    /// engine's other writes; `describe`, `result` and `list` then no longer find them, and a
    /// start with the same id starts a new activity. Open activities are never deleted. The
    /// space they took is reused by later writes (the file stops growing; it does not shrink).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hb_runtime::engine::EngineOptions;
    /// let one_day = EngineOptions::default().retention(Duration::from_secs(24 * 3600));
    /// let forever = EngineOptions::default().keep_closed_forever();
    /// # let _ = (one_day, forever);
    /// ```
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = Some(keep);
        self
    }

    /// Never deletes closed activities (the file grows with every activity ever started).
    pub fn keep_closed_forever(mut self) -> Self {
        self.retention = None;
        self
    }
}
