//! The writer lock: `<file>.lock` beside the engine file, locked by the one process that
//! writes the file and holding its process id, so a second one is refused with who holds it
//! while readers (the `hb` tool) carry on.

use std::path::{Path, PathBuf};

use super::super::error::EngineError;
use super::open::open_private;

/// The lock that keeps a second process from writing the same file.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: std::fs::File,
}

pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes the writer lock of `db`, or says who holds it.
pub(crate) fn lock(db: &Path) -> Result<FileLock, EngineError> {
    use std::io::Write as _;
    let path = lock_path(db);
    let mut file = open_private(&path, false)?;
    // A reader asking whether an engine runs (`is_locked`: `hb ls`, the dashboard) holds a
    // shared lock for a moment: try again a few times before calling the file taken.
    let mut tries = 0;
    let taken = loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => break other,
        }
    };
    match taken {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = write!(file, "{}", std::process::id());
            Ok(FileLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(EngineError::Locked {
                path: db.to_path_buf(),
                holder: holder.trim().parse().ok(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(EngineError::io(&path, e)),
    }
}

/// Whether some process holds the writer lock of `db` (without taking it).
pub(crate) fn is_locked(db: &Path) -> bool {
    let Ok(file) = std::fs::File::open(lock_path(db)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}
