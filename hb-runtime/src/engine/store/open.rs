//! Connections to the engine file: the writer's (created mode 0600, never through a symbolic
//! link, WAL, its sync and size settings) and read-only ones for describe, list and the `hb`
//! tool, each after the identity checks of `schema`.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::super::error::EngineError;
use super::schema::{check_identity, init};

/// Opens (creating if needed) a file readable and writable by its owner only. Never through a
/// symbolic link, and only a plain file with no other name: one planted in a shared
/// directory must not lead hb to write (or truncate) someone else's file.
pub(super) fn open_private(path: &Path, truncate: bool) -> Result<std::fs::File, EngineError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let refused = |reason: &str| EngineError::Foreign {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused(
                "a symbolic link; hb does not write through one (remove it, or open the file it points to)",
            ),
            _ => EngineError::io(path, e),
        })?;
    let meta = file.metadata().map_err(|e| EngineError::io(path, e))?;
    if !meta.is_file() {
        return Err(refused("not a regular file"));
    }
    if meta.nlink() > 1 {
        return Err(refused(
            "a file with other names (hard links); hb does not write to one",
        ));
    }
    if truncate {
        file.set_len(0).map_err(|e| EngineError::io(path, e))?;
    }
    Ok(file)
}

/// Opens the engine file for writing: creates it (mode 0600) or checks it is an hb file of a
/// schema this build knows, then sets WAL and creates the tables.
pub(crate) fn open_write(path: &Path) -> Result<Connection, EngineError> {
    // Created (mode 0600) or checked here, never through a symbolic link.
    open_private(path, false)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| EngineError::sqlite(path, e))?;
    check_identity(&conn, path, true)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
    )
    .map_err(|e| EngineError::sqlite(path, e))?;
    init(&conn, path)?;
    Ok(conn)
}

/// Flushes every commit to the disk (`PRAGMA synchronous = FULL`).
pub(crate) fn sync_every_commit(conn: &Connection, path: &Path) -> Result<(), EngineError> {
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(|e| EngineError::sqlite(path, e))
}

/// Caps the file's size (`PRAGMA max_page_count`).
pub(crate) fn limit_size(conn: &Connection, path: &Path, bytes: u64) -> Result<(), EngineError> {
    let page: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| EngineError::sqlite(path, e))?;
    let pages = (bytes / page.max(512) as u64).max(1);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
        .map_err(|e| EngineError::sqlite(path, e))
}

/// Opens the engine file read-only (for the CLI and describe/list): never creates or changes it.
pub(crate) fn open_read(path: &Path) -> Result<Connection, EngineError> {
    if !path.exists() {
        return Err(EngineError::Missing {
            path: path.to_path_buf(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| EngineError::sqlite(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| EngineError::sqlite(path, e))?;
    check_identity(&conn, path, false)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hb-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("hb.db")
    }

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_write_connection_syncs_normally_and_fully_when_asked() {
        let path = scratch("sync");
        let conn = open_write(&path).unwrap();
        assert_eq!(synchronous(&conn), 1, "NORMAL by default");
        sync_every_commit(&conn, &path).unwrap();
        assert_eq!(synchronous(&conn), 2, "FULL for power_loss_safe");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
