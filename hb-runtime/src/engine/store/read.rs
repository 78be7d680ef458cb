//! Reads of activity rows, the latest heartbeat folded in: one by id, a listing, and what
//! recovery needs (every open activity, the newest request applied). The engine's own reads go
//! through one shared read connection ([`Reader`]), off the writer's.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension};

use super::super::core::Queued;
use super::super::error::EngineError;
use super::super::record::ActivityRow;
use super::requests::read_requests;
use crate::Payload;
use crate::client::{ActivityFailure, ActivityStatus, AttemptStatus, EndedAttempt, time_of_ms};

/// The columns of an activity row, the latest heartbeat folded in (from `ROW_FROM`).
const ROW_COLUMNS: &str = "a.id, a.type, a.state, a.attempt, a.input, a.options,
    coalesce(h.details, a.details), a.output, a.failure, a.cancel_requested, a.scheduled_at,
    a.attempt_started_at, coalesce(h.at, a.last_heartbeat_at), a.next_attempt_at, a.closed_at";
const ROW_FROM: &str = "activities a LEFT JOIN heartbeats h ON h.id = a.id";

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActivityRow> {
    let state: i64 = r.get(2)?;
    // Only recovery reads the columns past the shared ones (an engine's own file, upgraded to
    // this schema); the `hb` tool reads older files too.
    let recovery = r.as_ref().column_count() > 15;
    Ok(ActivityRow {
        id: Arc::from(r.get::<_, String>(0)?),
        activity_type: r.get(1)?,
        state: ActivityStatus::from_i64(state).unwrap_or(ActivityStatus::Unknown),
        attempt: r.get(3)?,
        input: r.get(4)?,
        options: r.get(5)?,
        details: r.get(6)?,
        output: r.get(7)?,
        failure: r.get(8)?,
        cancel_requested: r.get::<_, i64>(9)? != 0,
        scheduled_at: r.get(10)?,
        attempt_started_at: r.get(11)?,
        last_heartbeat_at: r.get(12)?,
        next_attempt_at: r.get(13)?,
        closed_at: r.get(14)?,
        // Only recovery reads it (an engine's own file, upgraded to this schema).
        external_attempt: if recovery { r.get(15)? } else { None },
        attempt_base: if recovery { r.get(16)? } else { 0 },
        operator: if recovery { r.get(17)? } else { 0 },
    })
}

/// The row of activity `id`, its latest heartbeat folded in.
pub(crate) fn get_row(c: &Connection, id: &str) -> rusqlite::Result<Option<ActivityRow>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {ROW_COLUMNS} FROM {ROW_FROM} WHERE a.id = ?1")
    });
    c.prepare_cached(&SQL)?.query_row([id], row_from).optional()
}

/// The attempts of `id` that ended while it stayed open, oldest first; none from a file of a
/// schema before the table (read-only views read old files as they are).
pub(crate) fn history_rows(c: &Connection, id: &str) -> rusqlite::Result<Vec<EndedAttempt>> {
    let stmt = c.prepare_cached(
        "SELECT attempt, outcome, started_at, ended_at, failure, details, seq FROM attempts
         WHERE id = ?1 ORDER BY seq",
    );
    let mut stmt = match stmt {
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {
            return Ok(Vec::new());
        }
        s => s?,
    };
    let rows = stmt.query_map([id], |r| {
        let outcome: String = r.get(1)?;
        let failure: Option<String> = r.get(4)?;
        let details: Option<Vec<u8>> = r.get(5)?;
        Ok(EndedAttempt {
            seq: r.get(6)?,
            attempt: r.get(0)?,
            status: match outcome.as_str() {
                "timed_out" => AttemptStatus::TimedOut,
                "paused" => AttemptStatus::Paused,
                "reset" | "reset_cleared" => AttemptStatus::Reset,
                _ => AttemptStatus::Failed,
            },
            cleared: outcome == "reset_cleared",
            started_at: r.get::<_, Option<i64>>(2)?.map(time_of_ms),
            ended_at: time_of_ms(r.get(3)?),
            failure: failure.as_deref().and_then(ActivityFailure::from_json),
            details: details.map(Payload::from_json_bytes),
        })
    })?;
    rows.collect()
}

