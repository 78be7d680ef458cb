// Generic checkpoint types pass their generics through: the impl applies whenever serde's
// derives (and Default, Clone) do for the chosen parameters.
use hb_runtime::checkpoint::{decode_payload, encode_payload};
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[checkpoint(version = 2)]
struct Cursor<K>
where
    K: Ord,
{
    last_key: Option<K>,
    #[checkpoint(done)]
    seen: u64,
}

#[activity]
async fn scan<K>(_ctx: ActivityContext, #[checkpoint] c: Cursor<K>) -> Result<u64, ActivityError>
where
    K: Ord + Serialize + serde::de::DeserializeOwned + Default + Clone + Send + Sync + 'static,
{
    Ok(c.seen)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let c = Cursor {
        last_key: Some("k".to_string()),
        seen: 3,
    };
    assert_eq!(c.progress().unwrap().done, 3);
    assert_eq!(<Cursor<String> as Checkpoint>::VERSION, 2);
    let back: Cursor<String> = decode_payload(&encode_payload(&c).unwrap()).unwrap();
    assert_eq!(back, c);

    let run = hb_runtime::testing::ActivityEnvironment::new()
        .with_checkpoint(Cursor {
            last_key: Some(5u32),
            seen: 8,
        })
        .run(scan::<u32>, ())
        .await;
    assert_eq!(run.result.unwrap(), 8);
}
