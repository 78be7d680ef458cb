//! The live web dashboard (`hb_runtime::dashboard`), at the HTTP level: requests go through
//! `Dashboard::router()` with `tower::ServiceExt::oneshot` (and, for `serve`, over a real TCP
//! connection), and the tests read the HTML the way a browser would follow it.
//!
//! What it checks:
//! - the list: statuses, types and progress of the activities; the filters by state, type and
//!   id substring; keyset paging through the `older →` link visits every activity exactly once,
//!   newest first (from the engine in-process and from its file); an empty result says so; bad
//!   query values answer 400;
//! - an activity's page: its input, checkpoint, attempts (a failed one then a completed one)
//!   and output; 404 for an unknown id; an id with `/`, space, `&` and `<` is escaped in the
//!   HTML and percent-encoded in its links;
//! - the actions: cancel, pause, unpause and reset through the page's forms (the engine in the
//!   process applies them; from the file they are queued and the engine applies them, also an
//!   engine opened later); a refused action answers 409 with the reason; a missing or wrong
//!   form secret, or another site's request, answers 403 and does nothing;
//! - the live streams: the rows as a first `html` event; an activity's page as `html` events,
//!   then `end` once it closed;
//! - security: loopback hosts only without a token; the token by header, cookie or `?token=`
//!   (then taken out of the address); the token's checks; `serve` refuses a public address
//!   without a token, answers on loopback and shuts down (ending the live streams);
//! - nested under `/hb`: the pages' `<base>`, their links, and the actions' redirects.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use hb_runtime::client::{ActivityFailure, ActivityStatus, StartOptions};
use hb_runtime::dashboard::{Dashboard, DashboardError};
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;
use http_body_util::BodyExt;
use tempfile::TempDir;
use tokio::sync::Semaphore;
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// Activities

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Items {
    #[checkpoint(done)]
    done: u64,
    #[checkpoint(total)]
    total: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Job {
    label: String,
    items: u64,
}

fn job(label: &str, items: u64) -> Job {
    Job {
        label: label.to_owned(),
        items,
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Report {
    summary: String,
    rows: u64,
}

/// Stores a checkpoint of half its items (flushed), then waits for a permit and completes.
#[activity(heartbeat_timeout = "30s", retry(max_attempts = 1))]
async fn park(
    ctx: ActivityContext,
    #[checkpoint] mut p: Items,
    #[state] go: Arc<Semaphore>,
    job: Job,
) -> Result<String, ActivityError> {
    p.total = job.items;
    p.done = job.items / 2;
    ctx.checkpoint(&p)?;
    ctx.flush().await?;
    go.acquire().await.expect("the semaphore is open").forget();
    Ok(format!("parked {}", job.label))
}

/// Attempt 1 stores 3 of 7 and fails (retryable); attempt 2 stores 7 of 7 and completes.
#[activity(
    heartbeat_timeout = "30s",
    retry(max_attempts = 3, initial_interval = "1ms")
)]
async fn flaky(
    ctx: ActivityContext,
    #[checkpoint] mut p: Items,
    job: Job,
) -> Result<Report, ActivityError> {
    p.total = 7;
    if ctx.info().attempt == 1 {
        p.done = 3;
        ctx.checkpoint(&p)?;
        ctx.flush().await?;
        return Err(ActivityError::retryable(
            "FlakyDisk",
            "the first attempt always fails",
        ));
    }
    p.done = 7;
    ctx.checkpoint(&p)?;
    ctx.flush().await?;
    Ok(Report {
        summary: format!("report of {}", job.label),
        rows: 42,
    })
}

/// Never run in these tests (no worker registers it): it stays scheduled.
#[activity(heartbeat_timeout = "30s")]
async fn import_batch(_ctx: ActivityContext, _job: Job) -> Result<(), ActivityError> {
    Ok(())
}

/// Never run either: a second type.
#[activity(heartbeat_timeout = "30s")]
async fn export_batch(_ctx: ActivityContext, _job: Job) -> Result<(), ActivityError> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Every bounded wait of these tests.
const WAIT: Duration = Duration::from_secs(10);

/// A directory of its own, removed when it drops (even if the test fails).
fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-dashboard-{name}-"))
        .tempdir()
        .unwrap()
}

/// Waits (up to [`WAIT`]) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `s` as `application/x-www-form-urlencoded` writes it (what the dashboard's links use).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form body of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Text as it was before HTML escaping.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `attr` of the first tag whose text contains `needle`, unescaped.
fn tag_attr(html: &str, needle: &str, attr: &str) -> Option<String> {
    let at = html.find(needle)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!(" {attr}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(unescape(&tag[from..from + len]))
}

/// The attribute value that `prefix` (ending with `="`) opens, unescaped.
fn value_after(html: &str, prefix: &str) -> Option<String> {
    let from = html.find(prefix)? + prefix.len();
    let len = html[from..].find('"')?;
    Some(unescape(&html[from..from + len]))
}

/// The href of the first row's link to its activity.
fn first_link(html: &str) -> String {
    value_after(html, "<td class=\"id\"><a href=\"").expect("a row with a link")
}

/// The rows of a list (its `tbody`, or a live `html` event of it): id and status each.
fn rows(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("<tr data-id=\"") {
        let tag_end = rest[at..].find('>').unwrap() + at;
        let tag = &rest[at..tag_end];
        let value = |name: &str| {
            let key = format!("{name}=\"");
            let from = tag.find(&key).unwrap() + key.len();
            let len = tag[from..].find('"').unwrap();
            unescape(&tag[from..from + len])
        };
        out.push((value("data-id"), value("data-status")));
        rest = &rest[tag_end..];
    }
    out
}

fn ids(html: &str) -> Vec<String> {
    rows(html).into_iter().map(|(id, _)| id).collect()
}

/// The outcomes of the attempts table of an activity's page, in order.
fn outcomes(html: &str) -> Vec<String> {
    html.split("<tr data-outcome=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

/// The actions an activity's page offers (its forms), in order.
fn forms(html: &str) -> Vec<String> {
    html.split("action=\"activity/")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

/// The hidden form secret of an activity's page.
fn csrf_of(html: &str) -> String {
    tag_attr(html, "name=\"csrf\"", "value").expect("the page's forms carry a csrf field")
}

/// A request to a loopback host.
fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::HOST, "127.0.0.1")
        .body(Body::empty())
        .unwrap()
}

/// A form POST from the dashboard's own page (same origin).
fn post(uri: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    post_with(uri, pairs, &[("origin", "http://127.0.0.1")])
}

fn post_with(uri: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::post(uri)
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from(form(pairs))).unwrap()
}

/// An answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    fn location(&self) -> &str {
        self.header(header::LOCATION)
    }
}

