//! A checkpoint format change: version 1 stored a line number, version 2 a byte offset and a
//! line count. Details written by v1 code migrate through `From` when v2 code resumes them.
//!
//! Run: `cargo run --example migration`

use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;

/// What the old deployment saved.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
#[checkpoint(version = 1)]
struct CursorV1 {
    line: u64,
}

/// What this deployment saves.
#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
#[checkpoint(version = 2, migrate_from = CursorV1)]
struct Cursor {
    #[checkpoint(done)]
    lines: u64,
    offset: u64,
}

impl From<CursorV1> for Cursor {
    fn from(v1: CursorV1) -> Self {
        // Every line of the file is 80 bytes.
        Cursor {
            lines: v1.line,
            offset: v1.line * 80,
        }
    }
}

#[activity(heartbeat_timeout = "10s")]
async fn import(
    ctx: ActivityContext,
    #[checkpoint] mut c: Cursor,
    lines: u64,
) -> Result<Cursor, ActivityError> {
    println!("resuming at line {} (byte {})", c.lines, c.offset);
    while c.lines < lines {
        c.lines += 1;
        c.offset += 80;
        ctx.checkpoint(&c)?;
    }
    Ok(c)
}

#[tokio::main]
async fn main() {
    // A retry of an activity whose previous attempt ran the v1 code.
    let run = ActivityEnvironment::new()
        .with_checkpoint(CursorV1 { line: 250 })
        .attempt(2)
        .run(import, 400)
        .await;
    let done = run.result.expect("the migrated checkpoint resumes");
    println!("imported up to line {} (byte {})", done.lines, done.offset);
    println!(
        "what heartbeats now carry: {}",
        String::from_utf8_lossy(run.final_details.unwrap().data())
    );
}
