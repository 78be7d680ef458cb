//! User interceptors run around every attempt inside the built-in heartbeat interceptor: they
//! see (and may replace) the result, may short-circuit the body, and the final flush happens
//! after they are done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hb_runtime::backend::Pump;
use hb_runtime::backend::TaskToken;
use hb_runtime::backend::{AttemptRequest, AttemptRunner};
use hb_runtime::backend::{AttemptResult, Interceptor, Next};
use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use hb_runtime::testing::{MemoryTransport, RecordedCall};
use hb_runtime::{BoxFuture, Payload};

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct Step {
    #[checkpoint(done)]
    n: u64,
}

type Log = Arc<Mutex<Vec<String>>>;

fn log(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

fn lines(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Records when it runs and what result it saw.
struct Recorder {
    name: &'static str,
    log: Log,
}

impl Interceptor for Recorder {
    fn intercept<'a>(
        &'a self,
        ctx: &'a ActivityContext,
        next: Next<'a>,
    ) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            let info = ctx.info();
            log(
                &self.log,
                format!(
                    "{} before {}#{}",
                    self.name, info.activity_type, info.attempt
                ),
            );
            let result = next.run().await;
            let seen = match &result {
                Ok(p) => format!("ok {}", String::from_utf8_lossy(p.data())),
                Err(e) => format!("err {}", e.error_type()),
            };
            log(&self.log, format!("{} after {seen}", self.name));
            result
        })
    }
}

/// Refuses every attempt without running it.
struct Deny;

impl Interceptor for Deny {
    fn intercept<'a>(
        &'a self,
        _ctx: &'a ActivityContext,
        _next: Next<'a>,
    ) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async {
            Err(ActivityError::non_retryable(
                "Denied",
                "rate limit exceeded",
            ))
        })
    }
}

/// Answers from a cache without running the body.
struct Cached(u64);

impl Interceptor for Cached {
    fn intercept<'a>(
        &'a self,
        _ctx: &'a ActivityContext,
        _next: Next<'a>,
    ) -> BoxFuture<'a, AttemptResult> {
        let value = self.0;
        Box::pin(async move { Ok(Payload::json(&value).unwrap()) })
    }
}

/// Turns a failure into a fallback value.
struct Fallback;

impl Interceptor for Fallback {
    fn intercept<'a>(
        &'a self,
        _ctx: &'a ActivityContext,
        next: Next<'a>,
    ) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            match next.run().await {
                Err(e) if e.error_type() == "Flaky" => Ok(Payload::json(&0u64).unwrap()),
                other => other,
            }
        })
    }
}

/// After the body, records a checkpoint of its own and takes 6 s more (one heartbeat tick).
struct Epilogue;

impl Interceptor for Epilogue {
    fn intercept<'a>(
        &'a self,
        ctx: &'a ActivityContext,
        next: Next<'a>,
    ) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            let result = next.run().await;
            ctx.checkpoint(&Step { n: 99 }).unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            ctx.checkpoint(&Step { n: 100 }).unwrap();
            result
        })
    }
}

static ADD_RAN: AtomicBool = AtomicBool::new(false);

#[activity(heartbeat_timeout = "10s")]
async fn add(
    ctx: ActivityContext,
    #[checkpoint] mut s: Step,
    input: (u64, u64),
) -> Result<u64, ActivityError> {
    ADD_RAN.store(true, Ordering::SeqCst);
    s.n = 1;
    ctx.checkpoint(&s)?;
    Ok(input.0 + input.1)
}

#[activity(heartbeat_timeout = "10s")]
async fn flaky(_ctx: ActivityContext, _input: ()) -> Result<u64, ActivityError> {
    Err(ActivityError::retryable("Flaky", "try later"))
}

#[activity(heartbeat_timeout = "10s")]
async fn plain(_ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(x)
}

/// Like `plain`, with a `Step` checkpoint for interceptors to use.
#[activity(heartbeat_timeout = "10s")]
async fn stepped(
    _ctx: ActivityContext,
    #[checkpoint] _s: Step,
    x: u64,
) -> Result<u64, ActivityError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(x)
}

