//! A deterministic simulation of the embedded engine under random faults.
//!
//! Example tests check the interleavings someone thought of; this checks the ones a seeded
//! generator finds (FoundationDB's simulator and TigerBeetle's VOPR are the models). Each run
//! drives the real engine core (its state machine, and the effects it emits) against the real
//! SQLite store, in memory, on a simulated clock with no real sleeping: random starts
//! (duplicates, dropped start futures), attempts that checkpoint and heartbeat through the
//! real pump functions, external heartbeats by task token (in process and through the file),
//! successes, retryable and non-retryable errors, panics, cancels, pauses, unpauses and resets
//! (and their refusals), `result()` calls kept or abandoned, timeouts, worker shutdowns, failing commits and a full disk, crashes that lose
//! what was not committed, reopens, and wall-clock steps either way. After every step it
//! checks what must hold against a small reference model ([`Violation::kind`] names them).
//!
//! A failing seed replays exactly; [`shrink`] finds a short sequence of actions that still
//! fails. [`Batch`] runs many seeds on every core. Two programs run it: the `hb-sim` package
//! (`cargo run -p hb-sim --release`, the fixed seeds CI runs, optimised), and
//! `tests/simulation.rs` (a short run in debug, with overflow checks, in `cargo test`).
//! `HB_SIM_SEED=n` replays one seed, `HB_SIM_SEEDS=N` runs N. Not a public API: it may change
//! in any release.

mod batch;
mod check;
mod rng;
mod shell;
mod world;

pub use batch::{Batch, FIXED_SEEDS, STEPS, Summary, report};
pub use check::Violation;
pub use world::Events;

use std::panic::AssertUnwindSafe;

use rng::Rng;
use world::World;

/// One thing that happens in a simulated run. Actions name attempts and activities by small
/// numbers taken modulo what exists, so any subsequence of a run is a run too (which is what
/// shrinking needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// A client starts the activity of `key`: a new one (`fresh`), or its current id again.
    /// `drop`: the caller drops the start's future before it returns.
    Start {
        /// Which key (its type and options are drawn from the seed).
        key: u8,
        /// A new id rather than the key's current one.
        fresh: bool,
        /// The future is dropped.
        drop: bool,
    },
    /// The worker takes the next ready attempt (if it has room).
    Take,
    /// A running attempt's body stores a new checkpoint.
    Checkpoint {
        /// Which running attempt.
        pick: u8,
    },
    /// Someone heartbeats a running attempt by its task token with a new checkpoint (for
    /// activities whose work is heartbeated from outside: some by a task of the engine's
    /// process, some by another process through the file's request queue).
    External {
        /// Which running attempt.
        pick: u8,
    },
    /// The engine applies the requests queued in its file.
    PollRequests,
    /// A running attempt ends (a cancelled one ends cancelled).
    Finish {
        /// Which running attempt.
        pick: u8,
        /// How.
        ending: Ending,
    },
    /// A client cancels the activity of `key` (`file`: another process, as `hb cancel`
    /// does, through the file's request queue).
    Cancel {
        /// Which key.
        key: u8,
        /// Through the file.
        file: bool,
    },
    /// An operator pauses, unpauses or resets the activity of `key` (`file`: from another
    /// process, as `hb pause` does, through the file's request queue). Refusals are checked
    /// against the activity's status.
    Operate {
        /// Which key.
        key: u8,
        /// What.
        op: Operator,
        /// Through the file.
        file: bool,
    },
    /// A client awaits the result of the activity of `key` (`drop`: abandons the call at
    /// once, as a `timeout` around it would).
    Result {
        /// Which key.
        key: u8,
        /// The call is abandoned.
        drop: bool,
    },
    /// Time passes; pump ticks, commits and timers due on the way happen.
    Advance {
        /// How long, in ms.
        ms: u32,
    },
    /// The writer commits everything queued.
    Commit,
    /// Closed activities older than `older_ms` are pruned (a few at a time, as retention does).
    Prune {
        /// The retention, in ms.
        older_ms: u32,
    },
    /// The next `n` calls to the store fail (I/O errors).
    FailCommits {
        /// How many.
        n: u8,
    },
    /// The disk fills up (writes that need more space fail), or is freed.
    DiskFull {
        /// Full or not.
        full: bool,
    },
    /// The worker shuts down: its attempts are cancelled and report.
    Shutdown,
    /// The process dies; the engine reopens the file `down_ms` later, the wall clock stepped
    /// by `step_ms` meanwhile.
    Crash {
        /// Downtime, in ms.
        down_ms: u32,
        /// Wall-clock step, in ms.
        step_ms: i32,
    },
    /// The wall clock steps by `ms` (NTP, a VM restore); the monotonic clock does not.
    ClockStep {
        /// The step, in ms.
        ms: i32,
    },
}

