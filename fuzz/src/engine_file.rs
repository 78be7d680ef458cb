//! Damage for engine files (the `engine_file` target): fuzzer-chosen edits of an engine
//! file's rows, stamps and schema through SQLite, then raw bytes over its pages.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use rusqlite::types::Value as Sql;

/// The engine's tables: name, key column, columns (`engine/store/schema.rs`).
pub const TABLES: [(&str, &str, &[&str]); 4] = [
    (
        "activities",
        "id",
        &[
            "id",
            "type",
            "state",
            "attempt",
            "input",
            "options",
            "details",
            "output",
            "failure",
            "cancel_requested",
            "scheduled_at",
            "attempt_started_at",
            "last_heartbeat_at",
            "next_attempt_at",
            "closed_at",
            "external_attempt",
        ],
    ),
    ("heartbeats", "id", &["id", "details", "at"]),
    ("meta", "key", &["key", "value"]),
    (
        "requests",
        "seq",
        &["seq", "kind", "activity_id", "task_token", "details", "at"],
    ),
];

/// The engine's indexes.
pub const INDEXES: [&str; 2] = ["activities_by_state", "activities_by_closed"];

/// One change made through SQLite.
#[derive(Arbitrary, Debug)]
pub enum Edit {
    /// Overwrite one cell (rows and columns counted modulo what the table has).
    Set {
        table: u8,
        row: u8,
        column: u8,
        value: Value,
    },
    Delete {
        table: u8,
        row: u8,
    },
    /// A copy of a row under another key.
    Copy {
        table: u8,
        row: u8,
        key: Value,
    },
    UserVersion(Stamp),
    ApplicationId(Stamp),
    DropTable(u8),
    DropIndex(u8),
    AddColumn(u8),
    DropColumn {
        table: u8,
        column: u8,
    },
    RenameColumn {
        table: u8,
        column: u8,
    },
}

/// A value for `PRAGMA user_version` or `application_id`.
#[derive(Arbitrary, Debug)]
pub enum Stamp {
    Zero,
    One,
    Current,
    Next,
    Hb,
    Any(i32),
}

#[derive(Arbitrary, Debug)]
pub enum Value {
    Null,
    Int(i64),
    Small(i8),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    /// A time this many ms from now.
    Time(i32),
    /// Stored options with any numbers in them.
    Options {
        heartbeat_timeout_ms: Option<u64>,
        start_to_close_ms: Option<u64>,
        schedule_to_close_ms: Option<u64>,
        max_attempts: u32,
        initial_interval_ms: u64,
        backoff: f64,
        max_interval_ms: Option<u64>,
        non_retryable: Vec<String>,
    },
    /// A checkpoint envelope.
    Envelope {
        version: u8,
        done: u64,
        total: Option<u64>,
    },
    /// A failure nested `depth` retries deep.
    Failure {
        depth: u8,
        attempts: u32,
        timeout: bool,
    },
    /// The task token of attempt `attempt` of an activity of the file.
    Token {
        row: u8,
        attempt: u32,
    },
    /// An activity id of the file.
    Id(u8),
    /// A state number (0–6 are known, 99 is "unknown").
    State(u8),
}

