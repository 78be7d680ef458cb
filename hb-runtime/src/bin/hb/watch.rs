//! `hb watch`: live progress bars of the running activities.
//!
//! On a terminal the bars refresh every `--interval` until Ctrl-C. Otherwise (a pipe, a file)
//! or with `--once`, one frame is drawn by the same indicatif styles onto a [`Screen`] in
//! memory and printed as plain lines.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hb_runtime::client::{ActivityStatus, Description, ListFilter};
use hb_runtime::engine::{EngineError, Inspector};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

use crate::Failure;
use crate::fmt;
use crate::screen::Screen;

/// The widest id shown in full.
const ID_WIDTH: usize = 32;
/// The most open activities read per frame (they are counted; the newest get bars).
const LIST_LIMIT: usize = 1000;
/// The width of a one-frame screen: wide enough that no line wraps in practice.
const SCREEN_WIDTH: u16 = 400;

pub(crate) fn run(path: &Path, interval_ms: u64, once: bool, limit: u64) -> Result<(), Failure> {
    let inspector = Inspector::open(path)?;
    let interval = Duration::from_millis(interval_ms);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    // indicatif hides bars on a terminal it cannot drive (`TERM=dumb`): one frame there too.
    let target = ProgressDrawTarget::stdout();
    if once || !std::io::stdout().is_terminal() || target.is_hidden() {
        let screen = Screen::new(SCREEN_WIDTH);
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(
            screen.clone(),
        )));
        let mut board = Board::new(mp, &inspector, limit, None);
        board.frame()?;
        board.status.tick();
        return crate::print(&screen.contents());
    }
    let mp = MultiProgress::with_draw_target(target);
    let mut board = Board::new(mp, &inspector, limit, Some(interval));
    // The spinner redraws the whole board between refreshes, so updates the draw rate limit
    // held back still show.
    board.status.enable_steady_tick(Duration::from_millis(100));
    loop {
        if let Err(e) = board.frame() {
            let _ = board.mp.clear();
            return Err(e.into());
        }
        std::thread::sleep(interval);
    }
}

/// The bars on screen: a status line, then one bar per running activity.
struct Board<'a> {
    mp: MultiProgress,
    inspector: &'a Inspector,
    limit: usize,
    /// The refresh interval when live.
    live: Option<Duration>,
    status: ProgressBar,
    bars: HashMap<String, ProgressBar>,
    styles: Styles,
}

struct Styles {
    bar: ProgressStyle,
    text: ProgressStyle,
}

impl Styles {
    fn new() -> Self {
        // Fixed templates: a parse error here is a bug caught by every test of `watch`.
        let style = |t: &str| {
            ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar())
        };
        Styles {
            bar: style("{prefix} [{bar:30}] {msg}").progress_chars("=> "),
            text: style("{prefix} {msg}"),
        }
    }
}

impl<'a> Board<'a> {
    fn new(
        mp: MultiProgress,
        inspector: &'a Inspector,
        limit: usize,
        live: Option<Duration>,
    ) -> Self {
        let template = if live.is_some() {
            "{spinner} {msg}"
        } else {
            "{msg}"
        };
        let status = mp.add(
            ProgressBar::new_spinner()
                .with_style(
                    ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                )
                .with_finish(ProgressFinish::AndLeave),
        );
        Board {
            mp,
            inspector,
            limit,
            live,
            status,
            bars: HashMap::new(),
            styles: Styles::new(),
        }
    }