/// An operator control the simulator issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operator {
    /// Pause.
    Pause,
    /// Unpause.
    Unpause,
    /// Reset: `clear` the checkpoint, `keep_paused` a paused activity paused.
    Reset {
        /// Start again without the checkpoint.
        clear: bool,
        /// Leave a paused activity paused.
        keep_paused: bool,
    },
}

/// How a simulated attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// It returns its output.
    Complete,
    /// A retryable error.
    Retryable,
    /// A non-retryable error.
    NonRetryable,
    /// The body panics.
    Panic,
}

impl Action {
    /// A random action, weighted so that runs stay busy: time moves in small steps, attempts
    /// checkpoint and end, faults are rare.
    fn generate(rng: &mut Rng) -> Action {
        let key = rng.below(world::KEYS) as u8;
        let pick = rng.next() as u8;
        match rng.below(1000) {
            0..=199 => Action::Advance {
                ms: 1 + rng.below(50) as u32,
            },
            200..=269 => Action::Advance {
                ms: 50 + rng.below(2_000) as u32,
            },
            270..=289 => Action::Advance {
                ms: 2_000 + rng.below(60_000) as u32,
            },
            290..=379 => Action::Start {
                key,
                fresh: !rng.one_in(3),
                drop: rng.one_in(5),
            },
            380..=479 => Action::Take,
            480..=619 => Action::Checkpoint { pick },
            620..=669 => Action::External { pick },
            670..=689 => Action::PollRequests,
            690..=759 => Action::Finish {
                pick,
                ending: match rng.below(10) {
                    0..=4 => Ending::Complete,
                    5..=7 => Ending::Retryable,
                    8 => Ending::NonRetryable,
                    _ => Ending::Panic,
                },
            },
            760..=789 => Action::Cancel {
                key,
                file: rng.one_in(3),
            },
            790..=839 => Action::Result {
                key,
                drop: rng.one_in(2),
            },
            840..=909 => Action::Commit,
            910..=939 => Action::Operate {
                key,
                op: match rng.below(8) {
                    0..=2 => Operator::Pause,
                    3..=5 => Operator::Unpause,
                    _ => Operator::Reset {
                        clear: rng.one_in(2),
                        keep_paused: rng.one_in(2),
                    },
                },
                file: rng.one_in(4),
            },
            940..=949 => Action::Prune {
                older_ms: rng.below(60_000) as u32,
            },
            950..=961 => Action::FailCommits {
                n: 1 + rng.below(4) as u8,
            },
            962..=971 => Action::DiskFull {
                full: rng.one_in(2),
            },
            972..=979 => Action::Shutdown,
            980..=991 => Action::Crash {
                down_ms: rng.below(30_000) as u32,
                step_ms: match rng.below(4) {
                    0 => -(rng.below(3_600_000) as i32),
                    1 => rng.below(3_600_000) as i32,
                    _ => 0,
                },
            },
            _ => Action::ClockStep {
                ms: rng.below(7_200_000) as i32 - 3_600_000,
            },
        }
    }
}

