//! The heartbeat interval: half the heartbeat timeout by default, an explicit
//! `heartbeat_interval` when given, 30 s with no timeout, never above 0.8 × the timeout; and what
//! `ctx.info()` tells the body about it.
//!
//! All tests run on tokio's paused clock, with the test kit's pump following it, so heartbeat
//! times are exact.

use std::time::Duration;

use hb_runtime::prelude::*;
use hb_runtime::testing::{ActivityEnvironment, TestRun};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn times<A: Activity>(run: &TestRun<A>) -> Vec<Duration> {
    run.heartbeats.iter().map(|h| h.at).collect()
}

/// Sleeps `secs` seconds without checkpointing, then succeeds.
#[activity(heartbeat_timeout = "10s")]
async fn idle_10s(_ctx: ActivityContext, secs: u64) -> Result<(), ActivityError> {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

#[activity(heartbeat_timeout = "10s", heartbeat_interval = "2s")]
async fn idle_every_2s(_ctx: ActivityContext, secs: u64) -> Result<(), ActivityError> {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

#[activity(heartbeat_timeout = "3s")]
async fn idle_3s(_ctx: ActivityContext, millis: u64) -> Result<(), ActivityError> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    Ok(())
}

#[activity(start_to_close_timeout = "1h")]
async fn idle_no_timeout(
    ctx: ActivityContext,
    secs: u64,
) -> Result<(Option<u64>, u64), ActivityError> {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let info = ctx.info();
    Ok((
        info.heartbeat_timeout.map(|d| d.as_secs()),
        info.heartbeat_interval.as_secs(),
    ))
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct InfoSeen {
    activity_id: String,
    activity_type: String,
    attempt: u32,
    heartbeat_timeout_ms: Option<u128>,
    heartbeat_interval_ms: u128,
    has_deadline: bool,
    task_token: Vec<u8>,
}

fn seen(ctx: &ActivityContext) -> InfoSeen {
    let info = ctx.info();
    InfoSeen {
        activity_id: info.activity_id.clone(),
        activity_type: info.activity_type.to_owned(),
        attempt: info.attempt,
        heartbeat_timeout_ms: info.heartbeat_timeout.map(|d| d.as_millis()),
        heartbeat_interval_ms: info.heartbeat_interval.as_millis(),
        has_deadline: info.deadline.is_some(),
        task_token: info.task_token.as_bytes().to_vec(),
    }
}

#[activity(heartbeat_timeout = "10s", heartbeat_interval = "3s")]
async fn report_info(ctx: ActivityContext, _input: ()) -> Result<InfoSeen, ActivityError> {
    Ok(seen(&ctx))
}

#[activity(heartbeat_timeout = "10s", name = "billing.ChargeCard")]
async fn renamed(ctx: ActivityContext, _input: ()) -> Result<InfoSeen, ActivityError> {
    Ok(seen(&ctx))
}

#[tokio::test(start_paused = true)]
async fn default_interval_is_half_the_heartbeat_timeout() {
    let run = ActivityEnvironment::new().run(idle_10s, 16).await;
    run.result.as_ref().unwrap();
    assert_eq!(times(&run), [secs(5.0), secs(10.0), secs(15.0)]);
    assert_eq!(run.elapsed, secs(16.0));
    assert!(!run.timed_out);
}

#[tokio::test(start_paused = true)]
async fn default_interval_halves_odd_timeouts_exactly() {
    let run = ActivityEnvironment::new().run(idle_3s, 5_000).await;
    run.result.as_ref().unwrap();
    assert_eq!(times(&run), [secs(1.5), secs(3.0), secs(4.5)]);
}

#[tokio::test(start_paused = true)]
async fn explicit_heartbeat_interval_is_honoured() {
    let run = ActivityEnvironment::new().run(idle_every_2s, 7).await;
    run.result.as_ref().unwrap();
    assert_eq!(times(&run), [secs(2.0), secs(4.0), secs(6.0)]);
}

#[tokio::test(start_paused = true)]
async fn an_activity_that_ends_before_the_first_interval_sends_no_heartbeat() {
    let run = ActivityEnvironment::new().run(idle_10s, 4).await;
    run.result.as_ref().unwrap();
    assert!(run.heartbeats.is_empty(), "{:?}", run.heartbeats);
}

#[tokio::test(start_paused = true)]
async fn without_heartbeat_timeout_the_interval_is_30_seconds() {
    let run = ActivityEnvironment::new().run(idle_no_timeout, 95).await;
    assert_eq!(run.result.as_ref().unwrap(), &(None, 30));
    assert_eq!(times(&run), [secs(30.0), secs(60.0), secs(90.0)]);
    assert!(!run.timed_out);
}

#[tokio::test(start_paused = true)]
async fn info_describes_the_attempt() {
    let run = ActivityEnvironment::new()
        .activity_id("invoice-7")
        .attempt(3)
        .run(report_info, ())
        .await;
    assert_eq!(
        run.result.unwrap(),
        InfoSeen {
            activity_id: "invoice-7".into(),
            activity_type: "report_info".into(),
            attempt: 3,
            heartbeat_timeout_ms: Some(10_000),
            heartbeat_interval_ms: 3_000,
            has_deadline: false,
            // The test kit's token is "<activity id>#<attempt>".
            task_token: b"invoice-7#3".to_vec(),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn info_carries_the_name_given_with_the_name_option() {
    let run = ActivityEnvironment::new().run(renamed, ()).await;
    let info = run.result.unwrap();
    assert_eq!(info.activity_type, "billing.ChargeCard");
    assert_eq!(info.heartbeat_interval_ms, 5_000);
}

#[tokio::test(start_paused = true)]
async fn options_override_clamps_the_interval_to_80_percent_of_the_timeout() {
    // An interval at or above the timeout would let the backend time the attempt out between
    // two heartbeats: it is capped at 0.8 × 10 s = 8 s.
    let run = ActivityEnvironment::new()
        .options(|o| o.heartbeat_interval(Duration::from_secs(20)))
        .run(idle_10s, 17)
        .await;
    run.result.as_ref().unwrap();
    assert_eq!(times(&run), [secs(8.0), secs(16.0)]);
    assert!(!run.timed_out);
}

#[tokio::test(start_paused = true)]
async fn options_override_of_the_timeout_moves_the_default_interval() {
    let env = ActivityEnvironment::new().options(|o| o.heartbeat_timeout(Duration::from_secs(3)));
    let run = env.run(report_info, ()).await;
    let info = run.result.unwrap();
    // report_info sets heartbeat_interval = "3s", now capped at 0.8 × 3 s.
    assert_eq!(info.heartbeat_timeout_ms, Some(3_000));
    assert_eq!(info.heartbeat_interval_ms, 2_400);

    // idle_10s has no interval of its own: half the overridden timeout.
    let run = env.run(idle_10s, 7).await;
    run.result.as_ref().unwrap();
    assert_eq!(times(&run), [secs(1.5), secs(3.0), secs(4.5), secs(6.0)]);
    assert!(!run.timed_out);
}

#[tokio::test(start_paused = true)]

async fn a_zero_heartbeat_timeout_counts_as_none() {
    // Temporal reports an unset heartbeat timeout as zero: no timeout, so the 30 s interval.
    let run = ActivityEnvironment::new()
        .options(|o| o.heartbeat_timeout(Duration::ZERO))
        .without_timeouts()
        .run(idle_no_timeout, 31)
        .await;
    assert_eq!(run.result.as_ref().unwrap(), &(None, 30));
    assert_eq!(times(&run), [secs(30.0)]);
}

#[tokio::test(start_paused = true)]
async fn one_pump_heartbeats_many_attempts_each_at_its_own_interval() {
    use hb_runtime::Payload;
    use hb_runtime::backend::Pump;
    use hb_runtime::backend::TaskToken;
    use hb_runtime::backend::{AttemptRequest, AttemptRunner};
    use hb_runtime::testing::MemoryTransport;

    let transport = MemoryTransport::new();
    let pump = Pump::on_current_runtime();
    let runner = AttemptRunner::new(transport.clone()).pump(pump.clone());
    let mut attempts = Vec::new();
    for i in 0..100u32 {
        let token = TaskToken::new(format!("attempt-{i}"));
        let request = AttemptRequest::new(format!("a{i}"), token, Payload::json(&7u64).unwrap());
        // Even attempts heartbeat every 5 s (half of 10 s), odd ones every 2 s.
        let running = if i % 2 == 0 {
            runner.start(&idle_10s(), request)
        } else {
            runner.start(&idle_every_2s(), request)
        };
        attempts.push(tokio::spawn(running.into_future()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pump.stats().active, 100);
    for a in attempts {
        a.await.unwrap().result.unwrap();
    }

    let start = tokio::time::Instant::now() - Duration::from_secs(7);
    for i in 0..100u32 {
        let token = TaskToken::new(format!("attempt-{i}"));
        let at: Vec<_> = transport
            .heartbeats()
            .into_iter()
            .filter(|h| h.token == token)
            .map(|h| h.at - start)
            .collect();
        let expected: &[f64] = if i % 2 == 0 { &[5.0] } else { &[2.0, 4.0, 6.0] };
        let expected: Vec<_> = expected.iter().map(|s| secs(*s)).collect();
        assert_eq!(at, expected, "attempt {i}");
    }
    // 50 × 1 + 50 × 3 ticks, and every attempt left the scheduler.
    assert_eq!(pump.stats().ticks, 200);
    assert_eq!(pump.stats().active, 0);
}

#[activity(heartbeat_timeout = "10s", start_to_close_timeout = "1h")]
async fn deadline_seen(ctx: ActivityContext, _input: ()) -> Result<u64, ActivityError> {
    let deadline = ctx
        .info()
        .deadline
        .expect("a bounded attempt has a deadline");
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Ok(left.as_secs())
}

#[tokio::test(start_paused = true)]
async fn info_deadline_follows_start_to_close_timeout() {
    let run = ActivityEnvironment::new().run(deadline_seen, ()).await;
    let left = run.result.unwrap();
    assert!((3_590..=3_600).contains(&left), "{left} s left of an hour");
}