#[tokio::test(start_paused = true)]
async fn interceptors_see_the_result_in_order_outer_first() {
    let l = Log::default();
    let run = ActivityEnvironment::new()
        .attempt(2)
        .interceptor(Recorder {
            name: "outer",
            log: l.clone(),
        })
        .interceptor(Recorder {
            name: "inner",
            log: l.clone(),
        })
        .run(plain, 4)
        .await;
    assert_eq!(run.result.unwrap(), 4);
    assert_eq!(
        lines(&l),
        [
            "outer before plain#2",
            "inner before plain#2",
            "inner after ok 4",
            "outer after ok 4"
        ]
    );

    let l = Log::default();
    let run = ActivityEnvironment::new()
        .interceptor(Recorder {
            name: "only",
            log: l.clone(),
        })
        .run(flaky, ())
        .await;
    assert!(run.result.is_err());
    assert_eq!(lines(&l), ["only before flaky#1", "only after err Flaky"]);
}

#[tokio::test(start_paused = true)]
async fn an_interceptor_can_short_circuit_with_a_failure() {
    let run = ActivityEnvironment::new()
        .interceptor(Deny)
        .run(add, (1, 2))
        .await;
    assert!(!ADD_RAN.load(Ordering::SeqCst), "the body never ran");
    let err = run.result.unwrap_err();
    assert_eq!(err.error_type(), "Denied");
    assert!(!err.is_retryable());
    assert!(matches!(
        run.calls.last(),
        Some(RecordedCall::Failed { .. })
    ));
    assert_eq!(run.final_details, None);
}

#[tokio::test(start_paused = true)]
async fn an_interceptor_can_short_circuit_with_a_value() {
    let run = ActivityEnvironment::new()
        .interceptor(Cached(42))
        .run(plain, 1)
        .await;
    assert_eq!(run.result.unwrap(), 42);
    assert_eq!(
        run.elapsed,
        Duration::ZERO,
        "the body's 1 s sleep never happened"
    );
    assert!(matches!(
        run.calls.last(),
        Some(RecordedCall::Completed { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn an_interceptor_can_replace_the_result() {
    let run = ActivityEnvironment::new()
        .interceptor(Fallback)
        .run(flaky, ())
        .await;
    assert_eq!(run.result.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_interceptor_stays_outermost() {
    // The user's interceptor runs for 6 s after the body returned: the pump keeps heartbeating
    // it (5 s), and the final flush carries what it checkpointed last (after it finished).
    let run = ActivityEnvironment::new()
        .interceptor(Epilogue)
        .run(stepped, 7)
        .await;
    assert_eq!(run.result.as_ref().unwrap(), &7);
    let got: Vec<_> = run
        .heartbeats
        .iter()
        .map(|h| (h.at, h.checkpoint.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (Duration::from_secs(5), Some(Step { n: 99 })),
            (Duration::from_secs(7), Some(Step { n: 100 })),
        ]
    );
    assert_eq!(run.last_checkpoint, Some(Step { n: 100 }));
}

#[tokio::test(start_paused = true)]
async fn attempt_runner_keeps_user_interceptors_when_the_pump_is_replaced() {
    let l = Log::default();
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone())
        .interceptor(Recorder {
            name: "mine",
            log: l.clone(),
        })
        .interceptor(Epilogue)
        .pump(Pump::on_current_runtime());
    let request = AttemptRequest::new(
        "runner-1",
        TaskToken::new(*b"r1"),
        Payload::json(&5u64).unwrap(),
    );
    let outcome = runner.start(&stepped(), request).run().await;
    assert_eq!(outcome.result.unwrap().decode::<u64>().unwrap(), 5);
    assert_eq!(lines(&l), ["mine before stepped#1", "mine after ok 5"]);
    // Heartbeats came from the replacement pump, on the paused clock: the tick at 5 s and the
    // final flush at 7 s.
    assert_eq!(transport.heartbeats().len(), 2);
    let calls = transport.calls();
    assert!(matches!(calls.last(), Some(RecordedCall::Completed { .. })));
}
