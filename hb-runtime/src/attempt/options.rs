//! The options a running attempt consults, copied compactly from its [`ActivityOptions`].

use std::time::Duration;

use crate::options::ActivityOptions;
use crate::transport::Transport;

/// The options an attempt consults while it runs (a compact copy: one per running attempt).
pub(crate) struct AttemptOptions {
    /// In ms (0: none); sub-millisecond values round up to 1 ms, longer than 49 days saturate.
    stall_timeout_ms: u32,
    cancel_grace_ms: u32,
    checkpoint_limit: u32,
    pub(crate) cancel: crate::options::CancelMode,
    /// From the backend, read once: see [`Transport::keeps_details`].
    pub(crate) keeps_details: bool,
    /// Pump ticks per heartbeat interval, from the backend's checkpoint interval (see
    /// `heartbeat::pace`).
    pub(crate) ticks_per_beat: u16,
}

/// `d` in whole ms, rounded up, at least 1, saturating at `u32::MAX`.
fn ms_u32(d: Duration) -> u32 {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

impl AttemptOptions {
    /// `None` also for one beyond ~49 days (kept as `u32::MAX` ms): never within an
    /// attempt, rather than sooner than asked.
    pub(crate) fn stall_timeout(&self) -> Option<Duration> {
        (self.stall_timeout_ms > 0 && self.stall_timeout_ms < u32::MAX)
            .then(|| Duration::from_millis(self.stall_timeout_ms.into()))
    }

    pub(crate) fn cancel_grace(&self) -> Duration {
        Duration::from_millis(self.cancel_grace_ms.into())
    }

    /// The encoded size a checkpoint may take, in bytes.
    pub(crate) fn checkpoint_limit(&self) -> usize {
        self.checkpoint_limit as usize
    }
}

impl AttemptOptions {
    /// The options of an attempt of `o` heartbeating every `heartbeat_interval` to `transport`.
    pub(super) fn new(
        o: &ActivityOptions,
        heartbeat_interval: Duration,
        transport: &dyn Transport,
    ) -> Self {
        AttemptOptions {
            keeps_details: transport.keeps_details(),
            ticks_per_beat: super::pace::ticks_per_beat(
                heartbeat_interval,
                transport.checkpoint_interval(),
            ),
            stall_timeout_ms: o.stall_timeout.map_or(0, ms_u32),
            cancel: o.cancel,
            cancel_grace_ms: if o.cancel_grace.is_zero() {
                0
            } else {
                ms_u32(o.cancel_grace)
            },
            // At most 2 MiB (see `effective_checkpoint_limit`).
            checkpoint_limit: u32::try_from(o.effective_checkpoint_limit()).unwrap_or(u32::MAX),
        }
    }
}
