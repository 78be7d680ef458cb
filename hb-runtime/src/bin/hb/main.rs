//! `hb`: look at and steer the activities of an hb engine file from the command line.
//!
//! ```text
//! hb ls [--state S]... [--limit N]     the activities, newest first
//! hb show ID                           everything stored of one activity
//! hb watch [--interval MS] [--once]    live progress bars of the running activities
//! hb cancel ID                         ask the engine to cancel an activity
//! hb pause ID                          ask the engine to pause an activity
//! hb unpause ID                        ask the engine to unpause an activity
//! hb reset ID [--clear-checkpoint] [--keep-paused]
//!                                      ask the engine to start an activity again at attempt 1
//! hb serve [--listen ADDR] [--public] [--token-file F]
//!                                      the live web dashboard, until Ctrl-C
//! ```
//!
//! Every command takes `--file PATH` (default: `$HB_FILE`, else `./hb.db`). The tool only reads
//! the file, except `cancel`, `pause`, `unpause` and `reset`, which queue a request in it for
//! the engine to apply; it never creates an engine file. Works while an engine has the file open.
//!
//! Exit codes: 0 done; 1 no activity with that id, or output could not be written; 2 the file
//! cannot be used (missing, locked, not an hb file, newer schema, corrupt, I/O error) or bad
//! arguments; 3 the command does not apply to the activity in its state (pausing a paused or
//! closed one, unpausing one that is not paused, resetting a closed one). Every error is one line on stderr, and a file that cannot be used is left
//! untouched.

#![forbid(unsafe_code)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod cancel;
mod fmt;
mod ls;
mod operate;
mod screen;
mod serve;
mod show;
mod watch;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hb_runtime::client::{ActivityStatus, ResetOptions};
use hb_runtime::engine::EngineError;

/// Look at and steer the activities of an hb engine file.
#[derive(Debug, Parser)]
#[command(name = "hb", version)]
#[command(after_help = "\
Exit codes: 0 done; 1 no activity with that id, or output could not be written; \
2 the file cannot be used (missing, locked, not an hb file, newer schema, corrupt) or bad arguments; \
3 the command does not apply to the activity in its state.")]
struct Cli {
    /// The engine file [default: $HB_FILE, else ./hb.db]
    #[arg(long, short = 'f', global = true, value_name = "PATH")]
    file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List activities, newest first: id, type, state, attempt, progress, last heartbeat
    Ls {
        /// Only activities in this state (repeat or comma-separate for several): scheduled,
        /// running, backing_off, paused, completed, failed, cancelled, timed_out
        #[arg(long = "state", short = 's', value_name = "S", value_delimiter = ',', value_parser = parse_state)]
        states: Vec<ActivityStatus>,
        /// At most N activities
        #[arg(long, short = 'n', value_name = "N", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
    },
    /// Show everything stored of one activity: its fields, last failure and checkpoint
    Show {
        /// The activity id
        id: String,
        /// Print the checkpoint as stored, envelope keys (`_hb_v`, `_hb_p`) included
        #[arg(long)]
        raw: bool,
    },
    /// Live progress bars of the running activities
    ///
    /// Refreshes until Ctrl-C. Draws one frame and exits when stdout is not a terminal, or
    /// with --once.
    Watch {
        /// Milliseconds between refreshes
        #[arg(long, short = 'i', value_name = "MS", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(50..=3_600_000))]
        interval: u64,
        /// Draw one frame and exit
        #[arg(long)]
        once: bool,
        /// At most N bars (the newest activities); the rest are counted
        #[arg(long, short = 'n', value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
    },
    /// Ask the engine to cancel an activity
    ///
    /// The request is queued in the file: the engine that has it open applies it within a
    /// fraction of a second, or the next engine to open it does. An activity that has already
    /// closed is left as it is.
    Cancel {
        /// The activity id
        id: String,
    },
    /// Ask the engine to pause an activity
    ///
    /// An activity waiting to run or to retry is paused at once; a running attempt is told to
    /// stop (its checkpoint kept) and the activity is paused when it has. No attempt starts
    /// until `hb unpause`; its schedule-to-close timeout keeps running. Queued in the file as
    /// `cancel` is. Refused (exit 3) when the activity is paused already or closed.
    Pause {
        /// The activity id
        id: String,
    },
    /// Ask the engine to unpause an activity
    ///
    /// Its next attempt starts at once, from its checkpoint; the attempt count goes on.
    /// Refused (exit 3) when the activity is not paused.
    Unpause {
        /// The activity id
        id: String,
    },
    /// Ask the engine to start an activity again at attempt 1
    ///
    /// A running attempt is told to stop first; an activity backing off runs at once; a paused
    /// one is unpaused (unless --keep-paused). Its retry budget starts again. Refused (exit 3)
    /// when the activity has closed.
    Reset {
        /// The activity id
        id: String,
        /// Start again without the checkpoint (the first attempt's body gets the default)
        #[arg(long)]
        clear_checkpoint: bool,
        /// Leave a paused activity paused (its attempt count is still reset)
        #[arg(long)]
        keep_paused: bool,
    },
    /// Serve the live web dashboard of the file, until Ctrl-C
    ///
    /// Its pages list the activities (filter by state and type, search by id) with progress,
    /// rate and time left, and show one activity with its checkpoint, attempts, input and
    /// output; they update themselves. Cancel, pause, unpause and reset are queued in the file
    /// as the commands of those names queue them. Prints its address on stdout.
    ///
    /// Listens on loopback unless --public is given; then every request needs the token
    /// (HB_DASHBOARD_TOKEN, --token-file, or a new one printed in the address).
    Serve {
        /// The address to listen on (port 0 picks a free one)
        #[arg(
            long,
            short = 'l',
            value_name = "ADDR",
            default_value = "127.0.0.1:8080"
        )]
        listen: std::net::SocketAddr,
        /// Allow an address other than loopback (a token is then required)
        #[arg(long)]
        public: bool,
        /// Read the token from this file (default: $HB_DASHBOARD_TOKEN; with --public and
        /// neither, a new one is generated and printed)
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
    },
}

