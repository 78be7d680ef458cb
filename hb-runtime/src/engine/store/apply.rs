//! A batch of writes as SQL, in one transaction (statements prepared once per batch, only the
//! newest heartbeat of an activity written), and the fallback when a batch fails: its writes
//! one by one, so one bad write does not fail the others.

use rusqlite::{Connection, params};

use super::super::core::{Ack, Write};
use super::super::error::EngineError;
use crate::Payload;
use crate::client::ActivityStatus;

/// Stores a batch of writes in one transaction; answers, per write, whether it changed a row.
pub(crate) type Apply<'a> =
    dyn FnMut(&mut [(Write, Option<Ack>)]) -> Result<Vec<bool>, EngineError> + 'a;

/// Commits `batch` through `apply` in one transaction (or, if that fails, each write alone)
/// and returns the acknowledgements with their results, in order; `batch` is left empty.
pub(crate) fn commit(
    batch: &mut Vec<(Write, Option<Ack>)>,
    apply: &mut Apply<'_>,
) -> Vec<(Ack, Result<bool, EngineError>)> {
    let mut acks = Vec::new();
    if batch.is_empty() {
        return acks;
    }
    match apply(batch) {
        Ok(changed) => {
            for ((_, ack), changed) in batch.drain(..).zip(changed) {
                if let Some(ack) = ack {
                    acks.push((ack, Ok(changed)));
                }
            }
        }
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %e, writes = batch.len(), "engine batch failed; storing its writes one by one");
            // One bad write (a full disk for one large input) must not fail the writes batched
            // with it: replay them one by one, so only the ones that fail report it.
            let mut first_error = None;
            for (w, ack) in batch.drain(..) {
                let mut one = [(w, None)];
                let mut r = apply(&mut one).map(|changed| changed[0]);
                let [(w, _)] = one;
                match &r {
                    Err(e) => {
                        tracing::error!(error = %e, "engine write failed; it was not stored");
                        first_error.get_or_insert_with(|| e.clone());
                    }
                    // "Everything before me is stored" does not hold once a write failed.
                    Ok(_) if matches!(w, Write::Barrier) => {
                        if let Some(e) = &first_error {
                            r = Err(e.clone());
                        }
                    }
                    Ok(_) => {}
                }
                if let Some(ack) = lost(&w, ack, &r) {
                    acks.push((ack, r));
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "engine write failed; it was not stored");
            for (w, ack) in batch.drain(..) {
                let r = Err(e.clone());
                if let Some(ack) = lost(&w, ack, &r) {
                    acks.push((ack, r));
                }
            }
        }
    }
    acks
}

/// The acknowledgement of `w` with result `r`: its own, or for a failed write the core must
/// hear of (a heartbeat, or a fold of one), a report of it.
fn lost(w: &Write, ack: Option<Ack>, r: &Result<bool, EngineError>) -> Option<Ack> {
    match (w, ack) {
        (_, Some(ack)) => Some(ack),
        (Write::Heartbeat { id, .. }, None) if r.is_err() => Some(Ack::Lost(id.clone())),
        (
            Write::Started { fold: true, id, .. } | Write::Transition { fold: true, id, .. },
            None,
        ) if r.is_err() => Some(Ack::Unfolded(id.clone())),
        _ => None,
    }
}

