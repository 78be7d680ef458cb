//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: install any recorder
//! (`metrics-exporter-prometheus`, an OpenTelemetry bridge, ...) before opening engines and
//! starting workers, and hb reports to it. Without a recorder every metric is a no-op.
//!
//! The activity metrics are named after the Temporal SDK's (`temporal_activity_execution_latency`
//! is [`ACTIVITY_EXECUTION_LATENCY`] here), with the prefix `hb_`, so a dashboard built for
//! Temporal ports by changing the prefix. They are labelled `activity_type`, and on Temporal
//! also `task_queue`; latencies are histograms in seconds. The heartbeat metrics are hb's own:
//! no SDK reports them.
//!
//! | metric | kind | labels | what it counts |
//! |---|---|---|---|
//! | [`ACTIVITY_STARTED`] | counter | | attempts started |
//! | [`ACTIVITY_RETRIED`] | counter | | attempts started after a first (attempt > 1) |
//! | [`ACTIVITY_COMPLETED`] | counter | | attempts that returned `Ok` |
//! | [`ACTIVITY_EXECUTION_FAILED`] | counter | `error_type` | attempts that failed (not cancelled) |
//! | [`ACTIVITY_CANCELLED`] | counter | `reason` | attempts that stopped on a cancel (`requested`, `timed_out`, `worker_shutdown`, `paused`, `not_found`, `reset`) |
//! | [`ACTIVITY_TIMED_OUT`] | counter | `kind` | attempts the engine timed out (`heartbeat`, `start_to_close`, `schedule_to_close`) |
//! | [`ACTIVITY_EXECUTION_LATENCY`] | histogram (s) | | an attempt's run, start to report, any outcome |
//! | [`ACTIVITY_SCHEDULE_TO_START_LATENCY`] | histogram (s) | | an attempt's wait for a worker |
//! | [`ACTIVITY_SUCCEED_ENDTOEND_LATENCY`] | histogram (s) | | first scheduled to success, across attempts (recorded by the worker that ran the last attempt on Temporal, by the engine on the engine) |
//! | [`HEARTBEATS_SENT`] | counter | | heartbeats the pump sent (delivered or not) |
//! | [`HEARTBEAT_FAILURES`] | counter | | heartbeats the backend did not take (retried next interval) |
//! | [`CHECKPOINT_BYTES`] | histogram (bytes) | | the encoded checkpoint each heartbeat carried |
//! | [`STALLS_DETECTED`] | counter | | `stall_timeout` passed without a checkpoint (heartbeats stop) |
//! | [`BLOCKED_EXECUTOR_WARNINGS`] | counter | | the body blocked or starved its executor for a heartbeat interval |
//! | [`CANCEL_DELIVERY_LATENCY`] | histogram (s) | | a cancel reaching the worker to the attempt's stop |
//! | [`ENGINE_OPEN_ACTIVITIES`] | gauge | | open activities of an engine |
//! | [`ENGINE_COMMIT_LATENCY`] | histogram (s) | | one transaction of the engine's writer |
//! | [`ENGINE_COMMIT_BATCH_SIZE`] | histogram | | writes in that transaction |
//! | [`ENGINE_WRITE_FAILURES`] | counter | | transactions that failed |
//! | [`ENGINE_FILE_SIZE`] | gauge (bytes) | | the engine's file with its write-ahead log (not for `Engine::in_memory`) |
//! | [`WORKER_TASK_SLOTS_USED`] | gauge | `worker` | attempts a worker is running |
//! | [`WORKER_TASK_SLOTS_AVAILABLE`] | gauge | `worker` | attempts it can still take |
//!
//! The engine's and the workers' gauges are sampled once a second. A worker's gauges carry
//! `worker` (its activity types, or its task queue on Temporal) instead of `activity_type`.
//!
//! On Temporal, a timeout is decided by the server: a worker sees it, if at all, as a cancel
//! (`hb_activity_cancelled{reason="timed_out"}`); the server's own metrics count them. Core's
//! metrics (`temporal_activity_poll_no_task`, `temporal_worker_task_slots_used`,
//! `temporal_request`, ...) go through the same recorder.
//!
//! Handles are made when an engine opens (its own metrics), when a worker starts (its slots)
//! and when an activity type's first attempt starts (the activity metrics), as the facade
//! wants: a recorder installed after them does not see them. An attempt the engine times out
//! while it still runs counts twice, as it should: once in [`ACTIVITY_TIMED_OUT`] (the
//! engine's decision) and once in [`ACTIVITY_CANCELLED`] with `reason="timed_out"` (the
//! attempt stopping). Two engines, or two workers of the same types, in one process share
//! their gauges' series.
//!
//! ```
//! use hb_runtime::client::StartOptions;
//! use hb_runtime::engine::Engine;
//! use hb_runtime::prelude::*;
//!
//! #[activity(heartbeat_timeout = "10s")]
//! async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
//!     Ok(n * 2)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any recorder; this one keeps the values in memory (metrics-util's).
//! let recorder = metrics_util::debugging::DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::set_global_recorder(recorder)?;
//!
//! let engine = Engine::in_memory().await?;
//! let _worker = engine.worker().register(double).spawn().await?;
//! let handle = engine.client().start(double, 4, StartOptions::id("d-1")).await?;
//! assert_eq!(handle.result().await?, 8);
//!
//! let completed = snapshotter.snapshot().into_vec().into_iter().any(|(key, _, _, _)| {
//!     key.key().name() == hb_runtime::metrics::ACTIVITY_COMPLETED
//! });
//! assert!(completed);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ::metrics::{Counter, Histogram, Label, Unit};

