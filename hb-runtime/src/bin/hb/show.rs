//! `hb show ID`: everything stored of one activity.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use hb_runtime::Payload;
use hb_runtime::engine::Inspector;

use crate::Failure;
use crate::fmt;

pub(crate) fn run(path: &Path, id: &str, raw: bool) -> Result<(), Failure> {
    let inspector = Inspector::open(path)?;
    let d = inspector.get(id)?;
    let now = SystemTime::now();
    let time = |t: Option<SystemTime>| t.map_or_else(|| "-".to_owned(), |t| fmt::time(t, now));
    let mut out = String::new();
    field(&mut out, "id", fmt::clean(&d.id));
    field(&mut out, "type", fmt::clean(&d.activity_type));
    field(&mut out, "state", d.status.to_string());
    field(&mut out, "attempt", d.attempt.to_string());
    field(&mut out, "progress", fmt::progress(d.progress));
    field(
        &mut out,
        "cancel requested",
        if d.cancel_requested { "yes" } else { "no" }.to_owned(),
    );
    field(&mut out, "scheduled", time(d.scheduled_at));
    field(&mut out, "attempt started", time(d.attempt_started));
    field(&mut out, "last heartbeat", time(d.last_heartbeat));
    field(&mut out, "next attempt", time(d.next_attempt_at));
    field(&mut out, "closed", time(d.closed_at));
    if d.attempts.is_empty() {
        field(&mut out, "attempts", "-".to_owned());
    } else {
        out.push_str("attempts:\n");
        let mut table = fmt::Table::new(&["#", "OUTCOME", "STARTED", "TOOK", "FROM", "WHY"]);
        for a in &d.attempts {
            let took = match (a.started_at, a.ended_at.or(Some(now))) {
                (Some(s), Some(e)) => fmt::duration(e.duration_since(s).unwrap_or_default()),
                _ => "-".to_owned(),
            };
            let why = a.failure.as_ref().map_or_else(
                || "-".to_owned(),
                |f| fmt::clip(&fmt::clean(&f.to_string()), 60),
            );
            table.row(vec![
                a.attempt.to_string(),
                a.status.to_string(),
                time(a.started_at),
                took,
                fmt::progress(a.resumed_from),
                why,
            ]);
        }
        for line in table.render().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    match &d.last_failure {
        None => field(&mut out, "last failure", "-".to_owned()),
        Some(f) => {
            out.push_str("last failure:\n");
            fmt::failure(f, &mut out, "  ");
            // The failure's own details, when they say more than the checkpoint below.
            if let Some(details) = f.last_details()
                && !same_json(d.details.as_ref(), details)
            {
                out.push_str("  details:\n");
                out.push_str(&fmt::checkpoint(details, raw, "    ").0);
                out.push('\n');
            }
        }
    }
    match &d.details {
        None => out.push_str("checkpoint:       -\n"),
        Some(p) => {
            let (text, version) = fmt::checkpoint(p, raw, "  ");
            match version {
                Some(v) => {
                    let _ = writeln!(out, "checkpoint (version {v}):");
                }
                None => out.push_str("checkpoint:\n"),
            }
            out.push_str(&text);
            out.push('\n');
        }
    }
    crate::print(&out)
}

/// Whether `a` and `b` hold the same JSON (whatever the key order or spacing).
fn same_json(a: Option<&Payload>, b: &Payload) -> bool {
    let Some(a) = a else { return false };
    if a.data() == b.data() {
        return true;
    }
    let value = |p: &Payload| serde_json::from_slice::<serde_json::Value>(p.data()).ok();
    matches!((value(a), value(b)), (Some(x), Some(y)) if x == y)
}

fn field(out: &mut String, name: &str, value: String) {
    let _ = writeln!(out, "{:<18}{value}", format!("{name}:"));
}
