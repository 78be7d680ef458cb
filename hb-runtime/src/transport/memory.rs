//! An in-memory [`Transport`] that records every call: the test kit's backend.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{HeartbeatReply, TaskToken, Transport};
use crate::BoxFuture;
use crate::error::{ActivityError, TransportError, TransportErrorKind};
use crate::payload::Payload;

/// One heartbeat as the backend received it.
///
/// ```
/// use hb_runtime::checkpoint::encode_payload;
/// use hb_runtime::testing::MemoryTransport;
/// use hb_runtime::backend::{TaskToken, Transport};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let t = MemoryTransport::new();
/// let token = TaskToken::new(*b"a1");
/// let details = encode_payload(&3u64).unwrap();
/// t.heartbeat(&token, Some(&details)).await.unwrap();
/// let received = &t.heartbeats()[0];
/// assert_eq!(received.token, token);
/// assert_eq!(received.details, Some(details));
/// assert_eq!(t.last_heartbeat_at(), Some(received.at));
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedHeartbeat {
    /// When it arrived (tokio's clock, so it follows a paused test clock).
    pub at: Instant,
    /// The attempt that sent it.
    pub token: TaskToken,
    /// The encoded checkpoint it carried.
    pub details: Option<Payload>,
}

/// Any call a [`MemoryTransport`] received.
///
/// ```
/// use hb_runtime::prelude::*;
/// use hb_runtime::testing::RecordedCall;
///
/// #[activity(heartbeat_timeout = "10s")]
/// async fn answer(ctx: ActivityContext) -> Result<u64, ActivityError> {
///     Ok(42)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = hb_runtime::testing::ActivityEnvironment::new().run(answer, ()).await;
/// match run.calls.last() {
///     Some(RecordedCall::Completed { output, .. }) => assert_eq!(output.decode::<u64>().unwrap(), 42),
///     other => panic!("unexpected {other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RecordedCall {
    /// A heartbeat.
    Heartbeat(RecordedHeartbeat),
    /// A completion report.
    Completed {
        /// The attempt.
        token: TaskToken,
        /// The encoded output.
        output: Payload,
    },
    /// A failure report.
    Failed {
        /// The attempt.
        token: TaskToken,
        /// The failure.
        error: ActivityError,
        /// The latest checkpoint sent with it.
        last_details: Option<Payload>,
    },
    /// A cancellation report.
    Cancelled {
        /// The attempt.
        token: TaskToken,
        /// The latest checkpoint sent with it.
        details: Option<Payload>,
    },
}

#[derive(Default)]
struct Inner {
    calls: Vec<RecordedCall>,
    heartbeats: usize,
    /// Heartbeats per attempt: scripted replies count each attempt's own.
    per_token: std::collections::HashMap<TaskToken, usize>,
    sticky: HeartbeatReply,
    scripted: Vec<(usize, HeartbeatReply)>,
    unavailable: bool,
    keeps_details: bool,
    checkpoint_interval: Option<Duration>,
    /// The details held per attempt, as the modelled backend would store them.
    stored: std::collections::HashMap<TaskToken, Payload>,
}

impl Inner {
    /// A heartbeat or report of `token` carrying `details`: what the modelled backend keeps.
    fn store(&mut self, token: &TaskToken, details: Option<&Payload>, heartbeat: bool) {
        match details {
            Some(d) => {
                self.stored.insert(token.clone(), d.clone());
            }
            // A backend that does not keep details (Temporal) wipes them on a heartbeat
            // without any.
            None if heartbeat && !self.keeps_details => {
                self.stored.remove(token);
            }
            None => {}
        }
    }
}

/// A backend in memory: records heartbeats and reports, answers with scripted flags.
///
/// ```
/// use hb_runtime::backend::{HeartbeatReply, TaskToken, Transport};
/// use hb_runtime::testing::MemoryTransport;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let t = MemoryTransport::new();
/// t.reply_from(2, HeartbeatReply::cancel());
/// let token = TaskToken::new(*b"a1");
/// assert!(!t.heartbeat(&token, None).await.unwrap().cancel_requested);
/// assert!(t.heartbeat(&token, None).await.unwrap().cancel_requested);
/// assert_eq!(t.heartbeats().len(), 2);
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryTransport {
    inner: Arc<Mutex<Inner>>,
    count: Arc<watch::Sender<usize>>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("MemoryTransport")
            .field("calls", &g.calls.len())
            .field("heartbeats", &g.heartbeats)
            .finish()
    }
}