use crate::error::CancelReason;

/// Attempts started (counter).
pub const ACTIVITY_STARTED: &str = "hb_activity_started";
/// Attempts started after a first one: retries, and the attempts after a pause or a worker's
/// loss (counter).
pub const ACTIVITY_RETRIED: &str = "hb_activity_retried";
/// Attempts that completed with an output (counter).
pub const ACTIVITY_COMPLETED: &str = "hb_activity_completed";
/// Attempts that failed, by `error_type` (counter). Temporal: `activity_execution_failed`.
pub const ACTIVITY_EXECUTION_FAILED: &str = "hb_activity_execution_failed";
/// Attempts that stopped on a cancel, by `reason` (counter).
pub const ACTIVITY_CANCELLED: &str = "hb_activity_cancelled";
/// Attempts the embedded engine timed out, by `kind` (counter).
pub const ACTIVITY_TIMED_OUT: &str = "hb_activity_timed_out";
/// How long an attempt ran, from its start to its report, whatever its outcome (histogram,
/// seconds). Temporal: `activity_execution_latency`.
pub const ACTIVITY_EXECUTION_LATENCY: &str = "hb_activity_execution_latency";
/// How long an attempt waited for a worker (histogram, seconds). Temporal:
/// `activity_schedule_to_start_latency`.
pub const ACTIVITY_SCHEDULE_TO_START_LATENCY: &str = "hb_activity_schedule_to_start_latency";
/// From the activity's first scheduling to its success, across attempts (histogram,
/// seconds). Temporal: `activity_succeed_endtoend_latency`.
pub const ACTIVITY_SUCCEED_ENDTOEND_LATENCY: &str = "hb_activity_succeed_endtoend_latency";
/// Heartbeats the pump sent, delivered or not (counter).
pub const HEARTBEATS_SENT: &str = "hb_heartbeats_sent";
/// Heartbeats the backend did not take; the pump tries again next interval (counter).
pub const HEARTBEAT_FAILURES: &str = "hb_heartbeat_failures";
/// The size of the encoded checkpoint a heartbeat carried (histogram, bytes).
pub const CHECKPOINT_BYTES: &str = "hb_checkpoint_bytes";
/// Attempts that stored no checkpoint for their `stall_timeout` (counter).
pub const STALLS_DETECTED: &str = "hb_stalls_detected";
/// Warnings that an attempt blocked or starved its executor for a heartbeat interval
/// (counter).
pub const BLOCKED_EXECUTOR_WARNINGS: &str = "hb_blocked_executor_warnings";
/// From a cancel reaching the worker (pushed by the engine, or in a heartbeat's reply) to the
/// attempt's stop (histogram, seconds).
pub const CANCEL_DELIVERY_LATENCY: &str = "hb_cancel_delivery_latency";
/// Open activities of an engine (gauge).
pub const ENGINE_OPEN_ACTIVITIES: &str = "hb_engine_open_activities";
/// One transaction of the engine's writer (histogram, seconds).
pub const ENGINE_COMMIT_LATENCY: &str = "hb_engine_commit_latency";
/// The writes one transaction of the engine's writer committed (histogram).
pub const ENGINE_COMMIT_BATCH_SIZE: &str = "hb_engine_commit_batch_size";
/// Transactions of the engine's writer that failed (counter).
pub const ENGINE_WRITE_FAILURES: &str = "hb_engine_write_failures";
/// The size of the engine's file (gauge, bytes).
pub const ENGINE_FILE_SIZE: &str = "hb_engine_file_size_bytes";
/// Attempts a worker is running (gauge).
pub const WORKER_TASK_SLOTS_USED: &str = "hb_worker_task_slots_used";
/// Attempts a worker can still take (gauge).
pub const WORKER_TASK_SLOTS_AVAILABLE: &str = "hb_worker_task_slots_available";

