//! The live dashboard in a real browser: headless Chromium, driven through chromedriver
//! (WebDriver: `support/webdriver.rs`), against `hb serve` run as a process on the file of an engine
//! in this test process, as an operator would use it.
//!
//! What it checks:
//! - the list page's progress bar of a running activity advances by itself: the rows are
//!   replaced by server-sent events (their `data-updates` count grows) with no reload;
//! - an activity's page shows its history: an attempt that failed with a retryable error,
//!   then the retry that completed it;
//! - the Cancel button, once its confirmation is accepted, cancels a running activity: the
//!   page's live part shows it cancelled, and the engine's client gets
//!   `ActivityFailure::Cancelled`;
//! - the page of a closed activity stops following it: the server's `end` event reaches the
//!   page, which closes its event stream (instead of the browser reconnecting to it forever);
//! - a dashboard listening beyond loopback (`--public`, with `HB_DASHBOARD_TOKEN`) refuses a
//!   browser without its token (401) and lets it in with `?token=` (then keeps it in a
//!   cookie); without `--public`, with a short token, or on a port in use, `hb serve` refuses
//!   to start (exit 2).
//!
//! It saves screenshots (PNG) under `target/dashboard-screenshots/` (or
//! `$CARGO_TARGET_DIR/dashboard-screenshots/`): the list with a running bar, an activity's
//! history, the page after a cancel, the token refused and accepted; and, when a wait in the
//! page times out, the page as it was then (`FAILED-<step>.png`).
//!
//! What it needs: `chromedriver` on the PATH and a Chromium it can drive (`/usr/bin/chromium`
//! is used when it exists): Debian's `chromium` and `chromium-driver` packages, which
//! `scripts/test-all` installs with apt-get when `chromedriver` is missing. Each test starts
//! its own chromedriver on a free port (and with it a browser with a fresh profile), and kills
//! it, the browser and `hb serve` when it ends, passed or not. The tests run one at a time
//! (each drives a browser; two cores are enough), and wait on conditions in the page, polled
//! every 100 ms for at most 20 s, never on fixed sleeps.

#![cfg(unix)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "support/webdriver.rs"]
mod webdriver;

use hb_runtime::client::{ActivityFailure, StartOptions};
use hb_runtime::engine::{Engine, WorkerHandle};
use hb_runtime::prelude::*;
use serde_json::{Value, json};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// The activity the dashboard shows

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct Items {
    #[checkpoint(done)]
    done: u64,
    #[checkpoint(total)]
    total: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Job {
    items: u64,
    /// Milliseconds per item.
    item_ms: u64,
    /// The first attempt fails (retryably) when it reaches this item.
    fail_first_at: Option<u64>,
}

impl Job {
    fn steady(items: u64, item_ms: u64) -> Job {
        Job {
            items,
            item_ms,
            fail_first_at: None,
        }
    }
}

/// Processes `job.items` items, one every `job.item_ms`, checkpointing after each.
#[activity(
    heartbeat_timeout = "10s",
    retry(max_attempts = 3, initial_interval = "100ms")
)]
async fn process(
    ctx: ActivityContext,
    #[checkpoint] mut p: Items,
    job: Job,
) -> Result<u64, ActivityError> {
    p.total = job.items;
    while p.done < job.items {
        if ctx.info().attempt == 1 && job.fail_first_at == Some(p.done) {
            ctx.flush().await?;
            return Err(ActivityError::retryable(
                "StorageUnavailable",
                format!("storage node timed out at item {}", p.done),
            ));
        }
        tokio::time::sleep(Duration::from_millis(job.item_ms)).await;
        p.done += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(p.done)
}

// ---------------------------------------------------------------------------------------------
// Helpers: directories, processes, waiting

/// How long any one condition is waited for.
const WAIT: Duration = Duration::from_secs(20);
/// How often a waited-for condition is checked.
const POLL: Duration = Duration::from_millis(100);

/// One browser test at a time: each runs a browser, and their timing should not depend on how
/// many others share the machine's cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A directory of its own, removed when it drops (even if the test fails).
fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-browser-{name}-"))
        .tempdir()
        .unwrap()
}

