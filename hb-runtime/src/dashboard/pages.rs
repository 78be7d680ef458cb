//! The dashboard's HTML: the page around everything, the activities list and its rows, one
//! activity and its live part. `maud` escapes every value it writes; nothing here builds HTML
//! from strings.

use std::time::{Duration, SystemTime};

use maud::{DOCTYPE, Markup, html};

use super::live::Rates;
use super::source::Summary;
use crate::Progress;
use crate::checkpoint;
use crate::client::{ActivityFailure, ActivityStatus, AttemptRecord, Description};
use crate::payload::Payload;

/// Rows on one page of the list.
pub(super) const PAGE: usize = 50;
/// The most of a payload a page shows.
const PAYLOAD_SHOWN: usize = 64 * 1024;

/// What is around every page: `base` is where the dashboard is mounted (every link is relative
/// to it), `banner` a warning about the source.
pub(super) fn layout(
    base: &str,
    title: &str,
    source: &str,
    banner: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                base href=(format!("{base}/"));
                title { (title) " · hb" }
                link rel="stylesheet" href="assets/app.css";
                script src="assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href=(root(base)) { "hb" }
                    span.source title="engine file" { (source) }
                }
                @if let Some(b) = banner {
                    p.banner { (b) }
                }
                main { (body) }
            }
        }
    }
}

/// The filters of the list, as given in its query string.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub(super) struct ListParams {
    pub(super) state: Option<String>,
    #[serde(rename = "type")]
    pub(super) activity_type: Option<String>,
    pub(super) q: Option<String>,
    pub(super) after_at: Option<i64>,
    pub(super) after_id: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ListParams {
    pub(super) fn state(&self) -> Option<ActivityStatus> {
        non_empty(&self.state).and_then(ActivityStatus::parse)
    }

    pub(super) fn activity_type(&self) -> Option<&str> {
        non_empty(&self.activity_type)
    }

    pub(super) fn search(&self) -> Option<&str> {
        non_empty(&self.q)
    }

    /// The query string of these filters, with a cursor or without.
    pub(super) fn query(&self, after: Option<(i64, &str)>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(s) = self.state() {
            q.append_pair("state", s.as_str());
        }
        if let Some(t) = self.activity_type() {
            q.append_pair("type", t);
        }
        if let Some(s) = self.search() {
            q.append_pair("q", s);
        }
        if let Some((at, id)) = after {
            q.append_pair("after_at", &at.to_string());
            q.append_pair("after_id", id);
        }
        q.finish()
    }

    pub(super) fn cursor(&self) -> Option<(i64, &str)> {
        Some((self.after_at?, self.after_id.as_deref()?))
    }
}

/// The list's own address: where the dashboard is mounted (nested in an app, a router answers
/// at `/hb`, not at `/hb/`, so the links to it cannot be relative ones).
fn root(base: &str) -> &str {
    if base.is_empty() { "/" } else { base }
}

/// A link to the list with `query`.
fn list_href(base: &str, query: &str) -> String {
    if query.is_empty() {
        root(base).to_owned()
    } else {
        format!("{}?{query}", root(base))
    }
}

/// A link to activity `id`'s page.
pub(super) fn activity_href(id: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("id", id)
        .finish();
    format!("activity?{q}")
}

