//! Engines of this process still releasing their files.
//!
//! Dropping the last handle of an engine stops its writer thread, which commits what is
//! queued, checkpoints the WAL and then releases the file's lock. That takes a moment, and
//! the drop must not block whatever thread does it (often a tokio worker), so the thread is
//! left to finish and noted here; `Engine::open` of the same file in this process waits for it
//! (on a blocking thread) before taking the lock.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

static RELEASING: Mutex<Vec<(PathBuf, JoinHandle<()>)>> = Mutex::new(Vec::new());

/// What identifies the file at `path` (its directory resolved, so two spellings of one file
/// agree).
pub(crate) fn key(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    match (
        dir.map_or_else(std::env::current_dir, std::fs::canonicalize),
        path.file_name(),
    ) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// The writer thread of the engine of file `key` is finishing.
pub(crate) fn note(key: PathBuf, thread: JoinHandle<()>) {
    let mut releasing = RELEASING.lock().unwrap_or_else(PoisonError::into_inner);
    releasing.retain(|(_, t)| !t.is_finished());
    releasing.push((key, thread));
}

/// Waits until every engine of this process that had file `key` open has released it.
/// Blocks: call it from a blocking thread.
pub(crate) fn wait(key: &Path) {
    let threads: Vec<JoinHandle<()>> = {
        let mut releasing = RELEASING.lock().unwrap_or_else(PoisonError::into_inner);
        let (mine, others) = std::mem::take(&mut *releasing)
            .into_iter()
            .partition(|(k, _)| k == key);
        *releasing = others;
        mine.into_iter().map(|(_, t)| t).collect()
    };
    for t in threads {
        let _ = t.join();
    }
}