/// Raw bytes over the file, after the edits.
#[derive(Arbitrary, Debug)]
pub enum Patch {
    Write {
        page: u8,
        offset: u16,
        bytes: Vec<u8>,
    },
    Truncate {
        pages: u8,
    },
    Append(Vec<u8>),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `path` with `suffix` appended (`-wal`, `.lock`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn stamp(s: &Stamp, current: i32) -> i32 {
    match s {
        Stamp::Zero => 0,
        Stamp::One => 1,
        Stamp::Current => current,
        Stamp::Next => current + 1,
        Stamp::Hb => 0x6862_0001,
        Stamp::Any(v) => *v,
    }
}

/// The keys of `table`, in order.
fn keys(conn: &rusqlite::Connection, table: &str, key: &str) -> Vec<Sql> {
    let Ok(mut stmt) = conn.prepare(&format!("SELECT {key} FROM {table} ORDER BY {key}")) else {
        return Vec::new();
    };
    let rows = stmt.query_map([], |r| r.get::<_, Sql>(0));
    rows.map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

fn text_of(v: &Sql) -> String {
    match v {
        Sql::Text(s) => s.clone(),
        Sql::Integer(i) => i.to_string(),
        Sql::Real(r) => r.to_string(),
        Sql::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        Sql::Null => String::new(),
    }
}

fn sql_value(v: &Value, conn: &rusqlite::Connection) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Int(i) => Sql::Integer(*i),
        Value::Small(i) => Sql::Integer(i64::from(*i)),
        Value::Real(r) => Sql::Real(*r),
        Value::Text(s) => Sql::Text(s.clone()),
        Value::Blob(b) => Sql::Blob(b.clone()),
        Value::Time(ms) => Sql::Integer(now_ms().saturating_add(i64::from(*ms))),
        Value::Options {
            heartbeat_timeout_ms,
            start_to_close_ms,
            schedule_to_close_ms,
            max_attempts,
            initial_interval_ms,
            backoff,
            max_interval_ms,
            non_retryable,
        } => Sql::Text(
            serde_json::json!({
                "heartbeat_timeout_ms": heartbeat_timeout_ms,
                "start_to_close_ms": start_to_close_ms,
                "schedule_to_close_ms": schedule_to_close_ms,
                "max_attempts": max_attempts,
                "initial_interval_ms": initial_interval_ms,
                "backoff": backoff,
                "max_interval_ms": max_interval_ms,
                "non_retryable": non_retryable,
            })
            .to_string(),
        ),
        Value::Envelope {
            version,
            done,
            total,
        } => Sql::Blob(
            serde_json::json!({"_hb_v": version, "_hb_p": [done, total], "step": done, "of": total})
                .to_string()
                .into_bytes(),
        ),
        Value::Failure {
            depth,
            attempts,
            timeout,
        } => {
            let mut f = if *timeout {
                serde_json::json!({"kind": "timeout", "timeout": "heartbeat", "details": {"_hb_v": 1}})
            } else {
                serde_json::json!({"kind": "application", "error_type": "Boom", "message": "m",
                    "non_retryable": false, "details": null})
            };
            for _ in 0..*depth {
                f = serde_json::json!({"kind": "retries_exhausted", "attempts": attempts, "last": f});
            }
            Sql::Text(f.to_string())
        }
        Value::Token { row, attempt } => {
            let ids = keys(conn, "activities", "id");
            let id = ids.get(usize::from(*row) % ids.len().max(1));
            Sql::Text(format!("{}#{attempt}", id.map(text_of).unwrap_or_default()))
        }
        Value::Id(row) => {
            let ids = keys(conn, "activities", "id");
            ids.get(usize::from(*row) % ids.len().max(1))
                .cloned()
                .unwrap_or(Sql::Null)
        }
        Value::State(s) => Sql::Integer(match s % 9 {
            7 => 99,
            8 => -1,
            s => i64::from(s),
        }),
    }
}

/// Applies `edit`; one the file refuses (a constraint, a missing table) changes nothing.
pub fn apply(conn: &rusqlite::Connection, edit: &Edit) {
    let table = |t: u8| TABLES[usize::from(t) % TABLES.len()];
    let row_key = |t: &str, key: &str, row: u8| {
        let ks = keys(conn, t, key);
        ks.get(usize::from(row) % ks.len().max(1)).cloned()
    };
    let _ = match edit {
        Edit::Set {
            table: t,
            row,
            column,
            value,
        } => {
            let (t, key, columns) = table(*t);
            let column = columns[usize::from(*column) % columns.len()];
            let Some(k) = row_key(t, key, *row) else {
                return;
            };
            let value = sql_value(value, conn);
            conn.execute(
                &format!("UPDATE {t} SET {column} = ?1 WHERE {key} = ?2"),
                rusqlite::params![value, k],
            )
        }
        Edit::Delete { table: t, row } => {
            let (t, key, _) = table(*t);
            let Some(k) = row_key(t, key, *row) else {
                return;
            };
            conn.execute(&format!("DELETE FROM {t} WHERE {key} = ?1"), [k])
        }
        Edit::Copy {
            table: t,
            row,
            key: new,
        } => {
            let (t, key, columns) = table(*t);
            let Some(k) = row_key(t, key, *row) else {
                return;
            };
            let rest = columns[1..].join(", ");
            let new = sql_value(new, conn);
            conn.execute(
                &format!(
                    "INSERT INTO {t} ({key}, {rest}) SELECT ?1, {rest} FROM {t} WHERE {key} = ?2"
                ),
                rusqlite::params![new, k],
            )
        }
        Edit::UserVersion(s) => conn
            .execute_batch(&format!("PRAGMA user_version = {}", stamp(s, 2)))
            .map(|_| 0),
        Edit::ApplicationId(s) => conn
            .execute_batch(&format!(
                "PRAGMA application_id = {}",
                stamp(s, 0x6862_0001)
            ))
            .map(|_| 0),
        Edit::DropTable(t) => conn
            .execute_batch(&format!("DROP TABLE {}", table(*t).0))
            .map(|_| 0),
        Edit::DropIndex(i) => conn
            .execute_batch(&format!(
                "DROP INDEX {}",
                INDEXES[usize::from(*i) % INDEXES.len()]
            ))
            .map(|_| 0),
        Edit::AddColumn(t) => conn
            .execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN extra BLOB",
                table(*t).0
            ))
            .map(|_| 0),
        Edit::DropColumn { table: t, column } => {
            let (t, _, columns) = table(*t);
            let column = columns[usize::from(*column) % columns.len()];
            conn.execute_batch(&format!("ALTER TABLE {t} DROP COLUMN {column}"))
                .map(|_| 0)
        }
        Edit::RenameColumn { table: t, column } => {
            let (t, _, columns) = table(*t);
            let column = columns[usize::from(*column) % columns.len()];
            conn.execute_batch(&format!(
                "ALTER TABLE {t} RENAME COLUMN {column} TO renamed"
            ))
            .map(|_| 0)
        }
    };
}

