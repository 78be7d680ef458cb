//! Where the dashboard reads and acts: the engine of its own process (reads through the
//! engine's reader and live state, actions through its client, changes pushed), or an engine
//! file another process has open (reads through an [`Inspector`], actions queued in the file
//! as `hb cancel` queues them, changes polled).

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::ChangeSignal;
use crate::client::{ActivityClient, ActivityStatus, ClientError, Description, ResetOptions};
use crate::engine::{
    Client, EngineError, Inspector, PageQuery, request_cancel, request_pause, request_reset,
    request_unpause,
};
use crate::payload::Payload;

/// What an action button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Cancel,
    Pause,
    Unpause,
    Reset { clear_checkpoint: bool },
}

impl Action {
    pub(super) fn parse(name: &str, clear_checkpoint: bool) -> Option<Action> {
        Some(match name {
            "cancel" => Action::Cancel,
            "pause" => Action::Pause,
            "unpause" => Action::Unpause,
            "reset" => Action::Reset { clear_checkpoint },
            _ => return None,
        })
    }

    /// Why the action does not apply to an activity in `status` (the engine's rules), if it
    /// does not.
    pub(super) fn refused_in(self, status: ActivityStatus) -> Option<String> {
        let applies = match self {
            _ if status.is_closed() => false,
            Action::Pause => status != ActivityStatus::Paused,
            Action::Unpause => status == ActivityStatus::Paused,
            Action::Cancel | Action::Reset { .. } => true,
        };
        (!applies).then(|| format!("it is {status}"))
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Pause => "pause",
            Action::Unpause => "unpause",
            Action::Reset { .. } => "reset",
        }
    }
}

/// How an action went.
#[derive(Debug)]
pub(super) enum Acted {
    /// The engine stored it.
    Done,
    /// Queued in the file, for the engine that has it open (or the next to open it).
    Queued,
}

pub(super) use crate::engine::Summary;

pub(super) enum Source {
    Engine(Client),
    File {
        path: PathBuf,
        inspector: Arc<Inspector>,
    },
}

/// How many activity types the filter offers at most.
const TYPES_SHOWN: usize = 200;

impl Source {
    /// Runs a read of the file off the async threads.
    async fn blocking<T: Send + 'static>(
        inspector: &Arc<Inspector>,
        f: impl FnOnce(&Inspector) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, String> {
        let inspector = inspector.clone();
        match tokio::task::spawn_blocking(move || f(&inspector)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    pub(super) async fn page(&self, q: PageQuery) -> Result<Vec<Description>, String> {
        match self {
            Source::Engine(c) => c.page(q).await.map_err(|e| e.to_string()),
            Source::File { inspector, .. } => Self::blocking(inspector, move |i| i.page(&q)).await,
        }
    }

    pub(super) async fn summary(&self) -> Result<Summary, String> {
        match self {
            Source::Engine(c) => c.summary(TYPES_SHOWN).await.map_err(|e| e.to_string()),
            Source::File { inspector, .. } => {
                Self::blocking(inspector, |i| i.summary(TYPES_SHOWN)).await
            }
        }
    }

    /// Activity `id` with its attempts (and its input, when `with_input`); `None` when there is
    /// no such activity.
    pub(super) async fn describe(
        &self,
        id: &str,
        with_input: bool,
    ) -> Result<Option<(Description, Option<Payload>)>, String> {
        let owned = id.to_owned();
        let (d, row) = match self {
            Source::Engine(c) => {
                let d = match c.describe(id).await {
                    Ok(d) => d,
                    Err(ClientError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.to_string()),
                };
                let row = match with_input {
                    true => c.row(id).await.map_err(|e| e.to_string())?,
                    false => None,
                };
                (d, row)
            }
            Source::File { inspector, .. } => {
                let found = Self::blocking(inspector, move |i| match i.get(&owned) {
                    Ok(d) if with_input => Ok(Some((d, i.row(&owned)?))),
                    Ok(d) => Ok(Some((d, None))),
                    Err(EngineError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                })
                .await?;
                match found {
                    Some(found) => found,
                    None => return Ok(None),
                }
            }
        };
        let input = row.map(|r| Payload::from_json_bytes(r.input));
        Ok(Some((d, input)))
    }

    pub(super) async fn act(&self, id: &str, action: Action) -> Result<Acted, String> {
        match self {
            Source::Engine(c) => {
                let done = match action {
                    Action::Cancel => c.cancel(id).await,
                    Action::Pause => c.pause(id).await,
                    Action::Unpause => c.unpause(id).await,
                    Action::Reset { clear_checkpoint } => {
                        c.reset(id, reset(clear_checkpoint)).await
                    }
                };
                done.map(|()| Acted::Done).map_err(|e| e.to_string())
            }
            Source::File { path, .. } => {
                // As `hb cancel` and the others do: what does not apply is refused here, with
                // why, instead of being queued for the engine to drop.
                let status = match self.describe(id, false).await? {
                    None => return Err(format!("no activity with id `{id}`")),
                    Some((d, _)) => d.status,
                };
                if let Some(why) = action.refused_in(status) {
                    return Err(why);
                }
                let (path, id) = (path.clone(), id.to_owned());
                tokio::task::spawn_blocking(move || match action {
                    Action::Cancel => request_cancel(&path, &id),
                    Action::Pause => request_pause(&path, &id),
                    Action::Unpause => request_unpause(&path, &id),
                    Action::Reset { clear_checkpoint } => {
                        request_reset(&path, &id, reset(clear_checkpoint))
                    }
                })
                .await
                .map_err(|e| e.to_string())?
                .map(|()| Acted::Queued)
                .map_err(|e| e.to_string())
            }
        }
    }

    /// A signal on each change of `id`, where the engine pushes them (in its own process).
    pub(super) fn signal(&self, id: &str) -> Option<ChangeSignal> {
        match self {
            Source::Engine(c) => crate::backend::ClientBackend::watch_signal(c, id),
            Source::File { .. } => None,
        }
    }

    /// Whether an engine has the file open.
    pub(super) fn engine_running(&self) -> bool {
        match self {
            Source::Engine(c) => !c.engine_closed(),
            Source::File { inspector, .. } => inspector.engine_running(),
        }
    }

    /// What the page header names as its source.
    pub(super) fn label(&self) -> String {
        match self {
            Source::Engine(c) => c.engine_path().display().to_string(),
            Source::File { path, .. } => path.display().to_string(),
        }
    }
}

fn reset(clear_checkpoint: bool) -> ResetOptions {
    if clear_checkpoint {
        ResetOptions::new().clear_checkpoint()
    } else {
        ResetOptions::new()
    }
}
