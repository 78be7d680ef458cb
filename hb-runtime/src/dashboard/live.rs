//! Live updates, as server-sent events: the rows of a list page every second, and an
//! activity's page each time it changes (pushed by the engine in its own process, polled from
//! a file) and every second for the ages it shows. An event `html` carries the new HTML of the
//! live part; `end` says nothing more will come (the activity closed, or is gone). Each stream
//! sends only what changed, reads a page's worth per second, and ends when the dashboard
//! stops.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::response::sse::Event;
use futures_util::{Stream, StreamExt};
use tokio::time::MissedTickBehavior;

use super::Shared;
use super::pages::{self, ListParams, PAGE};
use crate::client::{ActivityStatus, Description};

/// How often a list page's rows, and an idle activity's page, are read again.
pub(super) const TICK: Duration = Duration::from_secs(1);
/// The shortest time between two updates of one activity's page (an activity that
/// checkpoints a thousand times a second is not rendered a thousand times).
const MIN_GAP: Duration = Duration::from_millis(250);
/// The most live streams one dashboard serves at once (open pages); one more is answered 503.
pub(super) const MAX_STREAMS: usize = 64;
/// How long a window the rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(30);

/// Rates of progress of the activities on a page, from the progress read at each update over
/// the last [`RATE_WINDOW`]. Holds only the rows of the latest read.
#[derive(Debug, Default)]
pub(super) struct Rates {
    seen: HashMap<String, VecDeque<(u64, Instant)>>,
}

impl Rates {
    /// Takes in `rows` as read at `at`.
    pub(super) fn observe(&mut self, rows: &[Description], at: Instant) {
        let mut next = HashMap::with_capacity(rows.len());
        for d in rows {
            let (Some(p), ActivityStatus::Running) = (d.progress, d.status) else {
                continue;
            };
            let mut samples = self.seen.remove(&d.id).unwrap_or_default();
            // A new attempt starts from its checkpoint: the rate starts again.
            if samples.back().is_some_and(|&(done, _)| done > p.done) {
                samples.clear();
            }
            samples.push_back((p.done, at));
            while samples.len() > 2
                && samples
                    .front()
                    .is_some_and(|&(_, t)| at.duration_since(t) > RATE_WINDOW)
            {
                samples.pop_front();
            }
            next.insert(d.id.clone(), samples);
        }
        self.seen = next;
    }

    /// Items a second over the window, once two reads of the running attempt were seen.
    pub(super) fn rate(&self, id: &str) -> Option<f64> {
        let samples = self.seen.get(id)?;
        let (&(d0, t0), &(d1, t1)) = (samples.front()?, samples.back()?);
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt > 0.0).then(|| (d1 - d0) as f64 / dt)
    }
}

/// `end`, with data: a browser dispatches no event that has none.
fn end_event() -> Result<Event, Infallible> {
    Ok(Event::default().event("end").data("end"))
}

/// A `part` event: the new HTML of the element with id `target`, on the line after its id.
fn part_event(target: &str, html: &str) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event("part")
        .data(format!("{target}\n{html}")))
}

/// The rows of a list page, every [`TICK`], when they changed: an `html` event with the rows,
/// then a `part` event with the pager (its older link follows the last row shown).
pub(super) fn rows(
    shared: Arc<Shared>,
    params: ListParams,
    base: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop = shared.stop.clone();
    let state = (
        shared,
        (params, base),
        Rates::default(),
        String::new(),
        tick,
    );
    futures_util::stream::unfold(
        state,
        |(shared, which, mut rates, mut last, mut tick)| async move {
            let (params, base) = &which;
            loop {
                tick.tick().await;
                let (rows, pager) = match shared
                    .source
                    .page(super::page_query(params, PAGE + 1))
                    .await
                {
                    Ok(mut rows) => {
                        let more = rows.len() > PAGE;
                        rows.truncate(PAGE);
                        rates.observe(&rows, Instant::now());
                        let now = SystemTime::now();
                        let next = pages::next_cursor(&rows, more);
                        (
                            pages::list_rows(&rows, Some(&rates), now).into_string(),
                            pages::pager(base, params, next).into_string(),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "dashboard: reading the list failed");
                        continue;
                    }
                };
                let both = format!("{rows}\n{pager}");
                if both != last {
                    last = both;
                    let events = vec![
                        Ok(Event::default().event("html").data(rows)),
                        part_event("pager", &pager),
                    ];
                    return Some((events, (shared, which, rates, last, tick)));
                }
            }
        },
    )
    .flat_map(futures_util::stream::iter)
    .take_until(stop.cancelled_owned())
}

/// Where an activity's stream is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Going,
    /// The last page went out (the activity closed, or is gone): `end` next.
    Ending,
    Done,
}