/// A port nobody listens on now (the OS's pick).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A file's text, or a note that it could not be read (for failure messages).
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Awaits `probe` every [`POLL`] until it returns `Ok`, at most [`WAIT`]; else what the last
/// probe saw (its `Err`).
async fn poll<T>(mut probe: impl AsyncFnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = match probe().await {
            Ok(v) => return Ok(v),
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(seen);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Where the screenshots go: `<target dir>/dashboard-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace.join("target"), |d| workspace.join(d));
    target.join("dashboard-screenshots")
}

/// An engine on `dir/hb.db` with a worker running [`process`].
async fn engine(dir: &TempDir) -> (PathBuf, Engine, WorkerHandle) {
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.expect("opening the engine file");
    let worker = engine
        .worker()
        .register(process)
        .shutdown_grace(Duration::from_millis(50))
        .spawn()
        .await
        .expect("starting the worker");
    (path, engine, worker)
}

/// `hb serve` on an engine file, killed when dropped.
struct Serve {
    child: Child,
    /// The first line it printed: its address.
    url: String,
    stderr: PathBuf,
}

impl Serve {
    /// Runs `hb serve --file file args...` (with `token` as `HB_DASHBOARD_TOKEN`) and waits,
    /// off the async threads, for the address it prints; its stderr goes to a file in `dir`.
    async fn start(dir: &TempDir, file: &Path, args: &[&str], token: Option<&str>) -> Serve {
        let stderr = dir.path().join("hb-serve.stderr");
        let file = file.to_path_buf();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let token = token.map(str::to_owned);
        tokio::task::spawn_blocking(move || Serve::run(&stderr, &file, &args, token.as_deref()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn run(stderr: &Path, file: &Path, args: &[String], token: Option<&str>) -> Serve {
        let stderr = stderr.to_path_buf();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hb"));
        cmd.arg("serve")
            .arg("--file")
            .arg(file)
            .args(args)
            .env_remove("HB_FILE")
            .env_remove("HB_DASHBOARD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(t) = token {
            cmd.env("HB_DASHBOARD_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("running the hb binary");
        let stdout = child.stdout.take().unwrap();
        let (lines, first) = mpsc::channel();
        // Reads every line it prints (so it never blocks on a full pipe); sends the first.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let mut serve = Serve {
            child,
            url: String::new(),
            stderr,
        };
        match first.recv_timeout(WAIT) {
            Ok(url) => serve.url = url,
            Err(e) => panic!(
                "hb serve {args:?} printed no address within {WAIT:?} ({e}); exit: {:?}; stderr:\n{}",
                serve.child.try_wait(),
                read_log(&serve.stderr)
            ),
        }
        assert!(
            serve.url.starts_with("http://") && serve.url.contains('/'),
            "hb serve's first line is not its address: {:?}",
            serve.url
        );
        serve
    }

    /// The port it listens on.
    fn port(&self) -> u16 {
        let host = self.url.trim_start_matches("http://");
        let host = host.split('/').next().unwrap();
        host.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {:?}", self.url))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chromedriver on a free port, in a process group of its own with the browsers it starts:
/// the whole group is killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver and waits (at most [`WAIT`]) until it answers `/status` as ready.
    fn start(log: &Path) -> Driver {
        let mut tries = 0;
        loop {
            tries += 1;
            let port = free_port();
            let spawned = Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(log).unwrap())
                .stderr(std::fs::File::create(log.with_extension("stderr")).unwrap())
                .process_group(0)
                .spawn();
            let child = match spawned {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "chromedriver is not on the PATH: these tests drive a real browser. Install \
                     Debian's chromium and chromium-driver (`sudo apt-get install chromium \
                     chromium-driver`; scripts/test-all does it when chromedriver is missing)"
                ),
                Err(e) => panic!("cannot run chromedriver: {e}"),
            };
            let mut driver = Driver { child, port };
            let deadline = Instant::now() + WAIT;
            loop {
                if driver.ready() {
                    return driver;
                }
                if let Ok(Some(status)) = driver.child.try_wait() {
                    // Most likely the port was taken between our pick and its bind: another.
                    assert!(
                        tries < 3,
                        "chromedriver --port={port} exited ({status}); its output:\n{}\n{}",
                        read_log(log),
                        read_log(&log.with_extension("stderr"))
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "chromedriver --port={port} did not answer /status as ready within {WAIT:?}; \
                     its output:\n{}\n{}",
                    read_log(log),
                    read_log(&log.with_extension("stderr"))
                );
                std::thread::sleep(POLL);
            }
        }
    }

    /// Whether it answers `GET /status` with `"ready": true`.
    fn ready(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /status HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if s.write_all(request.as_bytes()).is_err() {
            return false;
        }
        // It keeps the connection open: read until the answer says ready, or stops.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&answer);
            if text.starts_with("HTTP/1.1 200") && text.replace(' ', "").contains("\"ready\":true")
            {
                return true;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group: chromedriver and the browser it started (its id is the group's id).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session, through its own chromedriver.
struct Browser {
    client: webdriver::WebDriver,
    // Dropped after the client: kills chromedriver and the browser.
    _driver: Driver,
}

impl Browser {
    async fn start(dir: &TempDir) -> Browser {
        let log = dir.path().join("chromedriver.log");
        let driver = tokio::task::spawn_blocking(move || Driver::start(&log))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let profile = dir.path().join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let mut chrome = json!({
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,900",
            ],
        });
        if Path::new("/usr/bin/chromium").exists() {
            chrome["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), chrome);
        // A confirm() stays open until the test answers it.
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        caps.insert(
            "timeouts".into(),
            json!({ "pageLoad": WAIT.as_secs() * 1000, "script": 10_000 }),
        );
        let client = tokio::time::timeout(
            WAIT,
            webdriver::WebDriver::new_session(
                &format!("http://127.0.0.1:{}", driver.port),
                Value::Object(caps),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("chromedriver did not start a browser session within {WAIT:?}"))
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver could not start Chromium: {e}\n(chromium and chromium-driver must \
                 be the same version: install both from Debian)"
            )
        });
        Browser {
            client,
            _driver: driver,
        }
    }

    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Runs `script` (a function body that `return`s) in the page.
    async fn js(&self, script: &str) -> Result<Value, String> {
        self.client
            .execute(script, vec![])
            .await
            .map_err(|e| format!("script failed: {e}"))
    }

    /// Awaits `probe` (what the page shows) every [`POLL`] until it returns `Ok`, at most
    /// [`WAIT`]; else saves a screenshot of the page (`FAILED-<shot>`) and fails, naming `what`
    /// was waited for and what the last probe saw (its `Err`).
    async fn until<T>(
        &self,
        shot: &str,
        what: &str,
        probe: impl AsyncFnMut() -> Result<T, String>,
    ) -> T {
        match poll(probe).await {
            Ok(v) => v,
            Err(seen) => {
                let path = self.screenshot(&format!("FAILED-{shot}")).await;
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; last seen: {seen}\n(the page then: {})",
                    path.display()
                )
            }
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the session (chromedriver closes the browser).
    async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.close()).await;
    }
}

/// The state of the list page's row of `id`, as the page shows it.
const LIST_ROW: &str = r#"
    const id = arguments[0];
    const rows = document.querySelector('tbody#rows');
    if (!rows) return { rows: false };
    const row = rows.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
    const bar = row && row.querySelector('td.progress progress');
    const figure = row && row.querySelector('span.figure');
    return {
        rows: true,
        updates: Number(rows.dataset.updates || '0'),
        status: row ? row.dataset.status : null,
        value: bar ? Number(bar.getAttribute('value')) : null,
        max: bar ? Number(bar.getAttribute('max')) : null,
        figure: figure ? figure.textContent.trim() : null,
        unreloaded: window.hbUnreloaded === true,
    };
"#;

/// The state of an activity page.
const ACTIVITY_PAGE: &str = r#"
    const badge = document.querySelector('section#live .summary .badge');
    const flash = document.querySelector('p.flash');
    const h1 = document.querySelector('h1');
    return {
        url: location.href,
        h1: h1 ? h1.textContent.trim() : null,
        badge: badge ? badge.className : null,
        flash: flash ? flash.textContent.trim() : null,
        problem: (document.querySelector('main > p.failure') || {}).textContent || null,
        attempt: (document.querySelector('td#attempt') || {}).textContent || null,
        outcomes: Array.from(document.querySelectorAll('section#live table.attempts tbody tr'))
            .map((tr) => tr.dataset.outcome),
        failures: Array.from(document.querySelectorAll('section#live table.attempts tbody tr'))
            .map((tr) => tr.lastElementChild ? tr.lastElementChild.textContent.trim() : ''),
        timeline: document.querySelectorAll('section#live svg.timeline rect').length,
        ended: (document.querySelector('section#live') || { dataset: {} }).dataset.ended === 'true',
    };
"#;

impl Browser {
    async fn row(&self, id: &str) -> Result<Value, String> {
        self.client
            .execute(LIST_ROW, vec![json!(id)])
            .await
            .map_err(|e| format!("script failed: {e}"))
    }

    async fn activity_page(&self) -> Result<Value, String> {
        self.js(ACTIVITY_PAGE).await
    }
}

fn has_class(state: &Value, class: &str) -> bool {
    state["badge"]
        .as_str()
        .is_some_and(|c| c.split_whitespace().any(|c| c == class))
}

// ---------------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_activity_bar_advances_live_on_the_list_page() {
    const SHOT: &str = "1-list-running-bar.png";
    let _one_at_a_time = SERIAL.lock().await;
    let started = Instant::now();
    let dir = temp_dir("live");
    let (path, engine, _worker) = engine(&dir).await;
    // 400 items, one every 40 ms: 16 s, longer than the test.
    engine
        .client()
        .start(process, Job::steady(400, 40), StartOptions::id("live-1"))
        .await
        .unwrap();
    let serve = Serve::start(&dir, &path, &["--listen", "127.0.0.1:0"], None).await;
    let browser = Browser::start(&dir).await;
    browser.goto(&serve.url).await;

    // Its row, running, with a bar that has moved.
    let first = browser
        .until(
            SHOT,
            "row live-1 running with a progress bar past 0",
            async || {
                let s = browser.row("live-1").await?;
                if s["status"] == "running" && s["value"].as_f64().is_some_and(|v| v > 0.0) {
                    Ok(s)
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    assert_eq!(first["max"], 400.0, "{first}");
    // Set in this page: a reload would lose it.
    browser
        .js("window.hbUnreloaded = true; return true;")
        .await
        .unwrap();
    let (updates, value) = (
        first["updates"].as_f64().unwrap(),
        first["value"].as_f64().unwrap(),
    );

    let later = browser.until(SHOT,
        &format!(
            "a live update of the rows (data-updates > {updates}) with live-1's bar past {value}"
        ),
        async || {
            let s = browser.row("live-1").await?;
            let newer = s["updates"].as_f64().is_some_and(|u| u > updates);
            let further = s["value"].as_f64().is_some_and(|v| v > value);
            if newer && further {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    assert_eq!(later["unreloaded"], true, "the page was reloaded: {later}");
    assert_eq!(later["status"], "running", "{later}");
    // `12/400 (3%)`
    let figure = later["figure"].as_str().unwrap_or_default();
    let done = later["value"].as_f64().unwrap();
    assert!(
        figure.starts_with(&format!("{done}/400 (")) && figure.ends_with("%)"),
        "the figure beside the bar says {figure:?}; the bar is at {done}"
    );
    browser.screenshot(SHOT).await;
    browser.close().await;
    eprintln!("live bar: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_page_shows_the_failed_attempt_and_the_retry_that_completed_it() {
    const SHOT: &str = "2-activity-history.png";
    let _one_at_a_time = SERIAL.lock().await;
    let started = Instant::now();
    let dir = temp_dir("history");
    let (path, engine, _worker) = engine(&dir).await;
    // The first attempt fails at item 15 of 40; the retry resumes there 100 ms later.
    let job = Job {
        items: 40,
        item_ms: 30,
        fail_first_at: Some(15),
    };
    let handle = engine
        .client()
        .start(process, job, StartOptions::id("flaky-1"))
        .await
        .unwrap();
    let serve = Serve::start(&dir, &path, &["--listen", "127.0.0.1:0"], None).await;
    let browser = Browser::start(&dir).await;
    browser
        .goto(&format!("{}activity?id=flaky-1", serve.url))
        .await;

    let page = browser
        .until(
            SHOT,
            "flaky-1's page to show it completed, its attempts a failed one then a completed one",
            async || {
                let s = browser.activity_page().await?;
                let outcomes: Vec<&str> = s["outcomes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if has_class(&s, "s-completed")
                    && outcomes.len() >= 2
                    && outcomes.first() == Some(&"failed")
                    && outcomes.last() == Some(&"completed")
                {
                    Ok(s)
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    assert_eq!(page["h1"], "flaky-1", "{page}");
    assert_eq!(page["outcomes"], json!(["failed", "completed"]), "{page}");
    let why = page["failures"][0].as_str().unwrap_or_default();
    assert!(
        why.contains("StorageUnavailable") && why.contains("storage node timed out at item 15"),
        "the failed attempt's row says why it ended: {page}"
    );
    assert_eq!(page["attempt"], "2", "{page}");
    assert_eq!(
        page["timeline"], 2,
        "one bar per attempt on the timeline: {page}"
    );
    assert_eq!(
        tokio::time::timeout(WAIT, handle.result())
            .await
            .expect("the result")
            .unwrap(),
        40
    );
    browser.screenshot(SHOT).await;
    browser.close().await;
    eprintln!("history: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_button_cancels_a_running_activity() {
    const SHOT: &str = "3-after-cancel.png";
    let _one_at_a_time = SERIAL.lock().await;
    let started = Instant::now();
    let dir = temp_dir("cancel");
    let (path, engine, _worker) = engine(&dir).await;
    // 2000 items, one every 30 ms: a minute, far longer than the test.
    let handle = engine
        .client()
        .start(process, Job::steady(2000, 30), StartOptions::id("cancel-1"))
        .await
        .unwrap();
    let serve = Serve::start(&dir, &path, &["--listen", "127.0.0.1:0"], None).await;
    let browser = Browser::start(&dir).await;
    browser
        .goto(&format!("{}activity?id=cancel-1", serve.url))
        .await;
    browser
        .until(SHOT, "cancel-1's page to show it running", async || {
            let s = browser.activity_page().await?;
            if has_class(&s, "s-running") {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        })
        .await;

    // The click opens the form's confirm(); the command may report the open dialog.
    if let Err(e) = browser.client.click("#do-cancel").await {
        eprintln!("clicking Cancel: {e} (a confirm() is expected to be open)");
    }
    let question = browser
        .until(SHOT, "the confirm() of the Cancel button", async || {
            browser.client.alert_text().await
        })
        .await;
    assert_eq!(question, "Cancel cancel-1?");
    browser
        .client
        .accept_alert()
        .await
        .expect("accepting the confirm()");

    let after = browser
        .until(
            SHOT,
            "the activity page after the cancel, with its flash, to show cancel-1 cancelled",
            async || {
                let s = browser.activity_page().await?;
                if s["flash"].is_string() && has_class(&s, "s-cancelled") {
                    Ok(s)
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    // `hb serve` queues the cancel in the file: the flash says it was requested.
    let url = after["url"].as_str().unwrap();
    assert!(
        url.contains("/activity?id=cancel-1&queued=cancel"),
        "redirected to the activity's page: {after}"
    );
    assert!(
        after["flash"].as_str().unwrap().starts_with("Requested"),
        "{after}"
    );
    assert_eq!(after["h1"], "cancel-1", "{after}");
    let result = tokio::time::timeout(WAIT, handle.result())
        .await
        .expect("the engine's client got the activity's result");
    assert!(
        matches!(result, Err(ActivityFailure::Cancelled { .. })),
        "expected Cancelled, got {result:?}"
    );
    browser.screenshot(SHOT).await;
    browser.close().await;
    eprintln!("cancel: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_activity_page_ends_its_live_stream() {
    const SHOT: &str = "5-closed-stream-ended.png";
    let _one_at_a_time = SERIAL.lock().await;
    let started = Instant::now();
    let dir = temp_dir("ended");
    let (path, engine, _worker) = engine(&dir).await;
    let done = engine
        .client()
        .start(process, Job::steady(3, 1), StartOptions::id("ended-1"))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, done.result())
            .await
            .unwrap()
            .unwrap(),
        3
    );
    let serve = Serve::start(&dir, &path, &["--listen", "127.0.0.1:0"], None).await;
    let browser = Browser::start(&dir).await;
    browser
        .goto(&format!("{}activity?id=ended-1", serve.url))
        .await;
    // Nothing more will change: the server says so with an `end` event, on which the page
    // closes its event stream (app.js marks the section `data-ended`), instead of the browser
    // reconnecting to it again and again.
    let page = browser
        .until(
            SHOT,
            "the `end` event of the closed activity's live stream (section#live[data-ended])",
            async || {
                let s = browser.activity_page().await?;
                if s["ended"] == true {
                    Ok(s)
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    assert!(has_class(&page, "s-completed"), "{page}");
    browser.close().await;
    eprintln!("stream end: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_dashboard_refuses_a_browser_without_its_token() {
    const SHOT: &str = "4-token-refused.png";
    let _one_at_a_time = SERIAL.lock().await;
    let started = Instant::now();
    let dir = temp_dir("token");
    let (path, engine, _worker) = engine(&dir).await;
    let done = engine
        .client()
        .start(process, Job::steady(5, 1), StartOptions::id("token-1"))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, done.result())
            .await
            .unwrap()
            .unwrap(),
        5
    );
    let token = "browser-test-token-0123456789";
    let serve = Serve::start(
        &dir,
        &path,
        &["--listen", "0.0.0.0:0", "--public"],
        Some(token),
    )
    .await;
    assert!(
        !serve.url.contains("token="),
        "a token given in HB_DASHBOARD_TOKEN is not printed: {}",
        serve.url
    );
    let base = format!("http://127.0.0.1:{}/", serve.port());
    let browser = Browser::start(&dir).await;

    browser.goto(&base).await;
    let refused = browser
        .until(SHOT, "the refusal's text", async || {
            let text = browser
                .js("return document.body ? document.body.innerText : '';")
                .await?;
            let text = text.as_str().unwrap_or_default();
            if text.contains("this dashboard needs its token") {
                Ok(text.to_owned())
            } else {
                Err(format!("{text:?}"))
            }
        })
        .await;
    assert!(
        !refused.contains("token-1"),
        "nothing of the file is shown: {refused}"
    );
    let rows = browser
        .js("return document.querySelectorAll('tbody#rows tr').length;")
        .await;
    assert_eq!(rows, Ok(json!(0)), "no list without the token");
    browser.screenshot(SHOT).await;

    browser.goto(&format!("{base}?token={token}")).await;
    let list = browser
        .until(
            SHOT,
            "the list, with token-1's row, once the token is given",
            async || {
                let s = browser.row("token-1").await?;
                let url = browser.js("return location.href;").await?;
                if s["status"] == "completed" {
                    Ok((s, url))
                } else {
                    Err(format!("{s} at {url}"))
                }
            },
        )
        .await;
    assert_eq!(list.1, json!(base), "the token is taken out of the address");
    assert_eq!(list.0["value"], 5.0, "{}", list.0);
    // The cookie keeps it: the page loads again without the token in the address.
    browser.client.refresh().await.unwrap();
    browser
        .until(
            SHOT,
            "the list again after a reload without the token",
            async || {
                let s = browser.row("token-1").await?;
                if s["status"] == "completed" {
                    Ok(())
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    browser.screenshot("4-token-accepted.png").await;
    browser.close().await;
    eprintln!("token: {:.1} s", started.elapsed().as_secs_f64());
}

/// `hb serve` that must refuse to start: its exit code and stderr.
fn serve_refused(file: &Path, args: &[&str], token: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hb"));
    cmd.arg("serve")
        .arg("--file")
        .arg(file)
        .args(args)
        .env_remove("HB_FILE")
        .env_remove("HB_DASHBOARD_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("HB_DASHBOARD_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("running the hb binary");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hb serve {args:?} kept running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "hb serve {args:?} printed an address"
    );
    (
        out.status.code(),
        String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_non_loopback_address_without_public_or_with_a_weak_token_and_a_taken_port()
{
    let dir = temp_dir("refuse");
    let (path, engine, _worker) = engine(&dir).await;
    engine
        .client()
        .start(process, Job::steady(5, 1), StartOptions::id("refuse-1"))
        .await
        .unwrap();

    let file = path.clone();
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        serve_refused(
            &file,
            &["--listen", "0.0.0.0:0"],
            Some("browser-test-token-0123456789"),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains("0.0.0.0:0 is not a loopback address") && stderr.contains("--public"),
        "{stderr:?}"
    );

    let file = path.clone();
    let (code, stderr) = tokio::task::spawn_blocking(move || {
        serve_refused(&file, &["--listen", "0.0.0.0:0", "--public"], Some("short"))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains("at least 16 characters"), "{stderr:?}");

    // An address in use: the address, then why, once each.
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let file = path.clone();
    let (code, stderr) =
        tokio::task::spawn_blocking(move || serve_refused(&file, &["--listen", &addr], None))
            .await
            .unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}: ")) && stderr.contains("in use"),
        "{stderr:?}"
    );
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr:?}");
}
