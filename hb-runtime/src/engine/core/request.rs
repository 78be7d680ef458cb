//! Requests other processes queue in the engine file (`hb cancel`, `hb pause`, `hb unpause`,
//! `hb reset`, heartbeats by task token): applied as the engine's own cancels and heartbeats are, and deleted once what
//! they did is stored. They reach the core typed ([`Request`]); how one is written in the
//! file is the store's business alone (`store::requests`).

use tokio::sync::oneshot;

use super::cancel::Stored;
use super::{Core, Effects, Operated, Operation, Write, parse_token};
use crate::client::ActivityFailure;
use crate::payload::Payload;
use crate::transport::TaskToken;

/// What another process asks of the engine through its file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// Cancel activity `id` (`hb cancel`, `engine::request_cancel`).
    Cancel { id: String },
    /// Pause, unpause or reset activity `id` (`hb pause`, `engine::request_pause`, ...).
    Operate { id: String, op: Operation },
    /// A heartbeat of attempt `token`, with `details` as its checkpoint when given
    /// (`engine::request_heartbeat`).
    Heartbeat {
        token: TaskToken,
        details: Option<Payload>,
    },
}

/// A row of the file's request queue: its place in the queue, and its request, or `None` for
/// a row this build cannot apply (a kind it does not know, as a newer build may write, or a
/// field missing or of the wrong type). The store warns of such a row when it reads it; the
/// core deletes it, as it deletes every request once applied.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) seq: i64,
    pub(crate) request: Option<Request>,
}

impl Core {
    /// Deletes the cancel requests whose cancels are stored now (checked before each round of
    /// requests).
    pub(crate) fn requests_stored(&mut self, fx: &mut Effects) {
        self.cancels_stored.retain_mut(|(seq, stored)| {
            let done = match stored {
                Stored::Closed(rx) => match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => return true,
                    Ok(c) => !matches!(c.failure, Some(ActivityFailure::Backend(_))),
                    Err(_) => false,
                },
                Stored::Written(rx) => match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => return true,
                    r => matches!(r, Ok(Ok(_))),
                },
                Stored::Now => true,
            };
            if done {
                fx.writes.push((Write::DeleteRequest { seq: *seq }, None));
            }
            false
        });
    }

    /// Applies a request another process queued in the file, and deletes it.
    pub(crate) fn request(&mut self, queued: Queued, fx: &mut Effects) {
        let Queued { seq, request } = queued;
        match request {
            Some(Request::Cancel { id }) => {
                if self.cancels_stored.iter().any(|(s, _)| *s == seq) {
                    return; // applied; its delete waits for the cancel to be stored
                }
                match self.cancel(&id, fx) {
                    // Deleted once the cancel is stored: a failed write leaves the request in
                    // the file, to be applied again (a cancel is idempotent).
                    Some((_, stored @ (Stored::Closed(_) | Stored::Written(_)))) => {
                        self.cancels_stored.push((seq, stored));
                    }
                    _ => fx.writes.push((Write::DeleteRequest { seq }, None)),
                }
            }
            Some(Request::Operate { id, op }) => {
                if self.cancels_stored.iter().any(|(s, _)| *s == seq) {
                    return; // applied; its delete waits for what it did to be stored
                }
                match self.operate(&id, op, fx) {
                    Operated::Stored(rx) => self.cancels_stored.push((seq, Stored::Written(rx))),
                    // Whoever queued it is gone: say it here.
                    Operated::NotAllowed(status) => {
                        tracing::warn!(seq, activity_id = %id, operation = op.name(), %status, "a queued request does not apply to the activity in its status; it is deleted");
                        fx.writes.push((Write::DeleteRequest { seq }, None));
                    }
                    Operated::NotOpen => {
                        tracing::warn!(seq, activity_id = %id, operation = op.name(), "a queued request names no open activity; it is deleted");
                        fx.writes.push((Write::DeleteRequest { seq }, None));
                    }
                }
            }
            Some(Request::Heartbeat { token, details }) => {
                if seq <= self.requests_applied {
                    // A newer heartbeat request was applied already (this one's delete
                    // failed): applied now, it would put an older checkpoint back.
                    fx.writes.push((Write::DeleteRequest { seq }, None));
                    return;
                }
                if let Ok((
                    _,
                    Some(Write::Heartbeat {
                        id, details, at, ..
                    }),
                )) = self.heartbeat(&token, details.as_ref())
                {
                    // Stored with the request's deletion, in one write.
                    self.requests_applied = seq;
                    fx.writes.push((
                        Write::RequestHeartbeat {
                            id,
                            details,
                            at,
                            seq,
                        },
                        None,
                    ));
                } else {
                    fx.writes.push((Write::DeleteRequest { seq }, None));
                }
                // Recorded once per attempt: a reopen leaves this attempt to its timeout.
                if let Some((id, attempt)) = parse_token(&token)
                    && let Some(live) = self.live.get_mut(id)
                    && live.is_current(attempt)
                    && !live.external
                {
                    live.external = true;
                    fx.writes.push((
                        Write::External {
                            id: live.id.clone(),
                            attempt,
                        },
                        None,
                    ));
                }
            }
            // Unreadable: the store warned of it as it read it.
            None => fx.writes.push((Write::DeleteRequest { seq }, None)),
        }
    }
}
