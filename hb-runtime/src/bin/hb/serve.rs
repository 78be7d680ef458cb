//! `hb serve`: the live web dashboard of an engine file, until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hb_runtime::dashboard::{Dashboard, DashboardError};

use crate::{Failure, note, print};

/// Where the token comes from: `--token-file`, else `$HB_DASHBOARD_TOKEN`.
fn token(file: Option<&Path>) -> Result<Option<String>, Failure> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Failure::Usage(format!(
                "cannot read the token file {}: {e}",
                file.display()
            ))
        })?;
        return Ok(Some(text.trim().to_owned()));
    }
    Ok(std::env::var("HB_DASHBOARD_TOKEN")
        .ok()
        .filter(|t| !t.is_empty()))
}

pub(crate) fn run(
    path: &Path,
    listen: SocketAddr,
    public: bool,
    token_file: Option<PathBuf>,
) -> Result<(), Failure> {
    if !listen.ip().is_loopback() && !public {
        return Err(Failure::Usage(format!(
            "{listen} is not a loopback address: anyone who can reach it could cancel activities; \
             pass --public to serve it there (a token is then required: HB_DASHBOARD_TOKEN, \
             --token-file, or one generated and printed)"
        )));
    }
    let given = token(token_file.as_deref())?;
    let mut dashboard = Dashboard::open(path).map_err(serve_failure)?;
    let mut shown_token = None;
    if public || given.is_some() {
        let token = match given {
            Some(t) => t,
            None => {
                let t = Dashboard::generate_token();
                shown_token = Some(t.clone());
                t
            }
        };
        dashboard = dashboard.token(token).map_err(serve_failure)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Failure::Output)?;
    runtime.block_on(async move {
        let serving = dashboard.serve(listen).await.map_err(serve_failure)?;
        let url = match &shown_token {
            Some(t) => format!("{}?token={t}", serving.url()),
            None => serving.url(),
        };
        note(&format!("dashboard of {} (Ctrl-C to stop)", path.display()));
        print(&format!("{url}\n"))?;
        stopped().await;
        serving
            .shutdown()
            .await
            .map_err(|e| Failure::Usage(format!("the dashboard stopped with an error: {e}")))
    })
}

fn serve_failure(e: DashboardError) -> Failure {
    match e {
        DashboardError::Engine(e) => Failure::Engine(e),
        // The message, then each cause in turn: "cannot listen on 127.0.0.1:80: Permission
        // denied (os error 13)".
        e => Failure::Usage(
            std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": "),
        ),
    }
}

/// Ctrl-C, or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
