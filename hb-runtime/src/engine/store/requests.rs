//! The `requests` table: what other processes (the `hb cancel`, `pause`, `unpause` and `reset`
//! commands, heartbeats by task token from elsewhere) queue in the file for the engine that has it open. The one place that
//! knows how a [`Request`] is stored: rows are parsed here, at the edge, and a row this build
//! cannot apply (another build's kind, a missing or mistyped field) is warned of and handed on
//! as unreadable, never a failure of the whole queue.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params};

use super::super::core::{Operation, Queued, Request};
use super::super::error::EngineError;
use super::schema::check_identity;
use crate::Payload;
use crate::transport::TaskToken;

/// The `kind` of a cancel request. Kinds are the file format, shared with every build and
/// tool that writes the file: never change one.
pub(crate) const CANCEL: &str = "cancel";
/// The `kind` of a heartbeat request.
pub(crate) const HEARTBEAT: &str = "heartbeat";
/// The `kind` of a pause request (schema 3).
pub(crate) const PAUSE: &str = "pause";
/// The `kind` of an unpause request (schema 3).
pub(crate) const UNPAUSE: &str = "unpause";
/// The `kind` of a reset request (schema 3); its `details` are its options as JSON,
/// `{"keep_checkpoint": true, "keep_paused": false}` (a field left out takes that default).
pub(crate) const RESET: &str = "reset";

/// A reset's options as its `details` hold them.
#[derive(serde::Serialize, serde::Deserialize)]
struct ResetDetails {
    #[serde(default = "yes")]
    keep_checkpoint: bool,
    #[serde(default)]
    keep_paused: bool,
}

fn yes() -> bool {
    true
}

/// The requests queued in the file, oldest first (at most 1,000).
pub(crate) fn read_requests(c: &Connection) -> rusqlite::Result<Vec<Queued>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, kind, activity_id, task_token, details FROM requests ORDER BY seq LIMIT 1000",
    )?;
    let rows = stmt.query_map([], |r| {
        let seq = r.get(0)?;
        let request = parse(r.get_ref(1)?, r.get_ref(2)?, r.get_ref(3)?, r.get_ref(4)?)
            .map_err(|why| {
                tracing::warn!(
                    seq,
                    kind = ?r.get_ref(1).ok().and_then(text),
                    why,
                    "skipping a request queued in the engine file that this build cannot apply; it is deleted"
                );
            })
            .ok();
        Ok(Queued { seq, request })
    })?;
    rows.collect()
}

/// The request of a row's `kind`, `activity_id`, `task_token` and `details`, or why it is
/// not one this build can apply. Lenient where nothing is lost: details may be text as well
/// as bytes, and fields a kind does not use are not looked at.
fn parse(
    kind: ValueRef<'_>,
    activity_id: ValueRef<'_>,
    task_token: ValueRef<'_>,
    details: ValueRef<'_>,
) -> Result<Request, &'static str> {
    match text(kind) {
        Some(CANCEL) => {
            let id = text(activity_id).ok_or("a cancel without a text activity_id")?;
            Ok(Request::Cancel { id: id.to_owned() })
        }
        Some(kind @ (PAUSE | UNPAUSE | RESET)) => {
            let id = text(activity_id).ok_or("an operator request without a text activity_id")?;
            let op = match kind {
                PAUSE => Operation::Pause,
                UNPAUSE => Operation::Unpause,
                _ => {
                    let options: ResetDetails = match details {
                        ValueRef::Null => ResetDetails {
                            keep_checkpoint: true,
                            keep_paused: false,
                        },
                        ValueRef::Blob(b) | ValueRef::Text(b) => serde_json::from_slice(b)
                            .map_err(|_| "a reset whose options are not the JSON expected")?,
                        _ => return Err("a reset whose options are neither bytes nor text"),
                    };
                    Operation::Reset {
                        keep_checkpoint: options.keep_checkpoint,
                        keep_paused: options.keep_paused,
                    }
                }
            };
            Ok(Request::Operate {
                id: id.to_owned(),
                op,
            })
        }
        Some(HEARTBEAT) => {
            let token = text(task_token).ok_or("a heartbeat without a text task_token")?;
            let details = match details {
                ValueRef::Null => None,
                ValueRef::Blob(b) | ValueRef::Text(b) => Some(Payload::from_json_bytes(b.to_vec())),
                _ => return Err("a heartbeat whose details are neither bytes nor text"),
            };
            Ok(Request::Heartbeat {
                token: TaskToken::new(token.as_bytes().to_vec()),
                details,
            })
        }
        Some(_) => Err("an unknown kind (written by a newer build?)"),
        None => Err("a kind that is not text"),
    }
}

