//! Errors of the embedded engine, its worker and its client.

use std::path::{Path, PathBuf};

/// What went wrong opening or using an engine file.
///
/// Each variant carries what a caller needs to act on it (the path, the id, the types):
///
/// ```
/// use hb_runtime::engine::{Engine, EngineError, StartOptions};
/// use hb_runtime::prelude::*;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
///     Ok(format!("hello {name}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// let client = engine.client();
/// client.start(double, 1, StartOptions::id("job")).await?;
///
/// match client.start(greet, "hb".into(), StartOptions::id("job")).await {
///     Err(EngineError::WrongType { id, found, expected }) => {
///         assert_eq!(id, "job");
///         assert_eq!((found.as_str(), expected.as_str()), ("double", "greet"));
///     }
///     other => panic!("expected WrongType, got {other:?}"),
/// }
///
/// let err = client.describe("nope").await.unwrap_err();
/// assert_eq!(err, EngineError::NotFound { id: "nope".into() });
/// assert_eq!(err.to_string(), "no activity with id `nope`");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Another process holds the file for writing.
    #[error("{} is in use by {}; only one engine may write a file at a time (the hb CLI reads it meanwhile)", path.display(), holder_text(*holder))]
    Locked {
        /// The engine file.
        path: PathBuf,
        /// The holder's process id, when it wrote one.
        holder: Option<u32>,
    },
    /// The file does not exist (read-only opens never create one).
    #[error("{} does not exist", path.display())]
    Missing {
        /// The engine file.
        path: PathBuf,
    },
    /// The file is a database of something else.
    #[error("{} is not an hb engine file: {reason}; it was left untouched", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The file was written by a newer hb.
    #[error("{} has schema version {found}, newer than this build of hb supports ({supported}); upgrade hb — the file was left untouched", path.display())]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i32,
        /// The newest this build reads.
        supported: i32,
    },
    /// The file is not a database or is damaged.
    #[error("{} is corrupt or not a database: {message}; it was left untouched", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's message.
        message: String,
    },
    /// A read or write of the file failed (disk full, permissions, I/O error). Nothing of the
    /// failed write was stored.
    #[error("storage error on {}: {message}", path.display())]
    Storage {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// An activity with this id exists already (and
    /// [`StartOptions::fail_if_exists`](super::StartOptions::fail_if_exists) said to refuse).
    #[error("an activity with id `{id}` was already started (type {activity_type})")]
    AlreadyStarted {
        /// The id.
        id: String,
        /// Its type.
        activity_type: String,
    },
    /// No activity has this id.
    #[error("no activity with id `{id}`")]
    NotFound {
        /// The id.
        id: String,
    },
    /// The activity exists but is of another type than the handle asked for.
    #[error("activity `{id}` is of type {found}, not {expected}")]
    WrongType {
        /// The id.
        id: String,
        /// Its type.
        found: String,
        /// The type asked for.
        expected: String,
    },
    /// The input could not be encoded.
    #[error("cannot encode the input of `{activity_type}`: {message}")]
    BadInput {
        /// The activity type.
        activity_type: String,
        /// The serde message.
        message: String,
    },
    /// A worker was asked to run an activity whose `#[state]` the worker does not have.
    #[error(transparent)]
    MissingState(#[from] crate::state::MissingState),
    /// The engine has shut down.
    #[error("the engine has shut down")]
    Closed,
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) if pid == std::process::id() => {
            format!("another engine of this process (pid {pid})")
        }
        Some(pid) => format!("another process (pid {pid})"),
        None => "another process".to_owned(),
    }
}

impl EngineError {
    pub(crate) fn sqlite(path: &Path, e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let code = e.sqlite_error_code();
        match code {
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                EngineError::Corrupt {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                }
            }
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                EngineError::Locked {
                    path: path.to_path_buf(),
                    holder: None,
                }
            }
            _ => EngineError::Storage {
                path: path.to_path_buf(),
                message: e.to_string(),
            },
        }
    }

    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        EngineError::Storage {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