/// The `activity_type` label.
const ACTIVITY_TYPE: &str = "activity_type";

/// Describes every metric (units and help texts) to the recorder installed now, once.
fn describe() {
    static DESCRIBED: OnceLock<()> = OnceLock::new();
    DESCRIBED.get_or_init(|| {
        use ::metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_counter!(ACTIVITY_STARTED, "Attempts started");
        describe_counter!(ACTIVITY_RETRIED, "Attempts started after a first one");
        describe_counter!(ACTIVITY_COMPLETED, "Attempts that completed");
        describe_counter!(
            ACTIVITY_EXECUTION_FAILED,
            "Attempts that failed, by error type"
        );
        describe_counter!(
            ACTIVITY_CANCELLED,
            "Attempts stopped by a cancel, by reason"
        );
        describe_counter!(ACTIVITY_TIMED_OUT, "Attempts the engine timed out, by kind");
        describe_histogram!(
            ACTIVITY_EXECUTION_LATENCY,
            Unit::Seconds,
            "Attempt run time"
        );
        describe_histogram!(
            ACTIVITY_SCHEDULE_TO_START_LATENCY,
            Unit::Seconds,
            "Time an attempt waited for a worker"
        );
        describe_histogram!(
            ACTIVITY_SUCCEED_ENDTOEND_LATENCY,
            Unit::Seconds,
            "First scheduling to success"
        );
        describe_counter!(HEARTBEATS_SENT, "Heartbeats sent");
        describe_counter!(HEARTBEAT_FAILURES, "Heartbeats the backend did not take");
        describe_histogram!(
            CHECKPOINT_BYTES,
            Unit::Bytes,
            "Checkpoint size per heartbeat"
        );
        describe_counter!(
            STALLS_DETECTED,
            "Attempts without a checkpoint for stall_timeout"
        );
        describe_counter!(
            BLOCKED_EXECUTOR_WARNINGS,
            "Attempts that blocked their executor for a heartbeat interval"
        );
        describe_histogram!(
            CANCEL_DELIVERY_LATENCY,
            Unit::Seconds,
            "A cancel reaching the worker to the attempt's stop"
        );
        describe_gauge!(ENGINE_OPEN_ACTIVITIES, "Open activities of the engine");
        describe_histogram!(
            ENGINE_COMMIT_LATENCY,
            Unit::Seconds,
            "Engine transaction time"
        );
        describe_histogram!(ENGINE_COMMIT_BATCH_SIZE, "Writes per engine transaction");
        describe_counter!(ENGINE_WRITE_FAILURES, "Engine transactions that failed");
        describe_gauge!(ENGINE_FILE_SIZE, Unit::Bytes, "Size of the engine's file");
        describe_gauge!(WORKER_TASK_SLOTS_USED, "Attempts a worker is running");
        describe_gauge!(
            WORKER_TASK_SLOTS_AVAILABLE,
            "Attempts a worker can still take"
        );
    });
}