    /// Reads the file and brings the bars up to date.
    fn frame(&mut self) -> Result<(), EngineError> {
        let mut filter = ListFilter::all();
        filter.statuses = vec![ActivityStatus::Running, ActivityStatus::BackingOff];
        filter.limit = Some(LIST_LIMIT);
        let open = self.inspector.list(&filter)?;
        let engine = self.inspector.engine_running();
        let now = SystemTime::now();

        let shown = &open[..open.len().min(self.limit)];
        let keep: HashSet<&str> = shown.iter().map(|d| d.id.as_str()).collect();
        let gone: Vec<String> = self
            .bars
            .keys()
            .filter(|id| !keep.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(bar) = self.bars.remove(&id) {
                bar.finish_and_clear();
                self.mp.remove(&bar);
            }
            // Say how it ended, above the bars.
            if let Ok(d) = self.inspector.get(&id)
                && d.status.is_closed()
            {
                let _ = self
                    .mp
                    .println(format!("{} {}", fmt::clean(&id), fmt::state(&d)));
            }
        }

        let id_width = shown
            .iter()
            .map(|d| fmt::clip(&d.id, ID_WIDTH).chars().count())
            .max()
            .unwrap_or(0);
        let count_width = shown
            .iter()
            .map(|d| counts(d).chars().count())
            .max()
            .unwrap_or(0);
        for d in shown {
            let bar = match self.bars.get(&d.id) {
                Some(bar) => bar.clone(),
                None => {
                    let bar = self.mp.add(ProgressBar::new(0));
                    self.bars.insert(d.id.clone(), bar.clone());
                    bar
                }
            };
            bar.set_prefix(format!("{:<id_width$}", fmt::clip(&d.id, ID_WIDTH)));
            let counts = format!("{:>count_width$}", counts(d));
            match d.progress {
                Some(p) if p.total.is_some() => {
                    bar.set_style(self.styles.bar.clone());
                    bar.set_length(p.total.unwrap_or(0));
                    bar.set_position(p.done);
                    bar.set_message(format!("{counts}  {}", about(d, now)));
                }
                _ => {
                    bar.set_style(self.styles.text.clone());
                    bar.set_message(format!("{:<32}{counts}  {}", "", about(d, now)));
                }
            }
        }

        let file = fmt::clean(&self.inspector.path().display().to_string());
        let running = open
            .iter()
            .filter(|d| d.status == ActivityStatus::Running)
            .count();
        let backing_off = open.len() - running;
        // The list stops at its limit: then the counts are lower bounds.
        let more = if open.len() >= LIST_LIMIT { "+" } else { "" };
        let mut status = format!("{file}: {running}{more} running");
        if backing_off > 0 {
            status.push_str(&format!(", {backing_off}{more} backing off"));
        }
        if open.len() > shown.len() {
            status.push_str(&format!(" (showing the newest {})", shown.len()));
        }
        status.push_str(if engine {
            " · engine running"
        } else {
            " · no engine has the file open (what it shows is as the last engine left it)"
        });
        if let Some(interval) = self.live {
            status.push_str(&format!(
                " · every {}, Ctrl-C to quit",
                fmt::duration(interval)
            ));
        }
        self.status.set_message(status);
        Ok(())
    }
}

/// `3/10` (with the percentage when the total is known), `3 done`, or `no progress yet`.
fn counts(d: &Description) -> String {
    match d.progress {
        Some(p) => match (p.total, p.fraction()) {
            (Some(t), Some(f)) => format!("{}/{} {:>3.0}%", p.done, t, f * 100.0),
            (Some(t), None) => format!("{}/{}", p.done, t),
            (None, _) => format!("{} done", p.done),
        },
        None => "no progress yet".to_owned(),
    }
}

/// The type, attempt and liveness of `d`.
fn about(d: &Description, now: SystemTime) -> String {
    let mut s = format!(
        "{} · attempt {}",
        fmt::clip(&d.activity_type, 40),
        d.attempt
    );
    match d.status {
        ActivityStatus::BackingOff => {
            s.push_str(" · backing off");
            if let Some(t) = d.next_attempt_at {
                s.push_str(&format!(", next attempt {}", fmt::ago(t, now)));
            }
        }
        _ => match (d.last_heartbeat, d.attempt_started) {
            (Some(t), _) => s.push_str(&format!(" · heartbeat {}", fmt::ago(t, now))),
            (None, Some(t)) => s.push_str(&format!(
                " · no heartbeat yet, started {}",
                fmt::ago(t, now)
            )),
            (None, None) => s.push_str(" · no heartbeat yet"),
        },
    }
    if d.cancel_requested {
        s.push_str(" · cancelling");
    }
    s
}
