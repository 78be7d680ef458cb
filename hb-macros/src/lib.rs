//! Procedural macros for hb: [`macro@activity`] and [`macro@Checkpoint`].
//!
//! Use them through `hb_runtime` (`use hb_runtime::prelude::*;`), which re-exports both and
//! provides everything their output names.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;

use crate::ctxt::Failed;

mod activity;
mod checkpoint;
mod ctxt;
mod duration;
mod keys;
mod meta;
mod respan;

/// Turns an `async fn` into an hb activity: work that heartbeats itself, saves checkpoints a
/// retry resumes from, and stops promptly when cancelled.
///
/// ```
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Progress {
///     #[checkpoint(done)]
///     next: usize,
/// }
///
/// /// Adds up the numbers, resuming where the previous attempt stopped.
/// #[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1h", retry(max_attempts = 5))]
/// async fn sum(ctx: ActivityContext, #[checkpoint] mut p: Progress, input: Vec<u64>)
///     -> Result<u64, ActivityError>
/// {
///     let mut total = 0;
///     for n in &input[p.next..] {
///         total += n;
///         p.next += 1;
///         ctx.checkpoint(&p)?;
///     }
///     Ok(total)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // `sum` is what you pass to `register`, `start`, or the test environment.
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(sum, vec![1, 2, 3]).await;
/// assert_eq!(run.result.unwrap(), 6);
/// # }
/// ```
///
/// # The function
///
/// ```text
/// async fn name(ctx: ActivityContext, [#[state] s: S, ..] [#[checkpoint] c: C,] [input: I])
///     -> Result<O, E>
/// ```
///
/// - `ctx: ActivityContext` comes first, by value. Any pattern works (`_ctx`, `mut ctx`).
/// - `#[state] s: S` (any number): a worker-level resource such as a pool or a client, cloned
///   from the worker's state for each attempt. `S: Clone + Send + Sync + 'static` (put big things
///   in an `Arc`). A worker without a value of type `S` refuses to register the activity.
/// - `#[checkpoint] c: C` (at most one): the previous attempt's last checkpoint, or
///   `C::default()` on a first attempt. `C` implements [`Checkpoint`](macro@Checkpoint).
///   Without it the activity's checkpoint type is `()`.
/// - `input: I` (at most one; several values go in a struct): decoded from the start payload,
///   so `I: Serialize + DeserializeOwned + Send + 'static`. Without it the input is `()`.
/// - The return type is `Result<O, E>`, with `O` the output (encoded like the input) and
///   `E: Into<ActivityError>` (`anyhow::Error` with hb-runtime's `anyhow` feature).
///   One-argument aliases work too: `io::Result<O>` and `anyhow::Result<O>` stand for
///   `Result<O, io::Error>` and `Result<O, anyhow::Error>`.
/// - Type parameters are allowed (they must be `Send + Sync + 'static`; name them with a
///   turbofish: `register(convert::<Csv>)`). Lifetime and const parameters, `self`,
///   `impl Trait` and borrowed parameters are not: everything an activity takes is decoded from
///   a payload or cloned from worker state. Patterns such as `mut p` or `Batch { items }: Batch`
///   work as in any function.
///
/// `ctx.checkpoint(&x)` in the body is checked at compile time: `x` must be the `#[checkpoint]`
/// parameter's type ("expected `&Progress`, found `&Other`" at `&x`), and without a
/// `#[checkpoint]` parameter (checkpoint type `()`) such a call is an error naming it. The
/// macro follows the context parameter and names bound to it (`let c = &ctx;`,
/// `ctx.clone()`, the closure of `ctx.run_blocking(|c| ..)`), until another binding shadows
/// them; calls inside other macros, in nested items, or on a context passed to a helper
/// function keep the run-time check (`CheckpointError::WrongType`).
///
/// Attributes on the function: docs, `#[deprecated]`, `#[must_use]` and `#[cfg_attr]` stay on the
/// function users call; `#[cfg]` applies to everything generated; lint attributes (`#[allow]`..)
/// apply to both the function and the body; anything else (`#[tracing::instrument]`, `#[inline]`)
/// applies to the body, which is where the code runs. (The body function is called
/// `__hb_body`, so give `#[tracing::instrument]` a `name = ".."`.)
///
/// When the function has docs, a paragraph saying it is an hb activity (with its type name and
/// main options) is added after them. An undocumented function gets none, so `missing_docs`
/// still reports it.
///
/// # What it generates
///
/// The function's name becomes the name of the activity in both namespaces: in value position
/// it is a constructor (`register(sum)`, `start(sum, ..)`), in type position it is the activity
/// type (`Handle<sum>`). `sum` above is equivalent to this hand-written code:
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::{ActivityOptions, BoxFuture, RetryPolicy};
/// use std::time::Duration;
/// # #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// # struct Progress { #[checkpoint(done)] next: usize }
///
/// #[derive(Debug, Clone, Copy, Default)]
/// #[allow(non_camel_case_types)]
/// struct sum;
///
/// impl Activity for sum {
///     const NAME: &'static str = "sum";
///     type Input = Vec<u64>;
///     type Output = u64;
///     type Checkpoint = Progress;
///
///     fn options(&self) -> ActivityOptions {
///         ActivityOptions::new()
///             .heartbeat_timeout(Duration::from_secs(10))
///             .start_to_close_timeout(Duration::from_secs(3600))
///             .retry(RetryPolicy::new().max_attempts(5))
///     }
///
///     fn run(&self, ctx: ActivityContext, mut p: Progress, input: Vec<u64>)
///         -> BoxFuture<'static, Result<u64, ActivityError>>
///     {
///         Box::pin(async move {
///             let mut total = 0;
///             for n in &input[p.next..] {
///                 total += n;
///                 p.next += 1;
///                 ctx.checkpoint(&p)?;
///             }
///             Ok(total)
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(|| sum, vec![1, 2, 3]).await;
/// assert_eq!(run.result.unwrap(), 6);
/// # }
/// ```
///
/// (The macro names the type `__hb_activity_sum`, adds a `type sum = __hb_activity_sum;` alias
/// and a `const fn sum() -> __hb_activity_sum`, and keeps your function as written inside
/// `run`, so errors in its body point at your code.)
///
/// # Options
///
/// Durations are strings such as `"500ms"`, `"10s"`, `"5m"` or `"1h 30m"`, checked at compile
/// time. Each option sets one `hb_runtime::ActivityOptions` field; leaving it out keeps the
/// default of `ActivityOptions::new()`.
///
/// | Option | Equivalent `ActivityOptions` code | Rules checked at compile time |
/// |---|---|---|
#[doc = activity::option_rows!()]
///
/// `retry(...)` takes these keys, each a `RetryPolicy` setter:
///
/// | `retry` key | Equivalent `RetryPolicy` code | Rules checked at compile time |
/// |---|---|---|
#[doc = activity::retry_rows!()]
///
/// For example:
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::{ActivityOptions, CancelMode, RetryPolicy};
/// use std::time::Duration;
///
/// #[activity(
///     heartbeat_timeout = "10s",
///     start_to_close_timeout = "1h",
///     stall_timeout = "2m",
///     cancel = "cooperative",
///     cancel_grace = "5s",
///     retry(max_attempts = 5, initial_interval = "1s", backoff = 2.0, max_interval = "1m",
///           non_retryable = ["BadInput"]),
/// )]
/// async fn import(ctx: ActivityContext, file: String) -> Result<u64, ActivityError> {
///     Ok(file.len() as u64)
/// }
///
/// assert_eq!(
///     import().options(),
///     ActivityOptions::new()
///         .heartbeat_timeout(Duration::from_secs(10))
///         .start_to_close_timeout(Duration::from_secs(3600))
///         .stall_timeout(Duration::from_secs(120))
///         .cancel(CancelMode::Cooperative)
///         .cancel_grace(Duration::from_secs(5))
///         .retry(
///             RetryPolicy::new()
///                 .max_attempts(5)
///                 .initial_interval(Duration::from_secs(1))
///                 .backoff(2.0)
///                 .max_interval(Duration::from_secs(60))
///                 .non_retryable(&["BadInput"]),
///         ),
/// );
/// ```
///
/// Every mistake is reported at once, on the token at fault; an unknown option lists the valid
/// ones and says which was probably meant (`heartbeat` → `heartbeat_timeout`).
///
/// `name` and `crate`, and an activity taking worker state and no input:
///
/// ```
/// mod my_sdk {
///     // A crate re-exporting hb_runtime.
///     pub use hb_runtime as hb;
/// }
/// use hb_runtime::prelude::*;
/// use std::sync::Arc;
///
/// #[activity(name = "nightly-cleanup", crate = "my_sdk::hb")]
/// async fn cleanup(_ctx: ActivityContext, #[state] dir: Arc<String>) -> Result<String, ActivityError> {
///     Ok(format!("cleaned {dir}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(<cleanup as Activity>::NAME, "nightly-cleanup");
/// let env = hb_runtime::testing::ActivityEnvironment::new().with_state(Arc::new("/tmp".to_string()));
/// assert_eq!(env.run(cleanup, ()).await.result.unwrap(), "cleaned /tmp");
/// # }
/// ```
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    activity::expand(args.into(), item.into())
        .unwrap_or_else(Failed::into_tokens)
        .into()
}

