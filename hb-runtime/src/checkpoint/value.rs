//! The [`Checkpoint`] trait and its companions, re-exported at the crate root (the codec
//! around them is [`crate::checkpoint`]).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ProgressCount, decode_current};

/// Progress state an activity saves with [`ActivityContext::checkpoint`](crate::ActivityContext::checkpoint)
/// and a retry resumes from.
///
/// Derive it with `#[derive(Checkpoint)]` beside serde's derives:
///
/// ```
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// #[checkpoint(version = 1)]
/// struct Progress {
///     #[checkpoint(done)]
///     next: u64,
///     #[checkpoint(total)]
///     total: u64,
/// }
///
/// let p = Progress { next: 25, total: 100 };
/// assert_eq!(p.progress().unwrap().done, 25);
/// assert_eq!(p.progress().unwrap().total, Some(100));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a checkpoint type",
    label = "not a checkpoint",
    note = "add `#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]` to `{Self}`"
)]
pub trait Checkpoint:
    Serialize + DeserializeOwned + Default + Clone + Send + Sync + 'static
{
    /// The version written into the envelope; bump it when the shape changes.
    const VERSION: u32 = 1;

    /// The type's name, for error messages.
    const TYPE_NAME: &'static str;

    /// Decodes a checkpoint written at `version` (never above [`Self::VERSION`]).
    ///
    /// The default accepts only [`Self::VERSION`]; `#[checkpoint(migrate_from = Old)]` generates
    /// an implementation that hands older versions to `Old` and converts with `From<Old>`.
    fn decode_version(
        version: u32,
        value: serde_json::Value,
    ) -> Result<Self, CheckpointDecodeError> {
        decode_current(version, value)
    }

    /// Done/total progress, from the `#[checkpoint(done)]` and `#[checkpoint(total)]` fields.
    fn progress(&self) -> Option<Progress> {
        None
    }
}

impl Checkpoint for () {
    const TYPE_NAME: &'static str = "()";
}

/// How far an activity got: from the fields marked `#[checkpoint(done)]` and
/// `#[checkpoint(total)]`.
///
/// ```
/// use hb_runtime::prelude::*;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// struct Scan { #[checkpoint(done)] rows: u64, #[checkpoint(total)] of: u64 }
///
/// let ctx = hb_runtime::testing::detached_context::<Scan>();
/// ctx.checkpoint(&Scan { rows: 30, of: 120 }).unwrap();
/// let progress = ctx.progress().unwrap();
/// assert_eq!(progress.to_string(), "30/120");
/// assert_eq!(progress.fraction(), Some(0.25));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Items done.
    pub done: u64,
    /// Items in all, when known.
    pub total: Option<u64>,
}

impl Progress {
    /// `done / total` in `0.0..=1.0`, when the total is known and not zero.
    ///
    /// ```
    /// let p = hb_runtime::Progress { done: 1, total: Some(4) };
    /// assert_eq!(p.fraction(), Some(0.25));
    /// ```
    pub fn fraction(&self) -> Option<f64> {
        match self.total {
            Some(t) if t > 0 => Some((self.done as f64 / t as f64).min(1.0)),
            _ => None,
        }
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            Some(t) => write!(f, "{}/{}", self.done, t),
            None => write!(f, "{}", self.done),
        }
    }
}

/// A checkpoint that could not be decoded.
///
/// An activity meets it as [`ActivityError::BadCheckpoint`](crate::ActivityError::BadCheckpoint)
/// when its policy is `on_bad_checkpoint = "fail"`.
///
/// ```
/// use hb_runtime::checkpoint::decode_payload;
/// use hb_runtime::prelude::*;
/// use hb_runtime::Payload;
///
/// #[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
/// #[checkpoint(version = 2)]
/// struct Cursor { next: u64 }
///
/// // Written by a newer deployment.
/// let newer = Payload::json(&serde_json::json!({"_hb_v": 3, "next": 5})).unwrap();
/// let err = decode_payload::<Cursor>(&newer).unwrap_err();
/// assert_eq!((err.type_name, err.version, err.expected), ("Cursor", Some(3), 2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot decode checkpoint {type_name} (version {}, expected {expected}): {message}",
    version.map_or_else(|| "none".to_owned(), |v| v.to_string())
)]
#[non_exhaustive]
pub struct CheckpointDecodeError {
    /// The checkpoint type decoded into.
    pub type_name: &'static str,
    /// The version found in the envelope (`None` when it had none).
    pub version: Option<u32>,
    /// The version the type expects.
    pub expected: u32,
    /// What went wrong (the serde message, or the missing migration).
    pub message: String,
}

impl CheckpointDecodeError {
    /// An error decoding `T` from details written at `version`, for hand-written
    /// [`Checkpoint::decode_version`] implementations.
    ///
    /// ```
    /// use hb_runtime::CheckpointDecodeError;
    /// let e = CheckpointDecodeError::new::<u64>(Some(3), "no migration from version 3");
    /// assert!(e.to_string().contains("version 3"));
    /// ```
    pub fn new<T: Checkpoint>(version: Option<u32>, message: impl Into<String>) -> Self {
        CheckpointDecodeError {
            type_name: T::TYPE_NAME,
            version,
            expected: T::VERSION,
            message: message.into(),
        }
    }
}

macro_rules! primitive_checkpoints {
    ($($t:ty),*) => {$(
        impl Checkpoint for $t {
            const TYPE_NAME: &'static str = stringify!($t);
            fn progress(&self) -> Option<Progress> {
                Some(Progress { done: ProgressCount::to_count(self), total: None })
            }
        }
    )*};
}
primitive_checkpoints!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl Checkpoint for String {
    const TYPE_NAME: &'static str = "String";
}

impl<T> Checkpoint for Vec<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    const TYPE_NAME: &'static str = "Vec";
}

impl<T> Checkpoint for Option<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    const TYPE_NAME: &'static str = "Option";
}
