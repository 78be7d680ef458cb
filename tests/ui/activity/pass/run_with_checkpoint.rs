// The whole path: a checkpointed activity resumes from an injected checkpoint and reports
// progress through its heartbeats.
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
    #[checkpoint(total)]
    total: u64,
}

#[derive(Serialize, Deserialize)]
struct Batch {
    items: Vec<u64>,
}

#[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1h", stall_timeout = "2m",
           retry(max_attempts = 5, initial_interval = "1s", backoff = 2.0, non_retryable = ["BadInput"]))]
async fn process_batch(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    input: Batch,
) -> Result<u64, ActivityError> {
    p.total = input.items.len() as u64;
    let mut sum = 0;
    for item in &input.items[p.next as usize..] {
        sum += item;
        p.next += 1;
        ctx.checkpoint(&p)?;
    }
    Ok(sum)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = hb_runtime::testing::ActivityEnvironment::new()
        .with_checkpoint(Progress { next: 2, total: 4 })
        .run(
            process_batch,
            Batch {
                items: vec![1, 2, 3, 4],
            },
        )
        .await;
    assert_eq!(*run.result.as_ref().unwrap(), 7);
    let last = run.last_checkpoint.unwrap();
    assert_eq!(last, Progress { next: 4, total: 4 });
    let progress = last.progress().unwrap();
    assert_eq!((progress.done, progress.total), (4, Some(4)));
}
