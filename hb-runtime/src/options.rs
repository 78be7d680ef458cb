//! An activity's options: its timeouts, [`RetryPolicy`], [`CancelMode`] and
//! [`BadCheckpointPolicy`], set by `#[activity(...)]` or [`ActivityOptions`]'s setters.

use std::fmt;
use std::time::Duration;

use crate::error::ActivityError;

/// How an attempt reacts to a cancel request; `#[activity(cancel = "cooperative")]` sets it.
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::testing::ActivityEnvironment;
/// use hb_runtime::CancelMode;
/// use std::time::Duration;
///
/// #[activity(heartbeat_timeout = "10s", cancel = "cooperative", cancel_grace = "5s")]
/// async fn tidy(ctx: ActivityContext) -> Result<String, ActivityError> {
///     ctx.cancelled().await;
///     tokio::time::sleep(Duration::from_secs(1)).await; // clean up, within cancel_grace
///     Ok("cleaned up".into())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let env = ActivityEnvironment::new().cancel_at(Duration::from_secs(1));
/// assert_eq!(env.run(tidy, ()).await.result.unwrap(), "cleaned up");
///
/// // With `Abort` the body is dropped at its next `.await` instead.
/// let env = env.options(|o| o.cancel(CancelMode::Abort));
/// assert!(env.run(tidy, ()).await.result.unwrap_err().is_cancelled());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CancelMode {
    /// The body future is dropped at its next `.await` (its `Drop` impls run) and the attempt
    /// reports `Cancelled` with the last checkpoint. The default.
    ///
    /// A body that returns without suspending again once the cancel arrived (for instance one
    /// awaiting `ctx.cancelled()` and then returning) reports its own result: it was polled
    /// to completion before the abort could apply.
    #[default]
    Abort,
    /// The body keeps running and sees [`ActivityContext::cancelled`](crate::ActivityContext::cancelled); it may finish its own way
    /// within `cancel_grace`, after which it is dropped as with [`CancelMode::Abort`].
    Cooperative,
}

/// What to do when the previous attempt's checkpoint cannot be decoded (corrupt, or a version
/// with no `migrate_from` path); `#[activity(on_bad_checkpoint = "fail")]` sets it.
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::testing::ActivityEnvironment;
/// use hb_runtime::{BadCheckpointPolicy, Payload};
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Cursor { next: u64 }
///
/// #[activity(heartbeat_timeout = "10s", on_bad_checkpoint = "fail")]
/// async fn strict(ctx: ActivityContext, #[checkpoint] c: Cursor) -> Result<u64, ActivityError> {
///     Ok(c.next)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = ActivityEnvironment::new().with_details(Payload::json(&"garbage").unwrap());
/// let err = env.run(strict, ()).await.result.unwrap_err();
/// assert!(matches!(err, ActivityError::BadCheckpoint(_)));
/// assert!(!err.is_retryable());
///
/// // With `Restart` the attempt starts over from `Cursor::default()`.
/// let env = env.options(|o| o.on_bad_checkpoint(BadCheckpointPolicy::Restart));
/// assert_eq!(env.run(strict, ()).await.result.unwrap(), 0);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BadCheckpointPolicy {
    /// Log a warning and start from `Default::default()`. The default.
    #[default]
    Restart,
    /// End the activity non-retryably with [`ActivityError::BadCheckpoint`].
    Fail,
}

