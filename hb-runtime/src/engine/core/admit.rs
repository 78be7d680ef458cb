//! Activities entering the core: a start whose row is stored, or what a reopened file holds
//! open. Admitting arms an activity's timers and queues it for a worker; a recovered attempt
//! whose process is gone is failed (and retried) at once.

use super::super::clock::later;
use super::super::ready::Ready;
use super::super::record::ActivityRow;
use super::{Core, Effects, Live, Timer, TimerKind};
use crate::client::{ActivityFailure, ActivityStatus};

impl Core {
    pub(super) fn push_ready(ready: &mut Ready, live: &Live, fx: &mut Effects) {
        ready.push(&live.activity_type, live.id.clone());
        fx.ready = true;
    }

    /// Adds an activity (new or recovered) and arms its timers.
    pub(crate) fn admit(&mut self, mut live: Live, fx: &mut Effects) {
        match self.options.get_key_value(&*live.activity_type) {
            Some((name, shared)) => {
                live.activity_type = name.clone();
                if **shared == *live.options {
                    live.options = shared.clone();
                } else {
                    self.options
                        .insert(live.activity_type.clone(), live.options.clone());
                }
            }
            None => {
                self.options
                    .insert(live.activity_type.clone(), live.options.clone());
            }
        }
        let clock = self.now();
        let now = clock.at;
        // Stored times lie in the past; one in the future was left by a wall clock that has
        // stepped back since, and counts as now (see `Now::instant_of_past`).
        if let Some(stc) = live.options.schedule_to_close() {
            fx.timers.push((
                Timer {
                    id: live.id.clone(),
                    attempt: 0,
                    kind: TimerKind::ScheduleToClose,
                    due: None,
                },
                later(clock.instant_of_past(live.scheduled_at), stc),
            ));
        }
        match live.state {
            ActivityStatus::Scheduled => Self::push_ready(&mut self.ready, &live, fx),
            ActivityStatus::BackingOff => {
                // Never later than the retry's own delay from now, whatever the wall clock did.
                let latest = later(now, live.options.retry_delay(live.attempt));
                let at = live
                    .next_attempt_ms
                    .map_or(now, |ms| clock.instant_of(ms))
                    .min(latest);
                fx.timers.push((
                    Timer {
                        id: live.id.clone(),
                        attempt: live.attempt,
                        kind: TimerKind::Retry,
                        due: None,
                    },
                    at,
                ));
            }
            ActivityStatus::Running => {
                // Recovered: the engine holds its file's lock, so the process that ran this
                // attempt is gone. Retried at once, unless another process heartbeats its
                // work by token (it may be alive): that times out from its last heartbeat.
                let timeout = live
                    .options
                    .heartbeat_timeout()
                    .or(live.options.start_to_close());
                let (Some(timeout), true) = (timeout, live.external) else {
                    let id = live.id.clone();
                    let failure = ActivityFailure::Application {
                        error_type: "WorkerLost".into(),
                        message: format!(
                            "the process running attempt {} ended without reporting (found when the engine file was reopened)",
                            live.attempt
                        ),
                        non_retryable: false,
                        details: live.details(),
                    };
                    self.live.insert(Box::new(live));
                    self.attempt_failed(&id, failure, true, true, fx);
                    return;
                };
                let since = live.last_heartbeat.or(live.started).unwrap_or(now).min(now);
                fx.timers.push((
                    Timer {
                        id: live.id.clone(),
                        attempt: live.attempt,
                        kind: TimerKind::Heartbeat,
                        due: None,
                    },
                    later(since, timeout),
                ));
            }
            _ => return,
        }
        self.live.insert(Box::new(live));
    }

    /// Admits what a reopened file holds open.
    pub(crate) fn recover(
        &mut self,
        rows: Vec<ActivityRow>,
        requests_applied: i64,
        fx: &mut Effects,
    ) {
        self.requests_applied = requests_applied;
        let now = self.now();
        for row in rows {
            self.admit(Live::from_row(row, &now), fx);
        }
    }

    /// The type of open activity `id`, if it is open.
    pub(crate) fn type_of(&self, id: &str) -> Option<String> {
        self.live.get(id).map(|l| l.activity_type.to_string())
    }
}
