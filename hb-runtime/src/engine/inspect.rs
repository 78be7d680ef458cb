//! Reading an engine file from outside the engine's process: what the `hb` CLI uses.

use std::fmt;
use std::path::{Path, PathBuf};

use super::EngineError;
use super::client::describe_row;
use super::store::{self, Reader};
use crate::client::{Description, ListFilter};

/// A read-only view of an engine file. Never creates, locks or changes the file; works while
/// an engine has it open.
///
/// ```
/// use hb_runtime::client::ListFilter;
/// use hb_runtime::engine::{Engine, Inspector, EngineError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), EngineError> {
/// let dir = std::env::temp_dir().join(format!("hb-doc-inspect-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("hb.db");
/// let engine = Engine::open(&path).await?;
/// let inspector = Inspector::open(&path)?;
/// assert!(inspector.list(&ListFilter::all())?.is_empty());
/// assert!(matches!(Inspector::open(dir.join("missing.db")), Err(EngineError::Missing { .. })));
/// # drop(engine); std::fs::remove_dir_all(&dir).ok(); Ok(()) }
/// ```
pub struct Inspector {
    reader: Reader,
    path: PathBuf,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector")
            .field("path", &self.path)
            .finish()
    }
}

impl Inspector {
    /// Opens `path` read-only.
    ///
    /// # Errors
    /// [`EngineError::Missing`], [`EngineError::Foreign`], [`EngineError::Corrupt`],
    /// [`EngineError::NewerSchema`], [`EngineError::Storage`].
    pub fn open(path: impl AsRef<Path>) -> Result<Inspector, EngineError> {
        let path = path.as_ref().to_path_buf();
        let conn = store::open_read(&path)?;
        Ok(Inspector {
            reader: Reader::new(conn, path.clone()),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Activities matching `filter`, newest first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Description>, EngineError> {
        Ok(self
            .reader
            .list(&filter.statuses, filter.effective_limit())?
            .into_iter()
            .map(describe_row)
            .collect())
    }

    /// Activity `id`.
    pub fn get(&self, id: &str) -> Result<Description, EngineError> {
        self.reader
            .get_with_history(id)?
            .map(|(row, ended)| describe_row(row).with_attempts(ended))
            .ok_or_else(|| EngineError::NotFound { id: id.to_owned() })
    }

    /// One page of a listing, newest first (the dashboard's; see `store::page_rows`).
    #[cfg(feature = "dashboard")]
    pub(crate) fn page(&self, q: &store::PageQuery) -> Result<Vec<Description>, EngineError> {
        Ok(self.reader.page(q)?.into_iter().map(describe_row).collect())
    }

    /// The row of `id`, its input included.
    #[cfg(feature = "dashboard")]
    pub(crate) fn row(&self, id: &str) -> Result<Option<super::record::ActivityRow>, EngineError> {
        self.reader.get(id)
    }

    /// How many rows each status has, and the types (at most `types`).
    #[cfg(feature = "dashboard")]
    pub(crate) fn summary(&self, types: usize) -> Result<store::Summary, EngineError> {
        self.reader.summary(types)
    }

    /// Whether an engine process holds the file for writing now.
    pub fn engine_running(&self) -> bool {
        store::is_locked(&self.path)
    }

    /// `PRAGMA integrity_check`: `"ok"` when the file is sound.
    pub fn integrity_check(&self) -> Result<String, EngineError> {
        self.reader.integrity_check()
    }
}