fn parse_state(s: &str) -> Result<ActivityStatus, String> {
    ActivityStatus::parse(s).ok_or_else(|| {
        "expected one of scheduled, running, backing_off, paused, completed, failed, cancelled, timed_out"
            .to_owned()
    })
}

/// Why a command stopped.
#[derive(Debug)]
enum Failure {
    /// The engine refused: the file is unusable (exit 2) or the id unknown (exit 1).
    Engine(EngineError),
    /// Writing the output failed.
    Output(std::io::Error),
    /// Bad arguments, or the dashboard cannot start (exit 2).
    Usage(String),
    /// The command does not apply to the activity in its state (exit 3).
    NotAllowed {
        id: String,
        operation: &'static str,
        status: ActivityStatus,
    },
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Output(e)
    }
}

/// The engine file: `--file`, else `$HB_FILE` (when set and not empty), else `./hb.db`.
fn engine_file(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("HB_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from("hb.db"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout with 0; usage errors to stderr with 2.
        Err(e) => e.exit(),
    };
    let path = engine_file(cli.file);
    let result = match cli.command {
        Command::Ls { states, limit } => ls::run(&path, states, limit),
        Command::Show { id, raw } => show::run(&path, &id, raw),
        Command::Watch {
            interval,
            once,
            limit,
        } => watch::run(&path, interval, once, limit),
        Command::Cancel { id } => cancel::run(&path, &id),
        Command::Pause { id } => operate::run(&path, &id, operate::Op::Pause),
        Command::Unpause { id } => operate::run(&path, &id, operate::Op::Unpause),
        Command::Reset {
            id,
            clear_checkpoint,
            keep_paused,
        } => {
            let mut options = ResetOptions::new();
            if clear_checkpoint {
                options = options.clear_checkpoint();
            }
            if keep_paused {
                options = options.keep_paused();
            }
            operate::run(&path, &id, operate::Op::Reset(options))
        }
        Command::Serve {
            listen,
            public,
            token_file,
        } => serve::run(&path, listen, public, token_file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Engine(e)) => {
            let code = match e {
                EngineError::NotFound { .. } => 1,
                _ => 2,
            };
            let hint = match e {
                EngineError::Missing { .. } => " (pass --file PATH or set HB_FILE)",
                _ => "",
            };
            error(&format!("{e}{hint}"));
            ExitCode::from(code)
        }
        Err(Failure::Usage(message)) => {
            error(&message);
            ExitCode::from(2)
        }
        Err(Failure::NotAllowed {
            id,
            operation,
            status,
        }) => {
            error(&format!(
                "cannot {operation} activity `{id}`: it is {status}{}",
                match operation {
                    "pause" if status == ActivityStatus::Paused => " already",
                    "unpause" => " (only a paused activity can be unpaused)",
                    _ => "",
                }
            ));
            ExitCode::from(3)
        }
        // The reader went away (`hb ls | head`): nothing left to say to it.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => {
            error(&format!("cannot write the output: {e}"));
            ExitCode::from(1)
        }
    }
}

/// One line on stderr. Never panics, even when stderr is closed.
fn error(message: &str) {
    let _ = writeln!(std::io::stderr(), "hb: error: {}", fmt::clean(message));
}

/// Writes `text` to stdout at once.
fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// One line of commentary on stderr (kept off stdout, which scripts read).
fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "hb: {}", fmt::clean(message));
}
