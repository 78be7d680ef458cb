//! The activities waiting for a worker, a queue per type.
//!
//! An activity leaves its queue when a worker takes it. One cancelled or timed out while it
//! waits stays in the queue as a stale id (removing it from the middle of a deque would cost
//! a scan); stale ids are counted, and a queue is compacted once half of it is stale, so a
//! queue of a type no worker runs holds at most twice the activities still waiting in it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

#[derive(Default)]
struct Queue {
    /// Each with when it was queued (ms since the epoch), for its wait's metric.
    ids: VecDeque<(Arc<str>, i64)>,
    /// How many of `ids` no longer wait (at most; some may have been taken out already).
    stale: usize,
}

/// The ready queues, by activity type.
#[derive(Default)]
pub(crate) struct Ready {
    queues: HashMap<Arc<str>, Queue>,
}

impl Ready {
    /// `id` of type `ty` waits for a worker from `since_ms`.
    pub(crate) fn push(&mut self, ty: &Arc<str>, id: Arc<str>, since_ms: i64) {
        self.queues
            .entry(ty.clone())
            .or_default()
            .ids
            .push_back((id, since_ms));
    }

    /// The next id queued for `ty`, with when it was queued, which the caller checks is
    /// still waiting (a stale one is skipped by calling again).
    pub(crate) fn pop(&mut self, ty: &str) -> Option<(Arc<str>, i64)> {
        let queue = self.queues.get_mut(ty)?;
        let id = queue.ids.pop_front();
        if queue.ids.is_empty() {
            self.queues.remove(ty);
        }
        id
    }

    /// The caller found a stale id when it popped one.
    pub(crate) fn skipped(&mut self, ty: &str) {
        if let Some(q) = self.queues.get_mut(ty) {
            q.stale = q.stale.saturating_sub(1);
        }
    }

    /// An activity of type `ty` stopped waiting without being taken (it closed); `waits`
    /// says which ids still wait.
    pub(crate) fn left(&mut self, ty: &str, waits: impl Fn(&str) -> bool) {
        let Some(q) = self.queues.get_mut(ty) else {
            return;
        };
        q.stale += 1;
        if 2 * q.stale > q.ids.len() {
            q.ids.retain(|(id, _)| waits(id));
            q.stale = 0;
            if q.ids.is_empty() {
                self.queues.remove(ty);
            }
        }
    }

    /// Ids queued, stale ones included.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn len(&self) -> usize {
        self.queues.values().map(|q| q.ids.len()).sum()
    }

    /// Whether `id` is queued for `ty`.
    #[cfg(feature = "sim")]
    pub(crate) fn contains(&self, ty: &str, id: &str) -> bool {
        self.queues
            .get(ty)
            .is_some_and(|q| q.ids.iter().any(|(i, _)| &**i == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_holds_at_most_twice_what_still_waits() {
        let mut r = Ready::default();
        let ty: Arc<str> = Arc::from("orphan");
        for i in 0..100 {
            r.push(&ty, Arc::from(format!("a{i}")), i);
        }
        // All but a3 and a7 leave without being taken, one by one.
        let mut gone = std::collections::HashSet::new();
        for i in (0..100).filter(|i| *i != 3 && *i != 7) {
            gone.insert(format!("a{i}"));
            r.left(&ty, |id| !gone.contains(id));
            let waiting = 100 - gone.len();
            assert!(
                r.len() <= 2 * waiting + 1,
                "{} queued for {waiting}",
                r.len()
            );
        }
        assert_eq!(r.len(), 2, "compacted to what waits");
        assert_eq!(r.pop(&ty), Some((Arc::from("a3"), 3)));
        assert_eq!(r.pop(&ty), Some((Arc::from("a7"), 7)));
        assert!(r.queues.is_empty(), "an empty queue goes");
    }
}