/// Applies `batch` to the file in one transaction: every write or none.
pub(crate) fn apply(
    conn: &mut Connection,
    batch: &mut [(Write, Option<Ack>)],
) -> rusqlite::Result<Vec<bool>> {
    let mut changed = vec![true; batch.len()];
    // Only the newest heartbeat of each activity in the batch is written.
    let mut newest_heartbeat: foldhash::HashMap<&str, usize> = foldhash::HashMap::default();
    // Activities whose newest heartbeat in the batch carries details: older ones are skipped.
    let mut newest_with_details: foldhash::HashSet<&str> = foldhash::HashSet::default();
    for (i, (w, _)) in batch.iter().enumerate() {
        if let Write::Heartbeat { id, .. } = w {
            newest_heartbeat.insert(id, i);
        }
    }
    for (id, i) in &newest_heartbeat {
        if let (
            Write::Heartbeat {
                details: Some(_), ..
            },
            _,
        ) = &batch[*i]
        {
            newest_with_details.insert(id);
        }
    }
    let tx = conn.transaction()?;
    {
        // Prepared when first needed: most batches (a heartbeat, a start) use one or two.
        let mut sql = Statements {
            conn: &tx,
            cached: Default::default(),
        };
        for (i, (w, _)) in batch.iter().enumerate() {
            match w {
                Write::Insert(row) => {
                    changed[i] = 1
                        == sql.get(Sql::Insert)?.execute(params![
                            &*row.id,
                            row.activity_type,
                            row.state as i64,
                            row.attempt,
                            row.input,
                            row.options,
                            row.details,
                            row.scheduled_at,
                            row.next_attempt_at,
                        ])?;
                }
                Write::Started {
                    fold: has_heartbeat,
                    id,
                    attempt,
                    base,
                    clear_details,
                    at,
                } => {
                    // A timed-out attempt's last checkpoint may still sit in `heartbeats`.
                    if *has_heartbeat {
                        sql.get(Sql::Fold)?.execute(params![&**id])?;
                        sql.get(Sql::Forget)?.execute(params![&**id])?;
                    }
                    sql.get(Sql::Started)?.execute(params![
                        &**id,
                        ActivityStatus::Running as i64,
                        attempt,
                        at,
                        base
                    ])?;
                    // After a reset whose clearing write failed (rare: a statement of its own).
                    if *clear_details {
                        sql.get(Sql::Clear)?.execute(params![&**id])?;
                    }
                }
                Write::Heartbeat {
                    id, details, at, ..
                } => {
                    // Every heartbeat is applied in order: one without details keeps the
                    // details of an earlier one (the statement coalesces), so only the newest
                    // of each activity is skipped-to when it carries details itself.
                    let newest = newest_heartbeat.get(&**id) == Some(&i);
                    if newest || details.is_some() && !newest_with_details.contains(&**id) {
                        sql.get(Sql::Heartbeat)?.execute(params![
                            &**id,
                            details.as_ref().map(Payload::data),
                            at
                        ])?;
                    }
                }
                Write::Transition {
                    fold: has_heartbeat,
                    id,
                    state,
                    attempt,
                    base,
                    operator,
                    details,
                    clear_details,
                    output,
                    failure,
                    next_attempt_at,
                    closed_at,
                    ended,
                } => {
                    if *has_heartbeat {
                        sql.get(Sql::Fold)?.execute(params![&**id])?;
                        sql.get(Sql::Forget)?.execute(params![&**id])?;
                    }
                    // Before the change: the row still holds the attempt's start.
                    if let Some(e) = ended {
                        sql.get(Sql::History)?.execute(params![
                            &**id,
                            e.seq,
                            e.number,
                            e.at,
                            e.outcome,
                            failure,
                            e.details.as_ref().map(Payload::data),
                        ])?;
                        if let Some(oldest_kept) = e.seq.checked_sub(HISTORY_KEPT) {
                            sql.get(Sql::HistoryTrim)?
                                .execute(params![&**id, oldest_kept])?;
                        }
                    }
                    sql.get(Sql::Transition)?.execute(params![
                        &**id,
                        *state as i64,
                        attempt,
                        details.as_ref().map(Payload::data),
                        output.as_ref().map(Payload::data),
                        failure,
                        next_attempt_at,
                        closed_at,
                        base,
                        operator
                    ])?;
                    if *clear_details {
                        sql.get(Sql::Clear)?.execute(params![&**id])?;
                    }
                }
                Write::CancelRequested { id } => {
                    sql.get(Sql::Cancel)?.execute(params![&**id])?;
                }
                Write::Operator { id, operator } => {
                    sql.get(Sql::Operator)?.execute(params![&**id, operator])?;
                }
                Write::External { id, attempt } => {
                    sql.get(Sql::External)?.execute(params![&**id, attempt])?;
                }
                Write::DeleteRequest { seq } => {
                    sql.get(Sql::DeleteRequest)?.execute(params![seq])?;
                }
                Write::Prune {
                    closed_before,
                    limit,
                } => {
                    // A heartbeat left unfolded must not outlive its activity (a new one with
                    // the same id would show it).
                    sql.get(Sql::PruneHeartbeats)?
                        .execute(params![closed_before, limit])?;
                    sql.get(Sql::PruneHistory)?
                        .execute(params![closed_before, limit])?;
                    let deleted = sql
                        .get(Sql::Prune)?
                        .execute(params![closed_before, limit])?;
                    changed[i] = deleted >= *limit as usize;
                    if deleted > 0 {
                        tracing::debug!(deleted, closed_before, "pruned closed activities");
                    }
                }
                Write::RequestHeartbeat {
                    id,
                    details,
                    at,
                    seq,
                } => {
                    sql.get(Sql::Heartbeat)?.execute(params![
                        &**id,
                        details.as_ref().map(Payload::data),
                        at
                    ])?;
                    sql.get(Sql::DeleteRequest)?.execute(params![seq])?;
                    sql.get(Sql::RequestsApplied)?.execute(params![seq])?;
                }
                Write::Stop | Write::Barrier => {}
            }
        }
    }
    tx.commit()?;
    Ok(changed)
}

