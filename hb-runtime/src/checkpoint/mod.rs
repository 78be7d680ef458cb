//! Typed, versioned checkpoints: the [`Checkpoint`] trait, the envelope they travel in, the
//! decode policy and the size guard.
//!
//! # The envelope
//!
//! A checkpoint is sent as a `json/plain` [`Payload`] whose JSON is the checkpoint's own fields
//! plus reserved keys: `"_hb_v"` holding [`Checkpoint::VERSION`], and `"_hb_p"` holding
//! `[done, total]` when the type reports [`Checkpoint::progress`]:
//!
//! ```text
//! {"_hb_v":2,"_hb_p":[41,100],"next":41,"total":100}
//! ```
//!
//! so a Python caller reads `details[0]["next"]` as it would from any activity. A checkpoint that
//! does not serialise to a JSON object (a bare `u64`, a tuple) is wrapped as
//! `{"_hb_v":1,"_hb_p":[41,null],"_hb_value":41}`. Details without `"_hb_v"` (written by a non-hb activity) are
//! read as the current version.

use serde::Deserialize;

use crate::payload::Payload;

pub(crate) mod value;

use value::{Checkpoint, CheckpointDecodeError, Progress};

/// The reserved envelope key holding the checkpoint version.
pub const VERSION_KEY: &str = "_hb_v";
/// The reserved envelope key wrapping a checkpoint that is not a JSON object.
pub const VALUE_KEY: &str = "_hb_value";
/// The reserved envelope key holding `[done, total]` progress (from `#[checkpoint(done)]` and
/// `#[checkpoint(total)]`), so tools read progress without knowing the checkpoint's type.
pub const PROGRESS_KEY: &str = "_hb_p";

/// Decodes `value` written at `version` as the current version of `T`.
///
/// The building block of [`Checkpoint::decode_version`]: a hand-written migration handles the
/// old versions and passes the current one here.
///
/// ```
/// use hb_runtime::checkpoint::{decode_current, decode_payload};
/// use hb_runtime::{Checkpoint, CheckpointDecodeError};
/// use hb_runtime::Payload;
/// use serde::{Deserialize, Serialize};
/// use serde_json::json;
///
/// #[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
/// struct Cursor { next: u64 }
///
/// impl Checkpoint for Cursor {
///     const VERSION: u32 = 2;
///     const TYPE_NAME: &'static str = "Cursor";
///     fn decode_version(version: u32, value: serde_json::Value) -> Result<Self, CheckpointDecodeError> {
///         match version {
///             // Version 1 stored the last item done, not the next one.
///             1 => Ok(Cursor { next: value["last"].as_u64().unwrap_or(0) + 1 }),
///             _ => decode_current(version, value),
///         }
///     }
/// }
///
/// let v1 = Payload::json(&json!({"_hb_v": 1, "last": 9})).unwrap();
/// assert_eq!(decode_payload::<Cursor>(&v1).unwrap(), Cursor { next: 10 });
/// let v2 = Payload::json(&json!({"_hb_v": 2, "next": 4})).unwrap();
/// assert_eq!(decode_payload::<Cursor>(&v2).unwrap(), Cursor { next: 4 });
/// assert!(decode_current::<Cursor>(1, json!({"next": 4})).is_err()); // not the current version
/// ```
pub fn decode_current<T: Checkpoint>(
    version: u32,
    value: serde_json::Value,
) -> Result<T, CheckpointDecodeError> {
    if version != T::VERSION {
        return Err(CheckpointDecodeError {
            type_name: T::TYPE_NAME,
            version: Some(version),
            expected: T::VERSION,
            message: format!(
                "no migration from version {version}; add #[checkpoint(migrate_from = ...)]"
            ),
        });
    }
    crate::payload::decode_value(&value).map_err(|e| CheckpointDecodeError {
        type_name: T::TYPE_NAME,
        version: Some(version),
        expected: T::VERSION,
        message: e.where_and_why(),
    })
}

