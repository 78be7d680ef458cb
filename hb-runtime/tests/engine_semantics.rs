//! Engine semantics beyond the basics: start-to-close and schedule-to-close timeouts,
//! non-retryable errors, retry backoff, heartbeats by task token from outside the activity,
//! a timed-out attempt's late checkpoint, stale attempt handles, when `cancel()` answers, and
//! the deadline queue after activities close.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use hb_runtime::Payload;
use hb_runtime::backend::TaskToken;
use hb_runtime::client::{ActivityFailure, ActivityStatus, ClientError, StartOptions, TimeoutKind};
use hb_runtime::engine::{Engine, EngineError, Inspector, request_heartbeat};
use hb_runtime::prelude::*;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

#[activity(
    start_to_close_timeout = "150ms",
    heartbeat_timeout = "100ms",
    heartbeat_interval = "20ms",
    retry(max_attempts = 2, initial_interval = "10ms")
)]
async fn too_slow(ctx: ActivityContext, #[checkpoint] n: u64) -> Result<(), ActivityError> {
    ctx.checkpoint(&(n + 1))?;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[tokio::test]
async fn start_to_close_times_each_attempt_out_and_retries_from_the_checkpoint() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(too_slow).spawn().await.unwrap();
    let h = engine
        .client()
        .start(too_slow, (), StartOptions::id("s2c"))
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::RetriesExhausted { attempts: 2, last }) => match *last {
            ActivityFailure::Timeout {
                kind: TimeoutKind::StartToClose,
                last_details,
            } => {
                // Attempt 2 resumed from attempt 1's 1 and saved 2.
                let n: u64 =
                    hb_runtime::checkpoint::decode_payload(&last_details.unwrap()).unwrap();
                assert_eq!(n, 2);
            }
            other => panic!("expected a start-to-close timeout, got {other:?}"),
        },
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
}

#[tokio::test]
async fn schedule_to_close_ends_the_whole_activity() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(too_slow).spawn().await.unwrap();
    let h = engine
        .client()
        .start(
            too_slow,
            (),
            StartOptions::id("sched2c")
                .start_to_close_timeout(Duration::from_secs(3600))
                .schedule_to_close_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::Timeout {
            kind: TimeoutKind::ScheduleToClose,
            ..
        }) => {}
        other => panic!("expected a schedule-to-close timeout, got {other:?}"),
    }
    assert_eq!(h.describe().await.unwrap().status, ActivityStatus::TimedOut);
}

#[activity(retry(max_attempts = 5, initial_interval = "10ms", non_retryable = ["BadRow"]))]
async fn strict(_ctx: ActivityContext, kind: String) -> Result<(), ActivityError> {
    Err(ActivityError::retryable(
        kind,
        "this row cannot be imported",
    ))
}

#[tokio::test]
async fn a_non_retryable_error_type_ends_the_activity_at_once() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(strict).spawn().await.unwrap();
    let h = engine
        .client()
        .start(strict, "BadRow".to_string(), StartOptions::id("strict-1"))
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::Application { error_type, .. }) => assert_eq!(error_type, "BadRow"),
        other => panic!("expected the application error itself, got {other:?}"),
    }
    assert_eq!(h.describe().await.unwrap().attempt, 1);

    // Another type is retried until the attempts run out.
    let h = engine
        .client()
        .start(strict, "Flaky".to_string(), StartOptions::id("strict-2"))
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::RetriesExhausted { attempts: 5, last }) => {
            assert!(matches!(*last, ActivityFailure::Application { .. }))
        }
        other => panic!("expected RetriesExhausted after 5 attempts, got {other:?}"),
    }
}

#[activity(retry(max_attempts = 2, initial_interval = "30s"))]
async fn fails_once(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Err(ActivityError::retryable("Flaky", "try later"))
}

