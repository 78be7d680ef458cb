// Enums derive it too (no progress markers there).
use hb_runtime::checkpoint::{decode_payload, encode_payload};
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[checkpoint(version = 4)]
enum Phase {
    #[default]
    Download,
    Parse {
        line: u64,
    },
    Upload(String),
}

fn main() {
    let p = Phase::Parse { line: 4 };
    assert!(p.progress().is_none());
    assert_eq!(
        decode_payload::<Phase>(&encode_payload(&p).unwrap()).unwrap(),
        p
    );
    assert_eq!(<Phase as Checkpoint>::TYPE_NAME, "Phase");
    assert_eq!(<Phase as Checkpoint>::VERSION, 4);
}