/// What kind of JSON value `v` is, for messages that must not quote it.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number out of range",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Decodes `value` written at `version` as `T`, migrating older versions through `Old`.
///
/// What `#[checkpoint(migrate_from = Old)]` generates.
///
/// ```
/// use hb_runtime::checkpoint::{decode_migrated, decode_payload, encode_payload};
/// use hb_runtime::prelude::*;
/// use serde_json::json;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct CursorV1 { last: u64 }
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
/// #[checkpoint(version = 2, migrate_from = CursorV1)]
/// struct Cursor { next: u64 }
///
/// impl From<CursorV1> for Cursor {
///     fn from(old: CursorV1) -> Self { Cursor { next: old.last + 1 } }
/// }
///
/// assert_eq!(decode_migrated::<Cursor, CursorV1>(1, json!({"last": 9})).unwrap(), Cursor { next: 10 });
/// assert_eq!(decode_migrated::<Cursor, CursorV1>(2, json!({"next": 3})).unwrap(), Cursor { next: 3 });
/// // What a retry reads from a checkpoint saved by the old deployment:
/// let old = encode_payload(&CursorV1 { last: 9 }).unwrap();
/// assert_eq!(decode_payload::<Cursor>(&old).unwrap(), Cursor { next: 10 });
/// ```
pub fn decode_migrated<T, Old>(
    version: u32,
    value: serde_json::Value,
) -> Result<T, CheckpointDecodeError>
where
    T: Checkpoint + From<Old>,
    Old: Checkpoint,
{
    if version == T::VERSION {
        decode_current(version, value)
    } else if version <= Old::VERSION {
        Old::decode_version(version, value)
            .map(T::from)
            .map_err(|mut e| {
                e.message = format!(
                    "while migrating {} to {}: {}",
                    e.type_name,
                    T::TYPE_NAME,
                    e.message
                );
                e.type_name = T::TYPE_NAME;
                e.expected = T::VERSION;
                e
            })
    } else {
        Err(CheckpointDecodeError {
            type_name: T::TYPE_NAME,
            version: Some(version),
            expected: T::VERSION,
            message: format!(
                "no migration from version {version} (migrate_from {} covers up to version {})",
                Old::TYPE_NAME,
                Old::VERSION
            ),
        })
    }
}

/// Encodes `value` into the checkpoint envelope (JSON bytes). One serialisation pass: the
/// version key is spliced into the object the value serialises to.
///
/// ```
/// use hb_runtime::checkpoint::encode;
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// #[checkpoint(version = 2)]
/// struct Cursor { next: u64 }
///
/// assert_eq!(encode(&Cursor { next: 41 }).unwrap(), br#"{"_hb_v":2,"next":41}"#);
/// assert_eq!(encode(&41u64).unwrap(), br#"{"_hb_v":1,"_hb_p":[41,null],"_hb_value":41}"#);
/// ```
pub fn encode<T: Checkpoint>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    use std::io::Write as _;
    // The envelope keys first, then the value serialised straight after them: one buffer.
    let mut out = Vec::with_capacity(64);
    let _ = write!(out, "{{\"{VERSION_KEY}\":{}", T::VERSION);
    if let Some(p) = value.progress() {
        let _ = write!(out, ",\"{PROGRESS_KEY}\":[{},", p.done);
        match p.total {
            Some(t) => {
                let _ = write!(out, "{t}]");
            }
            None => out.extend_from_slice(b"null]"),
        }
    }
    let at = out.len();
    serde_json::to_writer(&mut out, value)?;
    let body = &out[at..];
    // An object's fields are spliced in beside the envelope keys, unless one of its keys could
    // be mistaken for a reserved one: then (like any non-object) it is wrapped whole.
    if body.first() == Some(&b'{') && !contains(body, b"\"_hb_") {
        let empty = body[1..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|b| *b == b'}');
        if empty {
            out.truncate(at);
            out.push(b'}');
        } else {
            out[at] = b',';
        }
    } else {
        let key = format!(",\"{VALUE_KEY}\":");
        out.splice(at..at, key.bytes());
        out.push(b'}');
    }
    // Kept for as long as it is the latest checkpoint (by the pump and the backend): no
    // spare room.
    out.shrink_to_fit();
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The progress recorded in an encoded checkpoint's envelope, whatever its type.
///
/// ```
/// use hb_runtime::checkpoint::{encode_payload, progress_of};
/// let p = encode_payload(&41u64).unwrap();
/// assert_eq!(progress_of(&p).unwrap().done, 41);
/// ```
pub fn progress_of(payload: &Payload) -> Option<Progress> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "_hb_p")]
        progress: Option<(u64, Option<u64>)>,
    }
    let env: Envelope = serde_json::from_slice(payload.data()).ok()?;
    env.progress.map(|(done, total)| Progress { done, total })
}

/// An encoded checkpoint as the JSON of the user's own value, the envelope hb adds (`_hb_v`,
/// `_hb_p`, `_hb_value`) taken off, with the envelope's version; `None` when it is not JSON.
/// Details that have no envelope (written by a non-hb activity) are returned as they are. What
/// `hb show` and the dashboard display.
///
/// ```
/// use hb_runtime::checkpoint::{encode_payload, user_value};
/// use serde_json::json;
///
/// assert_eq!(user_value(&encode_payload(&41u64).unwrap()), Some((json!(41), Some(1))));
/// let plain = hb_runtime::Payload::json(&json!({"next": 3})).unwrap();
/// assert_eq!(user_value(&plain), Some((json!({"next": 3}), None)));
/// ```
pub fn user_value(payload: &Payload) -> Option<(serde_json::Value, Option<u64>)> {
    let mut value = serde_json::from_slice::<serde_json::Value>(payload.data()).ok()?;
    let mut version = None;
    if let serde_json::Value::Object(map) = &mut value {
        version = map.get(VERSION_KEY).and_then(serde_json::Value::as_u64);
        if version.is_some() {
            map.remove(VERSION_KEY);
            map.remove("_hb_p");
            if map.len() == 1
                && let Some(inner) = map.remove(VALUE_KEY)
            {
                value = inner;
            }
        }
    }
    Some((value, version))
}