#[tokio::test]
async fn a_failed_attempt_backs_off_for_the_policy_interval() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine.worker().register(fails_once).spawn().await.unwrap();
    let before = SystemTime::now();
    let h = engine
        .client()
        .start(fails_once, (), StartOptions::id("backoff"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let d = loop {
        let d = h.describe().await.unwrap();
        if d.status == ActivityStatus::BackingOff {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "never backed off");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let next = d.next_attempt_at.unwrap();
    assert!(next >= before + Duration::from_secs(30) - Duration::from_millis(1));
    assert!(matches!(
        d.last_failure,
        Some(ActivityFailure::Application { ref error_type, .. }) if error_type == "Flaky"
    ));
    // Cancelled directly while waiting for its retry.
    h.cancel().await.unwrap();
    assert_eq!(
        h.describe().await.unwrap().status,
        ActivityStatus::Cancelled
    );
}

#[activity(heartbeat_timeout = "30s", heartbeat_interval = "20s")]
async fn waits_for_outside_heartbeats(ctx: ActivityContext) -> Result<String, ActivityError> {
    // Hands its task token out, then waits to be cancelled.
    let token = ctx.info().task_token.clone();
    TOKEN.lock().unwrap().replace(token);
    ctx.cancelled().await;
    Ok(String::new())
}

static TOKEN: std::sync::Mutex<Option<hb_runtime::backend::TaskToken>> =
    std::sync::Mutex::new(None);

#[tokio::test]
async fn an_attempt_is_heartbeated_by_task_token_from_another_thread_and_process() {
    let dir = scratch("token");
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let _w = engine
        .worker()
        .register(waits_for_outside_heartbeats)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let h = client
        .start(
            waits_for_outside_heartbeats,
            (),
            StartOptions::id("outside"),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let token = loop {
        if let Some(t) = TOKEN.lock().unwrap().clone() {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    // Another thread.
    let c2 = client.clone();
    let t2 = token.clone();
    let reply = std::thread::spawn(move || {
        c2.heartbeat(
            &t2,
            Some(&Payload::json(&serde_json::json!({"step": 1})).unwrap()),
        )
    })
    .join()
    .unwrap()
    .unwrap();
    assert!(!reply.stops());
    let d = h.describe().await.unwrap();
    assert_eq!(d.details.unwrap().data(), br#"{"step":1}"#);
    assert!(d.last_heartbeat.is_some());

    // Another process would do this: queue it in the file; the engine applies it shortly.
    request_heartbeat(
        &path,
        &token,
        Some(&Payload::json(&serde_json::json!({"step": 2})).unwrap()),
    )
    .unwrap();
    loop {
        let d = h.describe().await.unwrap();
        if d.details.as_ref().map(|p| p.data().to_vec()) == Some(br#"{"step":2}"#.to_vec()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued heartbeat never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.cancel().await.unwrap();
    let _ = h.result().await;
    drop(engine);
}

#[activity(retry(max_attempts = 3, initial_interval = "20ms"))]
async fn fails_first(ctx: ActivityContext) -> Result<u32, ActivityError> {
    if ctx.info().attempt == 1 {
        return Err(ActivityError::retryable("Flaky", "first attempt fails"));
    }
    Ok(ctx.info().attempt)
}

#[tokio::test]
async fn a_deadline_years_away_does_not_stop_the_engines_timers() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(too_slow)
        .register(fails_first)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let _far = client
        .start(
            too_slow,
            (),
            StartOptions::id("far")
                .start_to_close_timeout(Duration::from_secs(3 * 365 * 24 * 3600))
                .schedule_to_close_timeout(Duration::from_secs(3 * 365 * 24 * 3600)),
        )
        .await
        .unwrap();
    // Its retry needs the timer task alive.
    let h = client
        .start(fails_first, (), StartOptions::id("near"))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), h.result())
            .await
            .expect("the retry timer fired")
            .unwrap(),
        2
    );
}

#[activity(
    heartbeat_timeout = "10s",
    cancel = "cooperative",
    cancel_grace = "5s",
    retry(max_attempts = 5, initial_interval = "10ms")
)]
async fn fails_when_cancelled(ctx: ActivityContext) -> Result<(), ActivityError> {
    ctx.cancelled().await;
    Err(ActivityError::retryable("Interrupted", "gave up on cancel"))
}

#[tokio::test]
async fn an_attempt_that_fails_after_a_cancel_request_ends_the_activity_as_cancelled() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(fails_when_cancelled)
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(fails_when_cancelled, (), StartOptions::id("fail-on-cancel"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.describe().await.unwrap().status != ActivityStatus::Running {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    h.cancel().await.unwrap();
    assert!(matches!(
        h.result().await,
        Err(ActivityFailure::Cancelled { .. })
    ));
    assert_eq!(h.describe().await.unwrap().attempt, 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_does_not_fit_fails_alone() {
    let dir = scratch("isolation");
    let engine = Engine::open_with(
        dir.path().join("hb.db"),
        hb_runtime::engine::EngineOptions::default().max_file_size(512 * 1024),
    )
    .await
    .unwrap();
    let client = engine.client();
    let big = "x".repeat(2 * 1024 * 1024);
    let mut small = tokio::task::JoinSet::new();
    for i in 0..50 {
        let client = client.clone();
        small.spawn(async move {
            client
                .start(
                    strict,
                    format!("s{i}"),
                    StartOptions::id(format!("small-{i}")),
                )
                .await
        });
    }
    let big_start = client.start(strict, big, StartOptions::id("too-big")).await;
    assert!(matches!(
        big_start,
        Err(ClientError::Engine(EngineError::Storage { .. }))
    ));
    while let Some(r) = small.join_next().await {
        r.unwrap()
            .expect("a small start batched with the big one still succeeds");
    }
    drop(engine);
}

/// Attempt 1 saves 1, then stops checkpointing: its heartbeats stop (stall_timeout) and the
/// engine times it out. Told so, it saves 2 and fails: only heartbeats sent after the timeout
/// (the pump's next one or the attempt's final flush, with attempt 1's task token) carry 2.
/// The retry returns the checkpoint it resumed from.
#[activity(
    heartbeat_timeout = "300ms",
    heartbeat_interval = "20ms",
    stall_timeout = "100ms",
    cancel = "cooperative",
    cancel_grace = "10s",
    retry(max_attempts = 2, initial_interval = "1s")
)]
async fn saves_after_its_timeout(
    ctx: ActivityContext,
    #[checkpoint] n: u64,
) -> Result<u64, ActivityError> {
    if ctx.info().attempt > 1 {
        return Ok(n);
    }
    ctx.checkpoint(&1u64)?;
    ctx.cancelled().await;
    ctx.checkpoint(&2u64)?;
    Err(ActivityError::retryable("Stopped", "timed out"))
}

#[tokio::test]
async fn a_timed_out_attempts_late_checkpoint_reaches_the_retry() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(saves_after_its_timeout)
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(saves_after_its_timeout, (), StartOptions::id("late"))
        .await
        .unwrap();

    // The late 2 lands while the activity backs off from attempt 1's heartbeat timeout.
    let d = eventually("the late checkpoint 2 is kept", || async {
        let d = h.describe().await.unwrap();
        assert!(
            d.attempt <= 1,
            "the retry started without the late checkpoint: {d:?}"
        );
        (d.checkpoint::<u64>() == Some(2)).then_some(d)
    })
    .await;
    assert_eq!(d.status, ActivityStatus::BackingOff);
    match d.last_failure {
        Some(ActivityFailure::Timeout {
            kind: TimeoutKind::Heartbeat,
            last_details: Some(last),
        }) => {
            // What the engine had when it timed the attempt out.
            let n: u64 = hb_runtime::checkpoint::decode_payload(&last).unwrap();
            assert_eq!(n, 1);
        }
        other => panic!("expected a heartbeat timeout with checkpoint 1, got {other:?}"),
    }

    let resumed_from = tokio::time::timeout(Duration::from_secs(10), h.result())
        .await
        .expect("the retry finished")
        .unwrap();
    assert_eq!(resumed_from, 2);
    assert_eq!(h.describe().await.unwrap().attempt, 2);
}

/// As [`saves_after_its_timeout`], but attempt 1 watches for the cancel reason itself: the
/// engine sets it first thing when it delivers the timeout, before the attempt is told to stop.
#[activity(
    heartbeat_timeout = "300ms",
    heartbeat_interval = "20ms",
    stall_timeout = "100ms",
    cancel = "cooperative",
    cancel_grace = "10s",
    retry(max_attempts = 2, initial_interval = "2s")
)]
async fn saves_once_it_times_out(
    ctx: ActivityContext,
    #[checkpoint] n: u64,
) -> Result<u64, ActivityError> {
    if ctx.info().attempt > 1 {
        return Ok(n);
    }
    ctx.checkpoint(&1u64)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ctx.cancel_reason().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    ctx.checkpoint(&2u64)?;
    ctx.flush().await?;
    Err(ActivityError::retryable("Stopped", "timed out"))
}

/// The activity whose timeout [`HoldTimeout`] holds.
const HELD: &str = "late-reopen";
static HOLD_RELEASED: AtomicBool = AtomicBool::new(false);

/// Holds the engine's timer thread (at most 10 s, until the test releases it) in the "activity
/// cancel delivered" event of activity [`HELD`]'s attempt: what the engine does after
/// delivering that timeout waits, while the attempt, whose cancel reason is set, goes on.
struct HoldTimeout;

/// Marks the spans of activity [`HELD`]'s attempts.
struct Held;

/// The fields of a span or event, formatted.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

impl<S> tracing_subscriber::Layer<S> for HoldTimeout
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if fields.get("activity_id") == Some(HELD)
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Held);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if std::thread::current().name() != Some("hb-timers") {
            return;
        }
        let held = ctx
            .event_scope(event)
            .is_some_and(|mut spans| spans.any(|s| s.extensions().get::<Held>().is_some()));
        let mut fields = Fields::default();
        event.record(&mut fields);
        if !held || fields.get("message") != Some("activity cancel delivered") {
            return;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !HOLD_RELEASED.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The timeout's BackingOff transition is queued for the writer before the attempt hears of
/// the timeout (and every write is queued under the engine's lock, in the order of its changes),
/// so the attempt's late checkpoint is written after the transition, never overwritten by the
/// older checkpoint the transition carries. Holding the engine right after it delivered the
/// timeout makes the late checkpoint arrive in that window every time.
#[tokio::test]
async fn a_timed_out_attempts_late_checkpoint_survives_a_reopen() {
    use tracing_subscriber::layer::SubscriberExt;
    // The timer thread is the engine's own: only a process-wide subscriber sees its events.
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(HoldTimeout))
        .expect("no other test of this file installs a subscriber");
    let dir = scratch("late-reopen");
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let w = engine
        .worker()
        .register(saves_once_it_times_out)
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(saves_once_it_times_out, (), StartOptions::id(HELD))
        .await
        .unwrap();

    // The late 2 is taken while the engine, having timed attempt 1 out, is held.
    eventually("the late checkpoint 2 is kept", || async {
        let d = h.describe().await.unwrap();
        (d.status == ActivityStatus::BackingOff && d.checkpoint::<u64>() == Some(2)).then_some(())
    })
    .await;
    HOLD_RELEASED.store(true, Ordering::SeqCst);

    // Stored, not only held in memory: the reopened file still has it.
    w.shutdown().await;
    drop((h, engine));
    let engine = reopen(&path).await;
    let d = engine.client().describe(HELD).await.unwrap();
    assert_eq!((d.attempt, d.checkpoint::<u64>()), (1, Some(2)), "{d:?}");

    let _w = engine
        .worker()
        .register(saves_once_it_times_out)
        .spawn()
        .await
        .unwrap();
    let h = engine.client().handle(saves_once_it_times_out, HELD);
    let resumed_from = tokio::time::timeout(Duration::from_secs(10), h.result())
        .await
        .expect("the retry finished")
        .unwrap();
    assert_eq!(resumed_from, 2);
    drop((h, engine));
}