/// Milliseconds since the epoch of `t`.
pub(super) fn ms_of(t: SystemTime) -> i64 {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The activities page.
pub(super) fn list(
    base: &str,
    params: &ListParams,
    summary: &Summary,
    rows: &[Description],
    more: bool,
    now: SystemTime,
) -> Markup {
    let (counts, types) = summary;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let state = params.state();
    let tab = |s: Option<ActivityStatus>, n: u64| {
        let p = ListParams {
            state: s.map(|s| s.as_str().to_owned()),
            ..params.clone()
        };
        let label = s.map_or("all", ActivityStatus::as_str);
        html! {
            a.tab.current[state == s] href=(list_href(base, &p.query(None))) {
                (label) " " span.count { (n) }
            }
        }
    };
    let next = next_cursor(rows, more);
    html! {
        nav.tabs {
            (tab(None, total))
            @for (s, n) in counts {
                (tab(Some(*s), *n))
            }
        }
        form.filters method="get" action=(root(base)) {
            @if let Some(s) = state {
                input type="hidden" name="state" value=(s.as_str());
            }
            label { "type "
                select name="type" {
                    option value="" { "any" }
                    @for t in types {
                        option value=(t) selected[params.activity_type() == Some(t.as_str())] { (t) }
                    }
                }
            }
            label { "id contains "
                input type="search" name="q" value=(params.search().unwrap_or("")) placeholder="import-2026";
            }
            button type="submit" { "Filter" }
        }
        table.activities {
            thead {
                tr {
                    th { "id" } th { "type" } th { "status" } th.progress { "progress" }
                    th { "rate" } th { "eta" } th { "attempt" } th { "heartbeat" } th { "started" }
                }
            }
            tbody id="rows" data-live=(format!("live/rows?{}", params.query(params.cursor()))) {
                (list_rows(rows, None, now))
            }
        }
        nav.pager id="pager" { (pager(base, params, next)) }
    }
}

/// The cursor of the page after `rows` (the last row's time and id), when there is one.
pub(super) fn next_cursor(rows: &[Description], more: bool) -> Option<(i64, &str)> {
    rows.last()
        .filter(|_| more)
        .and_then(|d| Some((ms_of(d.scheduled_at?), d.id.as_str())))
}

/// The links to the newest page and to the next, older one (what the list's live updates
/// replace with its rows: the older page starts after the last row shown).
pub(super) fn pager(base: &str, params: &ListParams, next: Option<(i64, &str)>) -> Markup {
    html! {
        @if params.cursor().is_some() {
            a href=(list_href(base, &params.query(None))) { "← newest" }
        }
        @if let Some(after) = next {
            a id="older" href=(list_href(base, &params.query(Some(after)))) { "older →" }
        }
    }
}

/// The rows of the list (what its live updates replace).
pub(super) fn list_rows(rows: &[Description], rates: Option<&Rates>, now: SystemTime) -> Markup {
    html! {
        @if rows.is_empty() {
            tr { td.empty colspan="9" { "No activities here." } }
        }
        @for d in rows {
            @let rate = rates.and_then(|r| r.rate(&d.id));
            tr data-id=(d.id) data-status=(d.status.as_str()) {
                td.id { a href=(activity_href(&d.id)) { (d.id) } }
                td { (d.activity_type) }
                td { (badge(d.status)) }
                td.progress { (progress_bar(d.progress)) }
                td.rate { (rate.map_or_else(|| "—".to_owned(), rate_text)) }
                td.eta { (eta(d, rate)) }
                td.num { (d.attempt) }
                td.age { (d.last_heartbeat.filter(|_| d.status == ActivityStatus::Running).map_or_else(|| "—".to_owned(), |t| ago(t, now))) }
                td.age { (d.scheduled_at.map_or_else(|| "—".to_owned(), |t| ago(t, now))) }
            }
        }
    }
}

fn badge(s: ActivityStatus) -> Markup {
    html! { span class=(format!("badge s-{}", s.as_str())) { (s.as_str().replace('_', " ")) } }
}

fn progress_bar(p: Option<Progress>) -> Markup {
    html! {
        @match p {
            None => span.muted { "—" },
            Some(p) => {
                @if let Some(total) = p.total {
                    progress value=(p.done.min(total)) max=(total.max(1)) {}
                }
                " "
                span.figure { (p) @if let Some(f) = p.fraction() { " (" (format!("{:.0}", f * 100.0)) "%)" } }
            }
        }
    }
}

fn rate_text(per_second: f64) -> String {
    if per_second >= 10.0 {
        format!("{per_second:.0}/s")
    } else if per_second >= 0.1 {
        format!("{per_second:.1}/s")
    } else {
        format!("{:.1}/min", per_second * 60.0)
    }
}

fn eta(d: &Description, rate: Option<f64>) -> String {
    match (d.status, d.progress, rate) {
        (
            ActivityStatus::Running,
            Some(Progress {
                done,
                total: Some(t),
            }),
            Some(r),
        ) if r > 0.0 => {
            let left = t.saturating_sub(done) as f64 / r;
            duration(Duration::from_secs_f64(left.min(1e9)))
        }
        _ => "—".to_owned(),
    }
}

/// `d` as a person says it: `850ms`, `42s`, `3m 20s`, `5h 4m`, `2d 3h`.
pub(super) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn ago(t: SystemTime, now: SystemTime) -> String {
    match now.duration_since(t) {
        Ok(d) if d < Duration::from_secs(1) => "now".to_owned(),
        Ok(d) => format!("{} ago", duration(Duration::from_secs(d.as_secs()))),
        Err(_) => "now".to_owned(),
    }
}

fn time(t: Option<SystemTime>) -> String {
    t.map_or_else(
        || "—".to_owned(),
        |t| humantime::format_rfc3339_seconds(t).to_string(),
    )
}

/// One activity's page: `flash` says what an action just did.
pub(super) fn activity(
    base: &str,
    d: &Description,
    input: Option<&Payload>,
    csrf: &str,
    flash: Option<&str>,
    now: SystemTime,
) -> Markup {
    let href = activity_href(&d.id);
    let action = |name: &str, label: &str, confirm: String, extra: Markup| {
        html! {
            form.action method="post" action=(format!("activity/{name}")) data-confirm=(confirm) {
                input type="hidden" name="id" value=(d.id);
                input type="hidden" name="csrf" value=(csrf);
                (extra)
                button type="submit" name="do" value=(name) id=(format!("do-{name}")) { (label) }
            }
        }
    };
    html! {
        p.crumbs { a href=(root(base)) { "activities" } " / " (d.activity_type) }
        h1 { (d.id) }
        @if let Some(f) = flash {
            p.flash { (f) }
        }
        // The actions that apply as the page loads (the engine refuses, with its reason, one
        // that no longer does when it is clicked).
        div.actions {
            @if d.status.is_closed() {
                span.muted { "It has closed: no action applies." }
            } @else {
                (action("cancel", "Cancel", format!("Cancel {}?", d.id), html! {}))
                @if d.status == ActivityStatus::Paused {
                    (action("unpause", "Unpause", format!("Unpause {}?", d.id), html! {}))
                } @else {
                    (action("pause", "Pause", format!("Pause {}? Its attempt stops; its checkpoint is kept.", d.id), html! {}))
                }
                (action("reset", "Reset", format!("Reset {} to attempt 1?", d.id), html! {
                    label.check { input type="checkbox" name="clear" value="1"; " clear its checkpoint" }
                }))
            }
        }
        section id="live" data-live=(format!("live/{href}")) {
            (activity_live(d, now))
        }
        // The input never changes: not in the live part.
        h2 { "Input" }
        (json(input))
    }
}

/// The part of an activity's page its live updates replace.
pub(super) fn activity_live(d: &Description, now: SystemTime) -> Markup {
    html! {
        div.summary {
            (badge(d.status))
            @if d.cancel_requested && !d.status.is_closed() { span.note { "cancel requested" } }
            div.bar { (progress_bar(d.progress)) }
        }
        table.facts {
            tr { th { "attempt" } td id="attempt" { (d.attempt) } }
            tr { th { "last heartbeat" } td { (d.last_heartbeat.map_or_else(|| "—".to_owned(), |t| format!("{} ({})", time(Some(t)), ago(t, now)))) } }
            tr { th { "attempt started" } td { (time(d.attempt_started)) } }
            tr { th { "scheduled" } td { (time(d.scheduled_at)) } }
            @if d.next_attempt_at.is_some() { tr { th { "next attempt" } td { (time(d.next_attempt_at)) } } }
            @if d.closed_at.is_some() { tr { th { "closed" } td { (time(d.closed_at)) } } }
        }
        @if let Some(f) = &d.last_failure {
            h2 { "Last failure" }
            (failure(f))
        }
        h2 { "Attempts" }
        (timeline(&d.attempts, now))
        h2 { "Checkpoint" }
        (checkpoint_json(d.details.as_ref()))
        @if d.status == ActivityStatus::Completed {
            h2 { "Output" }
            (json(d.output.as_ref()))
        }
    }
}

fn failure(f: &ActivityFailure) -> Markup {
    let (kind, text) = match f {
        ActivityFailure::Application {
            error_type,
            message,
            non_retryable,
            ..
        } => (
            error_type.clone(),
            format!(
                "{message}{}",
                if *non_retryable {
                    " (non-retryable)"
                } else {
                    ""
                }
            ),
        ),
        other => (other.kind().to_owned(), other.to_string()),
    };
    html! {
        p.failure {
            strong { (kind) }
            // A cancel says no more than its kind.
            @if text != kind { ": " (text) }
        }
    }
}

/// The attempts as bars on one time axis, then as a table.
fn timeline(attempts: &[AttemptRecord], now: SystemTime) -> Markup {
    const WIDTH: f64 = 600.0;
    const ROW: usize = 18;
    let start = attempts.iter().filter_map(|a| a.started_at).min();
    let end = attempts.iter().map(|a| a.ended_at.unwrap_or(now)).max();
    let span = match (start, end) {
        (Some(s), Some(e)) => e
            .duration_since(s)
            .unwrap_or_default()
            .as_secs_f64()
            .max(0.001),
        _ => 1.0,
    };
    let x = |t: SystemTime| {
        start.map_or(0.0, |s| {
            t.duration_since(s).unwrap_or_default().as_secs_f64() / span * WIDTH
        })
    };
    html! {
        @if attempts.is_empty() {
            p.muted { "No attempt has started." }
        } @else {
            svg.timeline viewBox=(format!("0 0 {WIDTH} {}", attempts.len() * ROW)) preserveAspectRatio="none"
                height=(attempts.len() * ROW) role="img" aria-label="attempts on a time axis" {
                @for (i, a) in attempts.iter().enumerate() {
                    @if let Some(s) = a.started_at {
                        @let x0 = x(s);
                        @let x1 = x(a.ended_at.unwrap_or(now));
                        rect class=(format!("a-{}", a.status.as_str())) x=(format!("{x0:.1}")) y=(i * ROW + 2)
                            width=(format!("{:.1}", (x1 - x0).max(2.0))) height=(ROW - 4) {
                            title { "attempt " (a.attempt) ": " (a.status.as_str()) }
                        }
                    }
                }
            }
            table.attempts {
                thead { tr { th { "#" } th { "outcome" } th { "started" } th { "took" } th { "resumed from" } th { "why it ended" } } }
                tbody {
                    @for a in attempts {
                        tr data-outcome=(a.status.as_str()) {
                            td.num { (a.attempt) }
                            td { span class=(format!("badge a-{}", a.status.as_str())) { (a.status.as_str().replace('_', " ")) } }
                            td { (time(a.started_at)) }
                            td { (a.started_at.map_or_else(|| "—".to_owned(), |s| duration(a.ended_at.unwrap_or(now).duration_since(s).unwrap_or_default()))) }
                            td { (a.resumed_from.map_or_else(|| "start".to_owned(), |p| p.to_string())) }
                            td { @if let Some(f) = &a.failure { (failure(f)) } }
                        }
                    }
                }
            }
        }
    }
}

/// A checkpoint as the JSON of the user's value (hb's envelope taken off).
fn checkpoint_json(p: Option<&Payload>) -> Markup {
    match p
        .filter(|p| p.len() <= PAYLOAD_SHOWN)
        .and_then(checkpoint::user_value)
    {
        Some((value, _)) => pretty(&serde_json::to_string_pretty(&value).unwrap_or_default()),
        None => json(p),
    }
}

/// A payload as indented JSON.
fn json(p: Option<&Payload>) -> Markup {
    let text = match p {
        None => return html! { p.muted { "none" } },
        // Not parsed to be shown in part: its first bytes, as they are.
        Some(p) if p.len() > PAYLOAD_SHOWN => {
            let shown = String::from_utf8_lossy(&p.data()[..PAYLOAD_SHOWN]);
            return html! {
                pre.json { (shown) }
                p.muted { "… " (p.len() - PAYLOAD_SHOWN) " more bytes not shown" }
            };
        }
        Some(p) => match serde_json::from_slice::<serde_json::Value>(p.data()) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(_) => format!(
                "<{} bytes of {}>",
                p.len(),
                p.encoding().unwrap_or("unknown encoding")
            ),
        },
    };
    pretty(&text)
}

/// JSON text, cut at [`PAYLOAD_SHOWN`] bytes.
fn pretty(text: &str) -> Markup {
    let cut = text.len() > PAYLOAD_SHOWN;
    let mut end = PAYLOAD_SHOWN.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    html! {
        pre.json { (&text[..end]) }
        @if cut { p.muted { "… " (text.len() - end) " more bytes not shown" } }
    }
}

/// A page that says what went wrong.
pub(super) fn problem(base: &str, message: &str) -> Markup {
    html! {
        h1 { "Not done" }
        p.failure { (message) }
        p { a href=(root(base)) { "back to the activities" } }
    }
}
