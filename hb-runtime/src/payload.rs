//! Temporal-compatible payloads: `metadata.encoding = "json/plain"` and JSON bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The encoding hb writes and reads: Temporal's JSON payload converter.
pub const JSON_PLAIN: &str = "json/plain";

/// One value as Temporal carries it: metadata (`encoding` above all) and bytes.
///
/// hb stores and sends the same bytes on every backend, so a Python, Go or TypeScript caller
/// decodes an hb activity's input, output and heartbeat details with its own JSON converter.
///
/// ```
/// let p = hb_runtime::Payload::json(&serde_json::json!({"next": 3})).unwrap();
/// assert_eq!(p.encoding(), Some("json/plain"));
/// assert_eq!(p.data(), br#"{"next":3}"#);
/// ```
///
/// Cloning is cheap: the bytes are shared (reference-counted), so a heartbeat's details held by
/// the pump, the backend and a pending write are one buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    /// `None` stands for the one entry `encoding = json/plain`: heartbeats are frequent and a
    /// map per payload would cost more than the checkpoint itself.
    #[allow(clippy::box_collection)] // one pointer in the common case, not a map's three words
    metadata: Option<Box<BTreeMap<String, Vec<u8>>>>,
    data: Bytes,
}

impl Payload {
    /// A payload from raw parts.
    ///
    /// ```
    /// use hb_runtime::Payload;
    /// use std::collections::BTreeMap;
    ///
    /// let metadata = BTreeMap::from([("encoding".to_owned(), b"binary/plain".to_vec())]);
    /// let p = Payload::new(metadata, vec![1, 2, 3]);
    /// assert_eq!(p.encoding(), Some("binary/plain"));
    /// let (metadata, data) = p.into_parts();
    /// assert_eq!((metadata.len(), data), (1, vec![1, 2, 3]));
    /// ```
    pub fn new(metadata: BTreeMap<String, Vec<u8>>, data: Vec<u8>) -> Self {
        let only_json = metadata.len() == 1
            && metadata.get("encoding").map(Vec::as_slice) == Some(JSON_PLAIN.as_bytes());
        Payload {
            metadata: (!only_json).then(|| Box::new(metadata)),
            data: Bytes::from(data),
        }
    }

    /// A `json/plain` payload holding `data`, which must already be JSON.
    pub fn from_json_bytes(data: Vec<u8>) -> Self {
        Payload {
            metadata: None,
            data: Bytes::from(data),
        }
    }

    /// A `json/plain` payload over bytes already shared.
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    pub(crate) fn from_json_shared(data: Bytes) -> Self {
        Payload {
            metadata: None,
            data,
        }
    }

    /// The data as shared bytes (a clone is a reference count).
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    pub(crate) fn shared_data(&self) -> &Bytes {
        &self.data
    }

    /// Serialises `value` to a `json/plain` payload.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(Self::from_json_bytes)
    }

    /// Decodes the payload's JSON into `T`.
    ///
    /// ```
    /// use hb_runtime::Payload;
    ///
    /// let p = Payload::from_json_bytes(br#"{"id":7,"tags":["a"]}"#.to_vec());
    /// let v: serde_json::Value = p.decode().unwrap();
    /// assert_eq!(v["id"], 7);
    /// assert!(p.decode::<u64>().is_err());
    /// ```
    ///
    /// The error names the field and the position, never the value: see [`DecodeError`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        decode_json(&self.data)
    }

    /// The `encoding` metadata entry, if it is UTF-8.
    pub fn encoding(&self) -> Option<&str> {
        match &self.metadata {
            None => Some(JSON_PLAIN),
            Some(m) => m.get("encoding").and_then(|e| std::str::from_utf8(e).ok()),
        }
    }

    /// The metadata map.
    pub fn metadata(&self) -> Cow<'_, BTreeMap<String, Vec<u8>>> {
        match &self.metadata {
            Some(m) => Cow::Borrowed(&**m),
            None => Cow::Owned(BTreeMap::from([(
                "encoding".to_owned(),
                JSON_PLAIN.as_bytes().to_vec(),
            )])),
        }
    }

    /// The payload bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Splits the payload into metadata and data.
    pub fn into_parts(self) -> (BTreeMap<String, Vec<u8>>, Vec<u8>) {
        (self.metadata().into_owned(), Vec::from(self.data))
    }

    /// The size of the data in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the data is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Payload");
        d.field("encoding", &self.encoding().unwrap_or("?"));
        match std::str::from_utf8(&self.data) {
            Ok(s) if s.len() <= 256 => d.field("data", &s),
            Ok(s) => d.field(
                "data",
                &format_args!(
                    "{}… ({} bytes)",
                    &s[..s.floor_char_boundary_compat(256)],
                    s.len()
                ),
            ),
            Err(_) => d.field("data", &format_args!("<{} bytes>", self.data.len())),
        };
        d.finish()
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// JSON that does not decode into its type, described without the values it holds.
///
/// serde's own messages quote the offending value (`invalid type: string "hunter2", expected
/// u64`), and inputs and checkpoints can hold secrets. This error keeps what locates the fault:
/// the type, the path of the field, the position in the bytes, and the reason with any quoted
/// value cut out. Its `Display`, which hb's logs and failure messages use, never shows a value;
/// [`DecodeError::unredacted`] gives serde's full message to code that chooses to show it.
///
/// ```
/// use hb_runtime::Payload;
///
/// #[derive(serde::Deserialize, Debug)]
/// struct Login { user: String, pin: u32 }
///
/// let p = Payload::from_json_bytes(br#"{"user":"ada","pin":"hunter2"}"#.to_vec());
/// let err = p.decode::<Login>().unwrap_err();
/// assert_eq!(err.path, "pin");
/// assert_eq!(err.reason, "invalid type: string, expected u32");
/// assert!(!err.to_string().contains("hunter2"));
/// assert!(err.unredacted().contains("hunter2"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode `{type_name}` at {}{}: {reason}", display_path(path), display_position(*line, *column))]
#[non_exhaustive]
pub struct DecodeError {
    /// The Rust type decoded into.
    pub type_name: &'static str,
    /// Where in the value the fault is: `items[2].name` (empty for the value itself). Map keys
    /// are written as the input has them; an unknown field's own key is left out.
    pub path: String,
    /// The line of the fault in the JSON bytes (1-based; 0 when decoded from a parsed value).
    pub line: usize,
    /// The column of the fault in the JSON bytes (1-based; 0 when decoded from a parsed value).
    pub column: usize,
    /// What is wrong, with every quoted value cut out.
    pub reason: String,
    unredacted: String,
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

fn display_position(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" (line {line}, column {column})")
    }
}

