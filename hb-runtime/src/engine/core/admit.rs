//! Activities entering the core: a start (admitted once its row is stored, whoever still
//! waits for it), or what a reopened file holds open. Admitting arms an activity's timers and
//! queues it for a worker; a recovered attempt whose process is gone is failed (and retried)
//! at once.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::super::EngineError;
use super::super::clock::{Now, later};
use super::super::ready::Ready;
use super::super::record::{ActivityRow, StoredOptions};
use super::{Ack, Core, Effects, Live, Timer, TimerKind, Write};
use crate::ActivityOptions;
use crate::client::{ActivityFailure, ActivityStatus};
use crate::payload::Payload;

/// A start of a new activity, as the store is asked to store it: the insert of its row, whose
/// acknowledgement admits it (`Core::committed`), and what the caller awaits: `Ok(true)` once
/// the row is stored, `Ok(false)` if an activity of that id is stored already. Made without
/// the core's lock (the row is built outside it); the write goes straight to the writer.
pub(crate) struct Start {
    pub(crate) write: Write,
    pub(crate) ack: Ack,
    pub(crate) stored: oneshot::Receiver<Result<bool, EngineError>>,
}

impl Start {
    /// The start of activity `id` of `activity_type` with `input` and `options`, scheduled
    /// `now`.
    pub(crate) fn new(
        id: Arc<str>,
        activity_type: &str,
        input: &Payload,
        options: &ActivityOptions,
        now: &Now,
    ) -> Self {
        let options = StoredOptions::from_options(options);
        let row = new_row(id, activity_type, input, &options, now.wall_ms);
        let live = Box::new(Live::from_row(row.clone(), now));
        let (tx, stored) = oneshot::channel();
        Start {
            write: Write::Insert(Box::new(row)),
            ack: Ack::Inserted(live, tx),
            stored,
        }
    }
}

impl Core {
    /// `live` waits for a worker from `now_ms` (its schedule-to-start latency counts from it).
    pub(super) fn push_ready(ready: &mut Ready, now_ms: i64, live: &Live, fx: &mut Effects) {
        ready.push(&live.activity_type, live.id.clone(), now_ms);
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
        if live.state != ActivityStatus::Running {
            live.carry_out(fx);
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
            ActivityStatus::Scheduled => {
                Self::push_ready(&mut self.ready, self.clock.wall_ms(), &live, fx)
            }
            ActivityStatus::BackingOff => {
                // Never later than the retry's own delay from now, whatever the wall clock did.
                let latest = later(now, live.options.retry_delay(live.number()));
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
                    self.attempt_failed(&id, failure, true, true, false, fx);
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
            // Held until unpaused (or reset, cancelled, timed out schedule-to-close).
            ActivityStatus::Paused => {}
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

/// The row a start of activity `id` inserts.
fn new_row(
    id: Arc<str>,
    activity_type: &str,
    input: &Payload,
    options: &StoredOptions,
    scheduled_at: i64,
) -> ActivityRow {
    ActivityRow {
        id,
        activity_type: activity_type.to_owned(),
        state: ActivityStatus::Scheduled,
        attempt: 0,
        input: input.data().to_vec(),
        options: serde_json::to_string(options).unwrap_or_default(),
        details: None,
        output: None,
        failure: None,
        cancel_requested: false,
        scheduled_at,
        attempt_started_at: None,
        last_heartbeat_at: None,
        next_attempt_at: None,
        closed_at: None,
        external_attempt: None,
        attempt_base: 0,
        operator: 0,
    }
}
