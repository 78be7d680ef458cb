//! Regressions found in review: each test failed before its fix.

use std::time::Duration;

use hb_runtime::backend::Pump;
use hb_runtime::backend::{AttemptRequest, AttemptRunner};
use hb_runtime::backend::{HeartbeatReply, NullTransport, TaskToken, Transport};
use hb_runtime::checkpoint::{decode_payload, encode_payload};
use hb_runtime::prelude::*;
use hb_runtime::testing::ActivityEnvironment;
use hb_runtime::testing::MemoryTransport;
use hb_runtime::{BoxFuture, Payload, TransportError};

/// A backend that takes every report (as `NullTransport` does) but never answers a heartbeat.
#[derive(Clone, Default)]
struct Silent(NullTransport);

impl Transport for Silent {
    fn heartbeat<'a>(
        &'a self,
        _: &'a TaskToken,
        _: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        Box::pin(std::future::pending())
    }
    fn complete<'a>(
        &'a self,
        t: &'a TaskToken,
        o: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.0.complete(t, o)
    }
    fn fail<'a>(
        &'a self,
        t: &'a TaskToken,
        e: &'a ActivityError,
        d: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.0.fail(t, e, d)
    }
    fn cancelled<'a>(
        &'a self,
        t: &'a TaskToken,
        d: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.0.cancelled(t, d)
    }
}

#[activity(heartbeat_timeout = "2s")]
async fn counts_to(
    ctx: ActivityContext,
    #[checkpoint] mut n: u64,
    to: u64,
) -> Result<u64, ActivityError> {
    while n < to {
        tokio::time::sleep(Duration::from_millis(500)).await;
        n += 1;
        ctx.checkpoint(&n)?;
    }
    Ok(n)
}

fn request(id: &str, input: impl Serialize) -> AttemptRequest {
    AttemptRequest::new(id, TaskToken::new(id), Payload::json(&input).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_never_answers_heartbeats_does_not_hang_the_attempt() {
    let runner = AttemptRunner::new(Silent::default()).pump(Pump::on_current_runtime());
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        runner.start(&counts_to(), request("silent", 6)).run(),
    )
    .await
    .expect("the attempt reports within a bounded time");
    assert_eq!(outcome.result.unwrap().decode::<u64>().unwrap(), 6);
    // The report still carries the newest checkpoint.
    assert_eq!(decode_payload::<u64>(&outcome.details.unwrap()).unwrap(), 6);
}

/// Answers heartbeats after a round trip over a real loopback socket, on whatever runtime
/// calls it: the production pump's.
#[derive(Clone, Default)]
struct OverTheNetwork(MemoryTransport);

impl Transport for OverTheNetwork {
    fn heartbeat<'a>(
        &'a self,
        token: &'a TaskToken,
        details: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<HeartbeatReply, TransportError>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (_a, _b) = tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
            self.0.heartbeat(token, details).await
        })
    }
    fn complete<'a>(
        &'a self,
        t: &'a TaskToken,
        o: Payload,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.0.complete(t, o)
    }
    fn fail<'a>(
        &'a self,
        t: &'a TaskToken,
        e: &'a ActivityError,
        d: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.0.fail(t, e, d)
    }
    fn cancelled<'a>(
        &'a self,
        t: &'a TaskToken,
        d: Option<&'a Payload>,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.0.cancelled(t, d)
    }
}

#[activity(heartbeat_timeout = "100ms")]
async fn waits(ctx: ActivityContext) -> Result<(), ActivityError> {
    ctx.cancelled().await;
    Ok(())
}

#[tokio::test]
async fn the_production_pump_can_run_transports_that_do_network_io() {
    let transport = OverTheNetwork::default();
    let runner = AttemptRunner::new(transport.clone()).pump(Pump::dedicated());
    let running = runner.start(&waits(), request("net", ()));
    let handle = running.handle();
    let join = tokio::spawn(running.run());
    assert!(
        transport
            .0
            .wait_for_heartbeats(2, Duration::from_secs(10))
            .await,
        "heartbeats went through the network on the pump's runtime"
    );
    handle.cancel(CancelReason::Requested);
    join.await.unwrap();
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct OwnVersionField {
    _hb_v: u64,
    next: u64,
}

#[derive(Checkpoint, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
struct OnlyValueField {
    _hb_value: u64,
}

#[test]
fn checkpoint_fields_named_like_envelope_keys_round_trip() {
    let a = OwnVersionField { _hb_v: 7, next: 3 };
    assert_eq!(
        decode_payload::<OwnVersionField>(&encode_payload(&a).unwrap()).unwrap(),
        a
    );
    let b = OnlyValueField { _hb_value: 5 };
    assert_eq!(
        decode_payload::<OnlyValueField>(&encode_payload(&b).unwrap()).unwrap(),
        b
    );
}

#[activity(heartbeat_timeout = "10s")]
async fn checkpoints_then_waits(
    ctx: ActivityContext,
    #[checkpoint] n: u64,
) -> Result<(), ActivityError> {
    ctx.checkpoint(&(n + 5))?;
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test]
async fn an_attempt_dropped_mid_run_flushes_even_when_its_dedicated_pump_goes_away() {
    let transport = MemoryTransport::new();
    let runner = AttemptRunner::new(transport.clone()).pump(Pump::dedicated());
    let running = runner.start(&checkpoints_then_waits(), request("dropped", ()));
    let mut fut = running.into_future();
    // Run it until it is parked, then drop it and every handle to its pump.
    assert!(futures_util::FutureExt::now_or_never(&mut fut).is_none());
    drop(fut);
    drop(runner);
    assert!(
        transport
            .wait_for_heartbeats(1, Duration::from_secs(10))
            .await,
        "the final flush was sent"
    );
    let beat = &transport.heartbeats()[0];
    assert_eq!(
        decode_payload::<u64>(beat.details.as_ref().unwrap()).unwrap(),
        5
    );
}

#[test]
fn a_heartbeat_the_backend_could_not_take_fails_the_attempt_retryably() {
    let e: ActivityError = CheckpointError::Transport(TransportError::new(
        hb_runtime::TransportErrorKind::Unavailable,
        "down",
    ))
    .into();
    assert!(e.is_retryable());
    let e: ActivityError = CheckpointError::Transport(TransportError::new(
        hb_runtime::TransportErrorKind::NotFound,
        "gone",
    ))
    .into();
    assert!(!e.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn runs_of_a_reused_environment_do_not_mix() {
    let env = ActivityEnvironment::new().cancel_after_heartbeats(3);
    let first = env.run(counts_to, 4).await;
    let second = env.run(counts_to, 4).await;
    // 4 items at 0.5 s with a heartbeat every second: each run heartbeats twice (plus its final
    // flush) and is never cancelled by the other's count.
    assert_eq!(first.result.unwrap(), 4);
    assert_eq!(second.result.unwrap(), 4);
    assert_eq!(first.heartbeats.len(), second.heartbeats.len());
    assert!(second.heartbeats.iter().all(|h| h.at > Duration::ZERO));
}
