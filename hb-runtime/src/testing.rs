//! The test kit: run one activity against an in-memory backend, with an injected previous
//! checkpoint, recorded heartbeats, scripted cancel/pause replies and simulated timeouts.
//!
//! Timing follows tokio's clock: under `#[tokio::test(start_paused = true)]` a 10 s heartbeat
//! timeout plays out in milliseconds of real time and every figure is deterministic. (The
//! environment runs the heartbeat scheduler on the test's runtime for that;
//! [`ActivityEnvironment::production_pump`] switches to the isolated production pump, in real
//! time.) Pausing needs tokio's `test-util` feature in your dev-dependencies
//! (`tokio = { version = "1", features = ["test-util", "macros", "rt"] }`); without it the
//! compiler reports "no method named `start_paused`", on the test attribute's line.
//!
//! A paused clock cannot follow a body that runs [`ActivityContext::run_blocking`]: tokio holds
//! it still while a blocking task runs, so no heartbeat, scripted cancel or simulated timeout
//! would happen during the closure and the test would pass without exercising them. The
//! environment refuses that combination: the run panics with an explanation. Test such
//! activities on an unpaused runtime (`#[tokio::test]`) with a short heartbeat timeout; see
//! [`ActivityEnvironment::run`].
//!
//! [`ActivityContext::run_blocking`]: crate::ActivityContext::run_blocking
//!
//! ```
//! use hb_runtime::prelude::*;
//! use hb_runtime::testing::ActivityEnvironment;
//! use std::time::Duration;
//!
//! #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
//! struct Progress { #[checkpoint(done)] next: u64 }
//!
//! #[activity(heartbeat_timeout = "10s")]
//! async fn work(ctx: ActivityContext, #[checkpoint] mut p: Progress, items: u64) -> Result<u64, ActivityError> {
//!     while p.next < items {
//!         tokio::time::sleep(Duration::from_secs(1)).await;   // one item a second
//!         p.next += 1;
//!         ctx.checkpoint(&p)?;
//!     }
//!     Ok(p.next)
//! }
//!
//! #[tokio::main(flavor = "current_thread", start_paused = true)]
//! async fn main() {
//!     // A retry that resumes from item 40 of 60, cancelled from its 3rd heartbeat on.
//!     let run = ActivityEnvironment::new()
//!         .with_checkpoint(Progress { next: 40 })
//!         .attempt(2)
//!         .cancel_after_heartbeats(3)
//!         .run(work, 60)
//!         .await;
//!     assert!(run.result.unwrap_err().is_cancelled());
//!     assert_eq!(run.heartbeats.len(), 3);                      // one every 5 s
//!     assert_eq!(run.heartbeats[0].checkpoint, Some(Progress { next: 45 }));
//!     assert_eq!(run.last_checkpoint, Some(Progress { next: 55 }));
//! }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::activity::{Activity, IntoActivity};
use crate::checkpoint;
use crate::checkpoint::value::Checkpoint;
use crate::error::{ActivityError, CancelReason};
use crate::heartbeat::Pump;
use crate::intercept::Interceptor;
use crate::options::ActivityOptions;
use crate::payload::Payload;
use crate::runner::{AttemptRequest, AttemptRunner};
use crate::state::StateMap;
use crate::transport::{HeartbeatReply, TaskToken};

pub use crate::transport::memory::{MemoryTransport, RecordedCall, RecordedHeartbeat};

/// One heartbeat as the test backend received it, decoded.
///
/// ```
/// use hb_runtime::prelude::*;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn once(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
///     ctx.checkpoint(&(n + 1))?;
///     tokio::time::sleep(Duration::from_secs(7)).await;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(once, ()).await;
/// let [beat] = &run.heartbeats[..] else { panic!("one heartbeat expected") };
/// assert_eq!(beat.at, Duration::from_secs(5)); // every 5 s: half the timeout
/// assert_eq!(beat.checkpoint, Some(1));
/// assert_eq!(beat.details.as_ref().unwrap().data(), br#"{"_hb_v":1,"_hb_p":[1,null],"_hb_value":1}"#);
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Heartbeat<T> {
    /// Time since the attempt started (tokio's clock).
    pub at: Duration,
    /// The checkpoint it carried, decoded (`None` when it carried none or it did not decode).
    pub checkpoint: Option<T>,
    /// The raw details.
    pub details: Option<Payload>,
}