/// Sends `req` to `app` and reads the whole answer (within [`WAIT`]).
async fn send(app: &Router, req: Request<Body>) -> Answer {
    let what = format!("{} {}", req.method(), req.uri());
    let response = tokio::time::timeout(WAIT, app.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("no answer to {what} within {WAIT:?}"))
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .unwrap_or_else(|_| panic!("the body of {what} did not end within {WAIT:?}"))
        .unwrap()
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// GET `uri`, which must answer 200.
async fn page(app: &Router, uri: &str) -> String {
    let a = send(app, get(uri)).await;
    assert_eq!(a.status, StatusCode::OK, "GET {uri}: {}", a.body);
    a.body
}

/// The server-sent events of a streaming answer.
struct Events {
    body: Body,
    buf: String,
}

impl Events {
    async fn open(app: &Router, uri: &str) -> Events {
        let response = tokio::time::timeout(WAIT, app.clone().oneshot(get(uri)))
            .await
            .expect("the stream answers")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {uri}");
        let ct = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Events {
            body: response.into_body(),
            buf: String::new(),
        }
    }

    /// The next event (name and data), or `None` once the stream ended; within [`WAIT`].
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            match self.next_any().await? {
                (event, _) if event == "part" => continue,
                e => return Some(e),
            }
        }
    }

    /// The next event, `part` events included.
    async fn next_any(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = None;
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if event.is_none() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((event.unwrap_or_else(|| "message".into()), data.join("\n")));
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event within {WAIT:?}"))?
                .expect("the stream fails not");
            if let Ok(bytes) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }
}

/// A worker of `engine` running `park` (each attempt held until `go` gets a permit) and
/// `flaky`.
async fn parking_worker(engine: &Engine) -> (Arc<Semaphore>, hb_runtime::engine::WorkerHandle) {
    let go = Arc::new(Semaphore::new(0));
    let worker = engine
        .worker()
        .state(go.clone())
        .register(park)
        .register(flaky)
        .spawn()
        .await
        .unwrap();
    (go, worker)
}

/// A dashboard of `engine` in this process, as a router.
fn router_of(engine: &Engine) -> Router {
    local(Dashboard::new(engine).router())
}

/// `router` as served to connections from this machine (what `Dashboard::serve` gives it:
/// each request knows its peer).
fn local(router: Router) -> Router {
    router.layer(MockConnectInfo(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        40_000,
    ))))
}

