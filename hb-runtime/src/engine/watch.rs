//! Who watches which activity ([`Watchers`]): `Handle::watch` on an engine registers here, and
//! every change of the activity (a write the core queues for it: a start, a heartbeat, a change
//! of state) wakes its watchers, so they describe it again without polling. With nobody
//! watching, a change costs one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The activities being watched, each with the signal its watchers wait on.
#[derive(Default)]
pub(crate) struct Watchers {
    /// Watches alive (the fast path's check).
    count: AtomicUsize,
    by_id: Mutex<HashMap<Arc<str>, Watched>>,
}

/// A watched id's signal, and how many watches it has.
type Watched = (Arc<Notify>, usize);

impl Watchers {
    /// Whether anything is watched.
    pub(crate) fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    /// Activity `id` changed: wake its watchers.
    pub(crate) fn changed(&self, id: &str) {
        if !self.active() {
            return;
        }
        if let Some((n, _)) = self.lock().get(id) {
            n.notify_waiters();
        }
    }

    /// Starts watching `id`; the watch ends when the returned guard drops.
    pub(crate) fn watch(self: &Arc<Self>, id: &str) -> Watch {
        let notify = {
            let mut by_id = self.lock();
            let (notify, watches) = by_id
                .entry(Arc::from(id))
                .or_insert_with(|| (Arc::new(Notify::new()), 0));
            *watches += 1;
            notify.clone()
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        Watch {
            watchers: self.clone(),
            id: Arc::from(id),
            notify,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Watched>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One watch of one activity: its signal, released when dropped.
pub(crate) struct Watch {
    watchers: Arc<Watchers>,
    id: Arc<str>,
    notify: Arc<Notify>,
}

impl Watch {
    /// The signal a change of the activity gives.
    pub(crate) fn signal(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.watchers.count.fetch_sub(1, Ordering::Relaxed);
        let mut by_id = self.watchers.lock();
        if let Some((_, watches)) = by_id.get_mut(&self.id) {
            *watches -= 1;
            if *watches == 0 {
                by_id.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_dropped_takes_its_entry_with_it_once_it_is_the_last() {
        let w = Arc::new(Watchers::default());
        assert!(!w.active());
        let a = w.watch("x");
        let b = w.watch("x");
        assert!(w.active());
        drop(a);
        assert_eq!(w.lock().len(), 1, "b still watches x");
        drop(b);
        assert!(!w.active());
        assert!(w.lock().is_empty(), "nothing kept for an id nobody watches");
    }
}
