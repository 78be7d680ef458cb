//! Attempts handed out to workers: taking the next ready activity of a type (marking it
//! running, arming its start-to-close and heartbeat timeouts) and keeping the handle of the
//! attempt the worker started, to push cancels to it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::super::clock::{Now, later};
use super::super::record::StoredOptions;
use super::{Core, Effects, Timer, TimerKind, Write, token_of};
use crate::client::ActivityStatus;
use crate::error::CancelReason;
use crate::payload::Payload;
use crate::runner::AttemptHandle;
use crate::transport::TaskToken;

/// An attempt handed to a worker.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) id: Arc<str>,
    pub(crate) activity_type: Arc<str>,
    pub(crate) attempt: u32,
    /// Its number since the last reset (what the body sees as its attempt).
    pub(crate) number: u32,
    pub(crate) token: TaskToken,
    pub(crate) input: Payload,
    pub(crate) details: Option<Payload>,
    pub(crate) options: Arc<StoredOptions>,
    pub(crate) deadline: Option<SystemTime>,
    /// How long it waited for a worker (for its metric).
    pub(crate) waited: Duration,
}

impl Core {
    /// Takes the next ready attempt of one of `types`, marking it running.
    pub(crate) fn take(&mut self, types: &[&str], fx: &mut Effects) -> Option<Task> {
        for t in types {
            while let Some((id, since_ms)) = self.ready.pop(t) {
                let Some(live) = self.live.get_mut(&id) else {
                    self.ready.skipped(t);
                    continue;
                };
                if live.state != ActivityStatus::Scheduled || live.closing.is_some() {
                    self.ready.skipped(t);
                    continue;
                }
                let Now {
                    at: now,
                    wall_ms: now_ms,
                } = Now::of(&*self.clock);
                live.attempt = live.attempt.saturating_add(1);
                // The previous attempt's handle must not receive this attempt's cancels.
                live.handle = None;
                live.state = ActivityStatus::Running;
                live.started = Some(now);
                live.last_heartbeat = None;
                live.external = false;
                live.checkpoint_failures = 0;
                // A new attempt: the requests told to the last one are spent.
                let cleared = std::mem::take(&mut live.operator) & super::operator::CLEARED != 0;
                fx.writes.push((
                    Write::Started {
                        fold: std::mem::take(&mut live.heartbeat_row),
                        id: id.clone(),
                        attempt: live.number(),
                        base: live.base,
                        clear_details: cleared,
                        at: now_ms,
                    },
                    None,
                ));
                let mut deadline = None;
                if let Some(stc) = live.options.start_to_close() {
                    fx.timers.push((
                        Timer {
                            id: id.clone(),
                            attempt: live.attempt,
                            kind: TimerKind::StartToClose,
                            due: None,
                        },
                        later(now, stc),
                    ));
                    deadline = std::time::UNIX_EPOCH
                        .checked_add(Duration::from_millis(now_ms.max(0) as u64))
                        .and_then(|t| t.checked_add(stc.min(super::super::clock::FAR)));
                }
                if let Some(ht) = live.options.heartbeat_timeout() {
                    self.silence.unwatch(live.silence, &live.id);
                    let (node, front) = self.silence.watch(live.id.clone(), live.attempt, ht, now);
                    live.silence = node;
                    if let Some(at) = front {
                        fx.sweep = Some(fx.sweep.map_or(at, |s| s.min(at)));
                    }
                }
                return Some(Task {
                    id: id.clone(),
                    activity_type: live.activity_type.clone(),
                    attempt: live.attempt,
                    number: live.number(),
                    token: token_of(&id, live.attempt),
                    input: live.input(),
                    details: live.details(),
                    options: live.options.clone(),
                    deadline,
                    waited: Duration::from_millis(now_ms.saturating_sub(since_ms).max(0) as u64),
                });
            }
        }
        None
    }

    /// Worker `worker` started attempt `attempt` of `id` as `handle`: keep the handle for
    /// cancels, or stop the attempt at once if it is no longer current (it timed out or its
    /// activity closed before it could start).
    pub(crate) fn attach(
        &mut self,
        id: &str,
        attempt: u32,
        handle: &AttemptHandle,
        worker: u32,
        fx: &mut Effects,
    ) {
        match self.live.get_mut(id) {
            Some(live) if live.is_current(attempt) => {
                // A cancel (or pause, or reset) requested before the handle existed is
                // delivered now.
                if live.cancel_requested {
                    fx.cancels.push((handle.clone(), CancelReason::Requested));
                } else if let Some(reason) = live.told() {
                    fx.cancels.push((handle.clone(), reason));
                }
                live.handle = Some(handle.clone());
                live.worker = worker;
            }
            _ => fx.cancels.push((handle.clone(), CancelReason::TimedOut)),
        }
    }

    /// The handles of the attempts worker `worker` runs.
    pub(crate) fn handles_of(&self, worker: u32) -> Vec<AttemptHandle> {
        self.live
            .values()
            .filter(|l| l.worker == worker)
            .filter_map(|l| l.handle.clone())
            .collect()
    }
}
