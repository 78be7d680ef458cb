// `done`/`total` markers: named and tuple fields, `Option` totals, signed and unsigned integers.
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Named {
    #[checkpoint(total)]
    total: Option<u32>,
    label: String,
    #[checkpoint(done)]
    done: i64,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct Tuple(String, #[checkpoint(done)] usize);

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone)]
struct NoMarkers {
    cursor: String,
}

fn main() {
    let p = Named {
        total: Some(10),
        label: "x".into(),
        done: 3,
    }
    .progress()
    .unwrap();
    assert_eq!((p.done, p.total), (3, Some(10)));
    let p = Named {
        total: None,
        label: String::new(),
        done: -1,
    }
    .progress()
    .unwrap();
    assert_eq!((p.done, p.total), (0, None));
    let p = Tuple("a".into(), 7).progress().unwrap();
    assert_eq!((p.done, p.total), (7, None));
    assert!(NoMarkers::default().progress().is_none());
    assert_eq!(<Named as Checkpoint>::TYPE_NAME, "Named");
    assert_eq!(<Tuple as Checkpoint>::VERSION, 1);
}
