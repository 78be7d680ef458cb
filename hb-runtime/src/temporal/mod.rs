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
mod meter;
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

/// Where and how to reach a Temporal server: [`new`](Self::new) with an address, or
/// [`from_env`](Self::from_env) as the `temporal` CLI and Temporal's SDKs read their settings.
///
/// Its `Debug` output leaves out the API key and the client's private key.
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) address: String,
    pub(crate) namespace: String,
    pub(crate) api_key: Option<String>,
    pub(crate) tls: Option<Tls>,
    pub(crate) identity: Option<String>,
    pub(crate) connect_timeout: Option<Duration>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("identity", &self.identity)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// TLS settings for a connection (server CA, client certificate for mTLS, domain). Its
/// `Debug` output leaves out the certificates and the private key.
#[derive(Clone, Default)]
pub struct Tls {
    /// PEM of the CA that signed the server's certificate (`None`: the system's roots).
    pub server_root_ca_cert: Option<Vec<u8>>,
    /// The name to verify the server's certificate against.
    pub domain: Option<String>,
    /// PEM certificate and key for mutual TLS.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field(
                "server_root_ca_cert",
                &self.server_root_ca_cert.as_ref().map(Vec::len),
            )
            .field("domain", &self.domain)
            .field(
                "client_cert",
                &self.client_cert.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
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

    /// The settings the `temporal` CLI and every Temporal SDK read: the environment variables
    /// `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS`,
    /// `TEMPORAL_TLS_CLIENT_CERT_PATH`, `TEMPORAL_TLS_CLIENT_KEY_PATH`,
    /// `TEMPORAL_TLS_SERVER_CA_CERT_PATH` (or their `_DATA` forms), `TEMPORAL_TLS_SERVER_NAME`,
    /// over the profile of the config file (`TEMPORAL_CONFIG_FILE`, else
    /// `~/.config/temporalio/temporal.toml`; profile `TEMPORAL_PROFILE`, else `default`).
    /// What neither sets is `localhost:7233`, namespace `default`, no TLS; TLS is on when an
    /// API key or a TLS setting is given, unless `TEMPORAL_TLS=false`.
    ///
    /// The builder methods override what it read:
    ///
    /// ```no_run
    /// use hb_runtime::temporal::{ConnectOptions, Temporal};
    ///
    /// # async fn run() -> Result<(), hb_runtime::temporal::TemporalError> {
    /// // TEMPORAL_ADDRESS=my-ns.a1b2c.tmprl.cloud:7233 TEMPORAL_NAMESPACE=my-ns.a1b2c
    /// // TEMPORAL_API_KEY=... in the environment:
    /// let temporal = Temporal::connect(ConnectOptions::from_env()?).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`TemporalError::Settings`] when the file or a variable is invalid: a certificate path
    /// that cannot be read, a client certificate without its key, a malformed TOML file,
    /// `TEMPORAL_TLS_DISABLE_HOST_VERIFICATION=true` (not supported).
    pub fn from_env() -> Result<ConnectOptions, TemporalError> {
        Self::from_settings(None)
    }

    /// [`from_env`](Self::from_env) with the variables of `vars` instead of the process's
    /// environment (the file is still read when `TEMPORAL_CONFIG_FILE` names one).
    pub(crate) fn from_settings(
        vars: Option<&std::collections::HashMap<String, String>>,
    ) -> Result<ConnectOptions, TemporalError> {
        use temporalio_common::envconfig::{
            DataSource, LoadClientConfigProfileOptions, load_client_config_profile,
        };
        let invalid = |message: String| TemporalError::Settings(message);
        let profile = load_client_config_profile(LoadClientConfigProfileOptions::default(), vars)
            .map_err(|e| invalid(e.to_string()))?;
        let read = |what: &str, source: DataSource| match source {
            DataSource::Data(bytes) => Ok(bytes),
            DataSource::Path(path) => std::fs::read(&path)
                .map_err(|e| invalid(format!("cannot read the {what} at {path}: {e}"))),
            _ => Err(invalid(format!(
                "the {what} comes from a source hb does not read"
            ))),
        };
        let mut options = ConnectOptions::new(
            profile
                .address
                .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned()),
        );
        if let Some(namespace) = profile.namespace {
            options.namespace = namespace;
        }
        let tls_on = match &profile.tls {
            Some(tls) => tls.disabled != Some(true),
            None => profile.api_key.is_some(),
        };
        options.api_key = profile.api_key;
        if let Some(tls) = profile.tls.filter(|_| tls_on) {
            if tls.disable_host_verification {
                return Err(invalid(
                    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION=true is not supported".to_owned(),
                ));
            }
            let client_cert = match (tls.client_cert, tls.client_key) {
                (Some(cert), Some(key)) => {
                    Some((read("client certificate", cert)?, read("client key", key)?))
                }
                (None, None) => None,
                _ => {
                    return Err(invalid(
                        "a client certificate and its key go together: set both or neither"
                            .to_owned(),
                    ));
                }
            };
            options.tls = Some(Tls {
                server_root_ca_cert: tls
                    .server_ca_cert
                    .map(|ca| read("server CA certificate", ca))
                    .transpose()?,
                domain: tls.server_name,
                client_cert,
            });
        } else if tls_on {
            options.tls = Some(Tls::default());
        }
        Ok(options)
    }

    /// The server's address (`host:port` or a URL).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// The address it connects to.
    pub fn get_address(&self) -> &str {
        &self.address
    }

    /// The namespace it uses.
    pub fn get_namespace(&self) -> &str {
        &self.namespace
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

/// Where a server is when nothing says: the dev server's address.
const DEFAULT_ADDRESS: &str = "localhost:7233";

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
    /// The connection settings read by [`ConnectOptions::from_env`] are invalid.
    #[error("Temporal connection settings: {0}")]
    Settings(String),
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
    use super::{ConnectOptions, TemporalError, target_url};
    use std::collections::HashMap;

    fn from_vars(vars: &[(&str, &str)]) -> Result<ConnectOptions, TemporalError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConnectOptions::from_settings(Some(&vars))
    }

    #[test]
    fn settings_come_from_the_variables_the_temporal_cli_reads() {
        // Nothing set (and no ~/.config/temporalio/temporal.toml): the dev server's address
        // and namespace, no TLS.
        let o = from_vars(&[]).unwrap();
        assert_eq!(
            (o.get_address(), o.get_namespace()),
            ("localhost:7233", "default")
        );
        assert!(o.tls.is_none() && o.api_key.is_none());

        let o = from_vars(&[
            ("TEMPORAL_ADDRESS", "temporal.example:7233"),
            ("TEMPORAL_NAMESPACE", "billing"),
        ])
        .unwrap();
        assert_eq!(o.get_address(), "temporal.example:7233");
        assert_eq!(o.get_namespace(), "billing");
        assert!(o.tls.is_none());

        // An API key turns TLS on, unless TEMPORAL_TLS=false says otherwise.
        let o = from_vars(&[("TEMPORAL_API_KEY", "secret-key")]).unwrap();
        assert_eq!(o.api_key.as_deref(), Some("secret-key"));
        assert!(o.tls.is_some());
        assert!(!format!("{o:?}").contains("secret-key"), "{o:?}");
        let o = from_vars(&[("TEMPORAL_API_KEY", "k"), ("TEMPORAL_TLS", "false")]).unwrap();
        assert!(o.tls.is_none());
        assert!(
            from_vars(&[("TEMPORAL_TLS", "true")])
                .unwrap()
                .tls
                .is_some()
        );
    }

    #[test]
    fn tls_certificate_paths_are_read_and_a_bad_one_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("hb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key) = (dir.join("ca.pem"), dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&ca, b"CA").unwrap();
        std::fs::write(&cert, b"CERT").unwrap();
        std::fs::write(&key, b"PRIVATE KEY").unwrap();
        let o = from_vars(&[
            ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", ca.to_str().unwrap()),
            ("TEMPORAL_TLS_CLIENT_CERT_PATH", cert.to_str().unwrap()),
            ("TEMPORAL_TLS_CLIENT_KEY_PATH", key.to_str().unwrap()),
            ("TEMPORAL_TLS_SERVER_NAME", "temporal.internal"),
        ])
        .unwrap();
        let tls = o.tls.as_ref().expect("certificates turn TLS on");
        assert_eq!(tls.server_root_ca_cert.as_deref(), Some(&b"CA"[..]));
        assert_eq!(tls.domain.as_deref(), Some("temporal.internal"));
        let (c, k) = tls.client_cert.as_ref().unwrap();
        assert_eq!((&c[..], &k[..]), (&b"CERT"[..], &b"PRIVATE KEY"[..]));
        assert!(!format!("{o:?}").contains("PRIVATE"), "{o:?}");

        let missing = from_vars(&[("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "/nonexistent/ca.pem")]);
        match missing {
            Err(TemporalError::Settings(m)) => {
                assert!(m.contains("/nonexistent/ca.pem"), "{m}")
            }
            other => panic!("expected a settings error, got {other:?}"),
        }
        let half = from_vars(&[("TEMPORAL_TLS_CLIENT_CERT_PATH", cert.to_str().unwrap())]);
        assert!(matches!(half, Err(TemporalError::Settings(_))), "{half:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

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
