//! The core as a table: each case takes one activity through a few events to a starting state,
//! applies one more event, and says what the activity is afterwards and every effect that
//! event asked for (writes, timers armed, cancels pushed, `result()` calls answered, the
//! heartbeat reply). No file and no runtime: the core runs on the test's thread on a simulated
//! clock, and its effects are read straight from `Effects` (the attempt handles that cancels
//! are pushed to come from a real runner; their bodies never run). An effect a row does not
//! list must not happen.
//!
//! `harness` holds the events, what is seen after one, and the harness that applies them.

mod harness;

use std::time::Duration;

use super::TimerKind;
use crate::client::ActivityStatus;
use crate::options::{ActivityOptions, RetryPolicy};
use crate::transport::HeartbeatReply;
use harness::Ev::{self, *};
use harness::{Harness, S, Seen};

/// A row of the table; fields left out (see [`E`]) are "nothing".
struct Case {
    name: &'static str,
    options: ActivityOptions,
    setup: &'static [Ev],
    event: Ev,
    then: Then,
}

/// What a row expects.
struct Then {
    state: S,
    failure: Option<&'static str>,
    writes: &'static [&'static str],
    timers: &'static [&'static str],
    cancels: &'static [&'static str],
    answered: usize,
    reply: Option<HeartbeatReply>,
    /// An operator control refused for the activity in this status.
    refused: Option<ActivityStatus>,
    /// Whether it holds a checkpoint afterwards (`None`: not looked at).
    checkpoint: Option<bool>,
}

/// Nothing happened, and the activity is gone.
const E: Then = Then {
    state: S::Gone,
    failure: None,
    writes: &[],
    timers: &[],
    cancels: &[],
    answered: 0,
    reply: None,
    refused: None,
    checkpoint: None,
};

const RUNNING: &[Ev] = &[Start, Take];
/// Attempt 1 failed retryably and attempt 2 runs.
const SECOND: &[Ev] = &[Start, Take, Fail(1), Fire(TimerKind::Retry), Take];

/// The options of most rows: heartbeat timeout 1 s, 3 attempts, retries after 1 s.
fn opts() -> ActivityOptions {
    let mut o = ActivityOptions::new();
    o.heartbeat_timeout = Some(ms(1_000));
    o.retry = RetryPolicy::new()
        .max_attempts(3)
        .initial_interval(ms(1_000));
    o
}

fn with(f: impl FnOnce(&mut ActivityOptions)) -> ActivityOptions {
    let mut o = opts();
    f(&mut o);
    o
}

/// With a schedule-to-close timeout of `n` ms.
fn s2c(n: u64) -> ActivityOptions {
    with(|o| o.schedule_to_close_timeout = Some(ms(n)))
}

/// With a start-to-close timeout of `n` ms.
fn stc(n: u64) -> ActivityOptions {
    with(|o| o.start_to_close_timeout = Some(ms(n)))
}

/// With `n` attempts at most.
fn attempts(n: u32) -> ActivityOptions {
    with(|o| o.retry = o.retry.max_attempts(n))
}

