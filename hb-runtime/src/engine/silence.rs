//! Heartbeat timeouts of running attempts, without a timer per heartbeat.
//!
//! The attempts are kept in [`Lanes`] per heartbeat timeout, ordered by their last heartbeat:
//! a heartbeat moves its attempt to the back (a few index writes under the engine's lock,
//! which the heartbeat holds anyway), and only the front can be overdue. The deadline queue
//! wakes at the front's deadline and takes the attempts silent for longer than their timeout.
//! A timer per attempt, re-armed each time it finds a newer heartbeat, would fire about once
//! per heartbeat instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::lanes::Lanes;
pub(crate) use crate::lanes::NONE;

/// The running attempts with a heartbeat timeout: `(activity id, attempt)` each.
#[derive(Default)]
pub(crate) struct Silence {
    lanes: Lanes<(Arc<str>, u32)>,
}

impl Silence {
    /// Watches attempt `attempt` of `id`, heard from at `since`. Returns its key and, when it
    /// is the front of its lane (the deadline queue may sleep past it), its deadline.
    pub(crate) fn watch(
        &mut self,
        id: Arc<str>,
        attempt: u32,
        timeout: Duration,
        since: Instant,
    ) -> (u32, Option<Instant>) {
        self.lanes.insert((id, attempt), timeout, since)
    }

    /// Whether `key` is watched for activity `id` (a key freed and reused is someone else's).
    fn is(&self, key: u32, id: &Arc<str>) -> bool {
        self.lanes.get(key).is_some_and(|(i, _)| Arc::ptr_eq(i, id))
    }

    /// Activity `id`'s `key` was heard from `now`.
    pub(crate) fn touch(&mut self, key: u32, id: &Arc<str>, now: Instant) {
        if self.is(key, id) {
            self.lanes.touch(key, now);
        }
    }

    /// Stops watching activity `id`'s `key`.
    pub(crate) fn unwatch(&mut self, key: u32, id: &Arc<str>) {
        if self.is(key, id) {
            self.lanes.remove(key);
        }
    }

    /// The attempts silent for their whole timeout at `now` (no longer watched), as
    /// `(id, attempt, key)`.
    pub(crate) fn overdue(&mut self, now: Instant) -> Vec<(Arc<str>, u32, u32)> {
        self.lanes
            .due(now)
            .into_iter()
            .filter_map(|key| {
                let (id, attempt) = self.lanes.remove(key)?;
                Some((id, attempt, key))
            })
            .collect()
    }

    /// When the next attempt becomes overdue, if one is watched.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lanes.next_due(|_| Duration::from_nanos(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reused_by_another_activity_is_not_touched_through_its_old_owner() {
        let mut s = Silence::default();
        let t0 = Instant::now();
        let (old, new): (Arc<str>, Arc<str>) = (Arc::from("old"), Arc::from("new"));
        let ms = Duration::from_millis;
        let (key, _) = s.watch(old.clone(), 1, ms(100), t0);
        assert_eq!(s.overdue(t0 + ms(100)).len(), 1);
        let (reused, _) = s.watch(new.clone(), 1, ms(100), t0 + ms(200));
        assert_eq!(reused, key);
        s.touch(reused, &old, t0 + ms(5_000));
        s.unwatch(reused, &old);
        assert_eq!(
            s.next_deadline(),
            Some(t0 + ms(300)),
            "still new's, untouched"
        );
        s.unwatch(reused, &new);
        assert_eq!(s.next_deadline(), None);
    }
}
