//! Payloads from outside: `Payload::decode` of any bytes into nested serde types (options,
//! vectors, maps, tagged and untagged enums, floats, 128-bit integers) returns a value or an
//! error, never a panic, and a decoded value round trips through `Payload::json`. A payload
//! made with `Payload::new` from any metadata keeps it: `metadata()`, `encoding()`, `len()`,
//! `into_parts()` and `Debug` say what went in.

#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use arbitrary::{Arbitrary, Unstructured};
use hb_fuzz::strict;
use hb_runtime::backend::JSON_PLAIN;
use hb_runtime::Payload;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Job {
    id: u64,
    name: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    attrs: HashMap<String, Attr>,
    #[serde(default)]
    ratio: f64,
    #[serde(default)]
    big: u128,
    #[serde(default)]
    kind: Kind,
    #[serde(default)]
    parts: Vec<Part>,
    #[serde(default)]
    parent: Option<Box<Job>>,
}

/// Internally tagged: serde buffers the content before it knows the variant.
#[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Kind {
    #[default]
    Plain,
    Batch {
        size: u32,
        offset: i64,
    },
    Nested(Inner),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Inner {
    depth: u8,
    weights: Vec<f64>,
}

/// Untagged: the first variant that fits wins.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum Attr {
    Flag(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<Attr>),
    Map(BTreeMap<String, Attr>),
    Null(()),
}

/// Adjacently tagged.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "t", content = "c")]
enum Part {
    Range(u64, u64),
    Id(String),
    Empty,
}

/// A struct with the rest of its object flattened into a map.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Envelope {
    version: u32,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Arbitrary, Debug)]
struct Parts {
    metadata: BTreeMap<String, Vec<u8>>,
    data: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let payload = Payload::from_json_bytes(data.to_vec());
    assert_eq!(payload.encoding(), Some(JSON_PLAIN));
    assert_eq!(payload.len(), data.len());
    let _ = format!("{payload:?}");

    decoded::<Job>(&payload);
    decoded::<Kind>(&payload);
    decoded::<Attr>(&payload);
    decoded::<Vec<Part>>(&payload);
    decoded::<Envelope>(&payload);
    decoded::<HashMap<String, Option<u128>>>(&payload);
    // serde_json reads a number beyond f32's range (`1e39`) as an f32 infinity (it narrows
    // the f64 with `as`; an f64 out of range is an error), and writes it back as `null`,
    // which no f32 decodes: `fuzz/regressions/payload/f32-infinity`. Checked unless
    // HB_FUZZ_STRICT.
    if let Ok(value) = payload.decode::<(i128, f32, char)>() {
        if value.1.is_finite() || strict() {
            round_trip(value);
        }
    }
    decoded::<serde_json::Value>(&payload);

    if let Ok(parts) = Parts::arbitrary_take_rest(Unstructured::new(data)) {
        raw_parts(parts);
    }
});

/// Decodes `payload` as `T`; a decoded value round trips through `Payload::json`.
fn decoded<T: Serialize + DeserializeOwned + PartialEq + Debug>(payload: &Payload) {
    if let Ok(value) = payload.decode::<T>() {
        round_trip(value);
    }
}

/// `value` encodes and decodes back equal (floats exactly).
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
    let json = Payload::json(&value).unwrap_or_else(|e| panic!("{value:?} does not encode: {e}"));
    let back: T = json.decode().unwrap_or_else(|e| {
        panic!(
            "{value:?} encoded as {:?} does not decode: {e}",
            String::from_utf8_lossy(json.data())
        )
    });
    assert!(
        back == value,
        "round trip through {:?}: {back:?} != {value:?}",
        String::from_utf8_lossy(json.data())
    );
}

/// `Payload::new` keeps its metadata and data as given.
fn raw_parts(Parts { metadata, data }: Parts) {
    let p = Payload::new(metadata.clone(), data.clone());
    assert_eq!(p.len(), data.len());
    assert_eq!(p.is_empty(), data.is_empty());
    assert_eq!(p.data(), &data[..]);
    assert_eq!(*p.metadata(), metadata);
    let encoding = metadata
        .get("encoding")
        .and_then(|e| std::str::from_utf8(e).ok());
    assert_eq!(p.encoding(), encoding);
    // The one-entry json/plain map is the same payload as `from_json_bytes`.
    let only_json = metadata.len() == 1 && encoding == Some(JSON_PLAIN);
    assert_eq!(p == Payload::from_json_bytes(data.clone()), only_json);
    let _ = format!("{p:?}");
    assert_eq!(p.clone(), p);
    assert_eq!(p.into_parts(), (metadata, data));
}
