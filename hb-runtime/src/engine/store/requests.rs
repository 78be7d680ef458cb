//! The `requests` table: what other processes (the `hb cancel` command, heartbeats by task
//! token from elsewhere) queue in the file for the engine that has it open, and the engine's
//! reading of them.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

use super::super::error::EngineError;
use super::schema::check_identity;

/// A request another process left in the file (`hb cancel`, a heartbeat by task token).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) seq: i64,
    pub(crate) kind: String,
    pub(crate) activity_id: Option<String>,
    pub(crate) task_token: Option<String>,
    pub(crate) details: Option<Vec<u8>>,
}

/// The requests queued in the file, oldest first (at most 1,000).
pub(crate) fn read_requests(c: &Connection) -> rusqlite::Result<Vec<Request>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, kind, activity_id, task_token, details FROM requests ORDER BY seq LIMIT 1000",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Request {
            seq: r.get(0)?,
            kind: r.get(1)?,
            activity_id: r.get(2)?,
            task_token: r.get(3)?,
            details: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Adds a request row from outside the engine process (the CLI, an external heartbeater).
pub(crate) fn insert_request(
    path: &Path,
    kind: &str,
    activity_id: Option<&str>,
    task_token: Option<&str>,
    details: Option<&[u8]>,
    at: i64,
) -> Result<(), EngineError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| EngineError::sqlite(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| EngineError::sqlite(path, e))?;
    check_identity(&conn, path, false)?;
    conn.execute(
        "INSERT INTO requests (kind, activity_id, task_token, details, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![kind, activity_id, task_token, details, at],
    )
    .map_err(|e| EngineError::sqlite(path, e))?;
    Ok(())
}
