//! Watching hb run: activities on the embedded engine, its live web dashboard, and its metrics
//! for Prometheus, served together.
//!
//! Run: `cargo run --example observability --features dashboard` and open the addresses it prints:
//!
//! ```text
//! dashboard: http://127.0.0.1:8080/
//! metrics:   http://127.0.0.1:8080/metrics
//! ```
//!
//! Six image batches run at a time, each checkpointing after every image; one in five fails
//! once partway (its retry resumes from the checkpoint, and the dashboard shows both attempts),
//! and new batches keep arriving. On the dashboard, follow a batch's bar, open it for its
//! attempts, or cancel, pause, reset it. Stop with Ctrl-C.
//!
//! Options: `--listen ADDR` (default `127.0.0.1:8080`, loopback only; port 0 picks a free one),
//! `--for SECS` (stop by itself after that long).

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use hb_runtime::client::StartOptions;
use hb_runtime::dashboard::Dashboard;
use hb_runtime::engine::Engine;
use hb_runtime::prelude::*;

/// How far a batch got.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct Resized {
    #[checkpoint(done)]
    done: u64,
    #[checkpoint(total)]
    total: u64,
    bytes_saved: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Batch {
    folder: String,
    images: u64,
    /// Milliseconds per image.
    image_ms: u64,
    /// The first attempt fails at this image (a flaky storage node).
    flaky_at: Option<u64>,
}

/// Resizes a folder of images, one at a time.
#[activity(
    heartbeat_timeout = "10s",
    retry(max_attempts = 5, initial_interval = "2s")
)]
async fn resize_images(
    ctx: ActivityContext,
    #[checkpoint] mut p: Resized,
    batch: Batch,
) -> Result<u64, ActivityError> {
    p.total = batch.images;
    while p.done < batch.images {
        if ctx.info().attempt == 1 && batch.flaky_at == Some(p.done) {
            return Err(ActivityError::retryable(
                "StorageUnavailable",
                format!("storage node timed out reading image {}", p.done),
            ));
        }
        tokio::time::sleep(Duration::from_millis(batch.image_ms)).await;
        p.done += 1;
        p.bytes_saved += 40_000 + p.done % 7 * 3_000;
        ctx.checkpoint(&p)?;
    }
    Ok(p.bytes_saved)
}

struct Args {
    listen: SocketAddr,
    run_for: Option<Duration>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        run_for: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => args.listen = value.parse().map_err(|e| format!("--listen: {e}"))?,
            "--for" => {
                let secs: u64 = value.parse().map_err(|e| format!("--for: {e}"))?;
                args.run_for = Some(Duration::from_secs(secs));
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    if !args.listen.ip().is_loopback() {
        // The dashboard would refuse every request from elsewhere (it has no token here), and
        // /metrics has no protection of its own.
        return Err(format!("{} is not a loopback address", args.listen).into());
    }
    // The recorder first: what the engine and workers record goes to it from their start.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;

    // This run's engine file, in a directory removed when the guard drops: at the end, or on
    // an early error.
    let dir = tempfile::Builder::new()
        .prefix(&format!("hb-observability-{}-", std::process::id()))
        .tempdir()?;
    let engine = Engine::open(dir.path().join("hb.db")).await?;
    let worker = engine
        .worker()
        .register(resize_images)
        .max_concurrent(6)
        // Ctrl-C stops it within a second: the batches still running then are cancelled
        // (a worker lets them finish for 10 s by default).
        .shutdown_grace(Duration::from_millis(500))
        .spawn()
        .await?;

    // The dashboard's pages, and /metrics beside them, on one loopback address.
    let app = Dashboard::new(&engine).router().route(
        "/metrics",
        get(move || std::future::ready(prometheus.render())),
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("dashboard: http://{addr}/");
    println!("metrics:   http://{addr}/metrics");
    // With no token, the dashboard serves only connections from this machine: it needs each
    // one's peer address.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Batches keep arriving, one every 2 s, each of 40 to 160 images.
    let client = engine.client();
    let producer = tokio::spawn(async move {
        for n in 1u64.. {
            let batch = Batch {
                folder: format!("uploads/2026-12/{n:04}"),
                images: 40 + n * 37 % 120,
                image_ms: 60 + n * 13 % 90,
                flaky_at: (n % 5 == 2).then_some(10 + n % 20),
            };
            let id = format!("resize-{n:04}");
            if let Err(e) = client
                .start(resize_images, batch, StartOptions::id(id))
                .await
            {
                eprintln!("could not start a batch: {e}");
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });

    // Until Ctrl-C (or the end of `--for`).
    match args.run_for {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            c = tokio::signal::ctrl_c() => c?,
        },
        None => tokio::signal::ctrl_c().await?,
    }
    producer.abort();
    server.abort();
    worker.shutdown().await;
    engine.close().await?;
    dir.close()?;
    Ok(())
}
