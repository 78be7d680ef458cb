//! The conformance suite: every scenario, written once against `ActivityClient` and the
//! shared worker builder, run on the in-memory engine, an engine file and a real Temporal dev
//! server, with the same observable outcome asserted on each. What a backend does differently
//! by nature is a named field of its `Differences` (a row of the README's table).
//!
//! One Temporal server serves every scenario, so this binary runs its own cases
//! (`harness = false`): `cargo test -p hb-runtime --all-features --test conformance [-- NAME]`,
//! where NAME selects scenarios by a part of their name, or of `scenario::backend` (`::mem`,
//! `::file`, `::temporal`). It prints a matrix of scenario × backend and exits non-zero if
//! anything failed.

mod activities;
mod backend;
mod controls;
mod runs;
mod util;

#[path = "../temporal/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{Bench, Kind, WORKER_PROCESS};
use util::Outcome;

/// What every scenario stands on.
pub struct Env {
    /// The Temporal dev server, when a scenario runs on Temporal.
    server: Option<harness::Server>,
    /// Engine files.
    dir: harness::TempDir,
}

type Scenario = for<'a> fn(&'a Bench) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

macro_rules! scenarios {
    ($($path:path),* $(,)?) => {
        [$((last_segment(stringify!($path)), (|b| Box::pin($path(b))) as Scenario)),*]
    };
}

fn last_segment(path: &'static str) -> &'static str {
    path.rsplit("::").next().unwrap_or(path).trim()
}

/// Each (scenario, backend) run is bounded by this.
const BOUND: Duration = Duration::from_secs(90);
/// How many runs go at once (2 cores; the timing scenarios must not starve).
const AT_ONCE: usize = 8;

fn main() {
    if let Ok(spec) = std::env::var(WORKER_PROCESS) {
        backend::worker_process(&spec);
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // The slowest first: they wait on timeouts.
    let scenarios = scenarios![
        runs::killed_worker_times_out_and_the_retry_resumes,
        runs::stalled_attempt_times_out_on_heartbeat_and_is_retried,
        runs::start_to_close_and_schedule_to_close_timeouts,
        controls::pause_then_unpause_resumes_from_the_checkpoint,
        controls::reset_restarts_at_attempt_1_from_the_checkpoint,
        controls::reset_clearing_the_checkpoint_starts_from_none,
        controls::operations_that_do_not_apply_are_not_allowed,
        controls::graceful_shutdown_mid_attempt_resumes_on_a_new_worker,
        controls::cancel_while_running,
        controls::cancel_before_start,
        runs::describe_shows_progress_mid_run,
        runs::happy_path,
        runs::retryable_failure_resumes_from_the_checkpoint,
        runs::non_retryable_errors_end_it_at_once,
        runs::undecodable_input_is_bad_input_and_not_retried,
        runs::retries_exhausted,
        controls::duplicate_start_is_idempotent,
    ];
    let chosen: Vec<(&str, Scenario, Kind)> = scenarios
        .iter()
        .flat_map(|&(name, s)| Kind::ALL.map(|k| (name, s, k)))
        .filter(|(name, _, kind)| {
            let full = format!("{name}::{}", kind_filter_name(*kind));
            filter.is_empty() || filter.iter().any(|f| full.contains(f.as_str()))
        })
        .collect();
    if chosen.is_empty() {
        println!("running 0 scenarios");
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let began = Instant::now();
    // The server (and the virtualenv it comes from) only when a run needs it.
    let server = chosen
        .iter()
        .any(|(_, _, k)| *k == Kind::Temporal)
        .then(|| harness::Server::start(&harness::venv()));
    let env = Arc::new(Env {
        server,
        dir: harness::temp_dir("conformance"),
    });
    println!(
        "running {} scenario runs (ready in {:.1} s)",
        chosen.len(),
        began.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results: BTreeMap<(usize, Kind), Result<Outcome, String>> = rt.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
        let runs: Vec<_> = chosen
            .iter()
            .map(|&(name, scenario, kind)| {
                let (env, limit) = (env.clone(), limit.clone());
                let task = tokio::spawn(async move {
                    let _permit = limit.acquire_owned().await.unwrap();
                    let started = Instant::now();
                    let bench = Bench::new(kind, name, &env).await;
                    let outcome = tokio::time::timeout(BOUND, scenario(&bench))
                        .await
                        .unwrap_or_else(|_| panic!("took over {BOUND:?}"));
                    eprintln!(
                        "{name} on {}: done in {:.1} s",
                        kind.name(),
                        started.elapsed().as_secs_f64()
                    );
                    outcome
                });
                (name, kind, task)
            })
            .collect();
        let mut results = BTreeMap::new();
        for (name, kind, task) in runs {
            let row = scenarios.iter().position(|(n, _)| *n == name).unwrap();
            let outcome = task.await.map_err(|e| match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()),
                Err(e) => e.to_string(),
            });
            results.insert((row, kind), outcome);
        }
        results
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(env);

    let failed = print_matrix(&scenarios.map(|(n, _)| n), &results);
    println!("\nwhat each backend does differently by nature (README, differences):");
    for k in Kind::ALL {
        println!("  {}: {:?}", k.name(), k.differences());
    }
    println!(
        "\nconformance: {} runs, {failed} failed, in {:.1} s",
        results.len(),
        began.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

fn kind_filter_name(kind: Kind) -> &'static str {
    match kind {
        Kind::InMemory => "mem",
        Kind::File => "file",
        Kind::Temporal => "temporal",
    }
}

/// Prints scenario × backend, then the notes, skips and failures; returns how many failed.
fn print_matrix(
    names: &[&str],
    results: &BTreeMap<(usize, Kind), Result<Outcome, String>>,
) -> usize {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(10);
    let mut notes = Vec::new();
    let mut failed = 0;
    println!(
        "\n{:width$} | {:13} | {:13} | {:13}",
        "scenario", "in-memory", "engine file", "temporal"
    );
    println!("{}", "-".repeat(width + 3 * 16));
    for (row, name) in names.iter().enumerate() {
        if !Kind::ALL.iter().any(|k| results.contains_key(&(row, *k))) {
            continue;
        }
        let cells: Vec<String> = Kind::ALL
            .iter()
            .map(|k| match results.get(&(row, *k)) {
                None => "-".to_owned(),
                Some(Ok(Outcome::Pass(note))) => {
                    if let Some(note) = note {
                        notes.push(format!("{name} on {}: {note}", k.name()));
                    }
                    "pass".to_owned()
                }
                Some(Ok(Outcome::Measured { cell, note })) => {
                    notes.push(format!("{name} on {}: {note}", k.name()));
                    cell.clone()
                }
                Some(Ok(Outcome::Skip(why))) => {
                    notes.push(format!("{name} on {}: skipped: {why}", k.name()));
                    "skip".to_owned()
                }
                Some(Err(message)) => {
                    failed += 1;
                    let first = message.lines().next().unwrap_or_default();
                    notes.push(format!("{name} on {}: FAILED: {first}", k.name()));
                    "FAIL".to_owned()
                }
            })
            .collect();
        println!(
            "{name:width$} | {:13} | {:13} | {:13}",
            cells[0], cells[1], cells[2]
        );
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("{n}");
        }
    }
    failed
}