impl MemoryTransport {
    /// An empty transport that answers every heartbeat with [`HeartbeatReply::ok`].
    pub fn new() -> Self {
        MemoryTransport {
            inner: Arc::default(),
            count: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers every later heartbeat with `reply`.
    ///
    /// ```
    /// use hb_runtime::backend::{HeartbeatReply, TaskToken, Transport};
    /// use hb_runtime::testing::MemoryTransport;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let t = MemoryTransport::new();
    /// t.set_reply(HeartbeatReply::pause());
    /// assert!(t.heartbeat(&TaskToken::new(*b"a1"), None).await.unwrap().paused);
    /// # }
    /// ```
    pub fn set_reply(&self, reply: HeartbeatReply) {
        self.lock().sticky = reply;
    }

    /// Answers heartbeat number `n` (1-based, counted per attempt) and every one after it
    /// with `reply`.
    pub fn reply_from(&self, n: usize, reply: HeartbeatReply) {
        self.lock().scripted.push((n, reply));
    }

    /// Makes heartbeats fail with [`TransportErrorKind::Unavailable`] (or succeed again).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Models a backend that keeps the last details when a heartbeat carries none (the
    /// embedded engine), or one that wipes them (Temporal, the default); see
    /// [`Transport::keeps_details`]. Set it before the attempts start: each reads it once.
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::testing::ActivityEnvironment;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn resumes(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
    ///     tokio::time::sleep(Duration::from_secs(12)).await; // never checkpoints
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let env = ActivityEnvironment::new().with_checkpoint(41u64);
    /// env.transport().set_keeps_details(true);
    /// let run = env.run(resumes, ()).await;
    /// // Liveness only: the backend already holds checkpoint 41, and keeps it.
    /// assert_eq!(run.heartbeats.len(), 2);
    /// assert!(run.heartbeats.iter().all(|h| h.details.is_none()));
    /// let token = hb_runtime::backend::TaskToken::new(*b"test-activity#1");
    /// let held = env.transport().details_of(&token).unwrap();
    /// assert_eq!(hb_runtime::checkpoint::decode_payload::<u64>(&held).unwrap(), 41);
    /// # }
    /// ```
    pub fn set_keeps_details(&self, keeps: bool) {
        self.lock().keeps_details = keeps;
    }

    /// Makes the pump persist changed checkpoints every `interval` (`None`: with heartbeats
    /// only, the default); see [`Transport::checkpoint_interval`]. Set it before the attempts
    /// start: each reads it once.
    ///
    /// ```
    /// use hb_runtime::prelude::*;
    /// use hb_runtime::testing::ActivityEnvironment;
    /// use std::time::Duration;
    ///
    /// #[activity(heartbeat_timeout = "10s")]
    /// async fn steps(ctx: ActivityContext, #[checkpoint] mut n: u64) -> Result<(), ActivityError> {
    ///     for _ in 0..3 {
    ///         tokio::time::sleep(Duration::from_millis(200)).await;
    ///         n += 1;
    ///         ctx.checkpoint(&n)?;
    ///     }
    ///     tokio::time::sleep(Duration::from_secs(6)).await; // then nothing changes
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let env = ActivityEnvironment::new();
    /// env.transport().set_checkpoint_interval(Some(Duration::from_millis(500)));
    /// let run = env.run(steps, ()).await;
    /// let sent: Vec<_> = run.heartbeats.iter().map(|h| (h.at.as_millis(), h.checkpoint)).collect();
    /// // Each change within half a second; then one liveness heartbeat 5 s after the last.
    /// assert_eq!(sent, [(500, Some(2)), (1000, Some(3)), (6000, Some(3))]);
    /// # }
    /// ```
    pub fn set_checkpoint_interval(&self, interval: Option<Duration>) {
        self.lock().checkpoint_interval = interval;
    }

    /// The details the modelled backend holds for attempt `token`: the last ones a heartbeat
    /// or report of it carried (or [`set_details_of`](Self::set_details_of) put there). A
    /// heartbeat without details wipes them unless [`set_keeps_details`](Self::set_keeps_details)
    /// is on; a report without details keeps them.
    pub fn details_of(&self, token: &TaskToken) -> Option<Payload> {
        self.lock().stored.get(token).cloned()
    }

    /// Puts `details` in the modelled backend for attempt `token`, as a previous attempt or a
    /// heartbeat from another process would have left them (the test kit does this with the
    /// checkpoint it injects).
    pub fn set_details_of(&self, token: &TaskToken, details: Option<Payload>) {
        let mut g = self.lock();
        match details {
            Some(d) => {
                g.stored.insert(token.clone(), d);
            }
            None => {
                g.stored.remove(token);
            }
        }
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    /// Every heartbeat received, in order.
    pub fn heartbeats(&self) -> Vec<RecordedHeartbeat> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                RecordedCall::Heartbeat(h) => Some(h.clone()),
                _ => None,
            })
            .collect()
    }

    /// When the last heartbeat of attempt `token` arrived.
    pub fn last_heartbeat_of(&self, token: &TaskToken) -> Option<Instant> {
        self.lock().calls.iter().rev().find_map(|c| match c {
            RecordedCall::Heartbeat(h) if &h.token == token => Some(h.at),
            _ => None,
        })
    }

    /// When the last heartbeat (of any attempt) arrived.
    pub fn last_heartbeat_at(&self) -> Option<Instant> {
        self.lock().calls.iter().rev().find_map(|c| match c {
            RecordedCall::Heartbeat(h) => Some(h.at),
            _ => None,
        })
    }

    /// The number of heartbeats received so far.
    pub fn heartbeat_count(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until at least `n` heartbeats arrived, or `timeout` passed (then `false`).
    pub async fn wait_for_heartbeats(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A receiver of the heartbeat count, to wait on any number of heartbeats.
    ///
    /// ```
    /// use hb_runtime::testing::MemoryTransport;
    /// use hb_runtime::backend::{TaskToken, Transport};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let t = MemoryTransport::new();
    /// let mut count = t.subscribe();
    /// t.heartbeat(&TaskToken::new(*b"a1"), None).await.unwrap();
    /// count.changed().await.unwrap();
    /// assert_eq!(*count.borrow(), 1);
    /// # }
    /// ```
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    fn push(&self, call: RecordedCall) {
        self.lock().calls.push(call);
    }
}

impl Transport for MemoryTransport {
    fn heartbeat<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        let result = {
            let mut g = self.lock();
            if g.unavailable {
                Err(TransportError::new(
                    TransportErrorKind::Unavailable,
                    "memory transport set unavailable",
                ))
            } else {
                g.heartbeats += 1;
                let total = g.heartbeats;
                let n = {
                    let c = g.per_token.entry(token.clone()).or_insert(0);
                    *c += 1;
                    *c
                };
                g.store(token, details, true);
                g.calls.push(RecordedCall::Heartbeat(RecordedHeartbeat {
                    at: Instant::now(),
                    token: token.clone(),
                    details: details.cloned(),
                }));
                let reply = g
                    .scripted
                    .iter()
                    .rev()
                    .find(|(from, _)| n >= *from)
                    .map(|(_, r)| *r)
                    .unwrap_or(g.sticky);
                Ok((total, reply))
            }
        };
        Box::pin(async move {
            let (total, reply) = result?;
            self.count.send_replace(total);
            Ok(reply)
        })
    }

    fn complete<'a>(
        &'a self,
        token: &'a TaskToken,
        output: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.push(RecordedCall::Completed {
            token: token.clone(),
            output,
        });
        Box::pin(async { Ok(()) })
    }

    fn fail<'a>(
        &'a self,
        token: &'a TaskToken,
        error: &'a ActivityError,
        last_details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        {
            let mut g = self.lock();
            g.store(token, last_details, false);
            g.calls.push(RecordedCall::Failed {
                token: token.clone(),
                error: error.clone(),
                last_details: last_details.cloned(),
            });
        }
        Box::pin(async { Ok(()) })
    }

    fn cancelled<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        {
            let mut g = self.lock();
            g.store(token, details, false);
            g.calls.push(RecordedCall::Cancelled {
                token: token.clone(),
                details: details.cloned(),
            });
        }
        Box::pin(async { Ok(()) })
    }

    fn keeps_details(&self) -> bool {
        self.lock().keeps_details
    }

    fn checkpoint_interval(&self) -> Option<Duration> {
        self.lock().checkpoint_interval
    }
}