/// Derives `Checkpoint`: typed, versioned progress state that an activity saves with
/// `ctx.checkpoint(&value)` and a retry resumes from. Use it beside serde's derives, `Default`
/// and `Clone`.
///
/// ```
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Progress {
///     #[checkpoint(done)]
///     next: u64,
///     #[checkpoint(total)]
///     total: Option<u64>,
/// }
///
/// let p = Progress { next: 25, total: Some(100) };
/// let progress = p.progress().unwrap();
/// assert_eq!((progress.done, progress.total), (25, Some(100)));
/// assert_eq!(<Progress as Checkpoint>::TYPE_NAME, "Progress");
/// assert_eq!(<Progress as Checkpoint>::VERSION, 1);
/// ```
///
/// # Type options: `#[checkpoint(version = N, migrate_from = Old, crate = "..")]`
///
/// - `version = N` (at least 1; default 1) is written into every saved checkpoint. Bump it when
///   the shape changes. Equivalent to `const VERSION: u32 = N;`.
/// - `migrate_from = Old` reads checkpoints written by an older version through `Old` (itself a
///   `Checkpoint` with a lower version, possibly migrating further back) and converts them with
///   `From<Old>`. Equivalent to
///   `fn decode_version(v, value) -> .. { decode_migrated::<Self, Old>(v, value) }`, plus a
///   compile-time check that `Old::VERSION < N`.
/// - `crate = "my_crate::hb"`: the path hb_runtime is re-exported at, for crates that re-export
///   it.
///
/// Without `migrate_from`, a checkpoint of another version is a decode error, handled by the
/// activity's `on_bad_checkpoint` policy.
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::checkpoint::{decode_payload, encode_payload};
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct ProgressV1 { next: u32 }
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// #[checkpoint(version = 2, migrate_from = ProgressV1)]
/// struct Progress { next: u64, retries: u32 }
///
/// impl From<ProgressV1> for Progress {
///     fn from(old: ProgressV1) -> Self {
///         Progress { next: old.next.into(), retries: 0 }
///     }
/// }
///
/// let old = encode_payload(&ProgressV1 { next: 7 }).unwrap();
/// let new: Progress = decode_payload(&old).unwrap();
/// assert_eq!(new.next, 7);
/// ```
///
/// # Field markers: `#[checkpoint(done)]`, `#[checkpoint(total)]`
///
/// Mark the field counting finished items `done` and, optionally, the one holding the total
/// `total` (at most one of each; `total` needs `done`). Both must be integers or `Option`s of
/// integers; an `Option` total that is `None` is reported as unknown. They make
/// `progress()` return them, which is what `describe()` and the test kit report. Equivalent to:
///
/// ```text
/// fn progress(&self) -> Option<Progress> {
///     Some(Progress { done: self.next.to_count(), total: Some(self.total.to_count()) })
/// }
/// ```
///
/// Generic types and enums work too; an enum has no field markers.
#[proc_macro_derive(Checkpoint, attributes(checkpoint))]
pub fn derive_checkpoint(input: TokenStream) -> TokenStream {
    checkpoint::expand(input.into())
        .unwrap_or_else(Failed::into_tokens)
        .into()
}