/// Decodes of [`Gated`] begun, and how many of them the test has let through.
static GATE_ENTERED: AtomicU32 = AtomicU32::new(0);
static GATE_OPENED: AtomicU32 = AtomicU32::new(0);

/// An input whose decoding waits (at most 10 s) for the test to let it through. A worker decodes
/// an attempt's input after taking the attempt and before installing the attempt's cancel
/// handle: the test can time an attempt out, or cancel its activity, right in between.
#[derive(Serialize, Debug)]
struct Gated;

impl<'de> Deserialize<'de> for Gated {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        let n = GATE_ENTERED.fetch_add(1, Ordering::SeqCst) + 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while GATE_OPENED.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Gated)
    }
}

/// Waits to be asked to stop, reports why, and fails.
#[activity(
    heartbeat_timeout = "1s",
    cancel = "cooperative",
    cancel_grace = "10s",
    retry(max_attempts = 3, initial_interval = "10ms")
)]
async fn reports_its_cancel(
    ctx: ActivityContext,
    #[state] seen: UnboundedSender<(u32, Option<CancelReason>)>,
    _input: Gated,
) -> Result<(), ActivityError> {
    ctx.cancelled().await;
    seen.send((ctx.info().attempt, ctx.cancel_reason())).ok();
    Err(ActivityError::retryable(
        "Interrupted",
        "stopped when asked",
    ))
}

