//! `hb cancel ID`: queue a cancel in the file for the engine to apply.

use std::path::Path;
use std::time::{Duration, Instant};

use hb_runtime::engine::{Inspector, request_cancel};

use crate::Failure;
use crate::fmt;

/// How long to wait for a running engine to pick the request up (it polls every 200 ms).
const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

pub(crate) fn run(path: &Path, id: &str) -> Result<(), Failure> {
    let inspector = Inspector::open(path)?;
    let before = inspector.get(id)?;
    let shown = fmt::clean(id);
    let file = fmt::clean(&path.display().to_string());
    if before.status.is_closed() {
        return crate::print(&format!(
            "{shown} has already closed ({}); nothing to cancel\n",
            before.status
        ));
    }
    request_cancel(path, id)?;
    if before.cancel_requested {
        return crate::print(&format!(
            "cancel of {shown} queued again (a cancel was already requested)\n"
        ));
    }
    if !inspector.engine_running() {
        return crate::print(&format!(
            "cancel of {shown} queued; no engine has {file} open, so it applies when an engine next opens the file\n"
        ));
    }
    // An engine has the file: wait briefly for it to apply the request, to say so.
    let deadline = Instant::now() + CONFIRM_WITHIN;
    loop {
        let d = inspector.get(id)?;
        if d.status.is_closed() {
            return crate::print(&format!(
                "cancel of {shown} applied by the running engine: it is now {}\n",
                d.status
            ));
        }
        if d.cancel_requested {
            return crate::print(&format!(
                "cancel of {shown} applied by the running engine: the attempt is stopping (state {})\n",
                d.status
            ));
        }
        if Instant::now() >= deadline {
            return crate::print(&format!(
                "cancel of {shown} queued; an engine has {file} open and applies it within a second\n"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