/// When and how often a failed attempt is retried, as Temporal defines it.
///
/// The delay before attempt `n + 1` is `initial_interval × backoff^(n-1)`, capped at
/// `max_interval`. `max_attempts = 0` means unlimited.
///
/// ```
/// use hb_runtime::{ActivityError, RetryPolicy};
/// use std::time::Duration;
///
/// const POLICY: RetryPolicy = RetryPolicy::new()
///     .max_attempts(3)
///     .initial_interval(Duration::from_millis(500))
///     .non_retryable(&["BadInput"]);
///
/// let slow = ActivityError::retryable("Timeout", "upstream too slow");
/// assert!(POLICY.should_retry(1, &slow));
/// assert!(POLICY.should_retry(2, &slow));
/// assert!(!POLICY.should_retry(3, &slow)); // three attempts in all
/// assert!(!POLICY.should_retry(1, &ActivityError::retryable("BadInput", "no such file")));
/// assert_eq!(POLICY.delay_after(2), Duration::from_secs(1));
/// ```
///
/// # Unusual values
///
/// Every value is accepted and none makes [`delay_after`](Self::delay_after) panic or
/// overflow. A zero `initial_interval` or `max_interval` means the default, as on a Temporal
/// server (which treats zero as unset); a backoff below 1.0 or NaN counts as 1.0 (a delay
/// that shrank would retry ever faster); `max_interval` below `initial_interval` wins (every
/// delay is `max_interval`; a Temporal server refuses such a policy when the activity is
/// started, and `#[activity]` refuses it at compile time). The `effective_*` methods say what
/// is in force.
///
/// A huge `initial_interval` such as [`Duration::MAX`] in effect never retries by itself:
///
/// ```
/// # use hb_runtime::RetryPolicy; use std::time::Duration;
/// let manual = RetryPolicy::new().initial_interval(Duration::MAX);
/// assert_eq!(manual.delay_after(1), Duration::MAX);
/// assert_eq!(manual.delay_after(u32::MAX), Duration::MAX);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Most attempts in all (first included); 0 for unlimited.
    pub max_attempts: u32,
    /// Delay before the first retry; zero means the default, 1 s
    /// (see [`effective_initial_interval`](Self::effective_initial_interval)).
    pub initial_interval: Duration,
    /// Multiplier applied to the delay after each retry; below 1.0 or NaN counts as 1.0
    /// (see [`effective_backoff`](Self::effective_backoff)).
    pub backoff: f64,
    /// Upper bound of the delay; `None` or zero means 100 × `initial_interval` (Temporal's
    /// default; see [`effective_max_interval`](Self::effective_max_interval)).
    pub max_interval: Option<Duration>,
    /// Error types ([`ActivityError::error_type`]) that are never retried.
    pub non_retryable: &'static [&'static str],
}

/// The initial interval in force when none (or zero) is given: Temporal's default.
const DEFAULT_INITIAL_INTERVAL: Duration = Duration::from_secs(1);

impl RetryPolicy {
    /// Temporal's default policy: unlimited attempts, 1 s initial interval, backoff 2.0.
    pub const fn new() -> Self {
        RetryPolicy {
            max_attempts: 0,
            initial_interval: DEFAULT_INITIAL_INTERVAL,
            backoff: 2.0,
            max_interval: None,
            non_retryable: &[],
        }
    }

    /// Sets the most attempts in all (0 = unlimited).
    pub const fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets the delay before the first retry (zero means the default, 1 s).
    pub const fn initial_interval(mut self, d: Duration) -> Self {
        self.initial_interval = d;
        self
    }

    /// Sets the backoff coefficient, stored as [`effective_backoff`](Self::effective_backoff)
    /// reads it: below 1.0 or NaN becomes 1.0 and +∞ becomes [`f64::MAX`] (which reaches the
    /// cap on the second retry just the same), so the policy compares equal to itself and
    /// every backend is given a number it accepts.
    ///
    /// ```
    /// # use hb_runtime::RetryPolicy;
    /// assert_eq!(RetryPolicy::new().backoff(1.5).backoff, 1.5);
    /// assert_eq!(RetryPolicy::new().backoff(0.5).backoff, 1.0);
    /// assert_eq!(RetryPolicy::new().backoff(f64::NAN).backoff, 1.0);
    /// assert_eq!(RetryPolicy::new().backoff(f64::INFINITY).backoff, f64::MAX);
    /// ```
    pub const fn backoff(mut self, coefficient: f64) -> Self {
        self.backoff = sane_backoff(coefficient);
        self
    }

    /// Sets the delay cap (zero means the default, 100 × the initial interval).
    pub const fn max_interval(mut self, d: Duration) -> Self {
        self.max_interval = Some(d);
        self
    }