/// Attempt 1's handle comes into being only after the engine timed attempt 1 out: the engine
/// stops it (timed out) instead of taking it as the activity's. A cancel requested while attempt
/// 2 is being prepared then reaches attempt 2 alone, once its handle exists.
// Several worker threads: the gate blocks the worker's thread while the test goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_reaches_the_current_attempt_never_a_stale_one() {
    let engine = Engine::in_memory().await.unwrap();
    let (tx, mut seen) = unbounded_channel::<(u32, Option<CancelReason>)>();
    let _w = engine
        .worker()
        .register(reports_its_cancel)
        .state(tx)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let h = client
        .start(reports_its_cancel, Gated, StartOptions::id("stale"))
        .await
        .unwrap();

    // Attempt 1 times out while its worker is still preparing it, before its handle exists.
    eventually("the worker takes attempt 1", || async {
        (GATE_ENTERED.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    let d = eventually("attempt 1 times out", || async {
        let d = h.describe().await.unwrap();
        (d.status != ActivityStatus::Running).then_some(d)
    })
    .await;
    assert_eq!(d.attempt, 1);
    assert!(
        matches!(
            d.last_failure,
            Some(ActivityFailure::Timeout {
                kind: TimeoutKind::Heartbeat,
                ..
            })
        ),
        "{d:?}"
    );
    GATE_OPENED.store(1, Ordering::SeqCst);

    // The cancel comes while attempt 2 is taken but its handle not installed yet: attempt 1's
    // handle, still running, must not receive it.
    eventually("the worker takes attempt 2", || async {
        (GATE_ENTERED.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    client.cancel("stale").await.unwrap();
    GATE_OPENED.store(2, Ordering::SeqCst);

    let mut reports = Vec::new();
    for _ in 0..2 {
        let report = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .unwrap_or_else(|_| panic!("an attempt was never asked to stop; seen {reports:?}"))
            .unwrap();
        reports.push(report);
    }
    reports.sort_by_key(|(attempt, _)| *attempt);
    assert_eq!(
        reports,
        [
            (1, Some(CancelReason::TimedOut)),
            (2, Some(CancelReason::Requested))
        ]
    );
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), h.result())
            .await
            .expect("the activity ended"),
        Err(ActivityFailure::Cancelled { .. })
    ));
    assert_eq!(h.describe().await.unwrap().attempt, 2);
}

/// Hands its task token out, then waits until the cancel drops it.
#[activity(heartbeat_timeout = "30s")]
async fn hands_out_its_token(
    ctx: ActivityContext,
    #[state] tokens: UnboundedSender<TaskToken>,
) -> Result<(), ActivityError> {
    tokens.send(ctx.info().task_token.clone()).ok();
    std::future::pending().await
}

#[tokio::test]
async fn cancel_answers_only_once_the_request_is_stored() {
    let dir = scratch("stored-cancel");
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let (tx, mut tokens) = unbounded_channel();
    let _w = engine
        .worker()
        .register(hands_out_its_token)
        .state(tx)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    let h = client
        .start(hands_out_its_token, (), StartOptions::id("stored"))
        .await
        .unwrap();
    let token = tokio::time::timeout(Duration::from_secs(10), tokens.recv())
        .await
        .expect("the attempt started")
        .unwrap();
    // Another connection, read-only, as another process would read the file.
    let inspector = Inspector::open(&path).unwrap();
    assert!(!inspector.get("stored").unwrap().cancel_requested);

    // A large heartbeat queued just before keeps the writer busy: the cancel request is
    // committed in the same transaction, after some 4 MiB are written. A cancel() that did not
    // wait for its commit would answer long before.
    let big = Payload::json(&"x".repeat(4 << 20)).unwrap();
    assert!(!client.heartbeat(&token, Some(&big)).unwrap().stops());
    drop(big);
    client.cancel("stored").await.unwrap();
    assert!(
        inspector.get("stored").unwrap().cancel_requested,
        "cancel() answered before the request was in the file"
    );

    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), h.result())
            .await
            .expect("the activity ended"),
        Err(ActivityFailure::Cancelled { .. })
    ));
    drop((inspector, h, client, engine));
}

