//! Task tokens from outside (`Client::heartbeat`, `request_heartbeat`, the `requests` table):
//! parsing any bytes gives an (activity id, attempt) or nothing, never a panic.
//!
//! The engine makes a token as `"{id}#{attempt}"` (`engine::core::token_of`, not reachable from
//! here, so its format is restated below; `engine_file` checks a real engine's token against
//! it once). Checked: whatever parses was of that shape, the token made from what it parsed
//! to parses back the same, and a token made from any id and attempt parses back to them.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use hb_runtime::backend::TaskToken;
use hb_runtime::engine::__fuzz::parse_task_token;
use libfuzzer_sys::fuzz_target;

/// The engine's format (`engine::core::token_of`).
fn token_of(id: &str, attempt: u32) -> Vec<u8> {
    format!("{id}#{attempt}").into_bytes()
}

fuzz_target!(|data: &[u8]| {
    // Display is lower-case hex, two digits a byte.
    let shown = TaskToken::new(data).to_string();
    assert_eq!(shown.len(), 2 * data.len());

    if let Some((id, attempt)) = parse_task_token(data) {
        let text = std::str::from_utf8(data).expect("a parsed token is UTF-8");
        let (prefix, number) = text.rsplit_once('#').expect("a parsed token has a '#'");
        assert_eq!(prefix, id);
        assert_eq!(number.parse::<u32>().ok(), Some(attempt));
        // Not always the same bytes ("x#+7", "x#007" parse too), but the same meaning.
        assert_eq!(
            parse_task_token(&token_of(&id, attempt)),
            Some((id, attempt))
        );
    } else if let Ok(text) = std::str::from_utf8(data) {
        // Refused only when it cannot be a token.
        let attempt = text.rsplit_once('#').map(|(_, n)| n.parse::<u32>());
        assert!(
            !matches!(attempt, Some(Ok(_))),
            "{text:?} refused though it ends in #<attempt>"
        );
    }

    let mut u = Unstructured::new(data);
    if let (Ok(id), Ok(attempt)) = (String::arbitrary(&mut u), u32::arbitrary(&mut u)) {
        assert_eq!(
            parse_task_token(&token_of(&id, attempt)),
            Some((id, attempt))
        );
    }
});
