//! hb activities on a Temporal server (feature `temporal`).
//!
//! The same `#[activity]` functions that run on the embedded engine run on a Temporal worker
//! unchanged: the Temporal activity type is the hb name; input, output and heartbeat details
//! are `json/plain` payloads, so workflows in any language call them and read their
//! checkpoints. The worker is built on `temporalio-sdk-core` (the engine under every official
//! SDK): it sees why an attempt is cancelled (a cancel request, a pause, a worker shutdown, a
//! timeout), which the Rust SDK's activity API does not say.
//!
//! ```no_run
//! use hb_runtime::prelude::*;
//! use hb_runtime::temporal::{ConnectOptions, Temporal};
//!
//! #[activity(heartbeat_timeout = "10s")]
//! async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
//!     Ok(n * 2)
//! }
//!
//! # async fn run() -> Result<(), hb_runtime::temporal::TemporalError> {
//! let temporal = Temporal::connect(ConnectOptions::new("localhost:7233")).await?;
//! let worker = temporal
//!     .worker()
//!     .register(double)
//!     .spawn()
//!     .await?;
//! // ... until it should stop:
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Semantics, as a Temporal user would expect them:
//! - The pump heartbeats every attempt at its activity's interval, never above the throttle of
//!   the server-side heartbeat timeout (0.8 × timeout); each heartbeat carries the latest
//!   checkpoint, and a retry's first heartbeat re-sends the checkpoint it resumed from, so it
//!   is never wiped.
//! - Before an attempt's failure is reported, its last checkpoint is recorded, so the failure
//!   (and the retry) carries it.
//! - A cancel request ends the attempt as `Cancelled` with its last checkpoint as details.
//! - A **pause** is not a cancellation: the attempt stops (`cancel_reason() == Paused`) and
//!   reports a retryable failure of type `"Paused"` with its checkpoint; the server runs the
//!   next attempt once the activity is unpaused, resuming from that checkpoint.
//! - A worker shutdown cancels running attempts after the worker's grace period with
//!   `WorkerShutdown`; the server retries them (resuming from the checkpoint), as Temporal does.
//! - A worker whose polls fail with an error core does not retry (the namespace was deleted,
//!   the API key revoked) stops by itself the same way, and [`WorkerHandle::wait`] returns
//!   [`TemporalError::Poll`]; an unreachable server is retried, not such an error.
//! - An input that does not decode into the activity's input type fails the activity at once,
//!   non-retryably (`BadInput`, naming the activity, the expected type, the field and the
//!   position; never the value).

mod auto;
mod client;
mod convert;
mod lifecycle;
mod poll;
mod sdk;
mod transport;
mod worker;

pub use auto::AutoHeartbeat;
pub use client::{Client, DEFAULT_TASK_QUEUE};
pub use sdk::{Marker, SdkActivity, sdk_activity};
pub use worker::WorkerHandle;

use crate::worker::Worker;

use std::fmt;
use std::time::Duration;

/// Where and how to reach a Temporal server.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub(crate) address: String,
    pub(crate) namespace: String,
    pub(crate) api_key: Option<String>,
    pub(crate) tls: Option<Tls>,
    pub(crate) identity: Option<String>,
    pub(crate) connect_timeout: Option<Duration>,
}

/// TLS settings for a connection (server CA, client certificate for mTLS, domain).
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// PEM of the CA that signed the server's certificate (`None`: the system's roots).
    pub server_root_ca_cert: Option<Vec<u8>>,
    /// The name to verify the server's certificate against.
    pub domain: Option<String>,
    /// PEM certificate and key for mutual TLS.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl ConnectOptions {
    /// The server at `address`, namespace `default`. `host:port` as every Temporal SDK and the
    /// `temporal` CLI write it (`localhost:7233`; over TLS when an API key or [`Tls`] is
    /// given), or a URL (`http://host:7233`, `https://host:7233`).
    pub fn new(address: impl Into<String>) -> Self {
        ConnectOptions {
            address: address.into(),
            namespace: "default".to_owned(),
            api_key: None,
            tls: None,
            identity: None,
            connect_timeout: None,
        }
    }

    /// The namespace (default `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Authenticates with an API key (Temporal Cloud). Turns TLS on with the system's roots
    /// unless [`tls`](Self::tls) says otherwise.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self.tls.get_or_insert_with(Tls::default);
        self
    }

    /// Connects over TLS.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The identity the worker reports (default `pid@host`).
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// How long to wait for the connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    pub(crate) async fn connect(&self) -> Result<temporalio_client::Connection, TemporalError> {
        use temporalio_client::{ClientTlsOptions, ConnectionOptions, TlsOptions, Url};
        let url = Url::parse(&target_url(&self.address, self.tls.is_some())).map_err(|e| {
            TemporalError::Connect {
                address: self.address.clone(),
                message: format!("not an address ({e}); write it as host:7233"),
            }
        })?;
        let tls = self.tls.as_ref().map(|t| {
            TlsOptions::builder()
                .maybe_server_root_ca_cert(t.server_root_ca_cert.clone())
                .maybe_domain(t.domain.clone())
                .maybe_client_tls_options(t.client_cert.as_ref().map(|(cert, key)| {
                    ClientTlsOptions::builder()
                        .client_cert(cert.clone())
                        .client_private_key(key.clone())
                        .build()
                }))
                .build()
        });
        let options = ConnectionOptions::new(url)
            .identity(self.identity.clone().unwrap_or_else(default_identity))
            .maybe_api_key(self.api_key.clone())
            .maybe_tls_options(tls)
            .maybe_connect_timeout(self.connect_timeout)
            .build();
        temporalio_client::Connection::connect(options)
            .await
            .map_err(|e| TemporalError::Connect {
                address: self.address.clone(),
                message: e.to_string(),
            })
    }
}

