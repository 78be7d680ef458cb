//! The engine's task tokens: `"{id}#{attempt}"`, what a worker reports an attempt by. The
//! attempt number in the token lets the core tell a current attempt's report from the late
//! word of one it has already timed out or retried.

use crate::transport::TaskToken;

/// The task token of attempt `attempt` of `id`.
pub(crate) fn token_of(id: &str, attempt: u32) -> TaskToken {
    TaskToken::new(format!("{id}#{attempt}"))
}

/// Splits a task token into the activity id and the attempt.
pub(crate) fn parse_token(token: &TaskToken) -> Option<(&str, u32)> {
    let s = std::str::from_utf8(token.as_bytes()).ok()?;
    let (id, attempt) = s.rsplit_once('#')?;
    Some((id, attempt.parse().ok()?))
}