/// What one test run of an activity produced.
///
/// ```
/// use hb_runtime::prelude::*;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "4s")]
/// async fn steps(ctx: ActivityContext, #[checkpoint] mut done: u64, n: u64) -> Result<u64, ActivityError> {
///     while done < n {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         done += 1;
///         ctx.checkpoint(&done)?;
///     }
///     Ok(done)
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(steps, 5).await;
/// assert_eq!(run.result.as_ref().ok(), Some(&5));
/// assert!(!run.timed_out && run.cancel_reason.is_none());
/// assert!(run.elapsed >= Duration::from_secs(5));
/// assert_eq!(run.max_heartbeat_gap(), Duration::from_secs(2)); // within the 4 s timeout
/// assert_eq!(run.last_checkpoint, Some(5));
/// # }
/// ```
#[non_exhaustive]
pub struct TestRun<A: Activity> {
    /// The typed result.
    pub result: Result<A::Output, ActivityError>,
    /// Every heartbeat the backend received, in order.
    pub heartbeats: Vec<Heartbeat<A::Checkpoint>>,
    /// The checkpoint reported with the outcome (what a retry would resume from), encoded.
    pub final_details: Option<Payload>,
    /// The same, decoded (`None` when there was none or it did not decode).
    pub last_checkpoint: Option<A::Checkpoint>,
    /// Why the attempt was asked to stop, if it was.
    pub cancel_reason: Option<CancelReason>,
    /// Whether the simulated backend timed the attempt out (heartbeat or start-to-close).
    pub timed_out: bool,
    /// How long the attempt took (tokio's clock).
    pub elapsed: Duration,
    /// Every call the backend received (heartbeats and the final report).
    pub calls: Vec<RecordedCall>,
}

impl<A: Activity> TestRun<A> {
    /// The largest gap between consecutive heartbeats (from the start for the first one).
    pub fn max_heartbeat_gap(&self) -> Duration {
        let mut prev = Duration::ZERO;
        let mut max = Duration::ZERO;
        for h in &self.heartbeats {
            max = max.max(h.at.saturating_sub(prev));
            prev = h.at;
        }
        max
    }
}

impl<A: Activity> fmt::Debug for TestRun<A>
where
    A::Output: fmt::Debug,
    A::Checkpoint: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRun")
            .field("result", &self.result)
            .field("heartbeats", &self.heartbeats)
            .field("cancel_reason", &self.cancel_reason)
            .field("timed_out", &self.timed_out)
            .field("elapsed", &self.elapsed)
            .finish_non_exhaustive()
    }
}

type OptionsFn = Arc<dyn Fn(ActivityOptions) -> ActivityOptions + Send + Sync>;

/// Runs one activity attempt against a [`MemoryTransport`].
///
/// The simulated backend enforces `heartbeat_timeout` and `start_to_close_timeout` as a server
/// would: it cancels the attempt with [`CancelReason::TimedOut`] and the run reports
/// `timed_out = true`. The builder methods set up one run; see also the [module](self) example.
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::testing::ActivityEnvironment;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1m")]
/// async fn slow(ctx: ActivityContext) -> Result<(), ActivityError> {
///     tokio::time::sleep(Duration::from_secs(90)).await;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let run = ActivityEnvironment::new().run(slow, ()).await;
/// assert!(run.timed_out);
/// assert_eq!(run.cancel_reason, Some(CancelReason::TimedOut));
///
/// // Give this run more time, or turn the simulated timeouts off.
/// let run = ActivityEnvironment::new()
///     .options(|o| o.start_to_close_timeout(Duration::from_secs(120)))
///     .run(slow, ())
///     .await;
/// assert!(run.result.is_ok());
/// let run = ActivityEnvironment::new().without_timeouts().run(slow, ()).await;
/// assert!(run.result.is_ok());
/// # }
/// ```
#[derive(Clone)]
pub struct ActivityEnvironment {
    transport: MemoryTransport,
    details: Option<Payload>,
    attempt: u32,
    activity_id: String,
    cancel_at: Option<Duration>,
    state: StateMap,
    options: Option<OptionsFn>,
    production_pump: bool,
    simulate_timeouts: bool,
    interceptors: Vec<Arc<dyn Interceptor>>,
    runs: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for ActivityEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityEnvironment")
            .field("activity_id", &self.activity_id)
            .field("attempt", &self.attempt)
            .field("details", &self.details)
            .field("cancel_at", &self.cancel_at)
            .field("production_pump", &self.production_pump)
            .finish_non_exhaustive()
    }
}

