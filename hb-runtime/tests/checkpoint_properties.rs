//! Property tests of the checkpoint codec: any value round-trips through the envelope; any
//! value of any older version reaches the current one through its migration chain; the
//! envelope's progress is the value's; a newer version and foreign JSON follow the documented
//! rules; keys that look like the envelope's own never confuse it.

use std::collections::BTreeMap;

use hb_runtime::Payload;
use hb_runtime::checkpoint::{decode_payload, encode_payload, progress_of};
use hb_runtime::prelude::*;
use proptest::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Rich {
    #[checkpoint(done)]
    done: u64,
    #[checkpoint(total)]
    total: u64,
    offset: i64,
    ratio: f64,
    name: String,
    seen: Vec<u32>,
    last: Option<String>,
    counts: BTreeMap<String, u64>,
}

fn rich() -> impl Strategy<Value = Rich> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
        // JSON has no NaN or infinity: serde_json writes them as null, which a f64 field
        // refuses. Every finite value round-trips bit for bit (serde_json's float_roundtrip).
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ".*",
        proptest::collection::vec(any::<u32>(), 0..8),
        proptest::option::of(".*"),
        // Keys that imitate the envelope's (`_hb_v`, `_hb_p`, `_hb_value`) included.
        proptest::collection::btree_map(
            prop_oneof![".*", "_hb_(v|p|value)", "_hb_.*"],
            any::<u64>(),
            0..4,
        ),
    )
        .prop_map(
            |(done, total, offset, ratio, name, seen, last, counts)| Rich {
                done,
                total,
                offset,
                ratio,
                name,
                seen,
                last,
                counts,
            },
        )
}

// A chain of three versions: V1 counted items done, V2 the next item, V3 a cursor and a tag.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct CursorV1 {
    last: u32,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[checkpoint(version = 2, migrate_from = CursorV1)]
struct CursorV2 {
    #[checkpoint(done)]
    next: u64,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[checkpoint(version = 3, migrate_from = CursorV2)]
struct CursorV3 {
    #[checkpoint(done)]
    next: u64,
    tag: String,
}

impl From<CursorV1> for CursorV2 {
    fn from(v: CursorV1) -> Self {
        CursorV2 {
            next: u64::from(v.last) + 1,
        }
    }
}

impl From<CursorV2> for CursorV3 {
    fn from(v: CursorV2) -> Self {
        CursorV3 {
            next: v.next,
            tag: format!("from-v2-{}", v.next),
        }
    }
}

/// A value written by a version newer than any this build knows.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[checkpoint(version = 4)]
struct CursorV4 {
    next: u64,
    tag: String,
    shard: u32,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_value_round_trips_and_carries_its_progress(v in rich()) {
        let p = encode_payload(&v).unwrap();
        prop_assert_eq!(decode_payload::<Rich>(&p).unwrap(), v.clone());
        let progress = progress_of(&p).unwrap();
        prop_assert_eq!((progress.done, progress.total), (v.done, Some(v.total)));
        // What a caller in another language reads: the value's own fields, plain JSON (under
        // `_hb_value` when one of its keys could pass for the envelope's).
        let json: serde_json::Value = p.decode().unwrap();
        let fields = match json.get("_hb_value") {
            Some(inner) => inner,
            None => &json,
        };
        prop_assert_eq!(&fields["name"], &serde_json::Value::from(v.name.clone()));
    }

    #[test]
    fn primitives_and_wrapped_values_round_trip(n in any::<u64>(), s in ".*", v in proptest::collection::vec(any::<i64>(), 0..6)) {
        prop_assert_eq!(decode_payload::<u64>(&encode_payload(&n).unwrap()).unwrap(), n);
        prop_assert_eq!(progress_of(&encode_payload(&n).unwrap()).unwrap().done, n);
        prop_assert_eq!(decode_payload::<String>(&encode_payload(&s).unwrap()).unwrap(), s);
        prop_assert_eq!(decode_payload::<Vec<i64>>(&encode_payload(&v).unwrap()).unwrap(), v);
    }

    #[test]
    fn every_older_version_migrates_through_the_chain(last in any::<u32>(), next in any::<u64>(), tag in ".*") {
        let v1 = CursorV1 { last };
        let from_v1 = decode_payload::<CursorV3>(&encode_payload(&v1).unwrap()).unwrap();
        prop_assert_eq!(from_v1, CursorV3::from(CursorV2::from(v1.clone())));
        prop_assert_eq!(
            decode_payload::<CursorV2>(&encode_payload(&v1).unwrap()).unwrap(),
            CursorV2::from(v1)
        );

        let v2 = CursorV2 { next };
        prop_assert_eq!(
            decode_payload::<CursorV3>(&encode_payload(&v2).unwrap()).unwrap(),
            CursorV3::from(v2)
        );

        let v3 = CursorV3 { next, tag };
        prop_assert_eq!(decode_payload::<CursorV3>(&encode_payload(&v3).unwrap()).unwrap(), v3);
    }

    #[test]
    fn a_newer_version_is_refused_and_names_both_versions(next in any::<u64>(), shard in any::<u32>()) {
        let newer = encode_payload(&CursorV4 { next, tag: "t".into(), shard }).unwrap();
        let err = decode_payload::<CursorV3>(&newer).unwrap_err();
        prop_assert_eq!((err.version, err.expected), (Some(4), 3));
        let err = decode_payload::<CursorV2>(&newer).unwrap_err();
        prop_assert_eq!((err.version, err.expected), (Some(4), 2));
    }

    /// Details a non-hb activity wrote (no envelope) are read as the current version.
    #[test]
    fn foreign_json_without_an_envelope_is_the_current_version(next in any::<u64>(), tag in ".*") {
        let foreign = Payload::json(&serde_json::json!({"next": next, "tag": tag})).unwrap();
        prop_assert_eq!(decode_payload::<CursorV3>(&foreign).unwrap(), CursorV3 { next, tag });
    }

    /// Whatever the bytes, decoding answers (a value or an error), and an error never quotes
    /// a string the bytes held.
    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let p = Payload::from_json_bytes(bytes);
        let _ = decode_payload::<CursorV3>(&p);
        let _ = decode_payload::<Rich>(&p);
        let _ = progress_of(&p);
    }

    #[test]
    fn a_decode_error_never_quotes_the_string_it_refused(secret in "[a-zA-Z0-9]{12,24}") {
        let p = Payload::json(&serde_json::json!({"_hb_v": 3, "next": secret, "tag": "x"})).unwrap();
        let err = decode_payload::<CursorV3>(&p).unwrap_err();
        prop_assert!(!err.to_string().contains(&secret), "{}", err);
        prop_assert!(err.message.contains("at next"), "{}", err);
    }
}