/// The label value of a cancel reason.
pub(crate) fn reason_label(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Requested => "requested",
        CancelReason::TimedOut => "timed_out",
        CancelReason::WorkerShutdown => "worker_shutdown",
        CancelReason::Paused => "paused",
        CancelReason::NotFound => "not_found",
        CancelReason::Reset => "reset",
    }
}

/// The handles of one activity type's metrics, made once per type and runner: recording on
/// one is an atomic operation of the recorder's, with no lookup.
pub(crate) struct ActivityMetrics {
    /// `activity_type` and the backend's labels, for the metrics labelled per event.
    labels: Vec<Label>,
    started: Counter,
    retried: Counter,
    completed: Counter,
    execution_latency: Histogram,
    schedule_to_start: Histogram,
    /// Recorded by the Temporal worker (the engine keeps its own: [`EndToEnd`]).
    #[cfg_attr(not(feature = "temporal"), allow(dead_code))]
    endtoend: Histogram,
    pub(crate) heartbeats: Counter,
    pub(crate) heartbeat_failures: Counter,
    pub(crate) checkpoint_bytes: Histogram,
    pub(crate) stalls: Counter,
    pub(crate) blocked: Counter,
    cancel_latency: Histogram,
}

impl ActivityMetrics {
    /// The activity succeeded, first scheduled at `first_scheduled` (a time of the backend's
    /// clock, which may differ from this machine's: a negative span reads as zero).
    #[cfg(feature = "temporal")]
    pub(crate) fn succeeded_since(&self, first_scheduled: std::time::SystemTime) {
        let took = std::time::SystemTime::now()
            .duration_since(first_scheduled)
            .unwrap_or_default();
        self.endtoend.record(took.as_secs_f64());
    }

    fn new(activity_type: &'static str, base: &[Label]) -> Self {
        describe();
        let mut labels = Vec::with_capacity(base.len() + 1);
        labels.push(Label::from_static_parts(ACTIVITY_TYPE, activity_type));
        labels.extend_from_slice(base);
        let l = || labels.clone();
        ActivityMetrics {
            started: ::metrics::counter!(ACTIVITY_STARTED, l()),
            retried: ::metrics::counter!(ACTIVITY_RETRIED, l()),
            completed: ::metrics::counter!(ACTIVITY_COMPLETED, l()),
            execution_latency: ::metrics::histogram!(ACTIVITY_EXECUTION_LATENCY, l()),
            schedule_to_start: ::metrics::histogram!(ACTIVITY_SCHEDULE_TO_START_LATENCY, l()),
            endtoend: ::metrics::histogram!(ACTIVITY_SUCCEED_ENDTOEND_LATENCY, l()),
            heartbeats: ::metrics::counter!(HEARTBEATS_SENT, l()),
            heartbeat_failures: ::metrics::counter!(HEARTBEAT_FAILURES, l()),
            checkpoint_bytes: ::metrics::histogram!(CHECKPOINT_BYTES, l()),
            stalls: ::metrics::counter!(STALLS_DETECTED, l()),
            blocked: ::metrics::counter!(BLOCKED_EXECUTOR_WARNINGS, l()),
            cancel_latency: ::metrics::histogram!(CANCEL_DELIVERY_LATENCY, l()),
            labels,
        }
    }
}

