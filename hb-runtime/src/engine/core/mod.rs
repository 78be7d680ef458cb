//! The engine's in-memory state machine: every open activity, the ready queues, timeouts and
//! retries. Sans-IO: each change records what must happen outside ([`Effects`]: writes for
//! the store's writer, timers, cancels to push, waiters to answer), and a thin shell applies
//! them ([`Inner::change`](super::Inner::change) in a running engine, `engine::sim` in the
//! simulator). Waiters of a closed activity are answered only once its closing write is
//! committed.
//!
//! Its leaves, by job: `admit` (activities in), `dispatch` (attempts out to workers),
//! `report` (heartbeats and outcomes of attempts), `retry` (a retry or the end after a
//! failure), `timeout` (timers and heartbeat timeouts), `cancel`, `request` (requests other
//! processes queue in the file), `operator` (pause, unpause, reset), `close` (closing, and the calls waiting for it) and `commit`
//! (acknowledgements of writes). What they share: `live` (an open activity), `effects`,
//! `write` (what the store is asked to write) and `token` (the task-token format).

mod admit;
mod cancel;
mod close;
mod commit;
mod dispatch;
mod effects;
mod live;
mod operator;
mod report;
mod request;
mod retry;
#[cfg(test)]
mod tests;
mod timeout;
mod token;
mod write;

pub(crate) use admit::Start;
pub(crate) use cancel::Stored;
pub(crate) use close::Wait;
pub(crate) use effects::{Effects, Reply, Timer, TimerKind};
pub(crate) use live::{Closed, Live};
#[cfg(feature = "sim")]
pub(crate) use operator::PAUSE;
pub(crate) use operator::{Operated, Operation};
pub(crate) use request::{Queued, Request};
pub(crate) use token::{parse_token, token_of};
pub(crate) use write::{Ack, Write};

use std::collections::HashMap;
use std::sync::Arc;

use super::clock::{Clock, Now};
use super::ready::Ready;
use super::record::StoredOptions;
use super::silence::Silence;

/// The mutable state behind the engine's lock.
pub(crate) struct Core {
    /// Where every change reads the time.
    pub(crate) clock: Arc<dyn Clock>,
    /// The options of the latest activity admitted per type, to share with the next one.
    options: HashMap<Arc<str>, Arc<StoredOptions>>,
    pub(crate) live: super::live_map::LiveMap,
    ready: Ready,
    /// The heartbeat timeouts of running attempts.
    silence: Silence,
    /// The newest heartbeat request from the file applied: one whose delete failed is not
    /// applied again after newer ones.
    requests_applied: i64,
    /// Cancel and operator requests from the file applied, deleted once what they did is
    /// stored.
    cancels_stored: Vec<(i64, Stored)>,
    /// The end-to-end latency of successes, by type (recorded here: the core knows when each
    /// activity was first scheduled).
    endtoend: crate::metrics::EndToEnd,
}

impl Core {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Core {
            clock,
            options: HashMap::new(),
            live: Default::default(),
            ready: Ready::default(),
            silence: Silence::default(),
            requests_applied: i64::MIN,
            cancels_stored: Vec::new(),
            endtoend: Default::default(),
        }
    }

    /// Both clocks, read once.
    pub(crate) fn now(&self) -> Now {
        Now::of(&*self.clock)
    }

    /// What the core holds, for the simulator's memory invariants.
    #[cfg(feature = "sim")]
    pub(crate) fn footprint(&self) -> Footprint {
        Footprint {
            ready: self.ready.len(),
            options: self.options.len(),
        }
    }

    /// Whether a running attempt of `id` is watched for its heartbeat timeout.
    #[cfg(feature = "sim")]
    pub(crate) fn watched(&self, id: &str) -> bool {
        self.live
            .get(id)
            .is_some_and(|l| l.silence != super::silence::NONE)
    }

    /// Whether `id` waits in the ready queue of its type.
    #[cfg(feature = "sim")]
    pub(crate) fn is_ready(&self, id: &str) -> bool {
        self.live
            .get(id)
            .is_some_and(|l| self.ready.contains(&l.activity_type, id))
    }
}

/// Sizes of what the core holds beside its open activities.
#[cfg(feature = "sim")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Footprint {
    /// Ids in the ready queues.
    pub(crate) ready: usize,
    /// Shared options kept per type.
    pub(crate) options: usize,
}