    /// Sets the error types that are never retried.
    pub const fn non_retryable(mut self, types: &'static [&'static str]) -> Self {
        self.non_retryable = types;
        self
    }

    /// The initial interval in force: [`initial_interval`](Self::initial_interval), or 1 s if
    /// it is zero (a Temporal server reads zero as unset too).
    ///
    /// ```
    /// # use hb_runtime::RetryPolicy; use std::time::Duration;
    /// let p = RetryPolicy::new().initial_interval(Duration::ZERO);
    /// assert_eq!(p.effective_initial_interval(), Duration::from_secs(1));
    /// ```
    pub const fn effective_initial_interval(&self) -> Duration {
        if self.initial_interval.is_zero() {
            DEFAULT_INITIAL_INTERVAL
        } else {
            self.initial_interval
        }
    }

    /// The backoff coefficient in force: [`backoff`](Self::backoff) if at least 1.0, else 1.0
    /// (NaN included); +∞ is read as [`f64::MAX`].
    pub const fn effective_backoff(&self) -> f64 {
        sane_backoff(self.backoff)
    }

    /// The delay cap in force: [`max_interval`](Self::max_interval) unless it is unset or
    /// zero, else 100 × the [initial interval](Self::effective_initial_interval), saturating at
    /// [`Duration::MAX`]. May be below the initial interval, and then every delay is the cap.
    ///
    /// ```
    /// # use hb_runtime::RetryPolicy; use std::time::Duration;
    /// let p = RetryPolicy::new().initial_interval(Duration::from_secs(2));
    /// assert_eq!(p.effective_max_interval(), Duration::from_secs(200));
    /// assert_eq!(p.max_interval(Duration::ZERO).effective_max_interval(), Duration::from_secs(200));
    /// assert_eq!(p.max_interval(Duration::from_secs(1)).delay_after(1), Duration::from_secs(1));
    /// ```
    pub const fn effective_max_interval(&self) -> Duration {
        match self.max_interval {
            Some(d) if !d.is_zero() => d,
            _ => self.effective_initial_interval().saturating_mul(100),
        }
    }

    /// The delay before the attempt that follows failed attempt `attempt` (1-based; 0 counts
    /// as 1): `initial × backoff^(attempt-1)` kept between the initial interval and the cap
    /// (the cap wins when lower), never shorter for a later attempt. Uses the `effective_*`
    /// values; any policy and attempt give a delay (saturating at the cap), never a panic.
    ///
    /// ```
    /// # use hb_runtime::RetryPolicy; use std::time::Duration;
    /// let p = RetryPolicy::new().initial_interval(Duration::from_secs(1)).backoff(2.0)
    ///     .max_interval(Duration::from_secs(5));
    /// assert_eq!(p.delay_after(1), Duration::from_secs(1));
    /// assert_eq!(p.delay_after(3), Duration::from_secs(4));
    /// assert_eq!(p.delay_after(10), Duration::from_secs(5));
    /// assert_eq!(p.delay_after(u32::MAX), Duration::from_secs(5));
    /// ```
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let initial = self.effective_initial_interval();
        let cap = self.effective_max_interval();
        if initial >= cap {
            return cap;
        }
        let growth = grow(self.effective_backoff(), attempt.saturating_sub(1));
        if growth == 1.0 {
            // Exact: `initial` in f64 is rounded past 2^53 ns (about 104 days).
            return initial;
        }
        // In whole nanoseconds, so that a power-of-two backoff multiplies exactly; one rounding,
        // and a larger growth never gives a smaller product. `as` saturates (+inf included).
        let nanos = (initial.as_nanos() as f64 * growth).round() as u128;
        match u64::try_from(nanos / NANOS_PER_SEC) {
            // The clamp to `initial` undoes a rounding of `initial` down.
            Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32).clamp(initial, cap),
            Err(_) => cap,
        }
    }

    /// Whether another attempt may follow failed attempt `attempt` ending with `error`.
    pub fn should_retry(&self, attempt: u32, error: &ActivityError) -> bool {
        self.may_retry(error) && (self.max_attempts == 0 || attempt < self.max_attempts)
    }

    /// Whether this policy lets `error` be retried at all: it is retryable and its type is not
    /// in [`non_retryable`](Self::non_retryable) (a cancellation's reason alone decides: a
    /// worker shutdown or a pause is always retried). Backends whose server decides retries
    /// (Temporal) report a failure this refuses as non-retryable.
    ///
    /// ```
    /// use hb_runtime::{ActivityError, RetryPolicy};
    ///
    /// let p = RetryPolicy::new().non_retryable(&["BadInput"]);
    /// assert!(p.may_retry(&ActivityError::retryable("Timeout", "slow upstream")));
    /// assert!(!p.may_retry(&ActivityError::retryable("BadInput", "no such file")));
    /// ```
    pub fn may_retry(&self, error: &ActivityError) -> bool {
        error.is_retryable()
            && (error.is_cancelled() || !self.non_retryable.contains(&error.error_type()))
    }
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// `coefficient` if it is a number of at least 1.0 (+∞ read as `f64::MAX`), else 1.0.
const fn sane_backoff(coefficient: f64) -> f64 {
    if coefficient >= 1.0 {
        if coefficient > f64::MAX {
            f64::MAX
        } else {
            coefficient
        }
    } else {
        1.0
    }
}

