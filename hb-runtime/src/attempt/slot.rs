//! The checkpoint slot: an attempt's latest checkpoint, stored by `ctx.checkpoint` in
//! nanoseconds and read (cloned, then encoded) by the pump.

use std::any::Any;

use crate::checkpoint;
use crate::checkpoint::value::{Checkpoint, Progress};
use crate::error::CheckpointError;

/// The latest checkpoint of one attempt, typed; the pump reads it through [`ErasedSlot`].
///
/// A spin lock rather than `std::sync::Mutex`: `checkpoint()` sits in users' hot loops, and a
/// spin lock's release is a plain store where std's is a second atomic read-modify-write (a
/// third of the call, measured with `benches/checkpoint.rs`). The other holders are the pump copying the value out, and
/// `last_checkpoint()` and progress reads; each holds it only for the checkpoint's `Clone`
/// (or `Checkpoint::progress`), so a wait is rare and short, and the waiter yields its thread
/// meanwhile. (A `Clone` impl that calls back into the same context's `checkpoint()` would
/// wait for itself, as it would under any lock.)
pub(crate) struct Slot<T> {
    inner: spin::mutex::SpinMutex<SlotInner<T>, spin::relax::Yield>,
}

struct SlotInner<T> {
    /// Meaningful once `seq` is not 0 (`Default` until then).
    value: T,
    /// Bumped on every store (0: nothing stored or resumed); the pump compares it with what
    /// it sent last.
    seq: u64,
}

impl<T> SlotInner<T> {
    fn value(&self) -> Option<&T> {
        (self.seq != 0).then_some(&self.value)
    }
}

impl<T: Checkpoint> Slot<T> {
    pub(crate) fn new(initial: Option<T>) -> Self {
        Slot {
            inner: spin::mutex::SpinMutex::new(SlotInner {
                // A resumed checkpoint counts as unsent, so the first heartbeat carries it.
                seq: u64::from(initial.is_some()),
                value: initial.unwrap_or_default(),
            }),
        }
    }

    #[inline]
    pub(crate) fn store(&self, v: &T) {
        let mut g = self.inner.lock();
        g.value.clone_from(v);
        // Never back to 0 ("nothing stored").
        g.seq = g.seq.checked_add(1).unwrap_or(1);
    }

    pub(crate) fn get(&self) -> Option<T> {
        self.inner.lock().value().cloned()
    }
}

/// What the pump needs from a slot, whatever its type.
pub(crate) trait ErasedSlot: Any + Send + Sync {
    fn type_name(&self) -> &'static str;
    /// The store counter.
    fn seq(&self) -> u64;
    /// When the slot changed since `since`: the new counter and the encoded value.
    fn encode_if_newer(&self, since: u64) -> Option<(u64, Result<Vec<u8>, CheckpointError>)>;
    fn progress(&self) -> Option<Progress>;
}

impl<T: Checkpoint> ErasedSlot for Slot<T> {
    fn type_name(&self) -> &'static str {
        T::TYPE_NAME
    }

    fn seq(&self) -> u64 {
        self.inner.lock().seq
    }

    fn encode_if_newer(&self, since: u64) -> Option<(u64, Result<Vec<u8>, CheckpointError>)> {
        // The user's `Clone` and `Serialize` run here, on the pump's thread among other places:
        // a panic in either is this checkpoint's encode error, not the end of the pump (and of
        // every attempt's heartbeats). The lock is released as the panic unwinds.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Clone under the lock, encode outside it, so the activity's hot loop never waits
            // on serde.
            let (seq, value) = {
                let g = self.inner.lock();
                if g.seq == since {
                    return None;
                }
                (g.seq, g.value()?.clone())
            };
            Some((seq, checkpoint::encode(&value).map_err(|e| e.to_string())))
        }))
        .unwrap_or_else(|panic| {
            let message = crate::error::panic_message(panic.as_ref());
            Some((
                self.seq(),
                Err(format!("Clone or Serialize panicked: {message}")),
            ))
        })
        .map(|(seq, encoded)| {
            let encoded = encoded.map_err(|message| CheckpointError::Encode {
                type_name: T::TYPE_NAME,
                message,
            });
            (seq, encoded)
        })
    }

    fn progress(&self) -> Option<Progress> {
        self.inner.lock().value().and_then(Checkpoint::progress)
    }
}
