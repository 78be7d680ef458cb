//! Temporal-compatible payloads: `metadata.encoding = "json/plain"` and JSON bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

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
    pub(crate) fn from_json_shared(data: Bytes) -> Self {
        Payload {
            metadata: None,
            data,
        }
    }

    /// The data as shared bytes (a clone is a reference count).
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
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
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
