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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_splits_back_into_its_id_and_attempt_whatever_the_id_holds() {
        for (id, attempt) in [("job", 1), ("a#b", 7), ("", 0), ("ü#", u32::MAX)] {
            let token = token_of(id, attempt);
            assert_eq!(
                parse_token(&token),
                Some((id, attempt)),
                "{id:?} #{attempt}"
            );
        }
        assert_eq!(
            token_of("job", 3).as_bytes(),
            b"job#3",
            "the format other tools see"
        );
        for bad in [
            &b"job"[..],
            b"job#",
            b"job#x",
            b"job#-1",
            b"job#4294967296",
            b"\xff#1",
        ] {
            assert_eq!(parse_token(&TaskToken::new(bad.to_vec())), None, "{bad:?}");
        }
    }
}