/// Rows in `states` (all when empty), newest first, at most `limit`.
pub(crate) fn list_rows(
    c: &Connection,
    states: &[ActivityStatus],
    limit: usize,
) -> rusqlite::Result<Vec<ActivityRow>> {
    let filter = if states.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = states.iter().map(|s| (*s as i64).to_string()).collect();
        format!("WHERE a.state IN ({})", list.join(","))
    };
    let mut stmt = c.prepare(&format!(
        "SELECT {ROW_COLUMNS} FROM {ROW_FROM} {filter} ORDER BY a.scheduled_at DESC, a.id LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit as i64], row_from)?;
    rows.collect()
}

#[cfg(feature = "dashboard")]
/// One page of a listing, newest first: what the dashboard reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct PageQuery {
    /// Only these statuses (all when empty).
    pub(crate) states: Vec<ActivityStatus>,
    /// Only this type.
    pub(crate) activity_type: Option<String>,
    /// Only ids containing this.
    pub(crate) id_contains: Option<String>,
    /// Only rows after this one in the order (`scheduled_at` then `id`, both descending): the
    /// last row of the page before.
    pub(crate) after: Option<(i64, String)>,
    /// At most this many.
    pub(crate) limit: usize,
}

#[cfg(feature = "dashboard")]
/// Every status a row can have: what "all" pages through.
const EVERY_STATE: [ActivityStatus; 9] = [
    ActivityStatus::Scheduled,
    ActivityStatus::Running,
    ActivityStatus::BackingOff,
    ActivityStatus::Completed,
    ActivityStatus::Failed,
    ActivityStatus::Cancelled,
    ActivityStatus::TimedOut,
    ActivityStatus::Paused,
    ActivityStatus::Terminated,
];

#[cfg(feature = "dashboard")]
/// The rows of `q`'s page, in two steps. First the keys (time and id): each query walks an
/// index in order (by type, or by state: one query per state, merged), and the index holds
/// the ids, so a filter by id reads no row, even one that few rows match and that walks the
/// whole index. Then the page's rows by id. A page costs a page's worth of row reads however
/// many rows the file holds. The rows leave the input out.
pub(crate) fn page_rows(c: &Connection, q: &PageQuery) -> rusqlite::Result<Vec<ActivityRow>> {
    use rusqlite::types::Value;
    // Both steps read one snapshot of the file (the transaction only reads; dropping it ends it).
    let _snapshot = c.unchecked_transaction()?;
    let keys = |head: String, mut params: Vec<Value>| -> rusqlite::Result<Vec<(i64, String)>> {
        let mut sql = format!("SELECT a.scheduled_at, a.id FROM activities a WHERE {head}");
        if let Some(needle) = &q.id_contains {
            sql.push_str(" AND instr(a.id, ?) > 0");
            params.push(Value::Text(needle.clone()));
        }
        if let Some((at, id)) = &q.after {
            sql.push_str(" AND (a.scheduled_at, a.id) < (?, ?)");
            params.push(Value::Integer(*at));
            params.push(Value::Text(id.clone()));
        }
        sql.push_str(" ORDER BY a.scheduled_at DESC, a.id DESC LIMIT ?");
        params.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        let mut stmt = c.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect()
    };
    // Each state once: a state named twice would be read twice.
    let mut states: Vec<ActivityStatus> = if q.states.is_empty() {
        EVERY_STATE.to_vec()
    } else {
        q.states.clone()
    };
    states.sort_by_key(|s| *s as i64);
    states.dedup();
    let mut page = Vec::new();
    if let Some(t) = &q.activity_type {
        let wanted: Vec<String> = states.iter().map(|s| (*s as i64).to_string()).collect();
        // `+a.state`: the type's index decides the order; the state only filters.
        let head = format!("a.type = ? AND +a.state IN ({})", wanted.join(","));
        page = keys(head, vec![Value::Text(t.clone())])?;
    } else {
        for s in states {
            page.extend(keys(
                "a.state = ?".to_owned(),
                vec![Value::Integer(s as i64)],
            )?);
        }
        page.sort_by(|a, b| b.cmp(a));
        page.truncate(q.limit);
    }
    static ROW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let columns = ROW_COLUMNS.replace("a.input", "x''");
        format!("SELECT {columns} FROM {ROW_FROM} WHERE a.id = ?1")
    });
    let mut row = c.prepare_cached(&ROW)?;
    // A row deleted (pruned) between the two reads is left out.
    page.iter()
        .filter_map(|(_, id)| row.query_row([id], row_from).optional().transpose())
        .collect()
}