#[activity(
    heartbeat_timeout = "10s",
    start_to_close_timeout = "1h",
    schedule_to_close_timeout = "1h"
)]
async fn quick_with_long_timeouts(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

#[tokio::test]
async fn the_timers_of_closed_activities_leave_the_deadline_queue_at_once() {
    let engine = Engine::in_memory().await.unwrap();
    let client = engine.client();
    let mut handles = Vec::new();
    for i in 0..50 {
        handles.push(
            client
                .start(
                    quick_with_long_timeouts,
                    i,
                    StartOptions::id(format!("long-{i}")),
                )
                .await
                .unwrap(),
        );
    }
    // No worker yet: each waits with its 1 h schedule-to-close timer armed.
    stats_reach(&engine, 50, 50).await;

    // Each attempt arms a heartbeat and a 1 h start-to-close timer too; all go when it completes.
    let _w = engine
        .worker()
        .register(quick_with_long_timeouts)
        .spawn()
        .await
        .unwrap();
    for (i, h) in (0..).zip(&handles) {
        let out = tokio::time::timeout(Duration::from_secs(10), h.result())
            .await
            .expect("the activity completed")
            .unwrap();
        assert_eq!(out, i);
    }
    stats_reach(&engine, 0, 0).await;
}

/// Waits (at most 10 s) until `engine` holds `open` activities and `pending_timers` timers.
async fn stats_reach(engine: &Engine, open: usize, pending_timers: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = engine.stats();
        if (s.open, s.pending_timers) == (open, pending_timers) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {open} open activities and {pending_timers} pending timers, still {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `check` every 5 ms until it answers `Some`, failing the test after 10 s.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A fresh scratch directory for one test, removed when it drops (even if the test fails).
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hb-semantics-{name}-"))
        .tempdir()
        .unwrap()
}

/// Opens `path` again once the engine dropped before has released it (its last attempt task
/// may still hold it for a moment).
async fn reopen(path: &Path) -> Engine {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Engine::open(path).await {
            Ok(engine) => return engine,
            Err(EngineError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("reopening {}: {e}", path.display()),
        }
    }
}

/// Returns `Cancelled` although nobody asked it to cancel.
#[activity(
    heartbeat_timeout = "10s",
    retry(max_attempts = 3, initial_interval = "10ms")
)]
async fn quits_unasked(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Err(ActivityError::Cancelled {
        reason: CancelReason::Requested,
        details: None,
    })
}

