//! Requests other processes queue in the engine file (`hb cancel`, heartbeats by task
//! token): applied as the engine's own cancels and heartbeats are, and deleted once what
//! they did is stored.

use tokio::sync::oneshot;

use super::cancel::Stored;
use super::{Core, Effects, Write, parse_token};
use crate::client::ActivityFailure;
use crate::payload::Payload;
use crate::transport::TaskToken;

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
    pub(crate) fn request(&mut self, request: super::super::store::Request, fx: &mut Effects) {
        let seq = request.seq;
        match (
            request.kind.as_str(),
            request.activity_id,
            request.task_token,
        ) {
            ("cancel", Some(id), _) => {
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
            ("heartbeat", _, Some(token)) => {
                if seq <= self.requests_applied {
                    // A newer heartbeat request was applied already (this one's delete
                    // failed): applied now, it would put an older checkpoint back.
                    fx.writes.push((Write::DeleteRequest { seq }, None));
                    return;
                }
                let token = TaskToken::new(token.into_bytes());
                let details = request.details.map(Payload::from_json_bytes);
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
            (other, ..) => {
                tracing::warn!(kind = other, "ignoring an unknown queued request");
                fx.writes.push((Write::DeleteRequest { seq }, None));
            }
        }
    }
}