/// One attempt's metrics: its type's handles and the times its latencies are measured from,
/// as nanoseconds since the process's [`epoch`] (there is one per running attempt: 24 bytes,
/// not the 40 of an `Instant` and a `OnceLock<Instant>`).
pub(crate) struct AttemptMetrics {
    pub(crate) of: Arc<ActivityMetrics>,
    started: i64,
    /// When the first cancel reached the attempt (`i64::MIN`: none did).
    cancelled_at: AtomicI64,
}

/// The instant the times of [`AttemptMetrics`] count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `Instant::now()` in nanoseconds since [`epoch`].
fn now_ns() -> i64 {
    i64::try_from(epoch().elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// The seconds from `from` to `to` (both since [`epoch`]; never negative).
fn secs(from: i64, to: i64) -> f64 {
    to.saturating_sub(from).max(0) as f64 / 1e9
}

impl AttemptMetrics {
    pub(crate) fn new(of: Arc<ActivityMetrics>) -> Self {
        AttemptMetrics {
            of,
            started: now_ns(),
            cancelled_at: AtomicI64::new(i64::MIN),
        }
    }

    /// The attempt starts: counted, with its wait for a worker if the backend knows it.
    pub(crate) fn start(&self, attempt: u32, schedule_to_start: Option<Duration>) {
        self.of.started.increment(1);
        if attempt > 1 {
            self.of.retried.increment(1);
        }
        if let Some(d) = schedule_to_start {
            self.of.schedule_to_start.record(d.as_secs_f64());
        }
    }

    /// The first cancel reached the attempt.
    pub(crate) fn cancelled(&self) {
        let _ = self.cancelled_at.compare_exchange(
            i64::MIN,
            now_ns(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The attempt ended with `result` (reported: a cancel carries the reason it was given).
    pub(crate) fn ended(&self, result: &Result<crate::Payload, crate::ActivityError>) {
        let now = now_ns();
        let m = &*self.of;
        m.execution_latency.record(secs(self.started, now));
        let cancelled_at = self.cancelled_at.load(Ordering::Relaxed);
        if cancelled_at != i64::MIN {
            m.cancel_latency.record(secs(cancelled_at, now));
        }
        match result {
            // The end-to-end latency is the backend's to record (it knows when the activity
            // was first scheduled): see `ActivityMetrics::succeeded_since`.
            Ok(_) => m.completed.increment(1),
            Err(crate::ActivityError::Cancelled { reason, .. }) => {
                let mut labels = m.labels.clone();
                labels.push(Label::from_static_parts("reason", reason_label(*reason)));
                ::metrics::counter!(ACTIVITY_CANCELLED, labels).increment(1);
            }
            Err(e) => {
                let mut labels = m.labels.clone();
                labels.push(Label::new("error_type", e.error_type().to_owned()));
                ::metrics::counter!(ACTIVITY_EXECUTION_FAILED, labels).increment(1);
            }
        }
    }
}

/// The handles of a runner's activity types, made on each type's first attempt.
#[derive(Default)]
pub(crate) struct Registry {
    /// The backend's labels (`task_queue` on Temporal).
    labels: Vec<Label>,
    by_type: RwLock<HashMap<&'static str, Arc<ActivityMetrics>>>,
}

impl Registry {
    #[cfg(feature = "temporal")]
    pub(crate) fn new(labels: Vec<Label>) -> Self {
        Registry {
            labels,
            by_type: RwLock::default(),
        }
    }

    /// The backend's labels.
    #[cfg(feature = "temporal")]
    pub(crate) fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The handles of `activity_type`.
    pub(crate) fn of(&self, activity_type: &'static str) -> Arc<ActivityMetrics> {
        if let Some(m) = self
            .by_type
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(activity_type)
        {
            return m.clone();
        }
        let made = Arc::new(ActivityMetrics::new(activity_type, &self.labels));
        self.by_type
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(activity_type)
            .or_insert(made)
            .clone()
    }
}

/// A worker's slot gauges, sampled once a second until `stop`: `used()` of `max`.
#[cfg(any(feature = "engine", feature = "temporal"))]
pub(crate) async fn sample_slots(
    worker: String,
    max: usize,
    used: impl Fn() -> Option<usize>,
    stop: tokio_util::sync::CancellationToken,
) {
    let labels = [("worker", worker)];
    let used_gauge: ::metrics::Gauge = ::metrics::gauge!(WORKER_TASK_SLOTS_USED, &labels);
    let available: ::metrics::Gauge = ::metrics::gauge!(WORKER_TASK_SLOTS_AVAILABLE, &labels);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let Some(n) = used() else { break };
        used_gauge.set(n as f64);
        available.set(max.saturating_sub(n) as f64);
    }
    // A stopped worker runs nothing.
    used_gauge.set(0.0);
    available.set(0.0);
}

/// An attempt of `activity_type` timed out (`kind`: `heartbeat`, `start_to_close`,
/// `schedule_to_close`). Rare: its handle is looked up each time.
#[cfg(feature = "engine")]
pub(crate) fn timed_out(activity_type: &str, kind: &'static str) {
    ::metrics::counter!(
        ACTIVITY_TIMED_OUT,
        ACTIVITY_TYPE => activity_type.to_owned(),
        "kind" => kind
    )
    .increment(1);
}

/// The engine writer's handles.
#[cfg(feature = "engine")]
pub(crate) struct WriterMetrics {
    latency: Histogram,
    batch: Histogram,
    failures: Counter,
}

#[cfg(feature = "engine")]
impl WriterMetrics {
    pub(crate) fn new() -> Self {
        describe();
        WriterMetrics {
            latency: ::metrics::histogram!(ENGINE_COMMIT_LATENCY),
            batch: ::metrics::histogram!(ENGINE_COMMIT_BATCH_SIZE),
            failures: ::metrics::counter!(ENGINE_WRITE_FAILURES),
        }
    }

    /// A transaction of `writes` took `took`, and committed or not.
    pub(crate) fn committed(&self, writes: usize, took: Duration, ok: bool) {
        self.latency.record(took.as_secs_f64());
        self.batch.record(writes as f64);
        if !ok {
            self.failures.increment(1);
        }
    }
}

/// An engine's gauges.
#[cfg(feature = "engine")]
pub(crate) struct EngineGauges {
    open: ::metrics::Gauge,
    file_size: ::metrics::Gauge,
}

#[cfg(feature = "engine")]
impl EngineGauges {
    pub(crate) fn new() -> Self {
        describe();
        EngineGauges {
            open: ::metrics::gauge!(ENGINE_OPEN_ACTIVITIES),
            file_size: ::metrics::gauge!(ENGINE_FILE_SIZE),
        }
    }

    pub(crate) fn set(&self, open: usize, file_size: Option<u64>) {
        self.open.set(open as f64);
        if let Some(bytes) = file_size {
            self.file_size.set(bytes as f64);
        }
    }
}

/// The end-to-end latency histograms of an engine, by activity type (made on each type's first
/// success).
#[cfg(feature = "engine")]
#[derive(Default)]
pub(crate) struct EndToEnd(HashMap<Arc<str>, Histogram>);

#[cfg(feature = "engine")]
impl EndToEnd {
    /// An activity of `activity_type` succeeded `took` after it was first scheduled.
    pub(crate) fn record(&mut self, activity_type: &Arc<str>, took: Duration) {
        self.0
            .entry(activity_type.clone())
            .or_insert_with(|| {
                ::metrics::histogram!(
                    ACTIVITY_SUCCEED_ENDTOEND_LATENCY,
                    ACTIVITY_TYPE => activity_type.to_string()
                )
            })
            .record(took.as_secs_f64());
    }
}
