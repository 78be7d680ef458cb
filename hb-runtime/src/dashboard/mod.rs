//! A live web dashboard for the embedded engine (feature `dashboard`): the activities with
//! their progress, rate and time left; one activity with its checkpoint, attempts, failures,
//! input and output; cancel, pause, unpause and reset. Pages update themselves through
//! server-sent events; the styles and the script are in the binary (it works offline).
//!
//! Two ways to run it:
//! - in the process that owns the engine: [`Dashboard::new`], then [`Dashboard::router`] to
//!   mount it in your axum app, or [`Dashboard::serve`] to listen on its own address. Its
//!   pages read the engine's live state, its actions go through the engine's client (a refused
//!   one says why), and an activity's page is pushed each change;
//! - beside an engine in another process: [`Dashboard::open`] on its file (what `hb serve`
//!   does). It reads the file as `hb ls` does; its actions are queued in the file, as
//!   `hb cancel` queues them, for the engine to apply.
//!
//! Security: with no token it serves only connections from this machine (a loopback peer),
//! addressed to a loopback host (`localhost`, `127.0.0.1`, `[::1]`: a page of another site
//! cannot reach it through DNS rebinding), and not forwarded by a proxy;
//! [`serve`](Dashboard::serve) listens only on a loopback address. Any user of the machine can
//! open it then, as any can reach its loopback ports. Anything else needs a
//! [`token`](Dashboard::token): given once as `?token=` (kept in a cookie), or as
//! `Authorization: Bearer`. Actions are POSTs that carry a secret of the page and are refused
//! from other origins; pages forbid framing and scripts from elsewhere.
//!
//! ```no_run
//! use hb_runtime::dashboard::Dashboard;
//! use hb_runtime::engine::Engine;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::open("hb.db").await?;
//! // On its own address:
//! let serving = Dashboard::new(&engine).serve("127.0.0.1:8080".parse()?).await?;
//! println!("dashboard: {}", serving.url());
//!
//! // Or in your own app, under /hb (with no token, it needs to know each peer's address):
//! let app = axum::Router::new().nest("/hb", Dashboard::new(&engine).router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```

mod guard;
mod live;
mod pages;
mod routes;
mod source;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineError, Inspector, PageQuery};
use source::Source;

/// The shortest token [`Dashboard::token`] accepts.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// A non-loopback address without a token: anyone who can reach it could cancel
    /// activities.
    #[error(
        "refusing to serve the dashboard on {addr} without a token: it is not a loopback address; set a token (hb serve: --public with HB_DASHBOARD_TOKEN or --token-file)"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A token too short to keep anyone out.
    #[error("a dashboard token must be at least {MIN_TOKEN_LEN} characters; this one has {len}")]
    WeakToken {
        /// Its length.
        len: usize,
    },
    /// A token with characters an address, a cookie or a header cannot carry as they are.
    #[error("a dashboard token may hold only ASCII letters, digits, and - . _ ~")]
    TokenCharacters,
    /// The address could not be listened on. The message names the address; `source()`
    /// gives why (print the chain, as `hb serve` does, to see both).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The engine file could not be read.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What every route shares.
pub(crate) struct Shared {
    source: Source,
    token: Option<String>,
    /// The secret each page's forms carry back (a page of another origin cannot read it).
    csrf: String,
    /// Ends the live streams when the server stops.
    stop: CancellationToken,
    /// Live streams open at once, at most [`live::MAX_STREAMS`]: each reads once a second.
    streams: Arc<tokio::sync::Semaphore>,
}