/// A column's text, if it is UTF-8 text.
fn text(v: ValueRef<'_>) -> Option<&str> {
    match v {
        ValueRef::Text(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// Queues `request` in the file `conn` has open, as made at `at` (ms).
pub(crate) fn insert(conn: &Connection, request: &Request, at: i64) -> rusqlite::Result<()> {
    const SQL: &str = "INSERT INTO requests (kind, activity_id, task_token, details, at) VALUES (?1, ?2, ?3, ?4, ?5)";
    match request {
        Request::Cancel { id } => {
            conn.execute(SQL, params![CANCEL, id, None::<&str>, None::<&[u8]>, at])?
        }
        Request::Operate { id, op } => {
            let (kind, details) = match op {
                Operation::Pause => (PAUSE, None),
                Operation::Unpause => (UNPAUSE, None),
                Operation::Reset {
                    keep_checkpoint,
                    keep_paused,
                } => (
                    RESET,
                    serde_json::to_vec(&ResetDetails {
                        keep_checkpoint: *keep_checkpoint,
                        keep_paused: *keep_paused,
                    })
                    .ok(),
                ),
            };
            conn.execute(SQL, params![kind, id, None::<&str>, details, at])?
        }
        Request::Heartbeat { token, details } => conn.execute(
            SQL,
            params![
                HEARTBEAT,
                None::<&str>,
                String::from_utf8_lossy(token.as_bytes()),
                details.as_ref().map(Payload::data),
                at
            ],
        )?,
    };
    Ok(())
}

/// Queues `request` in the engine file at `path`, from outside the engine's process (the
/// CLI, an external heartbeater).
pub(crate) fn insert_request(path: &Path, request: &Request, at: i64) -> Result<(), EngineError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| EngineError::sqlite(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| EngineError::sqlite(path, e))?;
    check_identity(&conn, path, false)?;
    insert(&conn, request, at).map_err(|e| EngineError::sqlite(path, e))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn file() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::init(&conn, Path::new(":memory:")).unwrap();
        conn
    }

    /// A row as any writer may leave it: `kind`, `activity_id`, `task_token`, `details`.
    fn raw(conn: &Connection, row: [&dyn rusqlite::ToSql; 4]) {
        conn.execute(
            "INSERT INTO requests (kind, activity_id, task_token, details, at) VALUES (?1, ?2, ?3, ?4, 0)",
            &row[..],
        )
        .unwrap();
    }

    /// Reads the queue, and what was logged meanwhile.
    fn read_logged(conn: &Connection) -> (Vec<Queued>, String) {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        let read = tracing::subscriber::with_default(subscriber, || read_requests(conn)).unwrap();
        let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        (read, logged)
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn requests_are_stored_as_the_file_format_says_and_read_back_typed() {
        let conn = file();
        let details = Payload::from_json_bytes(br#"{"step":1}"#.to_vec());
        let heartbeat = Request::Heartbeat {
            token: TaskToken::new(*b"job#3"),
            details: Some(details),
        };
        let bare = Request::Heartbeat {
            token: TaskToken::new(*b"job#3"),
            details: None,
        };
        let cancel = Request::Cancel { id: "job".into() };
        for r in [&heartbeat, &cancel, &bare] {
            insert(&conn, r, 42).unwrap();
        }
        // What other builds and tools read and write: these strings, these columns.
        type Row = (String, Option<String>, Option<String>, Option<Vec<u8>>);
        let stored: Vec<Row> = conn
            .prepare("SELECT kind, activity_id, task_token, details FROM requests ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            stored,
            [
                (
                    "heartbeat".into(),
                    None,
                    Some("job#3".into()),
                    Some(br#"{"step":1}"#.to_vec())
                ),
                ("cancel".into(), Some("job".into()), None, None),
                ("heartbeat".into(), None, Some("job#3".into()), None),
            ]
        );
        let (read, logged) = read_logged(&conn);
        let read: Vec<_> = read.into_iter().map(|q| (q.seq, q.request)).collect();
        assert_eq!(
            read,
            [(1, Some(heartbeat)), (2, Some(cancel)), (3, Some(bare))]
        );
        assert_eq!(logged, "", "nothing to warn of");
    }

    #[test]
    fn operator_requests_are_stored_by_kind_with_a_reset_s_options_as_json() {
        let conn = file();
        let op = |op| Request::Operate {
            id: "job".into(),
            op,
        };
        let requests = [
            op(Operation::Pause),
            op(Operation::Unpause),
            op(Operation::Reset {
                keep_checkpoint: false,
                keep_paused: true,
            }),
        ];
        for r in &requests {
            insert(&conn, r, 42).unwrap();
        }
        type Row = (String, Option<String>, Option<Vec<u8>>);
        let stored: Vec<Row> = conn
            .prepare("SELECT kind, activity_id, details FROM requests ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            stored,
            [
                ("pause".into(), Some("job".into()), None),
                ("unpause".into(), Some("job".into()), None),
                (
                    "reset".into(),
                    Some("job".into()),
                    Some(br#"{"keep_checkpoint":false,"keep_paused":true}"#.to_vec())
                ),
            ]
        );
        // A reset without options (or with some left out) takes the defaults; options that
        // are not the JSON expected make the row unreadable, not the queue.
        let null = rusqlite::types::Null;
        raw(&conn, [&"reset", &"job", &null, &null]);
        raw(&conn, [&"reset", &"job", &null, &"{\"keep_paused\":true}"]);
        raw(&conn, [&"reset", &"job", &null, &"[1]"]);
        raw(&conn, [&"pause", &null, &null, &null]);
        let (read, logged) = read_logged(&conn);
        let read: Vec<_> = read.into_iter().map(|q| q.request).collect();
        let reset = |keep_checkpoint, keep_paused| {
            Some(op(Operation::Reset {
                keep_checkpoint,
                keep_paused,
            }))
        };
        assert_eq!(
            read,
            [
                Some(op(Operation::Pause)),
                Some(op(Operation::Unpause)),
                reset(false, true),
                reset(true, false),
                reset(true, true),
                None,
                None,
            ]
        );
        assert_eq!(
            logged.lines().filter(|l| l.contains("WARN")).count(),
            2,
            "{logged}"
        );
    }

    #[test]
    fn a_row_this_build_cannot_apply_is_warned_of_and_skipped_not_the_queue() {
        let conn = file();
        let null = rusqlite::types::Null;
        raw(&conn, [&"cancel", &"before", &null, &null]);
        // A kind of a newer build.
        raw(&conn, [&"suspend", &"job", &null, &null]);
        // Fields missing, or of a type a reader of TEXT columns would fail on.
        raw(&conn, [&"cancel", &null, &"job#1", &null]);
        raw(&conn, [&"cancel", &b"job".to_vec(), &null, &null]);
        raw(&conn, [&"heartbeat", &null, &null, &b"{}".to_vec()]);
        raw(&conn, [&"heartbeat", &null, &b"job#1".to_vec(), &null]);
        raw(&conn, [&"heartbeat", &null, &"job#1", &1.5]);
        raw(&conn, [&b"cancel".to_vec(), &"job", &null, &null]);
        raw(&conn, [&"cancel", &b"\xff\xfe".to_vec(), &null, &null]);
        conn.execute(
            "INSERT INTO requests (kind, activity_id, at) VALUES (CAST(x'ff' AS TEXT), 'job', 0)",
            [],
        )
        .unwrap();
        // Details as text are details all the same.
        raw(&conn, [&"heartbeat", &null, &"after#2", &"{\"n\":2}"]);
        let (read, logged) = read_logged(&conn);
        let read: Vec<_> = read.into_iter().map(|q| (q.seq, q.request)).collect();
        let skipped = |seq| (seq, None);
        assert_eq!(
            read,
            [
                (
                    1,
                    Some(Request::Cancel {
                        id: "before".into()
                    })
                ),
                skipped(2),
                skipped(3),
                skipped(4),
                skipped(5),
                skipped(6),
                skipped(7),
                skipped(8),
                skipped(9),
                skipped(10),
                (
                    11,
                    Some(Request::Heartbeat {
                        token: TaskToken::new(*b"after#2"),
                        details: Some(Payload::from_json_bytes(br#"{"n":2}"#.to_vec())),
                    })
                ),
            ]
        );
        let warnings: Vec<&str> = logged.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 9, "one warning per skipped row: {logged}");
        assert!(warnings[0].contains("seq=2") && warnings[0].contains("unknown kind"));
        assert!(warnings[0].contains("Some(\"suspend\")"), "{}", warnings[0]);
        assert!(
            warnings[1].contains("seq=3") && warnings[1].contains("without a text activity_id")
        );
        assert!(warnings[6].contains("seq=8") && warnings[6].contains("not text"));
    }
}
