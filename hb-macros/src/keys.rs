//! Messages for unknown keys: list the valid ones and say which one was probably meant.

/// `unknown option `key` for #[what]; did you mean ...? (expected one of: ...)`.
///
/// `renamed` maps keys people reach for (other SDKs' names, shorter spellings) to what to write
/// instead; anything else close in spelling to a valid key is suggested too.
pub(crate) fn unknown(what: &str, key: &str, valid: &[&str], renamed: &[(&str, &str)]) -> String {
    let list = valid
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match suggestion(key, valid, renamed) {
        Some(hint) => {
            format!("unknown {what} `{key}`; did you mean {hint}? (expected one of: {list})")
        }
        None => format!("unknown {what} `{key}` (expected one of: {list})"),
    }
}

/// What to suggest for `key`, already quoted.
pub(crate) fn suggestion(key: &str, valid: &[&str], renamed: &[(&str, &str)]) -> Option<String> {
    if let Some((_, hint)) = renamed.iter().find(|(k, _)| *k == key) {
        return Some((*hint).to_owned());
    }
    let lower = key.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| v.trim_end_matches("(..)"))
        .map(|v| (distance(&lower, v), v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 5) && *d < v.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| format!("`{v}`"))
}

/// Levenshtein distance (keys are short; quadratic is fine).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[&str] = &["heartbeat_timeout", "name", "retry(..)"];

    #[test]
    fn renamed_keys_win() {
        let renamed = [("heartbeat", "`heartbeat_timeout`")];
        let msg = unknown("option", "heartbeat", VALID, &renamed);
        assert_eq!(
            msg,
            "unknown option `heartbeat`; did you mean `heartbeat_timeout`? \
             (expected one of: `heartbeat_timeout`, `name`, `retry(..)`)"
        );
    }

    #[test]
    fn typos_are_suggested() {
        assert_eq!(
            suggestion("hearbeat_timeout", VALID, &[]).as_deref(),
            Some("`heartbeat_timeout`")
        );
        assert_eq!(suggestion("nmae", VALID, &[]).as_deref(), Some("`name`"));
        assert_eq!(suggestion("retyr", VALID, &[]).as_deref(), Some("`retry`"));
        assert_eq!(
            suggestion("retri", &["retry"], &[]).as_deref(),
            Some("`retry`")
        );
        assert_eq!(suggestion("zzz", VALID, &[]), None);
    }

    #[test]
    fn distance_is_levenshtein() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