/// `base^exp` for `base >= 1`, by squaring, saturating at +∞.
///
/// Unlike `f64::powi` (whose precision is unspecified), it never gives a smaller result for a
/// larger `exp`: `base^(2^k)` is computed as the rounded square of `base^(2^(k-1))`, which is at
/// least every rounded product of the smaller powers, and rounding is monotone. So the retry
/// delay never shrinks from one attempt to the next, however close to 1.0 the backoff is.
fn grow(base: f64, mut exp: u32) -> f64 {
    let mut result = 1.0;
    let mut square = base;
    loop {
        if exp & 1 == 1 {
            result *= square;
        }
        exp >>= 1;
        if exp == 0 || result == f64::INFINITY {
            return result;
        }
        square *= square;
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// The hard limit Temporal puts on one payload (2 MiB): no checkpoint may be configured above it.
pub const HARD_CHECKPOINT_LIMIT: usize = 2 * 1024 * 1024;
/// The default size limit of an encoded checkpoint (256 KiB).
pub const DEFAULT_CHECKPOINT_LIMIT: usize = 256 * 1024;
/// The heartbeat interval used when neither `heartbeat_interval` nor `heartbeat_timeout` is set
/// (Temporal core's throttle in that case).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// Timeouts, retries and heartbeat behaviour of an activity; what `#[activity(...)]` options set.
///
/// Built with `const` setters, so the macro's output is a constant:
///
/// ```
/// use hb_runtime::{ActivityOptions, RetryPolicy};
/// use std::time::Duration;
///
/// const OPTS: ActivityOptions = ActivityOptions::new()
///     .heartbeat_timeout(Duration::from_secs(10))
///     .start_to_close_timeout(Duration::from_secs(3600))
///     .retry(RetryPolicy::new().max_attempts(5));
/// assert_eq!(OPTS.effective_heartbeat_interval(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ActivityOptions {
    /// The longest the backend waits between heartbeats before timing the attempt out.
    pub heartbeat_timeout: Option<Duration>,
    /// How often the pump heartbeats; see [`effective_heartbeat_interval`](Self::effective_heartbeat_interval).
    pub heartbeat_interval: Option<Duration>,
    /// The longest one attempt may run.
    pub start_to_close_timeout: Option<Duration>,
    /// The longest the whole activity (all attempts and retry delays) may take.
    pub schedule_to_close_timeout: Option<Duration>,
    /// When a failed attempt is retried.
    pub retry: RetryPolicy,
    /// Stop heartbeating (so the backend times the attempt out and retries it) when no
    /// checkpoint arrived for this long: alive is not the same as progressing.
    pub stall_timeout: Option<Duration>,
    /// How a cancel request reaches the body.
    pub cancel: CancelMode,
    /// With [`CancelMode::Cooperative`], how long the body may take to finish after a cancel.
    pub cancel_grace: Duration,
    /// What to do with a checkpoint that cannot be decoded.
    pub on_bad_checkpoint: BadCheckpointPolicy,
    /// The largest encoded checkpoint accepted, in bytes.
    pub max_checkpoint_size: usize,
}

impl ActivityOptions {
    /// Options with no timeouts, Temporal's default retry policy, abort-on-cancel, a 5 s
    /// cancel grace, `restart` on a bad checkpoint and a 256 KiB checkpoint limit.
    pub const fn new() -> Self {
        ActivityOptions {
            heartbeat_timeout: None,
            heartbeat_interval: None,
            start_to_close_timeout: None,
            schedule_to_close_timeout: None,
            retry: RetryPolicy::new(),
            stall_timeout: None,
            cancel: CancelMode::Abort,
            cancel_grace: Duration::from_secs(5),
            on_bad_checkpoint: BadCheckpointPolicy::Restart,
            max_checkpoint_size: DEFAULT_CHECKPOINT_LIMIT,
        }
    }

    /// Sets `heartbeat_timeout`.
    pub const fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = Some(d);
        self
    }
    /// Sets `heartbeat_interval`.
    pub const fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = Some(d);
        self
    }
    /// Sets `start_to_close_timeout`.
    pub const fn start_to_close_timeout(mut self, d: Duration) -> Self {
        self.start_to_close_timeout = Some(d);
        self
    }
    /// Sets `schedule_to_close_timeout`.
    pub const fn schedule_to_close_timeout(mut self, d: Duration) -> Self {
        self.schedule_to_close_timeout = Some(d);
        self
    }
    /// Sets the retry policy.
    pub const fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Sets `stall_timeout`.
    pub const fn stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = Some(d);
        self
    }
    /// Sets the cancel mode.
    pub const fn cancel(mut self, mode: CancelMode) -> Self {
        self.cancel = mode;
        self
    }
    /// Sets `cancel_grace`.
    pub const fn cancel_grace(mut self, d: Duration) -> Self {
        self.cancel_grace = d;
        self
    }
    /// Sets the bad-checkpoint policy.
    pub const fn on_bad_checkpoint(mut self, policy: BadCheckpointPolicy) -> Self {
        self.on_bad_checkpoint = policy;
        self
    }
    /// Sets the checkpoint size limit in bytes (clamped to the 2 MiB hard limit when used).
    pub const fn max_checkpoint_size(mut self, bytes: usize) -> Self {
        self.max_checkpoint_size = bytes;
        self
    }

    /// The heartbeat timeout in force: a zero timeout means none (as Temporal reports it).
    ///
    /// ```
    /// # use hb_runtime::ActivityOptions; use std::time::Duration;
    /// let o = ActivityOptions::new().heartbeat_timeout(Duration::ZERO);
    /// assert_eq!(o.effective_heartbeat_timeout(), None);
    /// ```
    pub fn effective_heartbeat_timeout(&self) -> Option<Duration> {
        self.heartbeat_timeout.filter(|t| !t.is_zero())
    }

    /// The interval the pump heartbeats at: `heartbeat_interval` if set (and not zero), else
    /// half of `heartbeat_timeout`, else 30 s; never above 0.8 × `heartbeat_timeout` and never
    /// below 1 ms (which wins over 0.8 × a timeout under 1.25 ms). Any durations, up to
    /// [`Duration::MAX`], give an interval without overflow.
    ///
    /// ```
    /// # use hb_runtime::ActivityOptions; use std::time::Duration;
    /// let o = ActivityOptions::new().heartbeat_timeout(Duration::from_secs(10));
    /// assert_eq!(o.effective_heartbeat_interval(), Duration::from_secs(5));
    /// let o = o.heartbeat_interval(Duration::from_secs(9));
    /// assert_eq!(o.effective_heartbeat_interval(), Duration::from_secs(8));
    /// ```
    pub fn effective_heartbeat_interval(&self) -> Duration {
        let timeout = self.effective_heartbeat_timeout();
        let base = match (self.heartbeat_interval.filter(|i| !i.is_zero()), timeout) {
            (Some(i), _) => i,
            (None, Some(t)) => t / 2,
            (None, None) => DEFAULT_HEARTBEAT_INTERVAL,
        };
        let capped = match timeout {
            // 4/5 in whole nanoseconds: no float, no overflow for any timeout.
            Some(t) => base.min(t / 5 * 4),
            None => base,
        };
        capped.max(Duration::from_millis(1))
    }

    /// The checkpoint size limit actually enforced (never above 2 MiB).
    ///
    /// ```
    /// # use hb_runtime::ActivityOptions;
    /// assert_eq!(ActivityOptions::new().effective_checkpoint_limit(), 256 * 1024);
    /// let o = ActivityOptions::new().max_checkpoint_size(10 << 20);
    /// assert_eq!(o.effective_checkpoint_limit(), 2 * 1024 * 1024);
    /// ```
    pub fn effective_checkpoint_limit(&self) -> usize {
        self.max_checkpoint_size.min(HARD_CHECKPOINT_LIMIT)
    }
}

impl Default for ActivityOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CancelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelMode::Abort => "abort",
            CancelMode::Cooperative => "cooperative",
        })
    }
}
