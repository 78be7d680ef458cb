// `ctx.checkpoint(..)` calls the macro checks at compile time (or leaves to the run-time check)
// keep compiling and working: through a reborrow, a clone, a shadowed name, closures, `async
// move` blocks, `run_blocking`, helpers taking `&ActivityContext`, generic activities, and a
// local item named like the checkpoint type.
#![allow(dead_code, clippy::all)]
use hb_runtime::prelude::*;

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Progress {
    #[checkpoint(done)]
    next: u64,
}

fn helper(ctx: &ActivityContext, p: &Progress) -> Result<(), CheckpointError> {
    ctx.checkpoint(p)
}

/// Something else with a `checkpoint` method, bound to the name `ctx` in places.
struct Journal;

impl Journal {
    fn checkpoint(&self, _line: &str) {}
}

#[activity(heartbeat_timeout = "10s")]
async fn every_way(
    ctx: ActivityContext,
    #[checkpoint] mut p: Progress,
    input: u64,
) -> Result<u64, ActivityError> {
    p.next += 1;
    ctx.checkpoint(&p)?;
    (&ctx).checkpoint(&p)?;
    let reborrowed = &ctx;
    p.next += 1;
    reborrowed.checkpoint(&p)?;
    let cloned = ctx.clone();
    cloned.checkpoint(&p)?;
    {
        let ctx = &ctx;
        ctx.checkpoint(&p)?;
    }
    {
        // A shadowing `ctx` of another type: its own `checkpoint`, untouched.
        let ctx = Journal;
        ctx.checkpoint("note");
    }
    let save = |q: &Progress| ctx.checkpoint(q);
    save(&p)?;
    let typed = |c: &ActivityContext, q: &Progress| c.checkpoint(q);
    typed(&ctx, &p)?;
    helper(&ctx, &p)?;
    let in_task = {
        let ctx = ctx.clone();
        let p = p.clone();
        async move { ctx.checkpoint(&p) }
    };
    in_task.await?;
    let start = p.next;
    let blocked = ctx
        .run_blocking(move |ctx| {
            let mut q = Progress { next: start };
            for _ in 0..3 {
                q.next += 1;
                ctx.checkpoint(&q)?;
            }
            Ok(q.next)
        })
        .await?;
    let renamed = ctx
        .run_blocking(move |c| {
            c.checkpoint(&Progress { next: blocked + 1 })?;
            Ok(blocked + 1)
        })
        .await?;
    if let Some(journal) = Some(Journal) {
        let ctx = journal;
        ctx.checkpoint("shadowed in a branch");
    }
    for ctx in [Journal] {
        ctx.checkpoint("shadowed by a loop");
    }
    ctx.checkpoint(&Progress { next: renamed })?;
    Ok(input + renamed)
}

#[activity(heartbeat_timeout = "10s")]
async fn local_type_named_like_the_checkpoint(
    ctx: ActivityContext,
    #[checkpoint] p: Progress,
) -> Result<u64, ActivityError> {
    // Items in the body do not change what the checkpoint parameter's type is.
    #[allow(non_camel_case_types)]
    struct Progress;
    let _ = Progress;
    ctx.checkpoint(&p)?;
    Ok(p.next)
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug)]
struct Cursor<T> {
    at: T,
}

#[activity(heartbeat_timeout = "10s")]
async fn generic<T>(
    ctx: ActivityContext,
    #[checkpoint] mut c: Cursor<T>,
    input: T,
) -> Result<T, ActivityError>
where
    T: Serialize + serde::de::DeserializeOwned + Default + Clone + Send + Sync + 'static,
{
    c.at = input;
    ctx.checkpoint(&c)?;
    Ok(c.at)
}

#[activity(heartbeat_timeout = "10s")]
async fn underscore(_ctx: ActivityContext, #[checkpoint] p: Progress) -> Result<u64, ActivityError> {
    Ok(p.next)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = hb_runtime::testing::ActivityEnvironment::new();
    let run = env.run(every_way, 10).await;
    assert_eq!(run.result.unwrap(), 10 + 6);
    assert_eq!(run.last_checkpoint.unwrap(), Progress { next: 6 });

    let run = hb_runtime::testing::ActivityEnvironment::new()
        .run(local_type_named_like_the_checkpoint, ())
        .await;
    assert_eq!(run.result.unwrap(), 0);

    let run = hb_runtime::testing::ActivityEnvironment::new()
        .run(generic::<String>, "x".to_string())
        .await;
    assert_eq!(run.result.unwrap(), "x");
    assert_eq!(run.last_checkpoint.unwrap().at, "x");
}