impl Default for ActivityEnvironment {
    fn default() -> Self {
        Self::new()
    }
}

impl ActivityEnvironment {
    /// A first attempt with no previous checkpoint, an always-ok backend and simulated timeouts.
    pub fn new() -> Self {
        ActivityEnvironment {
            transport: MemoryTransport::new(),
            details: None,
            attempt: 1,
            activity_id: "test-activity".to_owned(),
            cancel_at: None,
            state: StateMap::new(),
            options: None,
            production_pump: false,
            simulate_timeouts: true,
            interceptors: Vec::new(),
            runs: Arc::default(),
        }
    }

    /// Injects the previous attempt's checkpoint (encoded as the backend would hold it).
    ///
    /// # Panics
    /// If `checkpoint` cannot be serialised.
    pub fn with_checkpoint<T: Checkpoint>(mut self, checkpoint: T) -> Self {
        self.details =
            Some(checkpoint::encode_payload(&checkpoint).expect("test checkpoint must serialise"));
        self
    }

    /// Injects raw previous details (an old version, or corrupt bytes).
    pub fn with_details(mut self, details: Payload) -> Self {
        self.details = Some(details);
        self
    }

    /// Sets the attempt number (default 1).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the activity id (default `"test-activity"`).
    pub fn activity_id(mut self, id: impl Into<String>) -> Self {
        self.activity_id = id.into();
        self
    }

    /// Replies "cancel requested" to heartbeat number `n` (1-based) and every one after.
    pub fn cancel_after_heartbeats(self, n: usize) -> Self {
        self.transport.reply_from(n, HeartbeatReply::cancel());
        self
    }

    /// Replies "paused" to heartbeat number `n` and every one after.
    pub fn pause_after_heartbeats(self, n: usize) -> Self {
        self.transport.reply_from(n, HeartbeatReply::pause());
        self
    }

    /// Replies `reply` to heartbeat number `n` and every one after.
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::testing::ActivityEnvironment;
    /// use hb_runtime::backend::HeartbeatReply;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn nap(ctx: ActivityContext) -> Result<(), ActivityError> {
    ///     tokio::time::sleep(Duration::from_secs(60)).await;
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// // The backend forgot the attempt (it was reset): the attempt stops at the 2nd heartbeat.
    /// let run = ActivityEnvironment::new().reply_from(2, HeartbeatReply::not_found()).run(nap, ()).await;
    /// assert_eq!(run.cancel_reason, Some(CancelReason::NotFound));
    /// assert_eq!(run.heartbeats.len(), 2);
    /// # }
    /// ```
    pub fn reply_from(self, n: usize, reply: HeartbeatReply) -> Self {
        self.transport.reply_from(n, reply);
        self
    }

    /// Pushes a cancel request `after` the attempt starts (as the embedded engine does), not
    /// waiting for a heartbeat.
    pub fn cancel_at(mut self, after: Duration) -> Self {
        self.cancel_at = Some(after);
        self
    }

    /// Provides a worker-level resource for `#[state]` parameters.
    pub fn with_state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Adjusts the activity's options for this run.
    pub fn options(
        mut self,
        f: impl Fn(ActivityOptions) -> ActivityOptions + Send + Sync + 'static,
    ) -> Self {
        self.options = Some(Arc::new(f));
        self
    }

