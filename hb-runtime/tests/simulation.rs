//! The engine under random faults, deterministically: see `hb_runtime::engine::sim`.
//!
//! `cargo test` runs a short batch of the fixed seeds here, in debug with overflow checks on.
//! The batch that counts is the optimised one the `hb-sim` package runs (`.ci/run` runs it):
//!
//! ```sh
//! cargo run -p hb-sim --release                     # the fixed seeds (CI)
//! HB_SIM_SEEDS=5000 cargo run -p hb-sim --release   # seeds 0..5000, whatever the time
//! HB_SIM_SEED=1234 cargo run -p hb-sim --release    # one seed, e.g. a failure to replay
//! ```
//!
//! A failure prints its seed, the invariant broken, and the shortest sequence of actions found
//! that still breaks it; `HB_SIM_SEED` replays it exactly.

use std::time::Duration;

use hb_runtime::engine::sim::{self, Batch};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn the_engine_keeps_its_invariants_under_random_faults() {
    let batch = Batch::from_env(Duration::from_secs(10)).unwrap();
    let summary = batch.run();
    println!("{}", summary.figures());
    assert!(summary.runs > 0, "no seed ran");
    if let Some(report) = summary.first_failure() {
        panic!("{report}");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = sim::run(7, 500);
    let b = sim::replay(7, &a.actions);
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.crashes, b.crashes);
    assert_eq!(a.violation, b.violation);
}

/// `HB_SIM_DISCOVER=N`: runs N seeds looking for every kind of failure, one kind after the
/// other (a kind found is ignored from then on), and prints the first seed that found each
/// with its shortest failing sequence. How the failures of the engine's issue 9 were found
/// before they were fixed.
#[test]
fn discover() {
    let Some(n) = env_u64("HB_SIM_DISCOVER") else {
        return;
    };
    let mut found: Vec<&'static str> = Vec::new();
    for seed in 0..n {
        loop {
            let o = sim::run_ignoring(seed, sim::STEPS, &found);
            let Some(v) = &o.violation else { break };
            let kind = v.kind;
            println!("{}", sim::report(&o, &found));
            found.push(kind);
        }
    }
    println!("discovered: {found:?}");
}

/// `HB_SIM_SEED=n HB_SIM_TRACE=1`: replays the shortest failing sequence of seed n, printing
/// every action and commit.
#[test]
fn trace_shortest() {
    let (Some(seed), Some(_)) = (env_u64("HB_SIM_SEED"), std::env::var_os("HB_SIM_TRACE")) else {
        return;
    };
    let batch = Batch::from_env(Duration::ZERO).unwrap();
    let ignore: Vec<&str> = batch.ignore.iter().map(String::as_str).collect();
    let o = sim::run_ignoring(seed, sim::STEPS, &ignore);
    let Some(v) = &o.violation else { return };
    let short = sim::shrink(seed, &o.actions, v.kind, &ignore);
    let r = sim::replay_traced(seed, &short, &ignore);
    println!("{:?}", r.violation);
}