/// The dashboard of one engine: build it, then mount its [`router`](Self::router) or
/// [`serve`](Self::serve) it. See the [module docs](self).
///
/// ```
/// use hb_runtime::client::{ActivityClient, StartOptions};
/// use hb_runtime::dashboard::{Dashboard, DashboardError};
/// use hb_runtime::engine::Engine;
/// use hb_runtime::prelude::*;
/// use std::io::{Read, Write};
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::in_memory().await?;
/// engine.client().start(double, 21, StartOptions::id("double-21")).await?;
///
/// // Port 0: a free one.
/// let serving = Dashboard::new(&engine).serve("127.0.0.1:0".parse()?).await?;
/// let mut tcp = std::net::TcpStream::connect(serving.local_addr())?; // any HTTP client
/// tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
/// let mut page = String::new();
/// tcp.read_to_string(&mut page)?;
/// assert!(page.starts_with("HTTP/1.1 200") && page.contains("double-21"));
/// serving.shutdown().await?;
///
/// // Beyond loopback only with a token.
/// let refused = Dashboard::new(&engine).serve("0.0.0.0:0".parse()?).await;
/// assert!(matches!(refused, Err(DashboardError::TokenRequired { .. })));
/// let token = Dashboard::generate_token();
/// let serving = Dashboard::new(&engine).token(token)?.serve("0.0.0.0:0".parse()?).await?;
/// serving.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Dashboard {
    shared: Shared,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("source", &self.shared.source.label())
            .field("token", &self.shared.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// 128 random bits, in hex.
pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // The OS's generator; should it fail (it does not on the platforms hb supports), the time
    // and the process id still differ between runs.
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Dashboard {
    fn with(source: Source) -> Dashboard {
        Dashboard {
            shared: Shared {
                source,
                token: None,
                csrf: random_hex(),
                stop: CancellationToken::new(),
                streams: Arc::new(tokio::sync::Semaphore::new(live::MAX_STREAMS)),
            },
        }
    }

    /// The dashboard of `engine`, in its own process. It holds the engine (as its clients do)
    /// until it is dropped; its live pages end when the engine shuts down.
    pub fn new(engine: &Engine) -> Dashboard {
        let client = engine.client();
        let mut dashboard = Dashboard::with(Source::Engine(client.clone()));
        dashboard.shared.stop = client.engine_stopped();
        dashboard
    }

    /// The dashboard of the engine file at `path`, which an engine in another process may have
    /// open (or none: then actions wait in the file for the next engine to open it).
    ///
    /// # Errors
    /// What [`Inspector::open`] refuses: a missing file, one that is not hb's, or one of a
    /// newer schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Dashboard, DashboardError> {
        let path = path.as_ref().to_path_buf();
        let inspector = Arc::new(Inspector::open(&path)?);
        Ok(Dashboard::with(Source::File { path, inspector }))
    }

    /// Requires `token` of every request; what lets it listen beyond loopback.
    ///
    /// # Errors
    /// [`DashboardError::WeakToken`] below [`MIN_TOKEN_LEN`] characters;
    /// [`DashboardError::TokenCharacters`] for anything but ASCII letters, digits, `-`, `.`,
    /// `_` and `~`.
    pub fn token(mut self, token: impl Into<String>) -> Result<Dashboard, DashboardError> {
        let token = token.into();
        let len = token.chars().count();
        if len < MIN_TOKEN_LEN {
            return Err(DashboardError::WeakToken { len });
        }
        // What an address, a cookie and a header all carry as it is.
        let carried = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        if !token.chars().all(carried) {
            return Err(DashboardError::TokenCharacters);
        }
        self.shared.token = Some(token);
        Ok(self)
    }

    /// A new random token (32 hex digits), for [`token`](Self::token).
    pub fn generate_token() -> String {
        random_hex()
    }

    /// What ends its live pages. Their streams stay open as long as a browser shows them, so
    /// an app that [nests](axum::Router::nest) the [`router`](Self::router) and shuts down
    /// gracefully stops them first ([`serve`](Self::serve) does it itself; in the engine's own
    /// process, they end when the engine shuts down).
    pub fn live_stopper(&self) -> LiveStopper {
        LiveStopper(self.shared.stop.clone())
    }

    /// Its pages as an axum router, to serve or to [`nest`](axum::Router::nest) in an app (it
    /// works under any path).
    ///
    /// Without a [`token`](Self::token) it serves only connections from this machine, and
    /// needs to know where each comes from: serve it with
    /// [`into_make_service_with_connect_info::<SocketAddr>()`](axum::Router::into_make_service_with_connect_info)
    /// (requests without that are refused with a message saying so).
    pub fn router(self) -> axum::Router {
        routes::router(Arc::new(self.shared))
    }

    /// Listens on `addr` (port 0 picks a free one) and serves the pages until
    /// [`Serving::shutdown`].
    ///
    /// # Errors
    /// [`DashboardError::TokenRequired`] for a non-loopback address without a token;
    /// [`DashboardError::Bind`] when `addr` cannot be listened on.
    pub async fn serve(self, addr: SocketAddr) -> Result<Serving, DashboardError> {
        if !addr.ip().is_loopback() && self.shared.token.is_none() {
            return Err(DashboardError::TokenRequired { addr });
        }
        let bind = |source| DashboardError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        let stop = self.shared.stop.clone();
        let router = self.router();
        let until = stop.clone();
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await
        });
        tracing::info!(addr = %local, "dashboard listening");
        Ok(Serving {
            addr: local,
            stop,
            task,
        })
    }
}

/// A dashboard being served, from [`Dashboard::serve`]. Dropping it leaves the server running
/// until the runtime ends; [`shutdown`](Self::shutdown) stops it.
#[derive(Debug)]
pub struct Serving {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Serving {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its address as a URL (`http://127.0.0.1:8080/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops taking connections, ends the live streams, and waits for the requests under way,
    /// at most [`SHUTDOWN_GRACE`]; then drops the connections left.
    ///
    /// # Errors
    /// The server's own I/O error, if it failed.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.stop.cancel();
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(done) => done.map_err(std::io::Error::other)?,
            Err(_) => {
                tracing::warn!(
                    addr = %self.addr,
                    "dashboard: connections still open after the grace period were dropped"
                );
                self.task.abort();
                Ok(())
            }
        }
    }
}

/// How long [`Serving::shutdown`] waits for the requests under way (a client that never
/// finishes its request does not hold the server up longer).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends the live pages of a dashboard: from [`Dashboard::live_stopper`].
///
/// ```no_run
/// # use hb_runtime::dashboard::Dashboard;
/// # async fn run(engine: hb_runtime::engine::Engine) -> std::io::Result<()> {
/// let dashboard = Dashboard::new(&engine);
/// let stopper = dashboard.live_stopper();
/// let app = axum::Router::new().nest("/hb", dashboard.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async move {
///         let _ = tokio::signal::ctrl_c().await;
///         stopper.stop(); // or the open pages keep the server up
///     })
///     .await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LiveStopper(CancellationToken);

impl LiveStopper {
    /// Ends every live page's stream now (the pages stay; they stop updating).
    pub fn stop(&self) {
        self.0.cancel();
    }
}

/// The page query of a list's filters.
fn page_query(params: &pages::ListParams, rows: usize) -> PageQuery {
    PageQuery {
        states: params.state().into_iter().collect(),
        activity_type: params.activity_type().map(str::to_owned),
        id_contains: params.search().map(str::to_owned),
        after: params.cursor().map(|(at, id)| (at, id.to_owned())),
        limit: rows,
    }
}
