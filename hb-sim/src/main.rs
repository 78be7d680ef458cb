//! Runs the deterministic simulation of hb's embedded engine (`hb_runtime::engine::sim`):
//! random starts, checkpoints, cancels, operator actions, failing commits, crashes and clock
//! steps against the real engine core and SQLite store, every invariant checked after every
//! step.
//!
//! ```sh
//! cargo run -p hb-sim --release                     # the fixed seeds, as many as fit 40 s (CI)
//! HB_SIM_SEEDS=5000 cargo run -p hb-sim --release   # seeds 0..5000, whatever the time
//! HB_SIM_SEED=1234 cargo run -p hb-sim --release    # one seed: a failure replays exactly
//! HB_SIM_IGNORE=hang,orphan cargo run -p hb-sim --release   # look past known failures
//! ```
//!
//! It prints what it ran; on a violation it prints the lowest failing seed, the invariant it
//! broke and the shortest sequence of actions found that still breaks it, and exits with 1.
//! A bad environment variable exits with 2.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use hb_runtime::engine::sim::Batch;

/// The fixed seeds run for this long (an optimised build runs about 1,100 of them on 2 cores).
const BUDGET: Duration = Duration::from_secs(40);

fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!(
            "hb-sim takes no arguments; set HB_SIM_SEED=n (one seed), HB_SIM_SEEDS=N (seeds \
             0..N) or HB_SIM_IGNORE=kind,kind"
        );
        return ExitCode::from(2);
    }
    let batch = match Batch::from_env(BUDGET) {
        Ok(batch) => batch,
        Err(e) => {
            eprintln!("hb-sim: {e}");
            return ExitCode::from(2);
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("hb-sim: a debug build runs about ten times fewer seeds; add --release");
    }
    let summary = batch.run();
    println!("{}", summary.figures());
    if summary.runs == 0 {
        eprintln!("hb-sim: no seed ran");
        return ExitCode::from(2);
    }
    match summary.first_failure() {
        Some(report) => {
            eprintln!("{report}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