#[tokio::test]
async fn a_body_returning_cancelled_unasked_fails_the_activity_instead_of_cancelling_it() {
    let engine = Engine::in_memory().await.unwrap();
    let _w = engine
        .worker()
        .register(quits_unasked)
        .spawn()
        .await
        .unwrap();
    let h = engine
        .client()
        .start(quits_unasked, (), StartOptions::id("quits"))
        .await
        .unwrap();
    match h.result().await {
        Err(ActivityFailure::Application {
            error_type,
            non_retryable: true,
            ..
        }) => assert_eq!(error_type, "Cancelled"),
        other => panic!("expected a non-retryable Cancelled failure, got {other:?}"),
    }
    assert_eq!(h.describe().await.unwrap().status, ActivityStatus::Failed);
}

/// Checkpoints a large value, then fails (retryably).
#[activity(heartbeat_timeout = "10s")]
async fn saves_big_then_fails(
    ctx: ActivityContext,
    #[checkpoint] _saved: String,
    kb: usize,
) -> Result<(), ActivityError> {
    ctx.checkpoint(&"c".repeat(kb << 10))?;
    ctx.flush().await?;
    Err(ActivityError::retryable("Flaky", "after a big checkpoint"))
}

async fn state_is(h: &hb_runtime::client::Handle<saves_big_then_fails>, s: ActivityStatus) {
    eventually("the state", || async {
        (h.describe().await.ok()?.status == s).then_some(())
    })
    .await;
}

