//! Errors of the embedded engine: its file, its workers.

use std::path::{Path, PathBuf};

/// What went wrong opening or using an engine file.
///
/// Each variant carries what a caller needs to act on it (the path, the holder, the versions);
/// client calls report these as [`ClientError::Engine`](crate::client::ClientError::Engine).
///
/// ```
/// use hb_runtime::engine::{EngineError, Inspector};
///
/// let err = Inspector::open("no-such-dir/hb.db").unwrap_err();
/// assert!(matches!(err, EngineError::Missing { ref path } if path.ends_with("hb.db")));
/// assert_eq!(err.to_string(), "no-such-dir/hb.db does not exist");
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
    /// No activity has this id.
    #[error("no activity with id `{id}`")]
    NotFound {
        /// The id.
        id: String,
    },
    /// A worker's configuration was refused at `spawn`.
    #[error(transparent)]
    Config(#[from] crate::worker::ConfigError),
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
