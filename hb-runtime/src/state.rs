//! Worker-level resources (a database pool, an HTTP client) that activities take as
//! `#[state]` parameters.
//!
//! A worker (or the test kit) holds one [`StateMap`]; an activity parameter marked `#[state]`
//! receives a clone of the value of its type. Put shared things behind an `Arc` (or use types
//! that are cheap to clone, like most pools and clients).
//!
//! ```
//! use hb_runtime::prelude::*;
//! use std::sync::Arc;
//!
//! #[derive(Debug)]
//! struct Db { url: String }
//!
//! #[activity(heartbeat_timeout = "10s")]
//! async fn lookup(ctx: ActivityContext, #[state] db: Arc<Db>, key: String) -> Result<String, ActivityError> {
//!     Ok(format!("{}/{key}", db.url))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let env = hb_runtime::testing::ActivityEnvironment::new()
//!     .with_state(Arc::new(Db { url: "sqlite://x".into() }));
//! let run = env.run(lookup, "k".to_string()).await;
//! assert_eq!(run.result.unwrap(), "sqlite://x/k");
//! # }
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A map from type to one shared value of that type.
///
/// Fill one and give it to a runner with
/// [`AttemptRunner::state`](crate::runner::AttemptRunner::state) (tests use
/// [`ActivityEnvironment::with_state`](crate::testing::ActivityEnvironment::with_state)).
///
/// ```
/// use hb_runtime::backend::AttemptRunner;
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::StateMap;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct ApiKey(String);
///
/// let mut state = StateMap::new();
/// assert!(state.is_empty());
/// state.insert(ApiKey("k-1".into()));
/// assert_eq!(state.get::<ApiKey>().unwrap(), ApiKey("k-1".into()));
/// assert!(state.require::<ApiKey>().is_ok());
/// assert!(state.require::<u32>().is_err());
///
/// let runner = AttemptRunner::new(MemoryTransport::new()).state(state);
/// assert!(runner.state_map().get::<ApiKey>().is_ok());
/// ```
#[derive(Clone, Default)]
pub struct StateMap {
    values: HashMap<TypeId, (Arc<dyn Any + Send + Sync>, &'static str)>,
}

impl StateMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the value of type `T`.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(
            TypeId::of::<T>(),
            (Arc::new(value), std::any::type_name::<T>()),
        );
    }

    /// A clone of the value of type `T`.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Result<T, MissingState> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|(v, _)| v.downcast_ref::<T>())
            .cloned()
            .ok_or_else(MissingState::of::<T>)
    }

    /// Fails unless a value of type `T` is present.
    pub fn require<T: Clone + Send + Sync + 'static>(&self) -> Result<(), MissingState> {
        if self.values.contains_key(&TypeId::of::<T>()) {
            Ok(())
        } else {
            Err(MissingState::of::<T>())
        }
    }

    /// Whether the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.values.values().map(|(_, name)| name))
            .finish()
    }
}

/// An activity takes a `#[state]` parameter whose type the worker was not given.
///
/// The attempt fails with [`ActivityError::MissingState`](crate::ActivityError::MissingState)
/// before its body runs:
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::MissingState;
///
/// #[derive(Clone)]
/// struct Db;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn query(ctx: ActivityContext, #[state] db: Db) -> Result<(), ActivityError> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(query, ()).await; // no `Db` given
/// match run.result.unwrap_err() {
///     ActivityError::MissingState(e) => assert_eq!(e, MissingState::of::<Db>()),
///     other => panic!("unexpected {other}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no worker state of type `{type_name}`: add it with `.state(value)` on the worker (or `.with_state(value)` on the test environment)"
)]
#[non_exhaustive]
pub struct MissingState {
    /// The missing type.
    pub type_name: &'static str,
}

impl MissingState {
    /// The error for type `T`.
    pub fn of<T: ?Sized>() -> Self {
        MissingState {
            type_name: std::any::type_name::<T>(),
        }
    }
}
