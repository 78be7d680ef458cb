//! Many seeds at once: the fixed seeds CI runs, or as many as asked for, shared out to one
//! thread per core, with what they did added up and the lowest failing seed reported with
//! its shortest failing sequence.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Outcome, replay_ignoring, run_ignoring, shrink};

/// Steps per seed: long enough for crashes, retries and timeouts to pile up.
pub const STEPS: usize = 2_000;
/// The fixed seeds: `0..FIXED_SEEDS`, as many of them as fit the budget.
pub const FIXED_SEEDS: u64 = 2_000;
/// A batch stops taking seeds once this many failed.
const STOP_AFTER_FAILURES: usize = 3;

/// Which seeds to run, and for how long.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Batch {
    /// The seeds, taken in order.
    pub seeds: Range<u64>,
    /// Steps per seed.
    pub steps: usize,
    /// No seed is started after this long (`None`: every seed runs).
    pub budget: Option<Duration>,
    /// Invariants not checked (to look for other failures past a known one).
    pub ignore: Vec<String>,
    /// Threads running seeds.
    pub threads: usize,
}

impl Batch {
    /// The fixed seeds, as many as fit `budget`, on one thread per core.
    pub fn fixed(budget: Duration) -> Batch {
        Batch {
            seeds: 0..FIXED_SEEDS,
            steps: STEPS,
            budget: Some(budget),
            ignore: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// [`Batch::fixed`], changed by the environment: `HB_SIM_SEED=n` runs that seed alone,
    /// `HB_SIM_SEEDS=N` runs seeds `0..N` whatever the time, `HB_SIM_IGNORE=kind,kind` names
    /// invariants not to check. A value that is not a number, `HB_SIM_SEEDS=0`, or both
    /// set, is an error naming it.
    pub fn from_env(budget: Duration) -> Result<Batch, String> {
        let number = |name: &str| -> Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}")),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(v)) => {
                    Err(format!("{name} must be a whole number, not {v:?}"))
                }
            }
        };
        let mut batch = Batch::fixed(budget);
        match (number("HB_SIM_SEED")?, number("HB_SIM_SEEDS")?) {
            (Some(_), Some(_)) => {
                return Err(
                    "set HB_SIM_SEED (one seed) or HB_SIM_SEEDS (seeds 0..N), not both".into(),
                );
            }
            (Some(seed), None) => {
                if seed == u64::MAX {
                    return Err(format!("HB_SIM_SEED must be below {}", u64::MAX));
                }
                batch.seeds = seed..seed + 1;
                batch.budget = None;
            }
            (None, Some(0)) => return Err("HB_SIM_SEEDS must be at least 1".into()),
            (None, Some(n)) => {
                batch.seeds = 0..n;
                batch.budget = None;
            }
            (None, None) => {}
        }
        batch.ignore = std::env::var("HB_SIM_IGNORE")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(batch)
    }

    /// Runs the batch: seeds are independent, so each thread takes the next seed not yet
    /// taken, and a seed's run does not depend on which thread ran it.
    pub fn run(&self) -> Summary {
        let started = Instant::now();
        let ignore: Vec<&str> = self.ignore.iter().map(String::as_str).collect();
        let threads = self.threads.max(1);
        let next = AtomicU64::new(self.seeds.start);
        let failed = AtomicUsize::new(0);
        let per_thread: Vec<Summary> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut s = Summary::default();
                        while self.budget.is_none_or(|b| started.elapsed() < b)
                            && failed.load(Ordering::Relaxed) < STOP_AFTER_FAILURES
                        {
                            let seed = next.fetch_add(1, Ordering::Relaxed);
                            if seed >= self.seeds.end {
                                break;
                            }
                            let o = run_ignoring(seed, self.steps, &ignore);
                            if o.violation.is_some() {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            s.record(o);
                        }
                        s
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a simulation thread panicked"))
                .collect()
        });
        let mut total = per_thread
            .into_iter()
            .fold(Summary::default(), |mut total, s| {
                total.add(s);
                total
            });
        // The lowest failing seed first, whichever thread ran it.
        total.failures.sort_by_key(|o| o.seed);
        total.elapsed = started.elapsed();
        total.threads = threads;
        total.ignore = self.ignore.clone();
        total
    }
}

/// What a batch ran.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Summary {
    /// Seeds run.
    pub runs: u64,
    /// Steps run, over all seeds.
    pub steps: u64,
    /// Simulated crashes, over all seeds.
    pub crashes: u64,
    /// Heartbeats, commits and timers fired inside the steps.
    pub events: u64,
    /// The seeds that broke an invariant, lowest first.
    pub failures: Vec<Outcome>,
    /// How long the batch took.
    pub elapsed: Duration,
    /// Threads it ran on.
    pub threads: usize,
    /// The invariants it did not check.
    ignore: Vec<String>,
}

impl Summary {
    fn record(&mut self, o: Outcome) {
        self.runs += 1;
        self.steps += o.steps as u64;
        self.crashes += o.crashes;
        self.events += o.events.ticks + o.events.commits + o.events.timers;
        if o.violation.is_some() {
            self.failures.push(o);
        }
    }

    fn add(&mut self, other: Summary) {
        self.runs += other.runs;
        self.steps += other.steps;
        self.crashes += other.crashes;
        self.events += other.events;
        self.failures.extend(other.failures);
    }

    /// Seeds, steps, crashes and violations; the speed; the invariants not checked, if any.
    pub fn figures(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(f64::EPSILON);
        let ignored = if self.ignore.is_empty() {
            String::new()
        } else {
            format!("\nnot checked (HB_SIM_IGNORE): {}", self.ignore.join(", "))
        };
        format!(
            "simulation: {} seeds, {} steps, {} crashes, {} violations\n\
             ({:.0} steps/s on {} threads, {:.0} per thread; within them {} events: \
             heartbeats, commits, timers fired){ignored}",
            self.runs,
            self.steps,
            self.crashes,
            self.failures.len(),
            self.steps as f64 / secs,
            self.threads,
            self.steps as f64 / secs / self.threads.max(1) as f64,
            self.events,
        )
    }

    /// The lowest failing seed: the invariant it broke and the shortest sequence of actions
    /// found that still breaks it (shrinking replays the seed many times).
    pub fn first_failure(&self) -> Option<String> {
        let ignore: Vec<&str> = self.ignore.iter().map(String::as_str).collect();
        self.failures.first().map(|o| report(o, &ignore))
    }
}

/// A failed run, with the shortest failing sequence found and how to replay it.
pub fn report(o: &Outcome, ignore: &[&str]) -> String {
    let Some(v) = o.violation.as_ref() else {
        return format!("seed {} broke no invariant", o.seed);
    };
    let short = shrink(o.seed, &o.actions, v.kind, ignore);
    let replayed = replay_ignoring(o.seed, &short, ignore);
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