/// The URL of `address`: as given when it has a scheme, else `host:port` (the form of
/// Temporal's SDKs and CLI) over `https` when TLS is on and `http` otherwise.
fn target_url(address: &str, tls: bool) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("{}://{address}", if tls { "https" } else { "http" })
    }
}

/// A connection to a Temporal server: hands out the [`Client`] and workers, as
/// [`Engine`](crate::engine::Engine) does for the embedded engine. Cheap to clone; clients
/// and workers share its connection.
///
/// ```no_run
/// use hb_runtime::client::{ActivityClient, StartOptions};
/// use hb_runtime::prelude::*;
/// use hb_runtime::temporal::{ConnectOptions, Temporal};
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn double(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     Ok(n * 2)
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let temporal = Temporal::connect(ConnectOptions::new("localhost:7233")).await?;
/// let worker = temporal.worker().task_queue("batch-queue").register(double).spawn().await?;
/// let start = StartOptions::id("double-21").task_queue("batch-queue");
/// assert_eq!(temporal.client().start(double, 21, start).await?.result().await?, 42);
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Temporal {
    options: ConnectOptions,
    connection: temporalio_client::Connection,
    client: temporalio_client::Client,
}

impl fmt::Debug for Temporal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Temporal")
            .field("address", &self.options.address)
            .field("namespace", &self.options.namespace)
            .finish_non_exhaustive()
    }
}

impl Temporal {
    /// Connects to the server `options` names.
    ///
    /// # Errors
    /// [`TemporalError::Connect`] when the server cannot be reached.
    pub async fn connect(options: ConnectOptions) -> Result<Temporal, TemporalError> {
        let connection = options.connect().await?;
        let client = temporalio_client::Client::new(
            connection.clone(),
            temporalio_client::ClientOptions::new(options.namespace.clone()).build(),
        )
        .map_err(|e| TemporalError::Connect {
            address: options.address.clone(),
            message: e.to_string(),
        })?;
        Ok(Temporal {
            options,
            connection,
            client,
        })
    }

    /// A client of the connection's namespace: start, await, cancel, describe and list
    /// activities (its methods are those of [`ActivityClient`](crate::client::ActivityClient)).
    pub fn client(&self) -> Client {
        Client::new(self.client.clone())
    }

    /// A worker builder (task queue [`DEFAULT_TASK_QUEUE`] unless
    /// [`task_queue`](Worker::task_queue) says otherwise): register activities, then
    /// `spawn().await`.
    pub fn worker(&self) -> Worker<Temporal> {
        Worker::new(self.clone())
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{}@{host}", std::process::id())
}

/// What can go wrong talking to Temporal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TemporalError {
    /// The server could not be reached (or refused the connection).
    #[error("cannot connect to the Temporal server at {address}: {message}")]
    Connect {
        /// The address tried.
        address: String,
        /// What the connection said.
        message: String,
    },
    /// The worker could not be created or failed while running.
    #[error("Temporal worker: {0}")]
    Worker(String),
    /// A worker's configuration was refused at `spawn`.
    #[error(transparent)]
    Config(#[from] crate::worker::ConfigError),
    /// The server refused a request or could not be reached.
    #[error("Temporal: {0}")]
    Rpc(String),
    /// A worker stopped because polling for tasks failed with an error core does not retry
    /// (the namespace was deleted, the API key lost its permission). Its running attempts
    /// were given the worker's `shutdown_grace`, then cancelled with their checkpoints
    /// flushed. From [`WorkerHandle::wait`]; start a new worker once the cause is fixed.
    #[error(
        "the Temporal worker of task queue {task_queue:?} in namespace {namespace:?} stopped: \
         polling failed with {code}: {message}"
    )]
    Poll {
        /// The worker's namespace.
        namespace: String,
        /// The worker's task queue.
        task_queue: String,
        /// The gRPC status code of the poll (`NotFound`, `PermissionDenied`, ...).
        code: String,
        /// The server's message (e.g. `Namespace billing is not found.`).
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::target_url;

    #[test]
    fn an_address_is_host_port_as_temporal_writes_it_or_a_url() {
        for (address, tls, url) in [
            ("localhost:7233", false, "http://localhost:7233"),
            ("localhost:7233", true, "https://localhost:7233"),
            (" 127.0.0.1:7233 ", false, "http://127.0.0.1:7233"),
            ("ns.tmprl.cloud:7233", true, "https://ns.tmprl.cloud:7233"),
            ("[::1]:7233", false, "http://[::1]:7233"),
            ("http://localhost:7233", true, "http://localhost:7233"),
            ("https://localhost:7233", false, "https://localhost:7233"),
        ] {
            assert_eq!(target_url(address, tls), url, "{address} (tls: {tls})");
            let parsed = temporalio_client::Url::parse(&target_url(address, tls)).unwrap();
            assert!(parsed.host().is_some(), "{address}: a host");
            assert_eq!(
                parsed.port_or_known_default(),
                Some(7233),
                "{address}: the port"
            );
        }
    }
}