#[cfg(feature = "dashboard")]
/// How many rows each status has, and the activity types: a file's summary.
pub(crate) type Summary = (Vec<(ActivityStatus, u64)>, Vec<String>);

#[cfg(feature = "dashboard")]
/// How many rows each status has.
pub(crate) fn state_counts(c: &Connection) -> rusqlite::Result<Vec<(ActivityStatus, u64)>> {
    let mut stmt =
        c.prepare_cached("SELECT state, count(*) FROM activities GROUP BY state ORDER BY state")?;
    let rows = stmt.query_map([], |r| {
        let state: i64 = r.get(0)?;
        let n: i64 = r.get(1)?;
        Ok((
            ActivityStatus::from_i64(state).unwrap_or(ActivityStatus::Unknown),
            n.unsigned_abs(),
        ))
    })?;
    rows.collect()
}

#[cfg(feature = "dashboard")]
/// The activity types in the file, in order, at most `limit`: one index seek each.
pub(crate) fn activity_types(c: &Connection, limit: usize) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "WITH RECURSIVE t(x) AS (
             SELECT min(type) FROM activities
             UNION ALL SELECT (SELECT min(type) FROM activities WHERE type > t.x) FROM t
             WHERE t.x IS NOT NULL)
         SELECT x FROM t WHERE x IS NOT NULL LIMIT ?1",
    )?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?;
    rows.collect()
}

/// Every activity not yet closed, for recovery (with what only recovery reads).
pub(crate) fn open_rows(c: &Connection) -> rusqlite::Result<Vec<ActivityRow>> {
    let open = [
        ActivityStatus::Scheduled,
        ActivityStatus::Running,
        ActivityStatus::BackingOff,
        ActivityStatus::Paused,
    ]
    .map(|s| (s as i64).to_string())
    .join(",");
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS}, a.external_attempt, a.attempt_base, a.operator FROM {ROW_FROM} WHERE a.state IN ({open}) ORDER BY a.scheduled_at DESC, a.id"
    ))?;
    let rows = stmt.query_map([], row_from)?;
    rows.collect()
}

/// The newest heartbeat request applied (see the `meta` table).
pub(crate) fn requests_applied(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT value FROM meta WHERE key = 'requests_applied'")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(i64::MIN))
}

/// What a reopened file holds for the engine to recover.
#[derive(Default)]
pub(crate) struct Recovered {
    pub(crate) rows: Vec<ActivityRow>,
    pub(crate) requests_applied: i64,
    /// Requests queued while no engine had the file: applied before any worker takes an
    /// attempt (a pause queued then must not find its activity running).
    pub(crate) queued: Vec<Queued>,
}

/// A read connection shared by describe/list.
pub(crate) struct Reader {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Reader {
    pub(crate) fn new(conn: Connection, path: PathBuf) -> Self {
        Reader {
            conn: Mutex::new(conn),
            path,
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, EngineError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn).map_err(|e| EngineError::sqlite(&self.path, e))
    }

    pub(crate) fn get(&self, id: &str) -> Result<Option<ActivityRow>, EngineError> {
        self.with(|c| get_row(c, id))
    }

    /// The attempts of `id` that ended while it stayed open (see [`history_rows`]).
    pub(crate) fn history(&self, id: &str) -> Result<Vec<EndedAttempt>, EngineError> {
        self.with(|c| history_rows(c, id))
    }

    /// A row with its ended attempts, in one read.
    pub(crate) fn get_with_history(
        &self,
        id: &str,
    ) -> Result<Option<(ActivityRow, Vec<EndedAttempt>)>, EngineError> {
        self.with(|c| match get_row(c, id)? {
            None => Ok(None),
            Some(row) => Ok(Some((row, history_rows(c, id)?))),
        })
    }

    /// Rows in `states` (all when empty), newest first, at most `limit`.
    pub(crate) fn list(
        &self,
        states: &[ActivityStatus],
        limit: usize,
    ) -> Result<Vec<ActivityRow>, EngineError> {
        self.with(|c| list_rows(c, states, limit))
    }