/// Writes `seed` to `path`, applies up to 12 `edits` through SQLite, then up to 4 raw
/// `patches`.
pub fn prepare(path: &Path, seed: &[u8], edits: &[Edit], patches: &[Patch]) {
    fs::write(path, seed).expect("write the file");
    if !edits.is_empty() {
        let conn = rusqlite::Connection::open(path).expect("open the seed");
        let _ = conn.execute_batch("PRAGMA synchronous = OFF");
        for edit in edits.iter().take(12) {
            apply(&conn, edit);
        }
        // Everything into the main file: the raw patches then see it all.
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        drop(conn);
        let _ = fs::remove_file(sibling(path, "-wal"));
        let _ = fs::remove_file(sibling(path, "-shm"));
    }
    if patches.is_empty() {
        return;
    }
    let mut bytes = fs::read(path).expect("read the file");
    for patch in patches.iter().take(4) {
        let pages = bytes.len().div_ceil(4096).max(1);
        match patch {
            Patch::Write {
                page,
                offset,
                bytes: new,
            } => {
                let at = (usize::from(*page) % pages) * 4096 + usize::from(*offset) % 4096;
                for (i, b) in new.iter().take(64).enumerate() {
                    if let Some(old) = bytes.get_mut(at + i) {
                        *old = *b;
                    }
                }
            }
            Patch::Truncate { pages: keep } => {
                bytes.truncate(usize::from(*keep) % pages * 4096);
            }
            Patch::Append(more) => bytes.extend(more.iter().take(8192)),
        }
    }
    fs::write(path, &bytes).expect("write the file");
}
