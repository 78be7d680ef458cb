//! `anyhow::Error` into [`ActivityError`] (feature `anyhow`).

use super::{ActivityError, CheckpointError};

/// With the `anyhow` feature: `?` on an `anyhow::Error` in a body returning
/// `Result<T, ActivityError>`, and bodies returning `anyhow::Result<T>`.
///
/// - An [`ActivityError`] or a [`CheckpointError`] inside the error (one that went into
///   anyhow by `?`, with `.context(..)` on top or not) comes back out: its retry class, error
///   type and details are kept, and contexts added on top of an
///   [`Application`](ActivityError::Application) error are put before its message.
/// - Any other error is a retryable failure of error type `"anyhow::Error"` (what a retry
///   policy's `non_retryable` list would name) whose message is the whole chain,
///   `context: cause: root cause`. Give it a type of its own with [`ResultExt`](crate::ResultExt) or
///   [`ActivityError::non_retryable`] where it arises.
///
/// ```
/// use anyhow::Context;
/// use hb_runtime::prelude::*;
///
/// fn parse(line: &str) -> anyhow::Result<u64> {
///     let n = line.trim().parse::<u64>().context("not a number")?;
///     anyhow::ensure!(n > 0, "zero items");
///     Ok(n)
/// }
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn count(ctx: ActivityContext, #[checkpoint] mut done: u64, line: String) -> anyhow::Result<u64> {
///     done += parse(&line).with_context(|| format!("reading {line:?}"))?;
///     ctx.checkpoint(&done)?; // a CheckpointError keeps its type through anyhow
///     Ok(done)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let env = hb_runtime::testing::ActivityEnvironment::new();
/// assert_eq!(env.run(count, "5".to_string()).await.result.unwrap(), 5);
///
/// let err = env.run(count, "x".to_string()).await.result.unwrap_err();
/// assert_eq!(err.error_type(), "anyhow::Error");
/// assert!(err.is_retryable());
/// assert_eq!(err.message(), "reading \"x\": not a number: invalid digit found in string");
/// # }
/// ```
impl From<anyhow::Error> for ActivityError {
    fn from(e: anyhow::Error) -> Self {
        // The messages above an hb error, if there is one in the chain.
        let mut contexts = Vec::new();
        for cause in e.chain() {
            let found = if let Some(error) = cause.downcast_ref::<ActivityError>() {
                error.clone()
            } else if let Some(error) = cause.downcast_ref::<CheckpointError>() {
                ActivityError::Checkpoint(error.clone())
            } else {
                contexts.push(cause.to_string());
                continue;
            };
            return match found {
                ActivityError::Application {
                    error_type,
                    message,
                    non_retryable,
                    details,
                } if !contexts.is_empty() => {
                    contexts.push(message);
                    ActivityError::Application {
                        error_type,
                        message: contexts.join(": "),
                        non_retryable,
                        details,
                    }
                }
                other => other,
            };
        }
        ActivityError::retryable("anyhow::Error", format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn an_hb_error_inside_keeps_its_class_and_gains_the_contexts() {
        let inner: Result<(), ActivityError> =
            Err(ActivityError::non_retryable("BadInput", "row 3 has no id"));
        let e = inner.context("loading page 2").unwrap_err();
        let e = ActivityError::from(e.context("importing orders.csv"));
        assert_eq!(e.error_type(), "BadInput");
        assert!(!e.is_retryable());
        assert_eq!(
            e.message(),
            "importing orders.csv: loading page 2: row 3 has no id"
        );

        let bare = ActivityError::from(anyhow::Error::from(ActivityError::retryable(
            "RateLimited",
            "429",
        )));
        assert_eq!(bare.to_string(), "RateLimited: 429");
        assert!(bare.is_retryable());
    }

    #[test]
    fn a_checkpoint_error_stays_one() {
        let closed: Result<(), CheckpointError> = Err(CheckpointError::Closed);
        let e = ActivityError::from(closed.context("saving").unwrap_err());
        assert!(matches!(
            e,
            ActivityError::Checkpoint(CheckpointError::Closed)
        ));
        assert!(!e.is_retryable());
    }

    #[test]
    fn anything_else_is_retryable_with_the_whole_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::from(io).context("opening a.csv");
        let e = ActivityError::from(e);
        assert_eq!(e.error_type(), "anyhow::Error");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "anyhow::Error: opening a.csv: no such file");
        assert_eq!(
            ActivityError::from(anyhow::anyhow!("plain")).message(),
            "plain"
        );
    }
}
