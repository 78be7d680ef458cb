//! The engine under random faults, deterministically: see `hb_runtime::engine::sim`.
//!
//! ```sh
//! cargo test -p hb-runtime --release --test simulation           # the fixed seeds (CI)
//! HB_SIM_SEEDS=5000 cargo test -p hb-runtime --release --test simulation -- --nocapture
//! HB_SIM_SEED=1234 cargo test -p hb-runtime --release --test simulation -- --nocapture
//! ```
//!
//! A failure prints its seed, the invariant broken, and the shortest sequence of actions found
//! that still breaks it; `HB_SIM_SEED` replays it exactly. Seeds are independent and run on
//! one thread per core; a seed's run does not depend on which thread runs it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hb_runtime::engine::sim::{self, Outcome};

/// Steps per seed: long enough for crashes, retries and timeouts to pile up.
const STEPS: usize = 2_000;
/// The fixed seeds CI runs: as many as fit this budget. The release run (`--release`, as
/// `.ci/run` does) is the one that counts; a debug build (`cargo test` of everything) runs a
/// short one, with overflow checks on.
const BUDGET: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(10)
} else {
    Duration::from_secs(40)
};
const MAX_FIXED_SEEDS: u64 = 2_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// `HB_SIM_IGNORE=kind,kind`: invariants not to report (to look past a known failure).
fn ignored_kinds() -> Vec<String> {
    std::env::var("HB_SIM_IGNORE")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn report_failure(o: &Outcome, ignore: &[&str]) -> String {
    let v = o.violation.as_ref().expect("a failure");
    let short = sim::shrink(o.seed, &o.actions, v.kind, ignore);
    let replayed = sim::replay_ignoring(o.seed, &short, ignore);
    let mut s = format!(
        "seed {} broke `{}` after {} steps: {}\nshortest failing sequence found ({} actions; replay with HB_SIM_SEED={}):\n",
        o.seed,
        v.kind,
        v.step + 1,
        v.message,
        short.len(),
        o.seed
    );
    for a in &short {
        s.push_str(&format!("  {a:?}\n"));
    }
    if let Some(v) = replayed.violation {
        s.push_str(&format!("which fails with: {v}\n"));
    }
    s
}

#[test]
fn the_engine_keeps_its_invariants_under_random_faults() {
    let started = Instant::now();
    // Seeds are independent runs: they are shared out to one thread per core, each taking the
    // next seed not yet taken, so the figures below are for the whole machine.
    let (seeds, budget) = match (env_u64("HB_SIM_SEED"), env_u64("HB_SIM_SEEDS")) {
        (Some(seed), _) => (seed..seed.saturating_add(1), None),
        (None, Some(n)) => (0..n, None),
        (None, None) => (0..MAX_FIXED_SEEDS, Some(BUDGET)),
    };
    let ignore = ignored_kinds();
    let ignore: Vec<&str> = ignore.iter().map(String::as_str).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicU64::new(seeds.start);
    let failed = AtomicUsize::new(0);
    let per_thread: Vec<Totals> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut t = Totals::default();
                    while budget.is_none_or(|b| started.elapsed() < b)
                        && failed.load(Ordering::Relaxed) < 3
                    {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= seeds.end {
                            break;
                        }
                        let o = sim::run_ignoring(seed, STEPS, &ignore);
                        if o.violation.is_some() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        t.record(o);
                    }
                    t
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a simulation thread panicked"))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut total = per_thread
        .into_iter()
        .fold(Totals::default(), |mut total, t| {
            total.add(t);
            total
        });
    // The lowest failing seed first, whichever thread ran it.
    total.failures.sort_by_key(|o| o.seed);
    let Totals {
        runs,
        steps,
        crashes,
        events,
        failures,
    } = total;
    println!(
        "simulation: {runs} seeds, {steps} steps, {crashes} crashes, {} violations",
        failures.len(),
    );
    println!(
        "({:.0} steps/s on {threads} threads, {:.0} per thread; within them {events} events: \
         heartbeats, commits, timers fired)",
        steps as f64 / elapsed.as_secs_f64(),
        steps as f64 / elapsed.as_secs_f64() / threads as f64,
    );
    if let Some(first) = failures.first() {
        panic!("{}", report_failure(first, &ignore));
    }
}

/// What one simulation thread ran.
#[derive(Default)]
struct Totals {
    runs: u64,
    steps: u64,
    crashes: u64,
    events: u64,
    failures: Vec<Outcome>,
}

impl Totals {
    fn record(&mut self, o: Outcome) {
        self.runs += 1;
        self.steps += o.steps as u64;
        self.crashes += o.crashes;
        self.events += o.events.ticks + o.events.commits + o.events.timers;
        if o.violation.is_some() {
            self.failures.push(o);
        }
    }

    fn add(&mut self, other: Totals) {
        self.runs += other.runs;
        self.steps += other.steps;
        self.crashes += other.crashes;
        self.events += other.events;
        self.failures.extend(other.failures);
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
            let o = sim::run_ignoring(seed, STEPS, &found);
            let Some(v) = &o.violation else { break };
            let kind = v.kind;
            println!("{}", report_failure(&o, &found));
            found.push(kind);
        }
    }
    println!("discovered: {found:?}");
}

/// `HB_SIM_REPLAY="<seed> <actions as printed>"`... (see `discover`); here: replays the
/// shortest failing sequence of `HB_SIM_SEED` with tracing (`HB_SIM_TRACE=1`).
#[test]
fn trace_shortest() {
    let (Some(seed), Some(_)) = (env_u64("HB_SIM_SEED"), std::env::var_os("HB_SIM_TRACE")) else {
        return;
    };
    let ignore = ignored_kinds();
    let ignore: Vec<&str> = ignore.iter().map(String::as_str).collect();
    let o = sim::run_ignoring(seed, STEPS, &ignore);
    let Some(v) = &o.violation else { return };
    let short = sim::shrink(seed, &o.actions, v.kind, &ignore);
    let r = sim::replay_traced(seed, &short, &ignore);
    println!("{:?}", r.violation);
}
