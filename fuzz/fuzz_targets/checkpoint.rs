//! Checkpoint envelopes from outside: whatever bytes a heartbeat's details hold, decoding them
//! as any checkpoint type (a versioned chain 1→2→3, progress markers, plain values, enums, maps
//! with reserved-looking keys) returns a value or a `CheckpointDecodeError`, never a panic.
//!
//! Properties checked, not only the absence of panics:
//! - a decoded value encodes, decodes back equal, and encodes to the same bytes again;
//! - `progress_of` of its encoding is what `progress()` says;
//! - the migration chain agrees with itself: a version-1 envelope read as version 3 is exactly
//!   `V3::from(V2::from(v1))`, and a version newer than a type is refused by it;
//! - values built from the input (strings with `"_hb_`, keys named `_hb_v`) round trip too,
//!   finite floats included.
//!
//! Floats round trip exactly (serde_json's `float_roundtrip`; before it, they drifted by an ulp
//! or two: `fuzz/regressions/checkpoint/`).
//!
//! Floats: JSON has no NaN or infinity. A decoded `f64` is always finite; a value holding NaN
//! encodes as `null` and is then refused by its own decode (see `non_finite`).

#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;

use arbitrary::{Arbitrary, Unstructured};
use hb_runtime::checkpoint::{decode_payload, encode_payload, progress_of, VERSION_KEY};
use hb_runtime::prelude::*;
use hb_runtime::CheckpointDecodeError;
use hb_runtime::Payload;
use libfuzzer_sys::fuzz_target;

/// Version 1 stored the last item done.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq, Arbitrary)]
#[checkpoint(version = 1)]
struct CursorV1 {
    last: u64,
}

/// Version 2 stores the next item, and a label.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq, Arbitrary)]
#[checkpoint(version = 2, migrate_from = CursorV1)]
struct CursorV2 {
    next: u64,
    label: Option<String>,
}

impl From<CursorV1> for CursorV2 {
    fn from(old: CursorV1) -> Self {
        CursorV2 {
            next: old.last.saturating_add(1),
            label: None,
        }
    }
}

/// Version 3 reports progress and keeps every label.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq, Arbitrary)]
#[checkpoint(version = 3, migrate_from = CursorV2)]
struct CursorV3 {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: Option<u64>,
    labels: Vec<String>,
}

impl From<CursorV2> for CursorV3 {
    fn from(old: CursorV2) -> Self {
        CursorV3 {
            next: old.next,
            total: None,
            labels: old.label.into_iter().collect(),
        }
    }
}

/// Progress from signed and optional counts, beside a float and defaulted fields.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq, Arbitrary)]
struct Scan {
    #[checkpoint(done)]
    rows: i32,
    #[checkpoint(total)]
    of: Option<usize>,
    #[serde(default)]
    rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// An externally tagged enum: unit variants are strings (wrapped), the others objects.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq, Arbitrary)]
#[checkpoint(version = 2)]
enum Phase {
    #[default]
    Idle,
    Copying {
        done: u64,
    },
    Verifying(u32, String),
    Done,
}

/// An internally tagged enum: its tag sits beside the envelope keys.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq, Arbitrary)]
#[serde(tag = "step")]
enum Step {
    #[default]
    Start,
    Page {
        token: String,
        seen: u32,
    },
}

/// A map whose keys may look like the envelope's own (`_hb_v`, `_hb_value`).
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq, Arbitrary)]
#[serde(transparent)]
struct Counters(BTreeMap<String, u64>);

/// Any JSON at all.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(transparent)]
struct Any(serde_json::Value);

fuzz_target!(|data: &[u8]| {
    let payload = Payload::from_json_bytes(data.to_vec());
    // Never panics, whatever the bytes.
    let _ = progress_of(&payload);

    migrations(data, &payload);
    decoded::<Scan>(&payload);
    decoded::<Phase>(&payload);
    decoded::<Step>(&payload);
    decoded::<Counters>(&payload);
    decoded::<Any>(&payload);
    decoded::<u64>(&payload);
    decoded::<i8>(&payload);
    decoded::<String>(&payload);
    decoded::<Vec<f64>>(&payload);
    decoded::<Option<Vec<u32>>>(&payload);
    decoded::<()>(&payload);

    // The same bytes read as values: the encode side.
    let mut u = Unstructured::new(data);
    built::<CursorV3>(&mut u);
    built::<Phase>(&mut u);
    built::<Step>(&mut u);
    built::<Counters>(&mut u);
    built::<Vec<String>>(&mut u);
    built::<Option<u64>>(&mut u);
    built::<i64>(&mut u);
    if let Ok(scan) = Scan::arbitrary(&mut u) {
        if scan.rate.is_finite() {
            round_trip(&scan);
        } else {
            non_finite(&scan);
        }
    }
});