/// What one simulated run did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Steps run (the drain's excluded).
    pub steps: usize,
    /// Simulated crashes and reopens.
    pub crashes: u64,
    /// What happened inside the steps.
    pub events: Events,
    /// The first invariant broken, if any.
    pub violation: Option<Violation>,
    /// The actions run, in order (to replay or shrink a failure).
    pub actions: Vec<Action>,
}

/// Runs `steps` random actions from `seed`, then the drain.
pub fn run(seed: u64, steps: usize) -> Outcome {
    run_ignoring(seed, steps, &[])
}

/// [`run`], not checking the invariants named in `ignore` (to find other failures past one
/// already known).
pub fn run_ignoring(seed: u64, steps: usize, ignore: &[&str]) -> Outcome {
    let mut rng = Rng::new(seed);
    let mut actions = Vec::with_capacity(steps);
    let outcome = play(seed, ignore, false, || {
        if actions.len() == steps {
            return None;
        }
        actions.push(Action::generate(&mut rng));
        actions.last().copied()
    });
    Outcome { actions, ..outcome }
}

/// Runs exactly `actions` with the configuration of `seed`, then the drain.
pub fn replay(seed: u64, actions: &[Action]) -> Outcome {
    replay_ignoring(seed, actions, &[])
}

/// [`replay`], not checking the invariants named in `ignore`.
pub fn replay_ignoring(seed: u64, actions: &[Action], ignore: &[&str]) -> Outcome {
    replay_with(seed, actions, ignore, false)
}

/// [`replay_ignoring`], printing every action and commit to stdout as it goes.
pub fn replay_traced(seed: u64, actions: &[Action], ignore: &[&str]) -> Outcome {
    replay_with(seed, actions, ignore, true)
}

fn replay_with(seed: u64, actions: &[Action], ignore: &[&str], trace: bool) -> Outcome {
    let mut next = actions.iter().copied();
    let outcome = play(seed, ignore, trace, || next.next());
    Outcome {
        actions: actions.to_vec(),
        ..outcome
    }
}

fn play(
    seed: u64,
    ignore: &[&str],
    trace: bool,
    mut next: impl FnMut() -> Option<Action>,
) -> Outcome {
    let mut world = World::new(seed);
    world.trace = trace;
    world.ignore = ignore.iter().map(|k| k.to_string()).collect();
    let mut steps = 0;
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
        while let Some(action) = next() {
            world.act(&action);
            steps += 1;
            if world.violation.is_some() {
                return;
            }
        }
        world.drain();
    }));
    if let Err(panic) = ran {
        let message = crate::error::panic_message(panic.as_ref());
        world.fail("panic", message);
    }
    Outcome {
        seed,
        steps,
        crashes: world.crashes,
        events: world.events,
        violation: world.violation.take(),
        actions: Vec::new(),
    }
}

/// A shorter sequence of actions that still breaks an invariant of the same kind, by
/// removing chunks of ever smaller size while the failure stays (delta debugging).
pub fn shrink(seed: u64, actions: &[Action], kind: &str, ignore: &[&str]) -> Vec<Action> {
    let fails = |a: &[Action]| {
        replay_ignoring(seed, a, ignore)
            .violation
            .is_some_and(|v| v.kind == kind)
    };
    let mut best = actions.to_vec();
    if let Some(v) = replay_ignoring(seed, &best, ignore).violation {
        // Nothing after the failing step matters.
        best.truncate(v.step + 1);
    }
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        let mut removed = false;
        while start < best.len() {
            let end = (start + chunk).min(best.len());
            let mut candidate = best[..start].to_vec();
            candidate.extend_from_slice(&best[end..]);
            if fails(&candidate) {
                best = candidate;
                removed = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed {
            return best;
        }
        if !removed {
            chunk = chunk.div_ceil(2);
        }
    }
}
