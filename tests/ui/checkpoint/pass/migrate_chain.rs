// A v1 → v2 → v3 migration chain: a checkpoint written by any version decodes as the newest.
use hb_runtime::checkpoint::{decode_payload, encode_payload};
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct V1 {
    next: u32,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
#[checkpoint(version = 2, migrate_from = V1)]
struct V2 {
    next: u64,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[checkpoint(version = 3, migrate_from = V2)]
struct V3 {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: Option<u64>,
}

impl From<V1> for V2 {
    fn from(v: V1) -> Self {
        V2 {
            next: v.next.into(),
        }
    }
}

impl From<V2> for V3 {
    fn from(v: V2) -> Self {
        V3 {
            next: v.next,
            total: None,
        }
    }
}

#[activity(heartbeat_timeout = "10s")]
async fn resume(_ctx: ActivityContext, #[checkpoint] p: V3) -> Result<u64, ActivityError> {
    Ok(p.next)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let from_v1: V3 = decode_payload(&encode_payload(&V1 { next: 5 }).unwrap()).unwrap();
    assert_eq!(
        from_v1,
        V3 {
            next: 5,
            total: None
        }
    );
    let from_v2: V3 = decode_payload(&encode_payload(&V2 { next: 6 }).unwrap()).unwrap();
    assert_eq!(from_v2.next, 6);
    let same = V3 {
        next: 7,
        total: Some(9),
    };
    assert_eq!(
        decode_payload::<V3>(&encode_payload(&same).unwrap()).unwrap(),
        same
    );

    // A retry after a deployment: the previous attempt saved a V1.
    let run = hb_runtime::testing::ActivityEnvironment::new()
        .with_checkpoint(V1 { next: 41 })
        .run(resume, ())
        .await;
    assert_eq!(run.result.unwrap(), 41);
}
