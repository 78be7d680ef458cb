//! What the dashboard costs with 10,000 activities running and heartbeating every second, in a
//! file of 100,000 (90,000 of them completed): how long its list page takes to answer (first
//! page, a status, a type, a rare id fragment, deep in the paging), how long one live update of
//! the list takes to read and render (it runs once a second per open page, so 10 ms is 1% of a
//! core), and what an open list page and an open activity page add to the engine process's CPU.
//!
//! `cargo bench -p hb-runtime --features dashboard --bench dashboard`

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use criterion::Criterion;
use hb_runtime::client::{ActivityClient, StartOptions};
use hb_runtime::dashboard::Dashboard;
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Heartbeats every second until cancelled, with done/total progress.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct Steps {
    #[checkpoint(done)]
    done: u64,
    #[checkpoint(total)]
    total: u64,
}

#[activity(heartbeat_timeout = "5s", heartbeat_interval = "1s")]
async fn in_flight(ctx: ActivityContext, #[checkpoint] mut s: Steps) -> Result<(), ActivityError> {
    s.total = 1_000_000;
    loop {
        s.done += 1;
        ctx.checkpoint(&s)?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = ctx.cancelled() => return Ok(()),
        }
    }
}

#[activity(heartbeat_timeout = "10s")]
async fn noop(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

#[path = "support/cpu.rs"]
mod cpu;
use cpu::process_cpu_ns;

async fn get(app: &axum::Router, uri: &str) -> usize {
    let req = Request::get(uri)
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert!(
        response.status().is_success(),
        "{uri}: {}",
        response.status()
    );
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

/// The first event of a live stream: one read and render of what it shows.
async fn first_event(app: &axum::Router, uri: &str) -> usize {
    let req = Request::get(uri)
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .unwrap();
    let mut body = app.clone().oneshot(req).await.unwrap().into_body();
    let frame = body.frame().await.unwrap().unwrap();
    frame.into_data().map(|d| d.len()).unwrap_or(0)
}

fn main() {
    const RUNNING: u64 = 10_000;
    const DONE: u64 = 90_000;
    const PAGES: u64 = 10;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Removed when it drops, at the end of `main`.
    let dir = tempfile::Builder::new()
        .prefix("hb-bench-dashboard-")
        .tempdir()
        .unwrap();
    let engine = rt.block_on(Engine::open(dir.path().join("hb.db"))).unwrap();
    let (worker, handles) = rt.block_on(async {
        let worker = engine
            .worker()
            .register(noop)
            .register(in_flight)
            .max_concurrent(RUNNING as usize + 1_000)
            .spawn()
            .await
            .unwrap();
        let client = engine.client();
        let t0 = Instant::now();
        // Started 2,000 at a time, each wave awaited to its end.
        for wave in 0..DONE / 2_000 {
            let starts = (wave * 2_000..(wave + 1) * 2_000)
                .map(|i| client.start(noop, i, StartOptions::id(format!("done-{i:06}"))));
            let handles: Vec<_> = futures::future::join_all(starts)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            for h in futures::future::join_all(handles.iter().map(|h| h.result())).await {
                h.unwrap();
            }
        }
        let starts = (0..RUNNING)
            .map(|i| client.start(in_flight, (), StartOptions::id(format!("run-{i:05}"))));
        let handles: Vec<_> = futures::future::join_all(starts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        println!(
            "dashboard bench: {DONE} completed and {RUNNING} running activities set up in {:?}",
            t0.elapsed()
        );
        (worker, handles)
    });
    // Every running activity has heartbeated at least once.
    std::thread::sleep(Duration::from_secs(3));

    // As `Dashboard::serve` serves it: each request knows its peer (here, this machine).
    let app = Dashboard::new(&engine)
        .router()
        .layer(axum::extract::connect_info::MockConnectInfo(
            std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)),
        ));
    let deep = rt.block_on(async {
        // The cursor of a page deep in the listing: follow `older` 20 times from the top.
        let mut uri = "/?state=completed".to_owned();
        for _ in 0..20 {
            let req = Request::get(&uri)
                .header("host", "127.0.0.1")
                .body(Body::empty())
                .unwrap();
            let body = app
                .clone()
                .oneshot(req)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            let html = String::from_utf8_lossy(&body).into_owned();
            let at = html.find("id=\"older\" href=\"").expect("an older page") + 17;
            uri = html[at..at + html[at..].find('"').unwrap()].replace("&amp;", "&");
        }
        uri
    });

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("dashboard_10k_running_100k_rows");
        g.sample_size(20).measurement_time(Duration::from_secs(4));
        for (name, uri) in [
            ("list_page", "/".to_owned()),
            ("list_page_running", "/?state=running".to_owned()),
            ("list_page_by_type", "/?type=in_flight".to_owned()),
            ("list_page_rare_id_fragment", "/?q=run-0999".to_owned()),
            ("list_page_1000_rows_deep", deep.clone()),
            ("activity_page", "/activity?id=run-05000".to_owned()),
            ("live_rows_update", "/live/rows".to_owned()),
        ] {
            g.bench_function(name, |b| {
                b.to_async(&rt).iter(|| async {
                    if uri.starts_with("/live/") {
                        black_box(first_event(&app, &uri).await)
                    } else {
                        black_box(get(&app, &uri).await)
                    }
                })
            });
        }
        g.finish();
    }

    // The engine process's CPU with ten list pages and ten activity pages open, against none,
    // in alternating 3 s windows (ten of each, so the difference stands above the windows'
    // noise; a tenth of it is one of each).
    let window = |streams: bool| -> f64 {
        let stop = tokio_util::sync::CancellationToken::new();
        if streams {
            let uris = (0..PAGES).flat_map(|i| {
                [
                    "/live/rows".to_owned(),
                    format!("/live/activity?id=run-{:05}", 5_000 + i),
                ]
            });
            for uri in uris {
                let app = app.clone();
                let stop = stop.clone();
                rt.spawn(async move {
                    let req = Request::get(uri)
                        .header("host", "127.0.0.1")
                        .body(Body::empty())
                        .unwrap();
                    let mut body = app.oneshot(req).await.unwrap().into_body();
                    loop {
                        tokio::select! {
                            f = body.frame() => if f.is_none() { return },
                            _ = stop.cancelled() => return,
                        }
                    }
                });
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let (cpu0, t0) = (process_cpu_ns(), Instant::now());
        std::thread::sleep(Duration::from_secs(3));
        let share = (process_cpu_ns() - cpu0) as f64 * 100.0 / t0.elapsed().as_nanos() as f64;
        stop.cancel();
        share
    };
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..4 {
        without.push(window(false));
        with.push(window(true));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let (w, wo) = (median(&mut with.clone()), median(&mut without.clone()));
    println!(
        "dashboard live updates: engine process CPU {w:.1}% of one core with {PAGES} list pages and {PAGES} activity pages open, {wo:.1}% without (medians of 4 alternating 3 s windows; {RUNNING} running): {:+.2}% of one core, {:+.3}% for one list page and one activity page; windows without {without:.1?}, with {with:.1?}",
        w - wo,
        (w - wo) / PAGES as f64,
    );

    rt.block_on(async {
        for h in &handles {
            let _ = h.cancel().await;
        }
        worker.shutdown().await;
    });
    c.final_summary();
}
