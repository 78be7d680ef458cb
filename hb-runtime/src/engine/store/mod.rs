//! The engine's SQLite file: its schema and the checks before opening one, the lock that
//! keeps a second process from writing it, the batching writer thread, the SQL of each write,
//! the reads, and the queue of requests other processes leave in it.
//!
//! One writer thread owns the write connection. Writes arrive over a channel; the thread drains
//! every write waiting, applies them in one transaction and commits, then acknowledges them:
//! under load one commit carries thousands of writes. Heartbeat writes for the same activity
//! within one batch coalesce to the newest.
//!
//! Its leaves: `schema` (tables, stamps, upgrades, identity checks), `open` (connections),
//! `lock` (the writer lock file), `writer` (the writer thread and its batching), `apply` (a
//! batch of [`Write`](super::core::Write)s as SQL, in one transaction), `read` (rows for
//! describe, list and recovery) and `requests` (the `requests` table).

mod apply;
mod lock;
mod open;
mod read;
pub(crate) mod requests;
mod schema;
mod writer;

#[cfg(feature = "sim")]
pub(crate) use apply::{HISTORY_KEPT, apply, commit};
pub(crate) use lock::{FileLock, is_locked, lock, lock_path};
pub(crate) use open::{limit_size, open_read, open_write, sync_every_commit};
#[cfg(feature = "dashboard")]
pub(crate) use read::{PageQuery, Summary};
pub(crate) use read::{Reader, Recovered};
// What the simulator reads the file with.
#[cfg(feature = "sim")]
pub(crate) use read::{get_row, open_rows, requests_applied};
pub(crate) use requests::insert_request;
#[cfg(feature = "sim")]
pub(crate) use requests::read_requests;
pub(crate) use schema::init;
pub(crate) use writer::{Writer, heartbeat_commit_within, spawn_writer};
