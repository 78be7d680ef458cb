//! The worker: attempts taken as the engine's worker takes them, run as real attempt contexts
//! that checkpoint, are heartbeated (by the real pump, or by task token from outside) and end
//! as the runner reports them.

use std::sync::Arc;

use futures_util::FutureExt as _;
use tokio::time::Instant;

use super::super::Ending;
use super::{Running, World};
use crate::attempt::{ActivityInfo, Env, Shared as AttemptShared, Slot};
use crate::checkpoint;
use crate::engine::core::Request;
use crate::engine::store;
use crate::error::{ActivityError, CancelReason};
use crate::payload::Payload;
use crate::runner::AttemptHandle;
use crate::state::StateMap;

/// The most attempts the simulated worker runs at once.
const MAX_RUNNING: usize = 6;
/// The types the worker runs; `orphan` has no worker.
const WORKER_TYPES: [&str; 2] = ["alpha", "beta"];

impl World {
    pub(super) fn take(&mut self) {
        if self.running.len() >= MAX_RUNNING {
            return;
        }
        let task = self
            .shell
            .lock()
            .change(|core, fx| core.take(&WORKER_TYPES, fx));
        let Some(task) = task else { return };
        self.note_cleared();
        self.check_reset_attempt(&task.id, task.attempt, task.number);
        let key = Self::key_of(&task.id);
        // The retry resumes from the newest checkpoint the file held.
        let resumed = task
            .details
            .as_ref()
            .and_then(|d| checkpoint::decode_payload::<u64>(d).ok());
        if let Some(&newest) = self.model.durable.get(&*task.id)
            && resumed.is_none_or(|r| r < newest)
        {
            self.fail(
                "retry-older-checkpoint",
                format!(
                    "attempt {} of {} resumes from checkpoint {resumed:?}; the file held #{newest}",
                    task.attempt, task.id
                ),
            );
        }
        // What the worker and `AttemptRunner::start` do.
        let options = task.options.apply_to(self.keys[key].options);
        let info = ActivityInfo {
            activity_id: task.id.to_string(),
            activity_type: self.keys[key].activity_type,
            attempt: task.number,
            heartbeat_timeout: options.effective_heartbeat_timeout(),
            heartbeat_interval: options.effective_heartbeat_interval(),
            deadline: task.deadline,
            task_token: task.token.clone(),
        };
        let heartbeat_interval = info.heartbeat_interval;
        let env = Arc::new(Env {
            transport: Arc::new(crate::engine::transport::EngineTransport(
                self.shell.clone(),
            )),
            state: StateMap::default(),
            pump_on_runtime: false,
            metrics: Arc::default(),
        });
        let shared = Arc::new(AttemptShared::new(
            info,
            &options,
            Box::new(Slot::<u64>::new(resumed)),
            env,
            task.details.clone(),
            tracing::Span::none(),
        ));
        // The period the real pump looks at the attempt with.
        let interval =
            crate::attempt::pace::tick(heartbeat_interval, shared.options.ticks_per_beat);
        let handle = AttemptHandle::from_shared(shared.clone());
        self.shell
            .lock()
            .change(|core, fx| core.attach(&task.id, task.attempt, &handle, 1, fx));
        let now = self.now();
        self.running.push(Running {
            id: task.id,
            attempt: task.attempt,
            shared,
            key,
            next_tick: crate::engine::clock::later(now, interval),
            interval,
        });
    }

    pub(super) fn checkpoint(&mut self, pick: u8) {
        let Some(i) = self.pick(pick) else { return };
        let r = &self.running[i];
        if self.keys[r.key].external {
            return;
        }
        let (id, attempt, ctx) = (r.id.clone(), r.attempt, r.ctx());
        let seq = self.model.next_seq(&id);
        if ctx.checkpoint(&seq).is_ok() {
            let now = self.now();
            self.model.made(&id, seq, now, (attempt, self.crashes));
        }
    }