/// A wait for the next change of an activity, armed when made.
type Armed = Option<std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>>;

/// One activity's live part: at once, on each change (at most every [`MIN_GAP`]), and every
/// [`TICK`]; then `end` once it closed or is gone.
pub(super) fn activity(
    shared: Arc<Shared>,
    id: String,
    base: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let stop = shared.stop.clone();
    let signal = shared.source.signal(&id);
    // Armed before each read, so a change during the read is not missed.
    let arm = |signal: &Option<crate::backend::ChangeSignal>| -> Armed {
        signal.as_ref().map(|s| {
            let mut n = Box::pin(s.notify.clone().notified_owned());
            n.as_mut().enable();
            n
        })
    };
    let state = (
        shared,
        (id, base),
        signal,
        None::<Armed>,
        String::new(),
        Phase::Going,
    );
    futures_util::stream::unfold(
        state,
        move |(shared, which, signal, mut armed, mut last, phase)| async move {
            let (id, base) = &which;
            match phase {
                Phase::Done => return None,
                Phase::Ending => {
                    let done = (shared, which, None, None, last, Phase::Done);
                    return Some((end_event(), done));
                }
                Phase::Going => {}
            }
            loop {
                // The first read at once; then after a change, or a tick.
                if let Some(waiting) = armed.take() {
                    tokio::time::sleep(MIN_GAP).await;
                    match waiting {
                        Some(n) => {
                            let _ = tokio::time::timeout(TICK.saturating_sub(MIN_GAP), n).await;
                        }
                        None => tokio::time::sleep(TICK.saturating_sub(MIN_GAP)).await,
                    }
                }
                armed = Some(arm(&signal));
                let (html, phase) = match shared.source.describe(id, false).await {
                    Ok(Some((d, _))) => {
                        let html = pages::activity_live(&d, SystemTime::now()).into_string();
                        let phase = if d.status.is_closed() {
                            Phase::Ending
                        } else {
                            Phase::Going
                        };
                        (html, phase)
                    }
                    Ok(None) => (
                        pages::problem(base, &format!("No activity with id `{id}`.")).into_string(),
                        Phase::Ending,
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "dashboard: reading an activity failed");
                        continue;
                    }
                };
                if html == last && phase == Phase::Going {
                    continue;
                }
                last.clone_from(&html);
                let event = Ok(Event::default().event("html").data(html));
                return Some((event, (shared, which, signal, armed, last, phase)));
            }
        },
    )
    .take_until(stop.cancelled_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Progress;

    fn row(id: &str, status: ActivityStatus, done: u64) -> Description {
        let mut d = Description::new(id.to_owned(), "t".to_owned(), status);
        d.progress = Some(Progress {
            done,
            total: Some(1000),
        });
        d
    }

    #[test]
    fn the_rate_is_measured_over_the_window_and_starts_again_with_each_attempt() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut r = Rates::default();
        r.observe(&[row("a", ActivityStatus::Running, 10)], t);
        assert_eq!(r.rate("a"), None, "one read is no rate");
        r.observe(&[row("a", ActivityStatus::Running, 30)], t + s(2));
        assert_eq!(r.rate("a"), Some(10.0));
        r.observe(&[row("a", ActivityStatus::Running, 70)], t + s(4));
        assert_eq!(r.rate("a"), Some(15.0));
        // Stalled: the rate falls.
        r.observe(&[row("a", ActivityStatus::Running, 70)], t + s(6));
        assert_eq!(r.rate("a"), Some(10.0));
        // A retry resumed from an older checkpoint: measured afresh.
        r.observe(&[row("a", ActivityStatus::Running, 20)], t + s(10));
        assert_eq!(r.rate("a"), None);
        // Old reads leave the window.
        for i in 1..=40 {
            r.observe(
                &[row("a", ActivityStatus::Running, 20 + i * 2)],
                t + s(10 + i),
            );
        }
        assert_eq!(r.rate("a"), Some(2.0));
        assert!(r.seen["a"].len() <= 32, "bounded: {}", r.seen["a"].len());
    }

    #[test]
    fn only_the_running_rows_of_the_latest_read_are_kept() {
        let t = Instant::now();
        let mut r = Rates::default();
        r.observe(
            &[
                row("a", ActivityStatus::Running, 1),
                row("b", ActivityStatus::Running, 1),
            ],
            t,
        );
        r.observe(
            &[
                row("b", ActivityStatus::Running, 5),
                row("c", ActivityStatus::Completed, 5),
            ],
            t + Duration::from_secs(1),
        );
        assert_eq!(r.seen.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(r.rate("b"), Some(4.0));
    }
}