impl DecodeError {
    /// Where and why, without the type: `at items[2] (line 1, column 9): invalid type: string,
    /// expected u64`.
    pub(crate) fn where_and_why(&self) -> String {
        format!(
            "at {}{}: {}",
            display_path(&self.path),
            display_position(self.line, self.column),
            self.reason
        )
    }

    /// serde's message as it was, values included. For code that chooses to show it (a debug
    /// build, a developer's terminal); hb itself never logs it.
    pub fn unredacted(&self) -> &str {
        &self.unredacted
    }

    fn new<T>(path: Option<&serde_path_to_error::Path>, e: &serde_json::Error) -> Self {
        use serde_path_to_error::Segment;
        use std::fmt::Write as _;
        let full = e.to_string();
        // serde_json appends the position; it is kept apart.
        let message = match full.rfind(" at line ") {
            Some(at) if e.line() > 0 => &full[..at],
            _ => &full[..],
        };
        let mut segments: Vec<&Segment> = path.into_iter().flat_map(|p| p.iter()).collect();
        if message.starts_with("unknown field ") {
            // The last segment is the unknown key itself: input, not the type's.
            segments.pop();
        }
        let mut shown = String::new();
        for segment in segments {
            let _ = match segment {
                Segment::Seq { index } => write!(shown, "[{index}]"),
                Segment::Map { key } if shown.is_empty() => write!(shown, "{key}"),
                Segment::Map { key } => write!(shown, ".{key}"),
                Segment::Enum { variant } if shown.is_empty() => write!(shown, "{variant}"),
                Segment::Enum { variant } => write!(shown, ".{variant}"),
                Segment::Unknown => write!(shown, "?"),
            };
        }
        DecodeError {
            type_name: std::any::type_name::<T>(),
            path: shown,
            line: e.line(),
            column: e.column(),
            reason: redact(message, e.classify()),
            unredacted: full,
        }
    }
}

/// Decodes JSON bytes into `T`. On failure only, decodes again to learn the path of the fault:
/// a success costs what `serde_json::from_slice` costs.
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|first| {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Err(e) => DecodeError::new::<T>(Some(e.path()), e.inner()),
            // Cannot happen (the same bytes, the same type); keep the first error.
            Ok(_) => DecodeError::new::<T>(None, &first),
        }
    })
}

/// Decodes a parsed JSON value into `T`, like [`decode_json`].
pub(crate) fn decode_value<T: DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, DecodeError> {
    T::deserialize(value).map_err(
        |first| match serde_path_to_error::deserialize::<_, T>(value) {
            Err(e) => DecodeError::new::<T>(Some(e.path()), e.inner()),
            Ok(_) => DecodeError::new::<T>(None, &first),
        },
    )
}

/// serde's message with the values it quotes cut out.
///
/// serde quotes an input's value in backticks or double quotes before `, expected`
/// (`invalid type: string "x", expected u64`, `unknown variant `x`, expected one of ...`);
/// what follows `expected` comes from the type and stays, and so do the names of missing and
/// duplicate fields (the type's own; an unknown field's name comes from the input and goes).
/// Syntax errors quote nothing. A message of any other form (a `Deserialize`
/// implementation's own, which may quote anything) is withheld.
fn redact(message: &str, category: serde_json::error::Category) -> String {
    use serde_json::error::Category;
    if matches!(category, Category::Syntax | Category::Eof | Category::Io) {
        return message.to_owned();
    }
    const KEEP_NAMED: [&str; 2] = ["missing field `", "duplicate field `"];
    let (head, tail) = match message.find(", expected ") {
        Some(at) => message.split_at(at),
        None => (message, ""),
    };
    if KEEP_NAMED.iter().any(|p| head.starts_with(p)) {
        // The name of one of the type's own fields.
        return message.to_owned();
    }
    let known = [
        "invalid type: ",
        "invalid value: ",
        "invalid length ",
        "unknown variant ",
        "unknown field ",
    ];
    if !known.iter().any(|k| head.starts_with(k)) {
        return "the type's own decoding error (its message may quote the value: withheld)"
            .to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = head;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open];
        out.push_str(rest[..open].trim_end());
        let body = &rest[open + 1..];
        // A string is written with Rust's escapes: `\"` does not close it.
        let mut close = None;
        let mut escaped = false;
        for (i, b) in body.bytes().enumerate() {
            match b {
                b'\\' if quote == b'"' && !escaped => escaped = true,
                b if b == quote && !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        match close {
            Some(i) => rest = &body[i + 1..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out.push_str(tail);
    out
}
