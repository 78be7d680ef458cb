//! Formatting shared by the commands: safe text, ages, times, progress, checkpoints, tables.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hb_runtime::client::{ActivityFailure, Description};
use hb_runtime::{Payload, Progress};

/// `s` safe to print on a terminal: control characters (escape sequences, newlines, ...) are
/// shown escaped, since ids, types and messages come from the file, not from us.
pub(crate) fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters of `s` (cleaned), with an ellipsis when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let s = clean(s);
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A short duration: `850ms`, `4.2s`, `3m05s`, `2h10m`, `3d04h`.
pub(crate) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.subsec_millis())
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600)
    }
}

/// How long ago `t` was (`4.2s ago`); `in 3s` for a time ahead (a clock skew or a due time).
pub(crate) fn ago(t: SystemTime, now: SystemTime) -> String {
    match now.duration_since(t) {
        Ok(d) => format!("{} ago", duration(d)),
        Err(e) => format!("in {}", duration(e.duration())),
    }
}

/// `t` as an RFC 3339 UTC time with how long ago it was.
pub(crate) fn time(t: SystemTime, now: SystemTime) -> String {
    // humantime cannot write years past 9999 (its Display would fail): show those raw.
    const YEAR_10000: u64 = 253_402_300_800;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() < YEAR_10000 => {
            format!("{} ({})", humantime::format_rfc3339_millis(t), ago(t, now))
        }
        Ok(d) => format!("{} ms after 1970 (out of range)", d.as_millis()),
        Err(_) => "before 1970 (out of range)".to_owned(),
    }
}

/// `3/10 (30%)`, `3/?`, or `-`.
pub(crate) fn progress(p: Option<Progress>) -> String {
    match p {
        None => "-".to_owned(),
        Some(p) => match (p.total, p.fraction()) {
            (Some(t), Some(f)) => format!("{}/{} ({:.0}%)", p.done, t, f * 100.0),
            (Some(t), None) => format!("{}/{}", p.done, t),
            (None, _) => format!("{}/?", p.done),
        },
    }
}

/// The state, with a pending cancel shown.
pub(crate) fn state(d: &Description) -> String {
    if d.cancel_requested && !d.status.is_closed() {
        format!("{} (cancelling)", d.status)
    } else {
        d.status.to_string()
    }
}

/// The checkpoint's JSON, pretty-printed, indented by `indent`. Unless `raw`, the envelope hb
/// adds (`_hb_v`, `_hb_p`, `_hb_value`) is taken off, so the user's own value shows. Returns the
/// text and the envelope's version, if any.
pub(crate) fn checkpoint(payload: &Payload, raw: bool, indent: &str) -> (String, Option<u64>) {
    let data = payload.data();
    let Some((user, version)) = hb_runtime::checkpoint::user_value(payload) else {
        let text = String::from_utf8_lossy(data);
        return (
            format!(
                "{indent}(not JSON, {} bytes) {}",
                data.len(),
                clip(&text, 2000)
            ),
            None,
        );
    };
    let value = match raw {
        // As stored: it parsed as JSON just now.
        true => serde_json::from_slice(data).unwrap_or(user),
        false => user,
    };
    let pretty = serde_json::to_string_pretty(&value).unwrap_or_else(|_| clean(&value.to_string()));
    let mut out = String::new();
    for (i, line) in pretty.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(indent);
        // serde_json escapes control characters inside strings; keys and values are safe.
        out.push_str(&clean(line));
    }
    (out, version)
}

/// The failure as lines: what it was, then its cause for an exhausted retry.
pub(crate) fn failure(f: &ActivityFailure, out: &mut String, indent: &str) {
    let _ = match f {
        ActivityFailure::Application {
            error_type,
            message,
            non_retryable,
            ..
        } => writeln!(
            out,
            "{indent}{}: {} ({})",
            clean(error_type),
            // Messages often start with their type already.
            clean(
                message
                    .strip_prefix(error_type.as_str())
                    .and_then(|m| m.strip_prefix(": "))
                    .unwrap_or(message)
            ),
            if *non_retryable {
                "non-retryable"
            } else {
                "retryable"
            }
        ),
        ActivityFailure::Timeout { kind, .. } => writeln!(out, "{indent}{kind} timeout"),
        ActivityFailure::Cancelled { .. } => writeln!(out, "{indent}cancelled"),
        ActivityFailure::RetriesExhausted { attempts, last } => {
            let _ = writeln!(
                out,
                "{indent}retries exhausted after {attempts} attempts; the last failed with:"
            );
            failure(last, out, &format!("{indent}  "));
            Ok(())
        }
        other => writeln!(out, "{indent}{}", clean(&other.to_string())),
    };
}

/// A plain table: a header row and columns padded to their widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(clean("plain é"), "plain é");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(7800)), "2h10m");
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d04h"
        );
    }

    #[test]
    fn times_out_of_range_do_not_panic() {
        let now = SystemTime::now();
        let far = UNIX_EPOCH + Duration::from_millis(i64::MAX as u64);
        assert!(time(far, now).contains("out of range"));
        assert!(time(UNIX_EPOCH, now).starts_with("1970-01-01T00:00:00"));
    }

    #[test]
    fn the_envelope_is_taken_off_the_checkpoint() {
        let p = Payload::from_json_bytes(br#"{"_hb_v":2,"_hb_p":[3,10],"next":3}"#.to_vec());
        let (text, version) = checkpoint(&p, false, "  ");
        assert_eq!(text, "  {\n    \"next\": 3\n  }");
        assert_eq!(version, Some(2));
        let p = Payload::from_json_bytes(br#"{"_hb_v":1,"_hb_value":41}"#.to_vec());
        assert_eq!(checkpoint(&p, false, "").0, "41");
        let p = Payload::from_json_bytes(b"\x1b[2Jnot json".to_vec());
        assert!(
            checkpoint(&p, false, "")
                .0
                .contains("(not JSON, 12 bytes) \\u{1b}[2J")
        );
    }

    #[test]
    fn tables_pad_columns() {
        let mut t = Table::new(&["ID", "STATE"]);
        t.row(vec!["a-long-id".into(), "running".into()]);
        assert_eq!(t.render(), "ID         STATE\na-long-id  running\n");
    }
}
