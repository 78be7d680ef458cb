//! Between hb's types and Temporal's protos: payloads, failures, times.

use std::time::{Duration, SystemTime};

use temporalio_common::protos::temporal::api::common::v1::{Payload as ProtoPayload, Payloads};
use temporalio_common::protos::temporal::api::failure::v1::{
    ApplicationFailureInfo, Failure, failure::FailureInfo,
};

use crate::error::{ActivityError, CancelReason};
use crate::payload::Payload;

const ENCODING: &str = "encoding";
const JSON_PLAIN: &[u8] = b"json/plain";
const BINARY_NULL: &[u8] = b"binary/null";

/// A Temporal payload as hb's. `binary/null` (how other SDKs send `None`/`null`) becomes JSON
/// `null`, so it decodes into `()` or an `Option`.
pub(crate) fn from_proto(p: ProtoPayload) -> Payload {
    match p.metadata.get(ENCODING).map(Vec::as_slice) {
        Some(BINARY_NULL) => Payload::from_json_bytes(b"null".to_vec()),
        _ => Payload::new(p.metadata.into_iter().collect(), p.data),
    }
}

/// hb's payload as Temporal's (a `json/plain` one unless it carries other metadata).
pub(crate) fn to_proto(p: &Payload) -> ProtoPayload {
    let mut metadata: std::collections::HashMap<String, Vec<u8>> =
        p.metadata().into_owned().into_iter().collect();
    metadata
        .entry(ENCODING.to_owned())
        .or_insert_with(|| JSON_PLAIN.to_vec());
    ProtoPayload {
        metadata,
        data: p.data().to_vec(),
        ..Default::default()
    }
}

/// The one input payload of a task: none stands for `null` (a caller that passed no
/// argument); more than one is refused by the input's decode.
pub(crate) fn input_of(mut payloads: Vec<ProtoPayload>) -> Payload {
    match payloads.len() {
        0 => Payload::from_json_bytes(b"null".to_vec()),
        1 => from_proto(payloads.remove(0)),
        // A JSON array of them: decoding it into the input type fails with a clear message
        // unless the input is a tuple or a list.
        _ => {
            let values: Vec<serde_json::Value> = payloads
                .into_iter()
                .map(|p| serde_json::from_slice(from_proto(p).data()).unwrap_or_default())
                .collect();
            Payload::json(&values).unwrap_or_else(|_| Payload::from_json_bytes(b"null".to_vec()))
        }
    }
}

/// The failure Temporal records for `error`, with `details` (the last checkpoint) attached.
/// An attempt stopped for another reason than a cancel request (a pause, a timeout the worker
/// saw first) fails with that reason as its type: `Paused`, `TimedOut`, `NotFound`, `ActivityReset`.
/// `non_retryable`: whether the activity's own retry policy refuses this failure.
pub(crate) fn failure_of(
    error: &ActivityError,
    details: Option<&Payload>,
    non_retryable: bool,
) -> Failure {
    let error_type = match error {
        ActivityError::Cancelled { reason, .. } => match reason {
            CancelReason::Paused => "Paused",
            CancelReason::TimedOut => "TimedOut",
            CancelReason::NotFound => "NotFound",
            CancelReason::WorkerShutdown => "WorkerShutdown",
            CancelReason::Reset => "ActivityReset",
            _ => "Cancelled",
        },
        e => e.error_type(),
    };
    Failure {
        message: error.message().into_owned(),
        source: "hb".to_owned(),
        failure_info: Some(FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo {
                r#type: error_type.to_owned(),
                non_retryable: non_retryable || !error.is_retryable(),
                details: details.map(|d| Payloads {
                    payloads: vec![to_proto(d)],
                }),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// A protobuf duration's parts as a std duration (`None` for zero or negative).
pub(crate) fn duration(seconds: i64, nanos: i32) -> Option<Duration> {
    let secs = u64::try_from(seconds).ok()?;
    let nanos = u32::try_from(nanos).ok()?;
    let d = Duration::new(secs, nanos);
    (!d.is_zero()).then_some(d)
}

/// A protobuf timestamp's parts as a system time.
pub(crate) fn time(seconds: i64, nanos: i32) -> Option<SystemTime> {
    let d = Duration::new(u64::try_from(seconds).ok()?, u32::try_from(nanos).ok()?);
    SystemTime::UNIX_EPOCH.checked_add(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(f: &Failure) -> &ApplicationFailureInfo {
        match &f.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(a)) => a,
            other => panic!("expected an application failure, got {other:?}"),
        }
    }

    #[test]
    fn payloads_cross_as_json_plain_and_binary_null_reads_as_json_null() {
        let p = to_proto(&Payload::json(&41u64).unwrap());
        assert_eq!(p.metadata["encoding"], b"json/plain");
        assert_eq!(from_proto(p).decode::<u64>().unwrap(), 41);

        let null = ProtoPayload {
            metadata: [("encoding".to_owned(), b"binary/null".to_vec())].into(),
            ..Default::default()
        };
        assert_eq!(from_proto(null).decode::<Option<u64>>().unwrap(), None);
        assert_eq!(input_of(Vec::new()).decode::<()>().unwrap(), ());
    }

    #[test]
    fn a_pause_fails_retryably_as_paused_and_bad_input_fails_for_good() {
        let details = Payload::json(&7u64).unwrap();
        let paused = ActivityError::Cancelled {
            reason: CancelReason::Paused,
            details: None,
        };
        let f = failure_of(&paused, Some(&details), false);
        assert_eq!(app(&f).r#type, "Paused");
        assert!(!app(&f).non_retryable);
        let carried = &app(&f).details.as_ref().unwrap().payloads[0];
        assert_eq!(carried.data, b"7");

        let bad = ActivityError::BadInput {
            activity: "double".to_owned(),
            expected_type: "u64",
            message: "invalid type".to_owned(),
        };
        let f = failure_of(&bad, None, false);
        assert_eq!(app(&f).r#type, "BadInput");
        assert!(app(&f).non_retryable);
        assert!(f.message.contains("double"), "{}", f.message);
    }
}
