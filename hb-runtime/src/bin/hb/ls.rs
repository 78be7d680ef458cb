//! `hb ls`: the activities of the file as a table.

use std::path::Path;
use std::time::SystemTime;

use hb_runtime::client::{ActivityStatus, ListFilter};
use hb_runtime::engine::Inspector;

use crate::Failure;
use crate::fmt::{self, Table};

pub(crate) fn run(path: &Path, states: Vec<ActivityStatus>, limit: u64) -> Result<(), Failure> {
    let inspector = Inspector::open(path)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut filter = ListFilter::all();
    filter.statuses = states;
    filter.limit = Some(limit);
    let activities = inspector.list(&filter)?;
    if activities.is_empty() {
        let which = if filter.statuses.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
            format!(" in state {}", names.join(" or "))
        };
        return crate::print(&format!(
            "no activities{which} in {}\n",
            fmt::clean(&path.display().to_string())
        ));
    }
    let now = SystemTime::now();
    let mut table = Table::new(&[
        "ID",
        "TYPE",
        "STATE",
        "ATTEMPT",
        "PROGRESS",
        "LAST HEARTBEAT",
    ]);
    for d in &activities {
        table.row(vec![
            fmt::clean(&d.id),
            fmt::clean(&d.activity_type),
            fmt::state(d),
            d.attempt.to_string(),
            fmt::progress(d.progress),
            d.last_heartbeat
                .map_or_else(|| "-".to_owned(), |t| fmt::ago(t, now)),
        ]);
    }
    crate::print(&table.render())?;
    if activities.len() == limit {
        // On stderr, so the table stays clean for scripts.
        crate::note(&format!(
            "showing the newest {limit}; pass --limit for more"
        ));
    }
    Ok(())
}