/// Issue 9, failure 5: a retry interval near `Duration::MAX` (a natural "never retry on your
/// own") neither panics nor stores a negative time: the retry is due a century from now, the
/// activity waits for it (or a cancel), and the file reopens with it still waiting.
#[tokio::test]
async fn a_retry_interval_of_duration_max_waits_instead_of_overflowing() {
    let dir = scratch("max-interval");
    let path = dir.path().join("hb.db");
    let engine = Engine::open(&path).await.unwrap();
    let _w = engine
        .worker()
        .register(saves_big_then_fails)
        .spawn()
        .await
        .unwrap();
    let never = hb_runtime::RetryPolicy::new().initial_interval(Duration::MAX);
    let h = engine
        .client()
        .start(
            saves_big_then_fails,
            1,
            StartOptions::id("never").retry(never),
        )
        .await
        .unwrap();
    state_is(&h, ActivityStatus::BackingOff).await;
    let d = h.describe().await.unwrap();
    let next = d.next_attempt_at.expect("a retry is due");
    let years = |n: u64| Duration::from_secs(n * 365 * 24 * 3600);
    assert!(next > SystemTime::now() + years(50), "{next:?}");
    assert_eq!(d.attempt, 1);
    _w.shutdown().await;
    drop((h, engine));

    let engine = reopen(&path).await;
    let _w = engine
        .worker()
        .register(saves_big_then_fails)
        .spawn()
        .await
        .unwrap();
    let h = engine.client().handle(saves_big_then_fails, "never");
    let d = h.describe().await.unwrap();
    assert_eq!(
        (d.status, d.attempt),
        (ActivityStatus::BackingOff, 1),
        "not retried at the reopen"
    );
    h.cancel().await.unwrap();
    assert_eq!(
        h.describe().await.unwrap().status,
        ActivityStatus::Cancelled
    );
    _w.shutdown().await;
    drop((h, engine));
}

/// Issue 9, failure 7: `cancel()` answers `Ok` only once the cancel is stored. On a full file
/// the cancel's own write fails: before, the write was replayed alone, failed, and the barrier
/// `cancel()` waited for succeeded on its own, so it answered `Ok` for a cancel a crash would
/// lose. Now it fails with the storage error, and the file still has the activity as it was.
#[tokio::test]
async fn a_cancel_that_cannot_be_stored_fails_instead_of_answering_ok() {
    let dir = scratch("full-cancel");
    let path = dir.path().join("hb.db");
    let options = hb_runtime::engine::EngineOptions::default().max_file_size(2 << 20);
    let engine = Engine::open_with(&path, options).await.unwrap();
    let worker = engine
        .worker()
        .register(saves_big_then_fails)
        .spawn()
        .await
        .unwrap();
    let client = engine.client();
    // Backing off for an hour with a 200 KiB checkpoint: cancelling it stores a failure that
    // carries that checkpoint, 200 KiB more.
    let hour = hb_runtime::RetryPolicy::new().initial_interval(Duration::from_secs(3600));
    let h = client
        .start(
            saves_big_then_fails,
            200,
            StartOptions::id("big").retry(hour),
        )
        .await
        .unwrap();
    state_is(&h, ActivityStatus::BackingOff).await;
    worker.shutdown().await;
    // Fill the file: starts of ever smaller inputs until even a small one does not fit.
    let mut n = 0;
    for kb in [100usize, 20, 4] {
        loop {
            n += 1;
            let r = client
                .start(
                    saves_big_then_fails,
                    kb,
                    StartOptions::id(format!("fill-{n}"))
                        .start_to_close_timeout(Duration::from_secs(1)),
                )
                .await;
            match r {
                Ok(_) => {}
                Err(ClientError::Engine(EngineError::Storage { .. })) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
    }
    match h.cancel().await {
        Err(ClientError::Engine(EngineError::Storage { .. })) => {}
        other => panic!("expected the storage error, got {other:?}"),
    }
    // What the file says, read as another process would.
    let stored = Inspector::open(&path).unwrap().get("big").unwrap();
    assert_eq!(stored.status, ActivityStatus::BackingOff);
    drop((h, client, engine));
}
