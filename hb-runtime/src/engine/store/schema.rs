//! The file's schema, and what makes a file hb's: `application_id` and `user_version` stamped
//! together. A file that is not SQLite, belongs to something else or has a newer schema is
//! refused before anything is written to it; one of the older schema is upgraded in place.

use std::path::Path;

use rusqlite::Connection;

use super::super::error::EngineError;

/// What identifies an hb engine file (`PRAGMA application_id`, "hb\0\1").
pub(crate) const APPLICATION_ID: i32 = 0x6862_0001;
/// The schema this build writes and reads (see [`migrate`] for the older ones it upgrades).
pub(crate) const SCHEMA_VERSION: i32 = 5;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS activities (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    input BLOB NOT NULL,
    options TEXT NOT NULL,
    details BLOB,
    output BLOB,
    failure TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    scheduled_at INTEGER NOT NULL,
    attempt_started_at INTEGER,
    last_heartbeat_at INTEGER,
    next_attempt_at INTEGER,
    closed_at INTEGER,
    external_attempt INTEGER,
    attempt_base INTEGER NOT NULL DEFAULT 0,
    operator INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- By state and by type, newest first: the dashboard's pages (and recovery's open rows) read
-- these in order, so a page of 100,000 rows reads a page's worth. Each secondary index of a
-- WITHOUT ROWID table ends with the primary key, so `id` breaks ties in order.
CREATE INDEX IF NOT EXISTS activities_by_state_time ON activities(state, scheduled_at);
CREATE INDEX IF NOT EXISTS activities_by_type_time ON activities(type, scheduled_at);
CREATE INDEX IF NOT EXISTS activities_by_closed ON activities(closed_at) WHERE closed_at IS NOT NULL;
-- Heartbeats of running attempts, apart from the wide activity rows: thousands a second touch
-- few small pages here. A state change folds the latest one into `activities`.
CREATE TABLE IF NOT EXISTS heartbeats (
    id TEXT PRIMARY KEY NOT NULL,
    details BLOB,
    at INTEGER NOT NULL
) WITHOUT ROWID;
-- The newest heartbeat request applied (`requests_applied`): an older one left behind by a
-- failed delete is not applied after it.
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- The attempts that ended while their activity stayed open (a failure retried, a pause, a
-- reset), the newest 100 per activity; the last attempt is read from the activity's row.
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    failure TEXT,
    details BLOB,
    PRIMARY KEY (id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    activity_id TEXT,
    task_token TEXT,
    details BLOB,
    at INTEGER NOT NULL
);
";

/// Creates the tables (if missing) and stamps the file as hb's. An hb file of this schema is
/// not written to at all: a damaged one must be refused before anything touches it.
pub(crate) fn init(conn: &Connection, path: &Path) -> Result<(), EngineError> {
    let stamp = |name: &str| -> Result<i32, EngineError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(|e| EngineError::sqlite(path, e))
    };
    if stamp("application_id")? == APPLICATION_ID {
        match stamp("user_version")? {
            SCHEMA_VERSION => return Ok(()),
            v @ (1..=4) => return migrate(conn, path, v),
            _ => {}
        }
    }
    // The tables and the stamp in one transaction: a file with hb's application_id always has
    // a schema version (check_identity refuses one without).
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA}
         PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK;");
        EngineError::sqlite(path, e)
    })
}

/// Upgrades a file of schema 1 to 4 to this one, in one transaction. Schema 2 added the column
/// that marks attempts heartbeated by another process, the index retention prunes by, and the
/// table of the newest heartbeat request applied; schema 3 the columns of the operator
/// controls (pause, unpause, reset): the attempts before the last reset, and the requests a
/// running attempt was told of; schema 4 the table of ended attempts (`attempts`). A file of
/// schema 3 is refused by older builds, which would drop the `pause`, `unpause` and `reset`
/// requests queued in it; one of schema 4 by builds that would not prune its history; schema 5
/// the indexes by state and by type in time order that the dashboard pages through (they
/// replace the index by state alone).
fn migrate(conn: &Connection, path: &Path, from: i32) -> Result<(), EngineError> {
    let to_2 = "ALTER TABLE activities ADD COLUMN external_attempt INTEGER;
         CREATE INDEX IF NOT EXISTS activities_by_closed ON activities(closed_at) WHERE closed_at IS NOT NULL;
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;";
    let to_3 = "ALTER TABLE activities ADD COLUMN attempt_base INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE activities ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;";
    let to_4 = "CREATE TABLE IF NOT EXISTS attempts (id TEXT NOT NULL, seq INTEGER NOT NULL,
         attempt INTEGER NOT NULL, started_at INTEGER, ended_at INTEGER NOT NULL, outcome TEXT NOT NULL,
         failure TEXT, details BLOB, PRIMARY KEY (id, seq)) WITHOUT ROWID;";
    let to_5 = "DROP INDEX IF EXISTS activities_by_state;
         CREATE INDEX IF NOT EXISTS activities_by_state_time ON activities(state, scheduled_at);
         CREATE INDEX IF NOT EXISTS activities_by_type_time ON activities(type, scheduled_at);";
    let steps = match from {
        1 => format!("{to_2} {to_3} {to_4}"),
        2 => format!("{to_3} {to_4}"),
        3 => to_4.to_owned(),
        _ => String::new(),
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {steps} {to_5}
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK;");
        EngineError::sqlite(path, e)
    })?;
    tracing::info!(path = %path.display(), from, to = SCHEMA_VERSION, "engine file upgraded");
    Ok(())
}

/// Refuses files that are not SQLite, belong to something else, or have a newer schema.
pub(super) fn check_identity(
    conn: &Connection,
    path: &Path,
    may_init: bool,
) -> Result<(), EngineError> {
    let pragma = |name: &str| -> Result<i32, EngineError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(|e| EngineError::sqlite(path, e))
    };
    let app = pragma("application_id")?;
    let version = pragma("user_version")?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| EngineError::sqlite(path, e))?;
    if app == 0 && tables == 0 {
        return if may_init {
            Ok(())
        } else {
            Err(EngineError::Foreign {
                path: path.to_path_buf(),
                reason: "an empty SQLite file, not an hb engine file".into(),
            })
        };
    }
    if app != APPLICATION_ID {
        return Err(EngineError::Foreign {
            path: path.to_path_buf(),
            reason: format!("SQLite application_id is {app:#x}, not hb's {APPLICATION_ID:#x}"),
        });
    }
    if version < 1 {
        // hb stamps its application_id and a schema version together: a file with the one
        // and not the other was not written by hb (or was damaged). Refused before anything
        // is written to it (found by fuzzing: such a file was stamped, then refused).
        return Err(EngineError::Foreign {
            path: path.to_path_buf(),
            reason: format!("hb's application_id with schema version {version}"),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(EngineError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}