fn assert_security_headers(a: &Answer) {
    let csp = a.header(header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(a.header(header::X_FRAME_OPTIONS), "DENY");
}

/// The status of `id`, from the engine.
async fn status_of(engine: &Engine, id: &str) -> ActivityStatus {
    engine.client().describe(id).await.unwrap().status
}

// ---------------------------------------------------------------------------------------------
// The list

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shows_each_activity_and_filters_by_state_type_and_id() {
    let engine = Engine::in_memory().await.unwrap();
    let (go, _w) = parking_worker(&engine).await;
    let client = engine.client();
    client
        .start(park, job("run", 10), StartOptions::id("run-one"))
        .await
        .unwrap();
    let done = client
        .start(flaky, job("done", 7), StartOptions::id("done-one"))
        .await
        .unwrap();
    let gone = client
        .start(import_batch, job("gone", 1), StartOptions::id("gone-one"))
        .await
        .unwrap();
    client
        .start(import_batch, job("wait", 1), StartOptions::id("wait-two"))
        .await
        .unwrap();
    gone.cancel().await.unwrap();
    done.result().await.unwrap();
    let app = router_of(&engine);

    // Every activity, its status, type and progress (once the running one's checkpoint and
    // state are in).
    let want = [
        ("run-one", "running"),
        ("done-one", "completed"),
        ("gone-one", "cancelled"),
        ("wait-two", "scheduled"),
    ];
    let mut html = String::new();
    eventually("the list shows all four as they are", async || {
        html = page(&app, "/").await;
        let mut got = rows(&html);
        got.sort();
        let mut want: Vec<_> = want
            .iter()
            .map(|(i, s)| (i.to_string(), s.to_string()))
            .collect();
        want.sort();
        got == want && html.contains("5/10 (50%)")
    })
    .await;
    assert!(html.contains("<td>park</td>"), "{html}");
    assert!(html.contains("<td>flaky</td>"), "{html}");
    assert!(html.contains("<td>import_batch</td>"), "{html}");
    assert!(
        html.contains("7/7 (100%)"),
        "the completed one's progress: {html}"
    );
    assert!(html.contains("badge s-running"), "{html}");
    assert!(html.contains("<progress value=\"5\" max=\"10\">"), "{html}");
    // The types the filter offers, and the counts of the tabs.
    for t in ["park", "flaky", "import_batch"] {
        assert!(
            html.contains(&format!("<option value=\"{t}\"")),
            "{t}: {html}"
        );
    }
    assert!(
        html.contains("all <span class=\"count\">4</span>"),
        "the tab of all: {html}"
    );
    // Links to each activity's page.
    assert!(html.contains("href=\"activity?id=run-one\""), "{html}");
    assert_security_headers(&send(&app, get("/")).await);

    // By state (the running one once its state is stored).
    eventually("state=running lists the running one", async || {
        ids(&page(&app, "/?state=running").await) == ["run-one"]
    })
    .await;
    let running = page(&app, "/?state=running").await;
    assert!(running.contains("class=\"tab current\""), "{running}");
    assert_eq!(ids(&page(&app, "/?state=completed").await), ["done-one"]);
    assert_eq!(ids(&page(&app, "/?state=cancelled").await), ["gone-one"]);
    assert_eq!(ids(&page(&app, "/?state=scheduled").await), ["wait-two"]);
    // By type, and by type and state.
    let mut imports = ids(&page(&app, "/?type=import_batch").await);
    imports.sort();
    assert_eq!(imports, ["gone-one", "wait-two"]);
    assert_eq!(
        ids(&page(&app, "/?type=import_batch&state=cancelled").await),
        ["gone-one"]
    );
    assert_eq!(ids(&page(&app, "/?type=park").await), ["run-one"]);
    // By id substring, alone and with the others.
    let mut ones = ids(&page(&app, "/?q=ne-o").await);
    ones.sort();
    assert_eq!(ones, ["done-one", "gone-one"]);
    assert_eq!(ids(&page(&app, "/?q=two").await), ["wait-two"]);
    assert_eq!(
        ids(&page(&app, "/?q=one&type=flaky&state=completed").await),
        ["done-one"]
    );
    // The filter form keeps what was asked.
    let filtered = page(&app, "/?q=ne-o&type=flaky&state=completed").await;
    assert!(filtered.contains("value=\"ne-o\""), "{filtered}");
    assert!(
        filtered.contains("<option value=\"flaky\" selected>"),
        "{filtered}"
    );
    assert!(
        filtered.contains("<input type=\"hidden\" name=\"state\" value=\"completed\">"),
        "{filtered}"
    );
    // Empty filters are no filters.
    assert_eq!(ids(&page(&app, "/?q=&type=&state=").await).len(), 4);

    // Nothing matches.
    for uri in [
        "/?q=zzz",
        "/?type=no_such_type",
        "/?state=paused",
        "/?q=run&type=flaky",
    ] {
        let html = page(&app, uri).await;
        assert!(rows(&html).is_empty(), "{uri}: {html}");
        assert!(html.contains("No activities here."), "{uri}: {html}");
        assert!(tag_attr(&html, "id=\"older\"", "href").is_none(), "{uri}");
    }

    // Bad values: 400, with a page that says why (and no panic: the next request answers).
    for uri in [
        "/?after_at=abc&after_id=x",
        "/?after_at=%3Cscript%3E&after_id=x",
        "/?after_at=99999999999999999999&after_id=x",
        "/live/rows?after_at=abc",
        "/activity",
    ] {
        let a = send(&app, get(uri)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.body);
        assert!(!a.body.contains("<script>"), "{uri}: {}", a.body);
        assert_security_headers(&a);
    }
    assert_eq!(ids(&page(&app, "/").await).len(), 4);
    go.add_permits(1);
}

/// Starts `n` activities, half `import_batch` and half `export_batch`, their ids in an order
/// unlike the order they are started in; cancels every seventh (so the list merges states).
async fn start_many(engine: &Engine, n: usize) -> Vec<String> {
    let client = engine.client();
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let k = (i * 37) % n;
            if i % 2 == 0 {
                format!("imp-{k:03}")
            } else {
                format!("exp-{k:03}")
            }
        })
        .collect();
    let starts = ids.iter().enumerate().map(|(i, id)| {
        let client = client.clone();
        let id = id.clone();
        async move {
            if i % 2 == 0 {
                client
                    .start(import_batch, job(&id, 1), StartOptions::id(&id))
                    .await
                    .map(|_| ())
            } else {
                client
                    .start(export_batch, job(&id, 1), StartOptions::id(&id))
                    .await
                    .map(|_| ())
            }
        }
    });
    // In a few waves, so that scheduled_at differs between waves and ties within them.
    let mut starts = starts.collect::<Vec<_>>();
    while !starts.is_empty() {
        let wave: Vec<_> = starts.drain(..starts.len().min(25)).collect();
        for r in futures::future::join_all(wave).await {
            r.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for id in ids.iter().step_by(7) {
        client.cancel(id).await.unwrap();
    }
    ids
}

/// Where a browser goes for `href` (with `&amp;` as written in HTML) on a page whose
/// `<base href>` is `base`.
fn resolve(base: &str, href: &str) -> String {
    let href = href.replace("&amp;", "&");
    if href.starts_with('/') {
        href
    } else {
        format!("{base}{}", href.trim_start_matches("./"))
    }
}

/// Follows the `older →` links from `first`: the ids of each page.
async fn walk(app: &Router, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut uri = first.to_owned();
    loop {
        let html = page(app, &uri).await;
        pages.push(ids(&html));
        if pages.len() > 1 {
            assert!(
                html.contains("← newest"),
                "a later page links to the newest"
            );
        }
        match tag_attr(&html, "id=\"older\"", "href") {
            Some(href) => uri = resolve("/", &href),
            None => return pages,
        }
        assert!(pages.len() <= 10, "the older links do not end: {pages:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_the_older_links_visits_every_activity_once_newest_first() {
    let dir = temp_dir("paging");
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let all = start_many(&engine, 120).await;
    // The order the pages must follow: scheduled time, then id, both descending.
    let client = engine.client();
    let mut key = std::collections::HashMap::new();
    for id in &all {
        let d = client.describe(id).await.unwrap();
        key.insert(id.clone(), (d.scheduled_at.unwrap(), id.clone()));
    }
    let newest_first = |ids: &[String]| ids.windows(2).all(|w| key[&w[0]] > key[&w[1]]);
    let in_engine = router_of(&engine);
    let from_file = local(Dashboard::open(&path).unwrap().router());
    for (source, app) in [("engine", &in_engine), ("file", &from_file)] {
        let check = |first: &str, pages: &[Vec<String>], want: &[String], sizes: &[usize]| {
            let seen: Vec<String> = pages.concat();
            let got: Vec<usize> = pages.iter().map(Vec::len).collect();
            assert_eq!(got, sizes, "{source} {first}: page sizes");
            let unique: HashSet<&String> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "{source} {first}: a row twice");
            let mut sorted_seen = seen.clone();
            sorted_seen.sort();
            let mut sorted_want = want.to_vec();
            sorted_want.sort();
            assert_eq!(sorted_seen, sorted_want, "{source} {first}: not every row");
            assert!(
                newest_first(&seen),
                "{source} {first}: not newest first: {seen:?}"
            );
        };
        let everything = walk(app, "/").await;
        check("/", &everything, &all, &[50, 50, 20]);

        let imports: Vec<String> = all
            .iter()
            .filter(|i| i.starts_with("imp-"))
            .cloned()
            .collect();
        let pages = walk(app, "/?type=import_batch").await;
        check("type", &pages, &imports, &[50, 10]);

        let scheduled: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 != 0)
            .map(|(_, id)| id.clone())
            .collect();
        let pages = walk(app, "/?state=scheduled").await;
        check("state", &pages, &scheduled, &[50, 50, 2]);

        let cancelled_exports: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(i, id)| i % 7 == 0 && id.starts_with("exp-"))
            .map(|(_, id)| id.clone())
            .collect();
        let pages = walk(app, "/?state=cancelled&type=export_batch").await;
        check(
            "state+type",
            &pages,
            &cancelled_exports,
            &[cancelled_exports.len()],
        );

        let zeros: Vec<String> = all.iter().filter(|i| i.contains("-0")).cloned().collect();
        let pages = walk(app, "/?q=-0").await;
        assert_eq!(zeros.len(), 100);
        check("q", &pages, &zeros, &[50, 50]);

        // The older link carries the filters (not the other way round).
        let first = page(app, "/?type=export_batch&q=exp").await;
        let older = tag_attr(&first, "id=\"older\"", "href").unwrap();
        assert!(
            older.starts_with("/?type=export_batch&q=exp&after_at="),
            "{older}"
        );
        // Its live rows are those of its own page.
        let live = tag_attr(&first, "id=\"rows\"", "data-live").unwrap();
        assert_eq!(live, "live/rows?type=export_batch&q=exp", "{source}");
        let second = page(app, &resolve("/", &older)).await;
        let live = tag_attr(&second, "id=\"rows\"", "data-live").unwrap();
        assert!(
            live.starts_with("live/rows?type=export_batch&q=exp&after_at="),
            "{live}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// One activity

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_page_shows_its_input_checkpoint_attempts_and_output() {
    let dir = temp_dir("activity-page");
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let _w = engine.worker().register(flaky).spawn().await.unwrap();
    let h = engine
        .client()
        .start(flaky, job("nightly-input", 7), StartOptions::id("flaky-1"))
        .await
        .unwrap();
    assert_eq!(
        h.result().await.unwrap(),
        Report {
            summary: "report of nightly-input".into(),
            rows: 42
        }
    );
    let in_engine = router_of(&engine);
    let from_file = local(Dashboard::open(&path).unwrap().router());
    for (source, app) in [("engine", &in_engine), ("file", &from_file)] {
        let html = unescape(&page(app, "/activity?id=flaky-1").await);
        assert!(html.contains("<h1>flaky-1</h1>"), "{source}: {html}");
        assert!(html.contains("badge s-completed"), "{source}: {html}");
        // Input, checkpoint and output, as JSON.
        let input = html
            .split("<h2>Input</h2>")
            .nth(1)
            .expect("an input section");
        assert!(
            input.contains("\"label\": \"nightly-input\""),
            "{source}: {input}"
        );
        assert!(input.contains("\"items\": 7"), "{source}: {input}");
        let checkpoint = html
            .split("<h2>Checkpoint</h2>")
            .nth(1)
            .expect("a checkpoint");
        assert!(checkpoint.contains("\"done\": 7"), "{source}: {checkpoint}");
        assert!(
            checkpoint.contains("\"total\": 7"),
            "{source}: {checkpoint}"
        );
        let output = html
            .split("<h2>Output</h2>")
            .nth(1)
            .expect("an output section");
        assert!(
            output.contains("\"summary\": \"report of nightly-input\""),
            "{source}: {output}"
        );
        assert!(output.contains("\"rows\": 42"), "{source}: {output}");
        // The attempts: one failed, then one completed.
        assert_eq!(outcomes(&html), ["failed", "completed"], "{source}");
        assert!(
            html.contains("<td id=\"attempt\">2</td>"),
            "{source}: {html}"
        );
        // Its live part; no action applies to it any more.
        assert_eq!(
            tag_attr(&html, "id=\"live\"", "data-live").as_deref(),
            Some("live/activity?id=flaky-1"),
            "{source}"
        );
        assert!(
            html.contains("It has closed: no action applies."),
            "{source}: {html}"
        );
        assert!(!html.contains("<form"), "{source}: {html}");

        // An unknown id.
        let a = send(app, get("/activity?id=no-such-thing")).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{source}");
        assert!(
            a.body.contains("No activity with id `no-such-thing`."),
            "{source}: {}",
            a.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_with_odd_characters_is_escaped_in_the_html_and_encoded_in_links() {
    const ODD: &str = "a/b c&<x>\"q'";
    let engine = Engine::in_memory().await.unwrap();
    let h = engine
        .client()
        .start(
            import_batch,
            job("<script>alert(1)</script>", 1),
            StartOptions::id(ODD),
        )
        .await
        .unwrap();
    let app = router_of(&engine);
    let encoded = enc(ODD);

    let list = page(&app, "/").await;
    assert!(!list.contains("<x>"), "a raw <x> in the list: {list}");
    assert_eq!(rows(&list), [(ODD.to_owned(), "scheduled".to_owned())]);
    let href = first_link(&list);
    assert_eq!(href, format!("activity?id={encoded}"));
    assert!(
        href.contains("a%2Fb+c%26%3Cx%3E"),
        "the id is percent-encoded in its link: {href}"
    );

    // The link leads to its page (also with %20 for the space).
    for uri in [
        format!("/{href}"),
        "/activity?id=a%2Fb%20c%26%3Cx%3E%22q%27".to_owned(),
    ] {
        let html = page(&app, &uri).await;
        assert!(!html.contains("<x>"), "a raw <x> on its page: {html}");
        assert!(
            !html.contains("<script>alert"),
            "raw input on its page: {html}"
        );
        assert!(html.contains("c&amp;&lt;x&gt;"), "{html}");
        assert_eq!(
            tag_attr(&html, "name=\"id\"", "value").as_deref(),
            Some(ODD)
        );
        assert_eq!(
            tag_attr(&html, "id=\"live\"", "data-live"),
            Some(format!("live/activity?id={encoded}"))
        );
    }

    // An unknown id is named escaped on its 404 page.
    let a = send(&app, get("/activity?id=%3Cx%3Eunknown")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(!a.body.contains("<x>"), "{}", a.body);
    assert!(a.body.contains("&lt;x&gt;unknown"), "{}", a.body);

    // An action on it: the redirect names it encoded, and leads back to its page.
    let html = page(&app, &format!("/activity?id={encoded}")).await;
    let a = send(
        &app,
        post(
            "/activity/cancel",
            &[("id", ODD), ("csrf", &csrf_of(&html))],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), format!("/activity?id={encoded}&done=cancel"));
    assert!(matches!(
        tokio::time::timeout(WAIT, h.result()).await.unwrap(),
        Err(ActivityFailure::Cancelled { .. })
    ));
    let after = page(&app, a.location()).await;
    assert!(after.contains("Cancel requested."), "{after}");
    assert!(after.contains("badge s-cancelled"), "{after}");
}

// ---------------------------------------------------------------------------------------------
// Actions, in-process

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_through_the_form_cancels_the_running_activity() {
    let engine = Engine::in_memory().await.unwrap();
    let (_go, _w) = parking_worker(&engine).await;
    let h = engine
        .client()
        .start(park, job("c", 4), StartOptions::id("to-cancel"))
        .await
        .unwrap();
    eventually("it runs", async || {
        status_of(&engine, "to-cancel").await == ActivityStatus::Running
    })
    .await;
    let app = router_of(&engine);
    let html = page(&app, "/activity?id=to-cancel").await;
    let csrf = csrf_of(&html);
    let a = send(
        &app,
        post("/activity/cancel", &[("id", "to-cancel"), ("csrf", &csrf)]),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/activity?id=to-cancel&done=cancel");
    assert_security_headers(&a);
    match tokio::time::timeout(WAIT, h.result()).await.unwrap() {
        Err(ActivityFailure::Cancelled { .. }) => {}
        other => panic!("expected Cancelled, got {other:?}"),
    }
    let after = page(&app, a.location()).await;
    assert!(
        after.contains("<p class=\"flash\">Cancel requested.</p>"),
        "{after}"
    );
    // The flash is one of a fixed set, never what the address says.
    let odd = page(&app, "/activity?id=to-cancel&done=%3Cb%3Ehi").await;
    assert!(!odd.contains("<b>hi"), "{odd}");
    assert!(!odd.contains("class=\"flash\""), "{odd}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_unpause_and_reset_of_a_queued_activity_through_the_forms() {
    let engine = Engine::in_memory().await.unwrap();
    engine
        .client()
        .start(import_batch, job("q", 1), StartOptions::id("queued"))
        .await
        .unwrap();
    let app = router_of(&engine);
    let html = page(&app, "/activity?id=queued").await;
    // What applies to a queued activity; each form carries the id and the page's secret.
    assert_eq!(forms(&html), ["cancel", "pause", "reset"]);
    assert_eq!(html.matches("name=\"csrf\"").count(), 3);
    assert_eq!(html.matches("name=\"id\" value=\"queued\"").count(), 3);
    assert!(html.contains("name=\"clear\" value=\"1\""), "{html}");
    let csrf = csrf_of(&html);

    let a = send(
        &app,
        post("/activity/pause", &[("id", "queued"), ("csrf", &csrf)]),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/activity?id=queued&done=pause");
    assert_eq!(status_of(&engine, "queued").await, ActivityStatus::Paused);
    let paused = page(&app, a.location()).await;
    assert!(paused.contains("Paused."), "{paused}");
    assert_eq!(forms(&paused), ["cancel", "unpause", "reset"]);
    eventually("the list shows it paused", async || {
        rows(&page(&app, "/?state=paused").await) == [("queued".into(), "paused".into())]
    })
    .await;

    let a = send(
        &app,
        post("/activity/unpause", &[("id", "queued"), ("csrf", &csrf)]),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/activity?id=queued&done=unpause");
    assert_eq!(
        status_of(&engine, "queued").await,
        ActivityStatus::Scheduled
    );
    assert!(page(&app, a.location()).await.contains("Unpaused."));

    let a = send(
        &app,
        post(
            "/activity/reset",
            &[("id", "queued"), ("csrf", &csrf), ("clear", "1")],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/activity?id=queued&done=reset");
    assert_eq!(
        status_of(&engine, "queued").await,
        ActivityStatus::Scheduled
    );
    assert!(
        page(&app, a.location())
            .await
            .contains("Reset: the next attempt is attempt 1.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_that_does_not_apply_is_refused_with_409_and_the_reason() {
    let engine = Engine::in_memory().await.unwrap();
    let (go, _w) = parking_worker(&engine).await;
    let client = engine.client();
    client
        .start(park, job("r", 2), StartOptions::id("busy"))
        .await
        .unwrap();
    client
        .start(flaky, job("f", 7), StartOptions::id("finished"))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    eventually("it runs", async || {
        status_of(&engine, "busy").await == ActivityStatus::Running
    })
    .await;
    let app = router_of(&engine);
    let csrf = csrf_of(&page(&app, "/activity?id=busy").await);

    let a = send(
        &app,
        post("/activity/unpause", &[("id", "busy"), ("csrf", &csrf)]),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(
        a.body
            .contains("Could not unpause busy: cannot unpause activity `busy`: it is running"),
        "{}",
        a.body
    );
    assert_eq!(status_of(&engine, "busy").await, ActivityStatus::Running);

    // A cancel of a closed activity has nothing to do (it is no refusal); the others are.
    let a = send(
        &app,
        post("/activity/cancel", &[("id", "finished"), ("csrf", &csrf)]),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        status_of(&engine, "finished").await,
        ActivityStatus::Completed
    );
    for action in ["pause", "unpause", "reset"] {
        let a = send(
            &app,
            post(
                &format!("/activity/{action}"),
                &[("id", "finished"), ("csrf", &csrf)],
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{action}: {}", a.body);
        assert!(
            a.body.contains(&format!(
                "cannot {action} activity `finished`: it is completed"
            )),
            "{action}: {}",
            a.body
        );
    }

    // An unknown id, and an unknown action.
    let a = send(
        &app,
        post("/activity/pause", &[("id", "nobody"), ("csrf", &csrf)]),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(a.body.contains("Could not pause nobody"), "{}", a.body);
    let a = send(
        &app,
        post("/activity/explode", &[("id", "busy"), ("csrf", &csrf)]),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert_eq!(status_of(&engine, "busy").await, ActivityStatus::Running);
    go.add_permits(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_without_the_pages_secret_or_from_another_site_is_refused_and_does_nothing() {
    let engine = Engine::in_memory().await.unwrap();
    engine
        .client()
        .start(import_batch, job("k", 1), StartOptions::id("kept"))
        .await
        .unwrap();
    let app = router_of(&engine);
    let csrf = csrf_of(&page(&app, "/activity?id=kept").await);
    // Another dashboard's secret is not this one's.
    let other = csrf_of(&page(&router_of(&engine), "/activity?id=kept").await);
    assert_ne!(csrf, other);

    let refused = [
        post("/activity/cancel", &[("id", "kept"), ("csrf", "0123")]),
        post("/activity/cancel", &[("id", "kept"), ("csrf", "")]),
        post("/activity/pause", &[("id", "kept"), ("csrf", &other)]),
        post_with(
            "/activity/cancel",
            &[("id", "kept"), ("csrf", &csrf)],
            &[("origin", "http://evil.example")],
        ),
        post_with(
            "/activity/pause",
            &[("id", "kept"), ("csrf", &csrf)],
            &[("origin", "null")],
        ),
        post_with(
            "/activity/cancel",
            &[("id", "kept"), ("csrf", &csrf)],
            &[("sec-fetch-site", "cross-site")],
        ),
        post_with(
            "/activity/cancel",
            &[("id", "kept"), ("csrf", &csrf)],
            &[("sec-fetch-site", "same-site")],
        ),
    ];
    for req in refused {
        let what = format!("{:?}", req.headers());
        let a = send(&app, req).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {}", a.body);
        assert!(a.body.contains("Refused"), "{}", a.body);
        assert_security_headers(&a);
    }
    let d = engine.client().describe("kept").await.unwrap();
    assert_eq!(d.status, ActivityStatus::Scheduled);
    assert!(!d.cancel_requested);

    // With the secret, from its own origin (or from no browser at all), it is taken.
    let a = send(
        &app,
        post_with(
            "/activity/pause",
            &[("id", "kept"), ("csrf", &csrf)],
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1"),
            ],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let a = send(
        &app,
        post_with("/activity/unpause", &[("id", "kept"), ("csrf", &csrf)], &[]),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
}

/// A form without its `csrf` field is refused like one with a wrong secret (403), not as an
/// unreadable form: the `Form` extractor of `routes::act` answers 422 before the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_without_a_csrf_field_is_refused_with_403() {
    let engine = Engine::in_memory().await.unwrap();
    engine
        .client()
        .start(import_batch, job("k", 1), StartOptions::id("no-field"))
        .await
        .unwrap();
    let app = router_of(&engine);
    let a = send(&app, post("/activity/cancel", &[("id", "no-field")])).await;
    let d = engine.client().describe("no-field").await.unwrap();
    assert_eq!(d.status, ActivityStatus::Scheduled, "nothing happened");
    assert!(!d.cancel_requested);
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "a POST without the form's secret: {}",
        a.body
    );
}

// ---------------------------------------------------------------------------------------------
// Actions, from the file

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_file_a_cancel_is_queued_and_the_engine_applies_it() {
    let dir = temp_dir("file-cancel");
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let (_go, _w) = parking_worker(&engine).await;
    let h = engine
        .client()
        .start(park, job("file", 6), StartOptions::id("far-away"))
        .await
        .unwrap();
    eventually("it runs", async || {
        status_of(&engine, "far-away").await == ActivityStatus::Running
    })
    .await;
    let app = local(Dashboard::open(&path).unwrap().router());
    let html = page(&app, "/activity?id=far-away").await;
    assert!(!html.contains("No engine has this file open"), "{html}");
    assert!(
        html.contains(&path.display().to_string()),
        "the source is named: {html}"
    );
    eventually(
        "the file shows it running with its checkpoint",
        async || {
            let list = page(&app, "/").await;
            rows(&list) == [("far-away".into(), "running".into())] && list.contains("3/6 (50%)")
        },
    )
    .await;

    let a = send(
        &app,
        post(
            "/activity/cancel",
            &[("id", "far-away"), ("csrf", &csrf_of(&html))],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/activity?id=far-away&queued=cancel");
    let after = page(&app, a.location()).await;
    assert!(
        after.contains("Requested: the engine applies it"),
        "{after}"
    );
    match tokio::time::timeout(WAIT, h.result()).await {
        Ok(Err(ActivityFailure::Cancelled { .. })) => {}
        other => panic!("expected Cancelled within {WAIT:?}, got {other:?}"),
    }
    eventually("the file shows it cancelled", async || {
        rows(&page(&app, "/").await) == [("far-away".into(), "cancelled".into())]
    })
    .await;

    // What does not apply is refused with why, as `hb cancel` refuses it, and nothing is
    // queued for the engine to drop.
    let queued = || {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM requests", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let csrf = csrf_of(&html);
    let before = queued();
    for (action, id, why) in [
        ("cancel", "far-away", "it is cancelled"),
        ("unpause", "far-away", "it is cancelled"),
        ("cancel", "nobody", "no activity with id `nobody`"),
    ] {
        let a = send(
            &app,
            post(
                &format!("/activity/{action}"),
                &[("id", id), ("csrf", &csrf)],
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{action} {id}: {}", a.body);
        assert!(a.body.contains(why), "{action} {id}: {}", a.body);
    }
    assert_eq!(queued(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_file_no_engine_has_open_actions_wait_for_the_next_engine() {
    let dir = temp_dir("file-closed");
    let path = dir.path().join("hb.db");
    {
        let engine = Engine::open(&path).await.unwrap();
        engine
            .client()
            .start(import_batch, job("later", 1), StartOptions::id("later"))
            .await
            .unwrap();
        engine.close().await.unwrap();
    }
    let app = local(Dashboard::open(&path).unwrap().router());
    // The engine lets its file go once its last handle is gone (its tasks end just after).
    let mut html = String::new();
    eventually("the page says no engine has the file open", async || {
        html = page(&app, "/activity?id=later").await;
        html.contains("No engine has this file open")
    })
    .await;
    assert!(
        page(&app, "/")
            .await
            .contains("No engine has this file open")
    );
    let a = send(
        &app,
        post(
            "/activity/pause",
            &[("id", "later"), ("csrf", &csrf_of(&html))],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/activity?id=later&queued=pause");

    let engine = Engine::open(&path).await.unwrap();
    eventually("the next engine applies the pause", async || {
        status_of(&engine, "later").await == ActivityStatus::Paused
    })
    .await;
    eventually("the file shows it paused", async || {
        rows(&page(&app, "/").await) == [("later".into(), "paused".into())]
    })
    .await;
    assert!(
        !page(&app, "/")
            .await
            .contains("No engine has this file open")
    );
}

// ---------------------------------------------------------------------------------------------
// Live

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_rows_come_as_a_first_html_event() {
    let engine = Engine::in_memory().await.unwrap();
    let client = engine.client();
    for (id, export) in [("live-a", false), ("live-b", true), ("live-c", false)] {
        if export {
            client
                .start(export_batch, job(id, 1), StartOptions::id(id))
                .await
                .unwrap();
        } else {
            client
                .start(import_batch, job(id, 1), StartOptions::id(id))
                .await
                .unwrap();
        }
    }
    let app = router_of(&engine);
    let mut events = Events::open(&app, "/live/rows").await;
    let (event, html) = events.next().await.expect("a first event");
    assert_eq!(event, "html");
    let mut got = ids(&html);
    got.sort();
    assert_eq!(got, ["live-a", "live-b", "live-c"]);
    assert!(!html.contains("<table"), "only the rows: {html}");

    // With a filter: only its rows.
    let mut events = Events::open(&app, "/live/rows?type=export_batch").await;
    let (event, html) = events.next().await.expect("a first event");
    assert_eq!(event, "html");
    assert_eq!(ids(&html), ["live-b"]);

    // A change comes as the next event.
    let mut events = Events::open(&app, "/live/rows?q=live-a").await;
    let (_, html) = events.next().await.unwrap();
    assert_eq!(rows(&html), [("live-a".into(), "scheduled".into())]);
    client.cancel("live-a").await.unwrap();
    let (event, html) = events.next().await.expect("the change");
    assert_eq!(event, "html");
    assert_eq!(rows(&html), [("live-a".into(), "cancelled".into())]);

    // Nothing matches: the empty row.
    let mut events = Events::open(&app, "/live/rows?q=nothing").await;
    let (_, html) = events.next().await.unwrap();
    assert!(html.contains("No activities here."), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_activity_page_ends_with_end_once_the_activity_closed() {
    let engine = Engine::in_memory().await.unwrap();
    let (go, _w) = parking_worker(&engine).await;
    engine
        .client()
        .start(park, job("live", 8), StartOptions::id("watched"))
        .await
        .unwrap();
    let app = router_of(&engine);
    let mut events = Events::open(&app, "/live/activity?id=watched").await;
    let (event, first) = events.next().await.expect("a first event");
    assert_eq!(event, "html");
    assert!(first.contains("<table class=\"facts\">"), "{first}");
    assert!(!first.contains("<html"), "only the live part: {first}");
    // Running (perhaps after an event of it scheduled), then completed, then `end`.
    let mut last = first;
    while !last.contains("badge s-running") {
        let (event, html) = events.next().await.expect("running");
        assert_eq!(event, "html");
        last = html;
    }
    go.add_permits(1);
    loop {
        let (event, html) = events.next().await.expect("more events, then end");
        if event == "end" {
            break;
        }
        assert_eq!(event, "html");
        last = html;
    }
    assert!(
        last.contains("badge s-completed"),
        "the last page before end: {last}"
    );
    assert!(last.contains("parked live"), "its output: {last}");
    assert!(events.next().await.is_none(), "nothing after end");

    // A closed activity: its page, then end at once.
    let mut events = Events::open(&app, "/live/activity?id=watched").await;
    assert_eq!(events.next().await.unwrap().0, "html");
    // With data: a browser dispatches no event without (and would reconnect for ever).
    assert_eq!(
        events.next().await.unwrap(),
        ("end".to_owned(), "end".to_owned())
    );
    assert!(events.next().await.is_none());

    // An unknown one: says so, then ends.
    let mut events = Events::open(&app, "/live/activity?id=nobody").await;
    let (event, html) = events.next().await.unwrap();
    assert_eq!(event, "html");
    assert!(html.contains("No activity with id `nobody`."), "{html}");
    assert_eq!(events.next().await.unwrap().0, "end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_file_the_live_activity_page_ends_with_end_too() {
    let dir = temp_dir("file-live");
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let (go, _w) = parking_worker(&engine).await;
    let h = engine
        .client()
        .start(park, job("polled", 4), StartOptions::id("polled"))
        .await
        .unwrap();
    let app = local(Dashboard::open(&path).unwrap().router());
    let mut events = Events::open(&app, "/live/activity?id=polled").await;
    let (event, _) = events.next().await.expect("a first event");
    assert_eq!(event, "html");
    go.add_permits(1);
    assert_eq!(h.result().await.unwrap(), "parked polled");
    let mut last = String::new();
    loop {
        let (event, html) = events.next().await.expect("more events, then end");
        if event == "end" {
            break;
        }
        last = html;
    }
    assert!(last.contains("badge s-completed"), "{last}");
    assert!(events.next().await.is_none(), "nothing after end");
}

// ---------------------------------------------------------------------------------------------
// Security

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_it_answers_only_loopback_hosts() {
    let engine = Engine::in_memory().await.unwrap();
    let app = router_of(&engine);
    for host in [
        "127.0.0.1",
        "127.0.0.1:8080",
        "localhost",
        "LOCALHOST:1",
        "[::1]:80",
        "127.9.9.9",
    ] {
        let a = send(
            &app,
            Request::get("/")
                .header(header::HOST, host)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{host}");
        assert_security_headers(&a);
    }
    for host in [
        "evil.example",
        "evil.example:80",
        "localhost.evil.example",
        "10.0.0.1",
        "127.0.0.1.nip.io",
    ] {
        let a = send(
            &app,
            Request::get("/")
                .header(header::HOST, host)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{host}");
        assert_security_headers(&a);
    }
    let a = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "no Host at all");
    // Also the streams, the actions and the assets.
    for uri in ["/live/rows", "/assets/app.js", "/activity?id=x"] {
        let a = send(
            &app,
            Request::get(uri)
                .header(header::HOST, "evil.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{uri}");
    }
    // The assets, from the binary.
    let css = send(&app, get("/assets/app.css")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header(header::CONTENT_TYPE).starts_with("text/css"));
    assert!(!css.body.is_empty());
    let js = send(&app, get("/assets/app.js")).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(
        js.header(header::CONTENT_TYPE)
            .starts_with("text/javascript")
    );
    assert!(!js.body.is_empty());
    let list = page(&app, "/").await;
    assert!(list.contains("<base href=\"/\">"), "{list}");
    assert!(list.contains("href=\"assets/app.css\""), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_request_needs_it() {
    const TOKEN: &str = "s3cret-token-0123456789";
    let engine = Engine::in_memory().await.unwrap();
    engine
        .client()
        .start(import_batch, job("t", 1), StartOptions::id("tok"))
        .await
        .unwrap();
    let app = Dashboard::new(&engine).token(TOKEN).unwrap().router();
    let with = |uri: &str, name: header::HeaderName, value: &str, host: &str| {
        Request::get(uri)
            .header(header::HOST, host)
            .header(name, value)
            .body(Body::empty())
            .unwrap()
    };

    // None, or a wrong one: 401 (also at a loopback host).
    let a = send(&app, get("/")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_security_headers(&a);
    assert!(!a.body.contains(TOKEN));
    for (name, value) in [
        (
            header::AUTHORIZATION,
            "Bearer s3cret-token-0123456780".to_owned(),
        ),
        (header::AUTHORIZATION, format!("Basic {TOKEN}")),
        (header::AUTHORIZATION, format!("Bearer {TOKEN}x")),
        (header::COOKIE, "hb_dashboard_token=s3cret".to_owned()),
        (header::COOKIE, format!("other_token={TOKEN}")),
    ] {
        let a = send(&app, with("/", name.clone(), &value, "127.0.0.1")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{name}: {value}");
    }

    // The header or the cookie admits, at any host (the token decides).
    for host in ["127.0.0.1", "dash.example.com"] {
        let a = send(
            &app,
            with("/", header::AUTHORIZATION, &format!("Bearer {TOKEN}"), host),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "bearer at {host}");
        assert!(a.body.contains("data-id=\"tok\""));
        let a = send(
            &app,
            with(
                "/activity?id=tok",
                header::COOKIE,
                &format!("theme=dark; hb_dashboard_token={TOKEN}; x=y"),
                host,
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "cookie at {host}");
    }

    // ?token=: kept in a cookie, and taken out of the address.
    let a = send(&app, get(&format!("/?state=scheduled&token={TOKEN}&q=to"))).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), "/?state=scheduled&q=to");
    let cookie = a.header(header::SET_COOKIE);
    assert!(
        cookie.starts_with(&format!("hb_dashboard_token={TOKEN};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite="), "{cookie}");
    let a = send(&app, get(&format!("/activity?token={TOKEN}&id=tok"))).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), "/activity?id=tok");
    let a = send(&app, get(&format!("/?token={TOKEN}"))).await;
    assert_eq!(a.location(), "/");
    // The cookie it set admits.
    let a = send(
        &app,
        with(
            "/?state=scheduled&q=to",
            header::COOKIE,
            cookie.split(';').next().unwrap(),
            "127.0.0.1",
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    // A wrong ?token=: 401, no cookie.
    let a = send(&app, get("/?token=s3cret-token-0123456780")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    assert_security_headers(&a);

    // An action needs the token too, then the page's secret.
    let a = send(
        &app,
        post("/activity/cancel", &[("id", "tok"), ("csrf", "x")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&engine, "tok").await, ActivityStatus::Scheduled);

    // The token's own checks.
    let dashboard = || Dashboard::new(&engine);
    assert!(matches!(
        dashboard().token("fifteen-chars-x"),
        Err(DashboardError::WeakToken { len: 15 })
    ));
    assert!(matches!(
        dashboard().token(""),
        Err(DashboardError::WeakToken { len: 0 })
    ));
    assert!(dashboard().token("sixteen-chars-xx").is_ok());
    for bad in [
        "0123456789abcdef;x",
        "0123456789abcdef,x",
        "0123456789 abcdef",
        "0123456789abcdef\"",
        "0123456789abcdef\\",
        "0123456789abcdef\n",
        "0123456789abcdefé",
    ] {
        assert!(
            matches!(dashboard().token(bad), Err(DashboardError::TokenCharacters)),
            "{bad:?}"
        );
    }
    let debug = format!("{:?}", dashboard().token(TOKEN).unwrap());
    assert!(!debug.contains(TOKEN), "{debug}");
    let generated = Dashboard::generate_token();
    assert_eq!(generated.len(), 32);
    assert!(dashboard().token(generated.clone()).is_ok());
    assert_ne!(generated, Dashboard::generate_token());
}

/// Writes all of `bytes` to `stream` (tokio's `io-util` is not among the features here).
async fn write_all(stream: &tokio::net::TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        stream.writable().await.unwrap();
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Reads what `stream` has (at least a byte, or 0 at its end, or an error).
async fn read_some(stream: &tokio::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            r => return r,
        }
    }
}

/// Sends `request` over a new TCP connection to `addr` and reads the answer until the server
/// closes it (`Connection: close`).
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    write_all(&stream, request.as_bytes()).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            match read_some(&stream, &mut buf).await.unwrap() {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server answers and closes");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_public_addresses_without_a_token_and_serves_loopback() {
    let engine = Engine::in_memory().await.unwrap();
    engine
        .client()
        .start(import_batch, job("s", 1), StartOptions::id("served"))
        .await
        .unwrap();
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8080"] {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        match Dashboard::new(&engine).serve(addr).await {
            Err(DashboardError::TokenRequired { addr: a }) => assert_eq!(a, addr),
            other => panic!("{addr}: expected TokenRequired, got {other:?}"),
        }
    }

    let serving = Dashboard::new(&engine)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = serving.local_addr();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    assert_eq!(serving.url(), format!("http://{addr}/"));

    let ok = raw(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("data-id=\"served\""), "{ok}");
    let refused = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");

    // A live stream open: shutdown ends it, and the server stops.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    write_all(
        &stream,
        format!("GET /live/rows HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&got).contains("event: html") {
            let n = read_some(&stream, &mut buf).await.unwrap();
            assert!(n > 0, "closed before the first event");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first live event");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    tokio::time::timeout(WAIT, serving.shutdown())
        .await
        .expect("shutdown ends the live streams and returns")
        .unwrap();
    // The stream's connection ends.
    tokio::time::timeout(WAIT, async {
        while read_some(&stream, &mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await
    .expect("the live connection is closed");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_serve_listens_beyond_loopback() {
    let engine = Engine::in_memory().await.unwrap();
    // Port 0 on every interface: allowed with a token (the request still needs it).
    let serving = Dashboard::new(&engine)
        .token("a-long-enough-token-here")
        .unwrap()
        .serve("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap();
    let port = serving.local_addr().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let denied = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: dash.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let ok = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: dash.example\r\nAuthorization: Bearer a-long-enough-token-here\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    tokio::time::timeout(WAIT, serving.shutdown())
        .await
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Nested

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_under_a_path_its_pages_and_redirects_stay_under_it() {
    let engine = Engine::in_memory().await.unwrap();
    let h = engine
        .client()
        .start(import_batch, job("n", 1), StartOptions::id("nested-1"))
        .await
        .unwrap();
    let app = Router::new().nest("/hb", router_of(&engine));

    let list = page(&app, "/hb").await;
    assert!(list.contains("<base href=\"/hb/\">"), "{list}");
    assert_eq!(ids(&list), ["nested-1"]);
    // Its links are relative to the base: each resolves under /hb.
    let to_activity = first_link(&list);
    assert_eq!(to_activity, "activity?id=nested-1");
    let html = page(&app, &format!("/hb/{to_activity}")).await;
    assert!(html.contains("<base href=\"/hb/\">"), "{html}");
    let css = send(&app, get("/hb/assets/app.css")).await;
    assert_eq!(css.status, StatusCode::OK);
    let mut events = Events::open(&app, "/hb/live/activity?id=nested-1").await;
    assert_eq!(events.next().await.unwrap().0, "html");
    // An action redirects under /hb.
    let a = send(
        &app,
        post(
            "/hb/activity/cancel",
            &[("id", "nested-1"), ("csrf", &csrf_of(&html))],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/hb/activity?id=nested-1&done=cancel");
    assert!(matches!(
        tokio::time::timeout(WAIT, h.result()).await.unwrap(),
        Err(ActivityFailure::Cancelled { .. })
    ));
    let after = page(&app, a.location()).await;
    assert!(after.contains("Cancel requested."), "{after}");
    // A refusal's page carries the base too (its link back is ./).
    let a = send(
        &app,
        post(
            "/hb/activity/cancel",
            &[("id", "nested-1"), ("csrf", "wrong")],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("<base href=\"/hb/\">"), "{}", a.body);
}

/// Nested with `Router::nest("/hb", ..)` (axum 0.8), the list answers at `/hb` only: every
/// `./` link of the pages resolves against `<base href="/hb/">` to `/hb/`, which must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_under_a_path_the_links_to_the_list_lead_to_it() {
    let engine = Engine::in_memory().await.unwrap();
    for i in 0..51 {
        engine
            .client()
            .start(
                import_batch,
                job("n", 1),
                StartOptions::id(format!("n-{i:02}")),
            )
            .await
            .unwrap();
    }
    let app = Router::new().nest("/hb", router_of(&engine));
    let list = page(&app, "/hb").await;
    let activity = page(&app, "/hb/activity?id=n-00").await;
    // Every link back to the list, as the browser resolves it against <base href="/hb/">.
    let links = [
        (
            "the brand",
            tag_attr(&activity, "class=\"brand\"", "href").unwrap(),
        ),
        (
            "the crumbs",
            value_after(&activity, "<p class=\"crumbs\"><a href=\"").unwrap(),
        ),
        (
            "the filter form",
            tag_attr(&list, "class=\"filters\"", "action").unwrap(),
        ),
        ("a tab", tag_attr(&list, "class=\"tab\"", "href").unwrap()),
        ("older", tag_attr(&list, "id=\"older\"", "href").unwrap()),
    ];
    let mut broken = Vec::new();
    for (what, href) in links {
        let uri = resolve("/hb/", &href);
        let a = send(&app, get(&uri)).await;
        if a.status != StatusCode::OK {
            broken.push(format!("{what}: {href} -> GET {uri} -> {}", a.status));
        }
    }
    assert!(broken.is_empty(), "links that lead nowhere: {broken:#?}");
}

/// The `?token=` redirect of `guard::admit` must keep the path the dashboard is nested under
/// (inside a nested router the request's URI has it stripped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_with_a_token_the_token_redirect_stays_under_the_path() {
    const TOKEN: &str = "nested-token-0123456789";
    let engine = Engine::in_memory().await.unwrap();
    let app = Router::new().nest(
        "/hb",
        Dashboard::new(&engine).token(TOKEN).unwrap().router(),
    );
    let a = send(&app, get(&format!("/hb/activity?id=x&token={TOKEN}"))).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        a.location(),
        "/hb/activity?id=x",
        "the address without the token, under the path it was asked at"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_pages_are_bounded_and_a_closed_one_frees_its_place() {
    let engine = Engine::in_memory().await.unwrap();
    let app = router_of(&engine);
    let mut open = Vec::new();
    for _ in 0..64 {
        open.push(Events::open(&app, "/live/rows").await);
    }
    let refused = send(&app, get("/live/rows")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refused.body.contains("live pages are open already"),
        "{}",
        refused.body
    );
    let refused = send(&app, get("/live/activity?id=x")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    // The pages themselves still load.
    assert!(page(&app, "/").await.contains("No activities here."));
    // One page closed: one more may open.
    drop(open.pop());
    let mut again = Events::open(&app, "/live/rows").await;
    assert_eq!(again.next().await.expect("a first event").0, "html");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_connections_from_this_machine_are_served() {
    let engine = Engine::in_memory().await.unwrap();
    // Served without connect info: it cannot tell, so it refuses, and says how to serve it.
    let blind = Dashboard::new(&engine).router();
    let a = send(&blind, get("/")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.body.contains("into_make_service_with_connect_info"),
        "{}",
        a.body
    );
    // A peer elsewhere, whatever Host it names.
    let remote =
        Dashboard::new(&engine)
            .router()
            .layer(MockConnectInfo(std::net::SocketAddr::from((
                [10, 0, 0, 7],
                5000,
            ))));
    let a = send(&remote, get("/")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.body.contains("only connections from this machine"),
        "{}",
        a.body
    );
    // A proxy on this machine forwarding someone else's request.
    let app = router_of(&engine);
    for header in ["forwarded", "x-forwarded-for", "x-real-ip"] {
        let mut req = get("/");
        req.headers_mut()
            .insert(header, "for=203.0.113.9".parse().unwrap());
        let a = send(&app, req).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{header}");
        assert!(a.body.contains("a proxy forwards"), "{}", a.body);
    }
    assert_eq!(send(&app, get("/")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_s_live_updates_carry_its_pager() {
    let engine = Engine::in_memory().await.unwrap();
    let client = engine.client();
    let app = router_of(&engine);
    let mut events = Events::open(&app, "/live/rows").await;
    assert_eq!(events.next_any().await.unwrap().0, "html");
    let (event, data) = events.next_any().await.unwrap();
    assert_eq!(event, "part");
    assert_eq!(data, "pager\n", "no older page yet");
    // A page's worth more: the older link appears, after the last row shown.
    for i in 0..51 {
        client
            .start(
                import_batch,
                job("p", 1),
                StartOptions::id(format!("p-{i:02}")),
            )
            .await
            .unwrap();
    }
    loop {
        let (event, data) = events.next_any().await.expect("an update");
        if event == "part" && data.contains("id=\"older\"") {
            assert!(data.starts_with("pager\n"), "{data}");
            assert!(
                data.contains("after_id=p-01"),
                "the 50th newest is p-01: {data}"
            );
            break;
        }
    }
}

#[tokio::test]
async fn the_token_redirect_never_leaves_the_site() {
    const TOKEN: &str = "redirect-token-0123456789";
    let engine = Engine::in_memory().await.unwrap();
    let app = Dashboard::new(&engine).token(TOKEN).unwrap().router();
    for (uri, to) in [
        (format!("//evil.example/x?token={TOKEN}"), "/evil.example/x"),
        (
            format!("/\\evil.example?token={TOKEN}&a=1"),
            "/evil.example?a=1",
        ),
    ] {
        let a = send(&app, get(&uri)).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(a.location(), to, "{uri}");
    }
}