    #[cfg(feature = "dashboard")]
    /// One page of a listing (see [`page_rows`]).
    pub(crate) fn page(&self, q: &PageQuery) -> Result<Vec<ActivityRow>, EngineError> {
        self.with(|c| page_rows(c, q))
    }

    #[cfg(feature = "dashboard")]
    /// How many rows each status has, and the types in the file (at most `types`).
    pub(crate) fn summary(&self, types: usize) -> Result<Summary, EngineError> {
        self.with(|c| Ok((state_counts(c)?, activity_types(c, types)?)))
    }

    /// Every activity not yet closed, the newest request applied, and the requests queued
    /// (for recovery).
    pub(crate) fn recovery(&self) -> Result<Recovered, EngineError> {
        self.with(|c| {
            Ok(Recovered {
                rows: open_rows(c)?,
                requests_applied: requests_applied(c)?,
                queued: read_requests(c)?,
            })
        })
    }

    /// Requests other processes left in the file, oldest first.
    pub(crate) fn requests(&self) -> Result<Vec<Queued>, EngineError> {
        self.with(read_requests)
    }

    /// `PRAGMA integrity_check` of the file.
    pub(crate) fn integrity_check(&self) -> Result<String, EngineError> {
        self.with(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
    }
}

#[cfg(all(test, feature = "dashboard"))]
mod page_tests {
    use super::*;
    use proptest::prelude::*;

    /// A file of `rows` (state, type, scheduled_at), ids `r{i}`.
    fn file(rows: &[(u8, u8, i64)]) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        super::super::init(&c, std::path::Path::new(":memory:")).unwrap();
        let mut insert = c
            .prepare(
                "INSERT INTO activities (id, type, state, attempt, input, options, scheduled_at)
                 VALUES (?1, ?2, ?3, 0, x'', '{}', ?4)",
            )
            .unwrap();
        for (i, (state, ty, at)) in rows.iter().enumerate() {
            let state = EVERY_STATE[usize::from(*state) % EVERY_STATE.len()] as i64;
            insert
                .execute(rusqlite::params![
                    format!("r{i}"),
                    format!("t{ty}"),
                    state,
                    at
                ])
                .unwrap();
        }
        drop(insert);
        c
    }

    /// Every page of `q`, following the last row of each.
    fn walk(c: &Connection, mut q: PageQuery) -> Vec<ActivityRow> {
        let mut out: Vec<ActivityRow> = Vec::new();
        loop {
            let page = page_rows(c, &q).unwrap();
            assert!(page.len() <= q.limit);
            let Some(last) = page.last() else {
                return out;
            };
            q.after = Some((last.scheduled_at, last.id.to_string()));
            out.extend(page);
            assert!(out.len() <= 10_000, "the paging does not end");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Following the pages visits every matching row once, newest first (ties by id,
        /// descending), whatever the filter, the page size and the repeated times.
        #[test]
        fn paging_visits_every_matching_row_once_in_order(
            rows in proptest::collection::vec((0u8..9, 0u8..3, 0i64..20), 0..120),
            states in proptest::collection::vec(0u8..9, 0..3),
            ty in proptest::option::of(0u8..3),
            needle in proptest::option::of("[0-9]{1,2}"),
            limit in 1usize..30,
        ) {
            let c = file(&rows);
            let states: Vec<ActivityStatus> =
                states.iter().map(|s| EVERY_STATE[usize::from(*s)]).collect();
            let q = PageQuery {
                states: states.clone(),
                activity_type: ty.map(|t| format!("t{t}")),
                id_contains: needle.clone(),
                after: None,
                limit,
            };
            let seen: Vec<(i64, String)> =
                walk(&c, q).into_iter().map(|r| (r.scheduled_at, r.id.to_string())).collect();
            let mut expected: Vec<(i64, String)> = rows
                .iter()
                .enumerate()
                .filter(|(i, (s, t, _))| {
                    let state = EVERY_STATE[usize::from(*s)];
                    (states.is_empty() || states.contains(&state))
                        && ty.is_none_or(|ty| ty == *t)
                        && needle.as_ref().is_none_or(|n| format!("r{i}").contains(n.as_str()))
                })
                .map(|(i, (_, _, at))| (*at, format!("r{i}")))
                .collect();
            expected.sort_by(|a, b| b.cmp(a));
            prop_assert_eq!(seen, expected);
        }
    }
}