/// Encodes `value` as a `json/plain` checkpoint payload.
///
/// Any JSON reader sees the checkpoint's own fields, as a non-Rust caller would:
///
/// ```
/// use hb_runtime::checkpoint::encode_payload;
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Cursor { next: u64 }
///
/// let p = encode_payload(&Cursor { next: 41 }).unwrap();
/// assert_eq!(p.encoding(), Some("json/plain"));
/// let json: serde_json::Value = p.decode().unwrap();
/// assert_eq!(json["next"], 41);
/// ```
pub fn encode_payload<T: Checkpoint>(value: &T) -> Result<Payload, serde_json::Error> {
    encode(value).map(Payload::from_json_bytes)
}

/// Decodes a checkpoint payload written by any version of `T` (or by a non-hb activity).
///
/// ```
/// use hb_runtime::checkpoint::{decode_payload, encode_payload};
/// let p = encode_payload(&41u64).unwrap();
/// assert_eq!(p.data(), br#"{"_hb_v":1,"_hb_p":[41,null],"_hb_value":41}"#);
/// assert_eq!(decode_payload::<u64>(&p).unwrap(), 41);
/// ```
pub fn decode_payload<T: Checkpoint>(payload: &Payload) -> Result<T, CheckpointDecodeError> {
    let err = |version, message: String| CheckpointDecodeError {
        type_name: T::TYPE_NAME,
        version,
        expected: T::VERSION,
        message,
    };
    let value: serde_json::Value =
        crate::payload::decode_json(payload.data()).map_err(|e| err(None, e.where_and_why()))?;
    let (version, value) = match value {
        serde_json::Value::Object(mut map) if map.contains_key(VERSION_KEY) => {
            let v = map.remove(VERSION_KEY).unwrap_or_default();
            map.remove(PROGRESS_KEY);
            let version = v
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    err(
                        None,
                        format!(
                            "{VERSION_KEY} is not a version number but {}",
                            json_kind(&v)
                        ),
                    )
                })?;
            let inner = match map.remove(VALUE_KEY) {
                Some(inner) if map.is_empty() => inner,
                Some(inner) => {
                    map.insert(VALUE_KEY.to_owned(), inner);
                    serde_json::Value::Object(map)
                }
                None => serde_json::Value::Object(map),
            };
            (version, inner)
        }
        other => (T::VERSION, other),
    };
    if version > T::VERSION {
        return Err(err(
            Some(version),
            format!(
                "version {version} is newer than this build of {} (version {}); was it written by a newer deployment?",
                T::TYPE_NAME,
                T::VERSION
            ),
        ));
    }
    T::decode_version(version, value)
}

/// A numeric field usable as `#[checkpoint(done)]` or `#[checkpoint(total)]`.
///
/// Implemented for every integer type and `Option`s of them.
///
/// ```
/// use hb_runtime::checkpoint::ProgressCount;
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Scan { #[checkpoint(done)] rows: i32, #[checkpoint(total)] of: Option<usize> }
///
/// let p = Scan { rows: 12, of: None }.progress().unwrap();
/// assert_eq!((p.done, p.total), (12, None)); // a `None` total is unknown
/// assert_eq!((-3i64).to_count(), 0); // negative counts as 0
/// assert_eq!(Some(7u8).to_count(), 7);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot count progress",
    label = "`#[checkpoint(done)]` and `#[checkpoint(total)]` need an integer field",
    note = "use an integer type such as `u64` or `usize`"
)]
pub trait ProgressCount {
    /// The count as `u64` (negative values count as 0).
    fn to_count(&self) -> u64;
}

macro_rules! unsigned_counts {
    ($($t:ty),*) => {$(
        impl ProgressCount for $t {
            fn to_count(&self) -> u64 { u64::try_from(*self).unwrap_or(u64::MAX) }
        }
    )*};
}
macro_rules! signed_counts {
    ($($t:ty),*) => {$(
        impl ProgressCount for $t {
            fn to_count(&self) -> u64 { u64::try_from(*self).unwrap_or(0) }
        }
    )*};
}
unsigned_counts!(u8, u16, u32, u64, u128, usize);
signed_counts!(i8, i16, i32, i64, i128, isize);

impl<T: ProgressCount> ProgressCount for Option<T> {
    fn to_count(&self) -> u64 {
        self.as_ref().map_or(0, ProgressCount::to_count)
    }
}