    /// Heartbeats through the production pump (its own thread, real time) instead of a
    /// scheduler on the test's runtime. Use it with an unpaused clock.
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "100ms")]
    /// async fn hog(ctx: ActivityContext) -> Result<(), ActivityError> {
    ///     std::thread::sleep(Duration::from_millis(400)); // blocks the test's runtime
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let run = hb_runtime::testing::ActivityEnvironment::new().production_pump().run(hog, ()).await;
    /// assert!(!run.heartbeats.is_empty()); // sent from the pump's own thread meanwhile
    /// # }
    /// ```
    pub fn production_pump(mut self) -> Self {
        self.production_pump = true;
        self
    }

    /// Turns the simulated heartbeat and start-to-close timeouts off.
    pub fn without_timeouts(mut self) -> Self {
        self.simulate_timeouts = false;
        self
    }

    /// Adds an interceptor around the attempt.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// The in-memory backend, to watch heartbeats while a run is under way.
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn nap(ctx: ActivityContext) -> Result<(), ActivityError> {
    ///     tokio::time::sleep(Duration::from_secs(60)).await;
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let env = hb_runtime::testing::ActivityEnvironment::new();
    /// let (run, two_early) = tokio::join!(
    ///     env.run(nap, ()),
    ///     env.transport().wait_for_heartbeats(2, Duration::from_secs(11)),
    /// );
    /// assert!(two_early); // at 5 s and 10 s
    /// assert!(run.result.is_ok());
    /// # }
    /// ```
    pub fn transport(&self) -> &MemoryTransport {
        &self.transport
    }

    /// Runs one attempt of `activity` with `input` (encoded and decoded as a backend would).
    ///
    /// An activity whose body runs [`run_blocking`](crate::ActivityContext::run_blocking) is
    /// tested in real time, on an unpaused runtime, with a heartbeat timeout short enough for
    /// what the test wants to see:
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::testing::ActivityEnvironment;
    /// use std::time::{Duration, Instant};
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn crunch(ctx: ActivityContext, #[checkpoint] mut n: u64) -> Result<u64, ActivityError> {
    ///     ctx.run_blocking(move |ctx| {
    ///         let until = Instant::now() + Duration::from_secs(30);
    ///         while Instant::now() < until {
    ///             ctx.check_cancelled()?; // the thread stops here, the attempt as Cancelled
    ///             n += 1;
    ///             ctx.checkpoint(&n)?;
    ///             std::thread::sleep(Duration::from_millis(1));
    ///         }
    ///         Ok(n)
    ///     })
    ///     .await
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let run = ActivityEnvironment::new()
    ///     .options(|o| o.heartbeat_timeout(Duration::from_millis(200))) // a heartbeat every 100 ms
    ///     .cancel_after_heartbeats(2)
    ///     .run(crunch, ())
    ///     .await;
    /// assert!(run.result.unwrap_err().is_cancelled()); // about 0.2 s in, not 30 s
    /// assert!(run.heartbeats.len() >= 2);
    /// # }
    /// ```
    ///
    /// # Panics
    /// If `input` cannot be serialised, or outside a tokio runtime; and if the body runs
    /// `run_blocking` while the clock is paused (see the [module](self) docs), since the test
    /// would then not see what it set up.
    pub async fn run<F: IntoActivity>(
        &self,
        activity: F,
        input: <F::Activity as Activity>::Input,
    ) -> TestRun<F::Activity> {
        let payload = Payload::json(&input).expect("test input must serialise");
        self.run_payload(activity, payload).await
    }

    /// Runs one attempt with a raw input payload (to test bad input).
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::Payload;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn square(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    ///     Ok(n * n)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let env = hb_runtime::testing::ActivityEnvironment::new();
    /// let run = env.run_payload(square, Payload::json(&"seven").unwrap()).await;
    /// let err = run.result.unwrap_err();
    /// assert!(matches!(err, ActivityError::BadInput { .. }));
    /// assert!(!err.is_retryable());
    /// # }
    /// ```
    pub async fn run_payload<F: IntoActivity>(
        &self,
        activity: F,
        input: Payload,
    ) -> TestRun<F::Activity> {
        let activity = activity.into_activity();
        let mut options = activity.options();
        if let Some(f) = &self.options {
            options = f(options);
        }
        let pump = if self.production_pump {
            Pump::global()
        } else {
            Pump::on_current_runtime()
        };
        let mut runner = AttemptRunner::new(self.transport.clone())
            .pump(pump)
            .state(self.state.clone());
        for i in &self.interceptors {
            runner = runner.shared_interceptor(i.clone());
        }
        // Each run is its own attempt to the backend, so a reused environment's runs (and
        // their scripted replies, heartbeat counts and timeouts) do not mix.
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let token = TaskToken::new(if run == 0 {
            format!("{}#{}", self.activity_id, self.attempt)
        } else {
            format!("{}#{}#run{}", self.activity_id, self.attempt, run + 1)
        });
        // The backend holds what the previous attempt left.
        self.transport.set_details_of(&token, self.details.clone());
        let request = AttemptRequest::new(self.activity_id.clone(), token.clone(), input)
            .attempt(self.attempt)
            .details(self.details.clone())
            .deadline(
                options
                    .start_to_close_timeout
                    .and_then(|t| std::time::SystemTime::now().checked_add(t)),
            )
            .options(options);

        let start = Instant::now();
        let running = runner.start(&activity, request);
        let handle = running.handle();
        let timed_out = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let transport = self.transport.clone();
            let handle = handle.clone();
            let timed_out = timed_out.clone();
            let simulate = self.simulate_timeouts;
            let cancel_at = self.cancel_at;
            async move {
                let heartbeat = async {
                    let Some(timeout) = options.effective_heartbeat_timeout().filter(|_| simulate)
                    else {
                        return std::future::pending().await;
                    };
                    loop {
                        let last = transport.last_heartbeat_of(&token).unwrap_or(start);
                        // A timeout too long to add is one that never comes.
                        let Some(deadline) = last.checked_add(timeout) else {
                            return std::future::pending().await;
                        };
                        if Instant::now() >= deadline {
                            return;
                        }
                        tokio::time::sleep_until(deadline).await;
                    }
                };
                let start_to_close = async {
                    match options.start_to_close_timeout.filter(|_| simulate) {
                        Some(t) => match start.checked_add(t) {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        },
                        None => std::future::pending().await,
                    }
                };
                let push_cancel = async {
                    match cancel_at {
                        Some(d) => match start.checked_add(d) {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        },
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = heartbeat => {
                        tracing::info!("simulated backend: heartbeat timeout");
                        timed_out.store(true, Ordering::SeqCst);
                        handle.cancel(CancelReason::TimedOut);
                    }
                    _ = start_to_close => {
                        tracing::info!("simulated backend: start-to-close timeout");
                        timed_out.store(true, Ordering::SeqCst);
                        handle.cancel(CancelReason::TimedOut);
                    }
                    _ = push_cancel => handle.cancel(CancelReason::Requested),
                }
                std::future::pending::<()>().await
            }
        };
        let outcome = tokio::select! {
            o = running.run() => o,
            _ = watchdog => unreachable!("the watchdog never finishes"),
        };
        let elapsed = start.elapsed();
        // The body saw the refusal as a panic, which it may have turned into anything: make it
        // the test's.
        if handle.context().inner.refused_blocking() {
            panic!("{}", crate::context::PAUSED_BLOCKING);
        }

        let heartbeats = self
            .transport
            .heartbeats()
            .into_iter()
            .filter(|h| h.token == handle.context().info().task_token)
            .map(|h| Heartbeat {
                at: h.at.saturating_duration_since(start),
                checkpoint: h
                    .details
                    .as_ref()
                    .and_then(|p| checkpoint::decode_payload(p).ok()),
                details: h.details,
            })
            .collect();
        let result = outcome.result.and_then(|p| {
            p.decode::<<F::Activity as Activity>::Output>()
                .map_err(|e| ActivityError::OutputNotSerializable {
                    activity: <F::Activity as Activity>::NAME.to_owned(),
                    message: e.to_string(),
                })
        });
        TestRun {
            result,
            heartbeats,
            last_checkpoint: outcome
                .details
                .as_ref()
                .and_then(|p| checkpoint::decode_payload(p).ok()),
            final_details: outcome.details,
            cancel_reason: outcome.cancel_reason,
            timed_out: timed_out.load(Ordering::SeqCst),
            elapsed,
            calls: self.transport.calls(),
        }
    }
}

/// A context not attached to any backend or pump: for unit-testing helpers that take an
/// [`ActivityContext`](crate::ActivityContext), and for benchmarks of
/// [`checkpoint`](crate::ActivityContext::checkpoint).
///
/// ```
/// let ctx = hb_runtime::testing::detached_context::<u64>();
/// ctx.checkpoint(&7u64).unwrap();
/// assert_eq!(ctx.last_checkpoint::<u64>(), Some(7));
/// ```
pub fn detached_context<C: Checkpoint>() -> crate::ActivityContext {
    crate::runner::detached_context::<C>(Arc::new(MemoryTransport::new()))
}