/// Decodes `payload` as `T`; when it decodes, the value round trips. Errors name `T`.
fn decoded<T: Checkpoint + PartialEq + Debug>(payload: &Payload) -> Option<T> {
    match decode_payload::<T>(payload) {
        Ok(v) => {
            round_trip(&v);
            Some(v)
        }
        Err(e) => {
            well_formed::<T>(&e);
            None
        }
    }
}

fn well_formed<T: Checkpoint>(e: &CheckpointDecodeError) {
    assert_eq!((e.type_name, e.expected), (T::TYPE_NAME, T::VERSION));
    let _ = e.to_string();
}

/// `value` encodes, decodes back equal (floats exactly),
/// encodes to the same bytes again, and its envelope reports its progress.
fn round_trip<T: Checkpoint + PartialEq + Debug>(value: &T) {
    let encoded = encode_payload(value)
        .unwrap_or_else(|e| panic!("{value:?} ({}) does not encode: {e}", T::TYPE_NAME));
    let back = decode_payload::<T>(&encoded).unwrap_or_else(|e| {
        panic!(
            "{value:?} encoded as {:?} does not decode: {e}",
            String::from_utf8_lossy(encoded.data())
        )
    });
    assert_eq!(progress_of(&encoded), value.progress(), "{value:?}");
    assert!(
        back == *value,
        "round trip through {:?}: {back:?} != {value:?}",
        String::from_utf8_lossy(encoded.data())
    );
    let again = encode_payload(&back).expect("encodes once more");
    assert_eq!(again.data(), encoded.data(), "encoding is not stable");
}

/// A value built from the input round trips.
fn built<T: Checkpoint + PartialEq + Debug + for<'a> Arbitrary<'a>>(u: &mut Unstructured<'_>) {
    if let Ok(v) = T::arbitrary(u) {
        round_trip(&v);
    }
}

/// A checkpoint holding NaN or an infinity encodes (as `null`), and its decode refuses it
/// with an error rather than panicking or inventing a number.
fn non_finite(scan: &Scan) {
    let encoded = encode_payload(scan).expect("serde_json writes a non-finite f64 as null");
    if let Ok(back) = decode_payload::<Scan>(&encoded) {
        panic!("{scan:?} came back as {back:?}");
    }
}

/// The version chain CursorV1 → V2 → V3 agrees with itself on every envelope.
fn migrations(data: &[u8], payload: &Payload) {
    let v1 = decoded::<CursorV1>(payload);
    let v2 = decoded::<CursorV2>(payload);
    let v3 = decoded::<CursorV3>(payload);
    // Only an envelope names its version; bare details are read as each type's current one.
    let Some(version) = envelope_version(data) else {
        return;
    };
    match version {
        None => assert!(
            v1.is_none() && v2.is_none() && v3.is_none(),
            "a bad version decoded"
        ),
        Some(version) => {
            if version == 0 || version > 1 {
                assert_eq!(v1, None, "version {version} decoded as version 1");
            }
            if version == 0 || version > 2 {
                assert_eq!(v2, None, "version {version} decoded as version 2");
            }
            if version == 0 || version > 3 {
                assert_eq!(v3, None, "version {version} decoded as version 3");
            }
            if version <= 1 {
                assert_eq!(v2, v1.clone().map(CursorV2::from), "v1 → v2");
            }
            if version <= 2 {
                assert_eq!(v3, v2.map(CursorV3::from), "v2 → v3");
            }
        }
    }
}

/// `Some(Some(v))` for an envelope of version `v`, `Some(None)` for an envelope whose version
/// is not a `u32`, `None` for details without an envelope.
fn envelope_version(data: &[u8]) -> Option<Option<u32>> {
    let serde_json::Value::Object(map) = serde_json::from_slice(data).ok()? else {
        return None;
    };
    let v = map.get(VERSION_KEY)?;
    Some(v.as_u64().and_then(|v| u32::try_from(v).ok()))
}