/// `o` without a heartbeat timeout.
fn no_heartbeat(mut o: ActivityOptions) -> ActivityOptions {
    o.heartbeat_timeout = None;
    o
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use ActivityStatus::{Cancelled as C, Completed, Failed, TimedOut};
    use TimerKind as K;
    let ok = Some(HeartbeatReply::ok());
    vec![
        // Starting and taking.
        Case { name: "a start is admitted, ready for a worker",
            options: opts(), setup: &[], event: Start,
            then: Then { state: S::Scheduled(0), writes: &["Insert"], ..E } },
        Case { name: "a schedule-to-close timeout is armed at the start",
            options: s2c(60_000), setup: &[], event: Start,
            then: Then { state: S::Scheduled(0), writes: &["Insert"], timers: &["ScheduleToClose"], ..E } },
        Case { name: "a worker takes attempt 1",
            options: opts(), setup: &[Start], event: Take,
            then: Then { state: S::Running(1), writes: &["Started #1"], ..E } },
        Case { name: "taking arms the start-to-close timeout",
            options: stc(5_000), setup: &[Start], event: Take,
            then: Then { state: S::Running(1), writes: &["Started #1"], timers: &["StartToClose"], ..E } },
        // Heartbeats.
        Case { name: "a heartbeat of the running attempt is stored",
            options: opts(), setup: RUNNING, event: Heartbeat(1),
            then: Then { state: S::Running(1), writes: &["Heartbeat"], reply: ok, ..E } },
        Case { name: "a heartbeat answers a requested cancel",
            options: opts(), setup: &[Start, Take, Cancel], event: Heartbeat(1),
            then: Then { state: S::Running(1),
                writes: &["Heartbeat"], reply: Some(HeartbeatReply::cancel()), ..E } },
        Case { name: "a stale token from an older attempt is not found and changes nothing",
            options: opts(), setup: SECOND, event: Heartbeat(1),
            then: Then { state: S::Running(2), failure: Some("Application Flaky"),
                reply: Some(HeartbeatReply::not_found()), ..E } },
        Case { name: "a timed-out attempt's last heartbeat is kept for its retry",
            options: opts(), setup: &[Start, Take, Silent], event: Heartbeat(1),
            then: Then { state: S::BackingOff(1), failure: Some("Timeout Heartbeat"),
                writes: &["Heartbeat"], reply: Some(HeartbeatReply::timed_out()), ..E } },
        Case { name: "a token that is not the engine's is refused",
            options: opts(), setup: RUNNING, event: ForeignToken,
            then: Then { state: S::Running(1), ..E } },
        Case { name: "a heartbeat of an activity no longer held is not found",
            options: opts(), setup: &[Start, Take, Complete(1), Commit], event: Heartbeat(1),
            then: Then { reply: Some(HeartbeatReply::not_found()), ..E } },
        // Outcomes.
        Case { name: "completing closes it",
            options: opts(), setup: RUNNING, event: Complete(1),
            then: Then { state: S::Closing(Completed), writes: &["Close Completed"], ..E } },
        Case { name: "a completion from an older attempt is ignored",
            options: opts(), setup: SECOND, event: Complete(1),
            then: Then { state: S::Running(2), failure: Some("Application Flaky"), ..E } },
        Case { name: "a retryable failure backs off",
            options: opts(), setup: RUNNING, event: Fail(1),
            then: Then { state: S::BackingOff(1), failure: Some("Application Flaky"),
                writes: &["Transition BackingOff"], timers: &["Retry"], ..E } },
        Case { name: "a non-retryable failure closes it",
            options: opts(), setup: RUNNING, event: FailForGood(1),
            then: Then { state: S::Closing(Failed), failure: Some("Application Bad"),
                writes: &["Close Failed"], ..E } },
        Case { name: "an error type the policy names is not retried",
            options: with(|o| o.retry = o.retry.non_retryable(&["Flaky"])), setup: RUNNING, event: Fail(1),
            then: Then { state: S::Closing(Failed), failure: Some("Application Flaky"),
                writes: &["Close Failed"], ..E } },
        Case { name: "the last attempt's failure exhausts the retries",
            options: attempts(2), setup: SECOND, event: Fail(2),
            then: Then { state: S::Closing(Failed), failure: Some("RetriesExhausted 2 after Application Flaky"),
                writes: &["Close Failed"], ..E } },
        Case { name: "a single allowed attempt fails as itself",
            options: attempts(1), setup: RUNNING, event: Fail(1),
            then: Then { state: S::Closing(Failed), failure: Some("Application Flaky"),
                writes: &["Close Failed"], ..E } },
        Case { name: "a worker shutdown is retried at once",
            options: opts(), setup: RUNNING, event: Shutdown(1),
            then: Then { state: S::Scheduled(1), failure: Some("Application WorkerShutdown"),
                writes: &["Transition Scheduled"], ..E } },
        Case { name: "a retry due after the schedule-to-close deadline closes it",
            options: s2c(1_500), setup: &[Start, Take, Advance(1_000)], event: Fail(1),
            then: Then { state: S::Closing(Failed), failure: Some("Application Flaky"),
                writes: &["Close Failed"], ..E } },
        Case { name: "the retry timer makes it ready again",
            options: opts(), setup: &[Start, Take, Fail(1)], event: Fire(K::Retry),
            then: Then { state: S::Scheduled(1), failure: Some("Application Flaky"),
                writes: &["Transition Scheduled"], ..E } },
        Case { name: "the retry is attempt 2",
            options: opts(), setup: &[Start, Take, Fail(1), Fire(K::Retry)], event: Take,
            then: Then { state: S::Running(2), failure: Some("Application Flaky"),
                writes: &["Started #2"], ..E } },
        // Timeouts.
        Case { name: "a heartbeat timeout fails the attempt and retries it",
            options: opts(), setup: RUNNING, event: Silent,
            then: Then { state: S::BackingOff(1), failure: Some("Timeout Heartbeat"),
                writes: &["Transition BackingOff"], timers: &["Retry"], cancels: &["TimedOut"], ..E } },
        Case { name: "a heartbeat timeout of the last attempt closes it timed out",
            options: attempts(1), setup: RUNNING, event: Silent,
            then: Then { state: S::Closing(TimedOut), failure: Some("Timeout Heartbeat"),
                writes: &["Close TimedOut"], cancels: &["TimedOut"], ..E } },
        Case { name: "a heartbeat keeps the attempt alive past its first deadline",
            options: opts(), setup: &[Start, Take, Advance(900), Heartbeat(1), Advance(200)], event: Sweep,
            then: Then { state: S::Running(1), ..E } },
        Case { name: "silence for the whole timeout after a heartbeat times out",
            options: opts(), setup: &[Start, Take, Advance(900), Heartbeat(1), Advance(999)], event: Advance(1),
            then: Then { state: S::Running(1), ..E } },
        Case { name: "the sweep at the heartbeat's deadline times it out",
            options: opts(), setup: &[Start, Take, Advance(900), Heartbeat(1), Advance(1_000)], event: Sweep,
            then: Then { state: S::BackingOff(1), failure: Some("Timeout Heartbeat"),
                writes: &["Transition BackingOff"], timers: &["Retry"], cancels: &["TimedOut"], ..E } },
        Case { name: "the sweep a moment before the deadline does not",
            options: opts(), setup: &[Start, Take, Advance(900), Heartbeat(1), Advance(999)], event: Sweep,
            then: Then { state: S::Running(1), ..E } },
        Case { name: "a start-to-close timeout fails the attempt",
            options: no_heartbeat(stc(5_000)), setup: RUNNING, event: Fire(K::StartToClose),
            then: Then { state: S::BackingOff(1), failure: Some("Timeout StartToClose"),
                writes: &["Transition BackingOff"], timers: &["Retry"], cancels: &["TimedOut"], ..E } },
        Case { name: "an older attempt's start-to-close timer does nothing",
            options: stc(5_000), setup: SECOND, event: Fire(K::StartToClose),
            then: Then { state: S::Running(2), failure: Some("Application Flaky"), ..E } },
        Case { name: "a schedule-to-close timeout closes it, whatever runs",
            options: s2c(30_000), setup: RUNNING, event: Fire(K::ScheduleToClose),
            then: Then { state: S::Closing(TimedOut), failure: Some("Timeout ScheduleToClose"),
                writes: &["Close TimedOut"], cancels: &["TimedOut"], ..E } },
        // Cancels.
        Case { name: "a cancel before the start closes it at once",
            options: opts(), setup: &[Start], event: Cancel,
            then: Then { state: S::Closing(C), failure: Some("Cancelled"),
                writes: &["Close Cancelled"], ..E } },
        Case { name: "a cancel of a running attempt is pushed to it and stored",
            options: opts(), setup: RUNNING, event: Cancel,
            then: Then { state: S::Running(1), writes: &["CancelRequested"], cancels: &["Requested"], ..E } },
        Case { name: "a cancel before the handle is attached reaches it on attach",
            options: opts(), setup: &[Start, TakeBare, Cancel], event: Attach(1),
            then: Then { state: S::Running(1), cancels: &["Requested"], ..E } },
        Case { name: "an attempt timed out before it was attached is stopped on attach",
            options: opts(), setup: &[Start, TakeBare, Silent], event: Attach(1),
            then: Then { state: S::BackingOff(1), failure: Some("Timeout Heartbeat"),
                cancels: &["TimedOut"], ..E } },
        Case { name: "a cancelled attempt's report closes it cancelled",
            options: opts(), setup: &[Start, Take, Cancel], event: Cancelled(1),
            then: Then { state: S::Closing(C), failure: Some("Cancelled"),
                writes: &["Close Cancelled"], ..E } },
        Case { name: "a failure after a cancel request closes it cancelled",
            options: opts(), setup: &[Start, Take, Cancel], event: Fail(1),
            then: Then { state: S::Closing(C), failure: Some("Cancelled"),
                writes: &["Close Cancelled"], ..E } },
        Case { name: "a cancel while backing off closes it",
            options: opts(), setup: &[Start, Take, Fail(1)], event: Cancel,
            then: Then { state: S::Closing(C), failure: Some("Cancelled"),
                writes: &["Close Cancelled"], ..E } },
        Case { name: "a retry timer of a cancelled activity does nothing",
            options: opts(), setup: &[Start, Take, Fail(1), Cancel], event: Fire(K::Retry),
            then: Then { state: S::Closing(C), failure: Some("Cancelled"), ..E } },
        // Closing writes and their acknowledgements.
        Case { name: "a committed closing answers the waiters and forgets it",
            options: opts(), setup: &[Start, Take, Wait, Complete(1)], event: Commit,
            then: Then { answered: 1, ..E } },
        Case { name: "a failed closing write answers the waiters and is retried",
            options: opts(), setup: &[Start, Take, Wait, Complete(1)], event: CommitFails,
            then: Then { state: S::Closing(Completed), timers: &["StoreClosing"], answered: 1, ..E } },
        Case { name: "the closing write is tried again when its timer fires",
            options: opts(), setup: &[Start, Take, Complete(1), CommitFails], event: Fire(K::StoreClosing),
            then: Then { state: S::Closing(Completed), writes: &["Close Completed"], ..E } },
        Case { name: "a lost heartbeat write is stored again later",
            options: opts(), setup: &[Start, Take, Heartbeat(1)], event: HeartbeatLost,
            then: Then { state: S::Running(1), timers: &["StoreCheckpoint"], ..E } },
        Case { name: "the lost checkpoint is written when its timer fires",
            options: opts(), setup: &[Start, Take, Heartbeat(1), HeartbeatLost], event: Fire(K::StoreCheckpoint),
            then: Then { state: S::Running(1), writes: &["Heartbeat"], ..E } },
        // Requests from other processes, through the file.
        Case { name: "a cancel from the file closes a waiting activity",
            options: opts(), setup: &[Start], event: FileCancel(7),
            then: Then { state: S::Closing(C), failure: Some("Cancelled"),
                writes: &["Close Cancelled"], ..E } },
        Case { name: "a heartbeat from the file is stored with its request's deletion",
            options: opts(), setup: RUNNING, event: FileHeartbeat(7, 1),
            then: Then { state: S::Running(1), writes: &["RequestHeartbeat 7", "External #1"], ..E } },
        Case { name: "an older heartbeat request than one applied is only deleted",
            options: opts(), setup: &[Start, Take, FileHeartbeat(7, 1)], event: FileHeartbeat(6, 1),
            then: Then { state: S::Running(1), writes: &["DeleteRequest 6"], ..E } },
        Case { name: "a heartbeat request of an older attempt is deleted",
            options: opts(), setup: SECOND, event: FileHeartbeat(7, 1),
            then: Then { state: S::Running(2), failure: Some("Application Flaky"),
                writes: &["DeleteRequest 7"], ..E } },
        Case { name: "a request this build cannot apply is deleted",
            options: opts(), setup: RUNNING, event: FileUnreadable(7),
            then: Then { state: S::Running(1), writes: &["DeleteRequest 7"], ..E } },
        // Operator controls: pause.
        Case { name: "a pause before the start pauses it at once",
            options: opts(), setup: &[Start], event: Pause,
            then: Then { state: S::Paused(0), writes: &["Transition Paused"], ..E } },
        Case { name: "no attempt starts while paused",
            options: opts(), setup: &[Start, Pause], event: TryTake,
            then: Then { state: S::Paused(0), ..E } },
        Case { name: "a pause while backing off pauses it; its retry timer does nothing",
            options: opts(), setup: &[Start, Take, Fail(1), Pause], event: Fire(K::Retry),
            then: Then { state: S::Paused(1), failure: Some("Application Flaky"), ..E } },
        Case { name: "a pause of a running attempt is pushed to it and stored",
            options: opts(), setup: RUNNING, event: Pause,
            then: Then { state: S::Running(1), writes: &["Operator"], cancels: &["Paused"], ..E } },
        Case { name: "a heartbeat answers a requested pause",
            options: opts(), setup: &[Start, Take, Pause], event: Heartbeat(1),
            then: Then { state: S::Running(1), writes: &["Heartbeat"],
                reply: Some(HeartbeatReply::pause()), ..E } },
        Case { name: "a pause before the handle is attached reaches it on attach",
            options: opts(), setup: &[Start, TakeBare, Pause], event: Attach(1),
            then: Then { state: S::Running(1), cancels: &["Paused"], ..E } },
        Case { name: "the paused attempt's stop pauses it, its checkpoint kept",
            options: opts(), setup: &[Start, Take, Heartbeat(1), Pause], event: StoppedPaused(1),
            then: Then { state: S::Paused(1), failure: Some("Application Paused"),
                writes: &["Transition Paused"], checkpoint: Some(true), ..E } },
        Case { name: "a pause of the last attempt does not use the retries up",
            options: attempts(1), setup: &[Start, Take, Pause], event: StoppedPaused(1),
            then: Then { state: S::Paused(1), failure: Some("Application Paused"),
                writes: &["Transition Paused"], ..E } },
        Case { name: "an attempt told to pause that times out pauses it too",
            options: opts(), setup: &[Start, Take, Pause], event: Silent,
            then: Then { state: S::Paused(1), failure: Some("Timeout Heartbeat"),
                writes: &["Transition Paused"], cancels: &["TimedOut"], ..E } },
        Case { name: "pausing a paused activity is refused",
            options: opts(), setup: &[Start, Pause], event: Pause,
            then: Then { state: S::Paused(0), refused: Some(ActivityStatus::Paused), ..E } },
        Case { name: "pausing again while the told attempt stops is refused, as Temporal does",
            options: opts(), setup: &[Start, Take, Pause], event: Pause,
            then: Then { state: S::Running(1), refused: Some(ActivityStatus::Running), ..E } },
        Case { name: "pausing a closed activity is refused",
            options: opts(), setup: &[Start, Take, Complete(1)], event: Pause,
            then: Then { state: S::Closing(Completed), refused: Some(Completed), ..E } },
        Case { name: "a cancel of a paused activity cancels it",
            options: opts(), setup: &[Start, Pause], event: Cancel,
            then: Then { state: S::Closing(C), failure: Some("Cancelled"),
                writes: &["Close Cancelled"], ..E } },
        Case { name: "a schedule-to-close timeout closes a paused activity",
            options: s2c(30_000), setup: &[Start, Pause], event: Fire(K::ScheduleToClose),
            then: Then { state: S::Closing(TimedOut), failure: Some("Timeout ScheduleToClose"),
                writes: &["Close TimedOut"], ..E } },
        Case { name: "a paused activity has no heartbeat timeout",
            options: opts(), setup: &[Start, Take, Pause, StoppedPaused(1)], event: Silent,
            then: Then { state: S::Paused(1), failure: Some("Application Paused"), ..E } },
        Case { name: "a pause from the file is applied",
            options: opts(), setup: &[Start], event: FilePause(7),
            then: Then { state: S::Paused(0), writes: &["Transition Paused"], ..E } },
        Case { name: "a reopened file holds a paused activity paused",
            options: s2c(30_000), setup: &[], event: RecoverPaused(2),
            then: Then { state: S::Paused(2), timers: &["ScheduleToClose"], checkpoint: Some(true), ..E } },
        Case { name: "a reopen carries out a reset told to an attempt of a dead process",
            options: opts(), setup: &[], event: RecoverTold(ActivityStatus::Running, 2, 2 | 4),
            then: Then { state: S::Scheduled(0), failure: Some("Application WorkerLost"),
                writes: &["Transition Scheduled (cleared)"], checkpoint: Some(false), ..E } },
        Case { name: "a reopen carries out a pause told to an attempt whose start the file lost",
            options: opts(), setup: &[], event: RecoverTold(ActivityStatus::Scheduled, 1, 1),
            then: Then { state: S::Paused(1), writes: &["Transition Paused"], checkpoint: Some(true), ..E } },
        Case { name: "a reopen keeps no record of a clear it did not make",
            options: opts(), setup: &[], event: RecoverTold(ActivityStatus::Scheduled, 1, 8),
            then: Then { state: S::Scheduled(1), checkpoint: Some(true), ..E } },
        // Unpause.
        Case { name: "an unpause schedules it at once",
            options: opts(), setup: &[Start, Take, Fail(1), Pause], event: Unpause,
            then: Then { state: S::Scheduled(1), failure: Some("Application Flaky"),
                writes: &["Transition Scheduled"], ..E } },
        Case { name: "after an unpause the attempt count goes on, from the checkpoint",
            options: opts(), setup: &[Start, Take, Heartbeat(1), Pause, StoppedPaused(1), Unpause], event: Take,
            then: Then { state: S::Running(2), failure: Some("Application Paused"),
                writes: &["Started #2"], checkpoint: Some(true), ..E } },
        Case { name: "unpausing an activity that is not paused is refused",
            options: opts(), setup: &[Start], event: Unpause,
            then: Then { state: S::Scheduled(0), refused: Some(ActivityStatus::Scheduled), ..E } },
        Case { name: "unpausing a running activity not told to pause is refused",
            options: opts(), setup: RUNNING, event: Unpause,
            then: Then { state: S::Running(1), refused: Some(ActivityStatus::Running), ..E } },
        Case { name: "an unpause before the told attempt stopped lifts the pause",
            options: opts(), setup: &[Start, Take, Pause], event: Unpause,
            then: Then { state: S::Running(1), writes: &["Operator"], ..E } },
        Case { name: "the told attempt's stop after an unpause is followed at once",
            options: attempts(1), setup: &[Start, Take, Pause, Unpause], event: StoppedPaused(1),
            then: Then { state: S::Scheduled(1), failure: Some("Application Paused"),
                writes: &["Transition Scheduled"], ..E } },
        // Reset.
        Case { name: "a reset of a running attempt is pushed to it and stored",
            options: opts(), setup: RUNNING, event: Reset,
            then: Then { state: S::Running(1), writes: &["Operator"], cancels: &["Reset"], ..E } },
        Case { name: "a heartbeat answers a requested reset",
            options: opts(), setup: &[Start, Take, Reset], event: Heartbeat(1),
            then: Then { state: S::Running(1), writes: &["Heartbeat"],
                reply: Some(HeartbeatReply::reset()), ..E } },
        Case { name: "the reset attempt's stop starts it again at once, from the checkpoint",
            options: opts(), setup: &[Start, Take, Fail(1), Fire(K::Retry), Take, Heartbeat(2), Reset], event: StoppedReset(2),
            then: Then { state: S::Scheduled(0), failure: Some("Application Reset"),
                writes: &["Transition Scheduled"], checkpoint: Some(true), ..E } },
        Case { name: "after a reset the next attempt is attempt 1",
            options: opts(), setup: &[Start, Take, Fail(1), Fire(K::Retry), Take, Reset, StoppedReset(2)], event: Take,
            then: Then { state: S::Running(1), failure: Some("Application Reset"),
                writes: &["Started #1"], ..E } },
        Case { name: "a timer of the attempt before a reset does not touch the one after",
            options: stc(5_000), setup: &[Start, Take, Reset, StoppedReset(1), Take], event: Fire(K::StartToClose),
            then: Then { state: S::Running(1), failure: Some("Application Reset"), ..E } },
        Case { name: "a reset while backing off runs it at once at attempt 1",
            options: opts(), setup: &[Start, Take, Fail(1)], event: Reset,
            then: Then { state: S::Scheduled(0), failure: Some("Application Flaky"),
                writes: &["Transition Scheduled"], ..E } },
        Case { name: "a reset of a scheduled activity resets its attempt count",
            options: opts(), setup: &[Start, Take, Shutdown(1)], event: Reset,
            then: Then { state: S::Scheduled(0), failure: Some("Application WorkerShutdown"),
                writes: &["Transition Scheduled"], ..E } },
        Case { name: "a reset of a paused activity unpauses it",
            options: opts(), setup: &[Start, Take, Fail(1), Pause], event: Reset,
            then: Then { state: S::Scheduled(0), failure: Some("Application Flaky"),
                writes: &["Transition Scheduled"], ..E } },
        Case { name: "a reset that keeps the pause leaves it paused, its count reset",
            options: opts(), setup: &[Start, Take, Fail(1), Pause], event: ResetKeepPaused,
            then: Then { state: S::Paused(0), failure: Some("Application Flaky"),
                writes: &["Transition Paused"], ..E } },
        Case { name: "a reset of a running attempt told to pause keeps the pause when asked",
            options: opts(), setup: &[Start, Take, Pause, ResetKeepPaused], event: StoppedReset(1),
            then: Then { state: S::Paused(0), failure: Some("Application Reset"),
                writes: &["Transition Paused"], ..E } },
        Case { name: "a reset that clears the checkpoint clears it",
            options: opts(), setup: &[Start, Take, Heartbeat(1), Fail(1)], event: ResetClear,
            then: Then { state: S::Scheduled(0), failure: Some("Application Flaky"),
                writes: &["Transition Scheduled (cleared)"], checkpoint: Some(false), ..E } },
        Case { name: "a running reset that clears the checkpoint clears it once the attempt stops",
            options: opts(), setup: &[Start, Take, Heartbeat(1), ResetClear], event: StoppedReset(1),
            then: Then { state: S::Scheduled(0), failure: Some("Application Reset"),
                writes: &["Transition Scheduled (cleared)"], checkpoint: Some(false), ..E } },
        Case { name: "a late checkpoint of an attempt before a clearing reset is dropped",
            options: opts(), setup: &[Start, Take, Silent, ResetClear], event: Heartbeat(1),
            then: Then { state: S::Scheduled(0), failure: Some("Timeout Heartbeat"),
                reply: Some(HeartbeatReply::timed_out()), checkpoint: Some(false), ..E } },
        Case { name: "the retry budget starts again after a reset",
            options: attempts(2), setup: &[Start, Take, Fail(1), Fire(K::Retry), Take, Reset, StoppedReset(2), Take], event: Fail(3),
            then: Then { state: S::BackingOff(1), failure: Some("Application Flaky"),
                writes: &["Transition BackingOff"], timers: &["Retry"], ..E } },
        Case { name: "resetting a closed activity is refused",
            options: opts(), setup: &[Start, Cancel], event: Reset,
            then: Then { state: S::Closing(C), failure: Some("Cancelled"), refused: Some(C), ..E } },
        Case { name: "an operator control of an activity not held says so",
            options: opts(), setup: &[], event: Pause,
            then: Then { refused: Some(ActivityStatus::Unknown), ..E } },
        // Recovery.
        Case { name: "a recovered attempt of a dead process is retried at once",
            options: opts(), setup: &[], event: RecoverRunning(1),
            then: Then { state: S::Scheduled(1), failure: Some("Application WorkerLost"),
                writes: &["Transition Scheduled"], ..E } },
    ]
}

#[test]
fn the_core_goes_from_state_to_state_as_the_table_says() {
    let cases = cases();
    let mut failed = Vec::new();
    for case in &cases {
        let mut h = Harness::new(case.options);
        for ev in case.setup {
            h.on(*ev);
        }
        let seen = h.on(case.event);
        let t = &case.then;
        let expected = Seen {
            state: t.state,
            failure: t.failure.map(str::to_owned),
            writes: t.writes.iter().map(|s| s.to_string()).collect(),
            timers: t.timers.iter().map(|s| s.to_string()).collect(),
            cancels: t.cancels.iter().map(|s| s.to_string()).collect(),
            answered: t.answered,
            reply: t.reply,
            refused: t.refused,
            checkpoint: t.checkpoint.unwrap_or(seen.checkpoint),
        };
        if seen != expected {
            failed.push(format!(
                "{}:\n  expected {expected:?}\n  seen     {seen:?}",
                case.name
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Every case names a different behaviour.
#[test]
fn the_table_names_each_case_once() {
    let cases = cases();
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}
