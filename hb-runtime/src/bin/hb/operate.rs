//! `hb pause ID`, `hb unpause ID`, `hb reset ID`: queue an operator control in the file for the
//! engine to apply, as `hb cancel` does. What the engine would refuse (pausing a paused or
//! closed activity, unpausing one that is not paused, resetting a closed one) is refused here,
//! with the activity's state, before anything is queued.

use std::path::Path;
use std::time::{Duration, Instant};

use hb_runtime::client::{ActivityStatus, Description, ResetOptions};
use hb_runtime::engine::{Inspector, request_pause, request_reset, request_unpause};

use crate::Failure;
use crate::fmt;

/// How long to wait for a running engine to pick the request up (it polls every 200 ms).
const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// The control to apply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Pause,
    Unpause,
    Reset(ResetOptions),
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Pause => "pause",
            Op::Unpause => "unpause",
            Op::Reset(_) => "reset",
        }
    }

    /// Whether the engine applies it to an activity in `status` (a running activity may be
    /// unpaused too, when a pause was asked while it ran; the file does not show that, so the
    /// engine decides).
    fn applies(self, status: ActivityStatus) -> bool {
        match self {
            Op::Pause => matches!(
                status,
                ActivityStatus::Scheduled | ActivityStatus::Running | ActivityStatus::BackingOff
            ),
            Op::Unpause => matches!(status, ActivityStatus::Paused | ActivityStatus::Running),
            Op::Reset(_) => !status.is_closed(),
        }
    }

    /// Whether `now` shows the engine has applied it to what was `before`.
    fn applied(self, before: &Description, now: &Description) -> bool {
        match self {
            Op::Pause => now.status == ActivityStatus::Paused || now.status.is_closed(),
            Op::Unpause => now.status != before.status,
            Op::Reset(_) => now.status != before.status || now.attempt != before.attempt,
        }
    }
}

pub(crate) fn run(path: &Path, id: &str, op: Op) -> Result<(), Failure> {
    let inspector = Inspector::open(path)?;
    let before = inspector.get(id)?;
    if !op.applies(before.status) {
        return Err(Failure::NotAllowed {
            id: id.to_owned(),
            operation: op.name(),
            status: before.status,
        });
    }
    match op {
        Op::Pause => request_pause(path, id)?,
        Op::Unpause => request_unpause(path, id)?,
        Op::Reset(options) => request_reset(path, id, options)?,
    }
    let shown = fmt::clean(id);
    let file = fmt::clean(&path.display().to_string());
    let name = op.name();
    if !inspector.engine_running() {
        return crate::print(&format!(
            "{name} of {shown} queued; no engine has {file} open, so it applies when an engine next opens the file\n"
        ));
    }
    // An engine has the file: wait briefly for it to apply the request, to say so.
    let deadline = Instant::now() + CONFIRM_WITHIN;
    loop {
        let d = inspector.get(id)?;
        if op.applied(&before, &d) {
            return crate::print(&format!(
                "{name} of {shown} applied by the running engine: it is now {} (attempt {})\n",
                d.status, d.attempt
            ));
        }
        if Instant::now() >= deadline {
            let running = if before.status == ActivityStatus::Running {
                "; its running attempt is told to stop first"
            } else {
                ""
            };
            return crate::print(&format!(
                "{name} of {shown} queued; an engine has {file} open and applies it within a second{running}\n"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