/// The statements of [`apply`].
#[derive(Clone, Copy)]
enum Sql {
    Insert,
    Started,
    Heartbeat,
    Fold,
    Forget,
    Transition,
    Cancel,
    Operator,
    Clear,
    External,
    DeleteRequest,
    RequestsApplied,
    Prune,
    PruneHeartbeats,
    History,
    HistoryTrim,
    PruneHistory,
}

/// How many ended attempts the file keeps per activity (the oldest go first).
pub(crate) const HISTORY_KEPT: u32 = 100;

const SQL: [&str; 17] = [
    "INSERT OR IGNORE INTO activities (id, type, state, attempt, input, options, details, scheduled_at, next_attempt_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    "UPDATE activities SET state = ?2, attempt = ?3, attempt_started_at = ?4, last_heartbeat_at = NULL,
     operator = 0, attempt_base = ?5 WHERE id = ?1",
    "INSERT INTO heartbeats (id, details, at) VALUES (?1, ?2, ?3)
     ON CONFLICT (id) DO UPDATE SET details = coalesce(excluded.details, details), at = excluded.at",
    "UPDATE activities SET details = coalesce(h.details, activities.details), last_heartbeat_at = h.at
     FROM (SELECT details, at FROM heartbeats WHERE id = ?1) AS h WHERE activities.id = ?1",
    "DELETE FROM heartbeats WHERE id = ?1",
    "UPDATE activities SET state = ?2, attempt = ?3, details = coalesce(?4, details), output = ?5,
     failure = coalesce(?6, failure), next_attempt_at = ?7, closed_at = ?8, attempt_base = ?9,
     operator = ?10 WHERE id = ?1",
    "UPDATE activities SET cancel_requested = 1 WHERE id = ?1",
    "UPDATE activities SET operator = ?2 WHERE id = ?1",
    "UPDATE activities SET details = NULL WHERE id = ?1",
    "UPDATE activities SET external_attempt = ?2 WHERE id = ?1",
    "DELETE FROM requests WHERE seq = ?1",
    "INSERT INTO meta (key, value) VALUES ('requests_applied', ?1)
     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
    "DELETE FROM activities WHERE id IN
     (SELECT id FROM activities WHERE closed_at IS NOT NULL AND closed_at < ?1 ORDER BY closed_at, id LIMIT ?2)",
    "DELETE FROM heartbeats WHERE id IN
     (SELECT id FROM activities WHERE closed_at IS NOT NULL AND closed_at < ?1 ORDER BY closed_at, id LIMIT ?2)",
    "INSERT OR REPLACE INTO attempts (id, seq, attempt, started_at, ended_at, outcome, failure, details)
     SELECT id, ?2, ?3, attempt_started_at, ?4, ?5, ?6, coalesce(?7, details) FROM activities WHERE id = ?1",
    "DELETE FROM attempts WHERE id = ?1 AND seq <= ?2",
    "DELETE FROM attempts WHERE id IN
     (SELECT id FROM activities WHERE closed_at IS NOT NULL AND closed_at < ?1 ORDER BY closed_at, id LIMIT ?2)",
];

/// The statements one transaction of [`apply`] has prepared.
struct Statements<'c> {
    conn: &'c Connection,
    cached: [Option<rusqlite::CachedStatement<'c>>; SQL.len()],
}

impl<'c> Statements<'c> {
    fn get(&mut self, s: Sql) -> rusqlite::Result<&mut rusqlite::CachedStatement<'c>> {
        let slot = &mut self.cached[s as usize];
        if slot.is_none() {
            *slot = Some(self.conn.prepare_cached(SQL[s as usize])?);
        }
        Ok(slot.as_mut().expect("prepared above"))
    }
}