    pub(super) fn external(&mut self, pick: u8) {
        let Some(i) = self.pick(pick) else { return };
        let r = &self.running[i];
        if !self.keys[r.key].external {
            return;
        }
        let file = self.keys[r.key].through_file;
        let (id, attempt, token) = (r.id.clone(), r.attempt, r.shared.info.task_token.clone());
        let seq = self.model.next_seq(&id);
        let details = checkpoint::encode_payload(&seq).expect("an integer encodes");
        if file {
            // What `request_heartbeat` does from another process: committed there at once.
            let wall = {
                use crate::engine::clock::Clock as _;
                self.clock.wall_ms()
            };
            let request = Request::Heartbeat {
                token,
                details: Some(details),
            };
            store::requests::insert(&self.db, &request, wall).expect("a request row");
            self.model.external.insert((id.to_string(), attempt));
        } else {
            // What `Client::heartbeat` does in the engine's process.
            let mut shell = self.shell.lock();
            if let Ok((_, Some(w))) = shell.core.heartbeat(&token, Some(&details)) {
                shell.queue(w, None);
            }
        }
    }

    /// Attempt `i`'s body returned on its own with `ending`, reported as the runner reports:
    /// final flush, then the outcome. A cancel may have reached it meanwhile (the body
    /// returned before the runner dropped it, a race every real attempt can run): the
    /// engine must still end the activity as cancelled, unless the body completed.
    pub(super) fn end(&mut self, i: usize, ending: Ending) {
        let result = match ending {
            Ending::Complete => Ok(Payload::json(&"done").expect("a string encodes")),
            Ending::Retryable => Err(ActivityError::retryable("Flaky", "try again")),
            Ending::NonRetryable => Err(ActivityError::non_retryable("Bad", "give up")),
            Ending::Panic => Err(ActivityError::Panicked {
                message: "boom".into(),
            }),
        };
        self.report(i, result);
    }

    /// Attempt `i` was told to stop and its body dropped (`cancel = "abort"`): the runner
    /// reports it cancelled, with the reason it was given.
    fn abort(&mut self, i: usize) {
        let reason = self.running[i]
            .shared
            .cancel_reason()
            .expect("only a cancelled attempt is aborted");
        self.report(
            i,
            Err(ActivityError::Cancelled {
                reason,
                details: None,
            }),
        );
    }

    /// Attempt `i` ends with `result`, reported as `runner::report` reports it.
    fn report(&mut self, i: usize, result: Result<Payload, ActivityError>) {
        let r = self.running.swap_remove(i);
        if crate::runner::report(&r.shared, result)
            .now_or_never()
            .is_none()
        {
            self.fail(
                "hang",
                format!("the report of {} #{} waited", r.id, r.attempt),
            );
        }
    }

    pub(super) fn finish(&mut self, pick: u8, ending: Ending) {
        if let Some(i) = self.pick(pick) {
            self.end(i, ending);
        }
    }

    /// Attempts told to stop report at once (`cancel = "abort"` drops the body).
    pub(super) fn end_cancelled(&mut self) {
        while let Some(i) = self.running.iter().position(|r| r.shared.is_cancelled()) {
            self.abort(i);
        }
    }

    /// The drain ends attempt `i`: dropped if it was told to stop, else completed.
    pub(super) fn end_for_drain(&mut self, i: usize) {
        if self.running[i].shared.is_cancelled() {
            self.abort(i);
        } else {
            self.end(i, Ending::Complete);
        }
    }

    /// The pump heartbeats the attempts due (with the real pump's per-attempt tick).
    pub(super) fn ticks(&mut self, now: Instant) {
        for r in &mut self.running {
            if r.next_tick <= now {
                r.next_tick = crate::engine::clock::later(now, r.interval);
                self.events.ticks += 1;
                let _ = crate::attempt::send::beat(r.shared.clone()).now_or_never();
            }
        }
    }

    pub(super) fn shutdown(&mut self) {
        // What a worker's shutdown does after its grace period.
        for r in &self.running {
            r.shared.cancel_with(CancelReason::WorkerShutdown);
        }
        self.end_cancelled();
    }
}
