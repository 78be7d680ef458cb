//! Heartbeat timeouts of running attempts, without a timer per heartbeat.
//!
//! Per heartbeat timeout, the attempts are kept in a list ordered by their last heartbeat,
//! oldest first: a heartbeat moves its attempt to the back (a few pointer writes under the
//! engine's lock, which the heartbeat holds anyway), and only the front can be overdue. The
//! deadline queue wakes at the front's deadline and pops the attempts that are silent for
//! longer than their timeout. A timer per attempt, re-armed each time it finds a newer
//! heartbeat, would fire about once per heartbeat instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// No node (the end of a list, or an attempt not watched).
pub(crate) const NONE: u32 = u32::MAX;

/// One watched attempt (kept small: there is one per running attempt).
struct Node {
    id: Arc<str>,
    attempt: u32,
    /// Its list, in `Silence::lists`.
    list: u32,
    /// The last heartbeat (or the attempt's start), in ns since `Silence::epoch`.
    since: u64,
    prev: u32,
    next: u32,
}

/// A list of the attempts with one heartbeat timeout.
struct List {
    timeout: Duration,
    front: u32,
    back: u32,
}

/// The lists, one per heartbeat timeout.
pub(crate) struct Silence {
    /// The lists in use have a front; an emptied one is reused for its timeout.
    lists: Vec<List>,
    nodes: slab::Slab<Node>,
    epoch: Instant,
}

impl Default for Silence {
    fn default() -> Self {
        Silence {
            lists: Vec::new(),
            nodes: slab::Slab::new(),
            epoch: Instant::now(),
        }
    }
}

impl Silence {
    /// Watches attempt `attempt` of `id`, heard from at `since`. Returns its node and, when it
    /// is the front of its list (the deadline queue may sleep past it), its deadline.
    pub(crate) fn watch(
        &mut self,
        id: Arc<str>,
        attempt: u32,
        timeout: Duration,
        since: Instant,
    ) -> (u32, Option<Instant>) {
        let Ok(node) = u32::try_from(self.nodes.vacant_key()) else {
            return (NONE, None);
        };
        if node == NONE {
            return (NONE, None);
        }
        let list = match self.lists.iter().position(|l| l.timeout == timeout) {
            Some(i) => i,
            None => {
                self.lists.push(List {
                    timeout,
                    front: NONE,
                    back: NONE,
                });
                self.lists.len() - 1
            }
        };
        let Ok(list) = u32::try_from(list) else {
            return (NONE, None);
        };
        let since_ns = self.nanos(since);
        self.nodes.insert(Node {
            id,
            attempt,
            list,
            since: since_ns,
            prev: NONE,
            next: NONE,
        });
        let front = self.push_back(node);
        (node, front.then_some(since + timeout))
    }

    /// Whether `node` is watched for activity `id` (a node freed and reused is someone
    /// else's).
    fn is(&self, node: u32, id: &Arc<str>) -> bool {
        self.nodes
            .get(node as usize)
            .is_some_and(|n| Arc::ptr_eq(&n.id, id))
    }

    /// Activity `id`'s `node` was heard from `now`: to the back of its list.
    pub(crate) fn touch(&mut self, node: u32, id: &Arc<str>, now: Instant) {
        if !self.is(node, id) {
            return;
        }
        self.unlink(node);
        self.nodes[node as usize].since = self.nanos(now);
        self.push_back(node);
    }

    /// Stops watching activity `id`'s `node`.
    pub(crate) fn unwatch(&mut self, node: u32, id: &Arc<str>) {
        if self.is(node, id) {
            self.unlink(node);
            self.nodes.remove(node as usize);
        }
    }

    /// The attempts silent for their whole timeout at `now` (no longer watched), as
    /// `(id, attempt, node)`.
    pub(crate) fn overdue(&mut self, now: Instant) -> Vec<(Arc<str>, u32, u32)> {
        let now = self.nanos(now);
        let mut due = Vec::new();
        for l in 0..self.lists.len() {
            let timeout = nanos_of(self.lists[l].timeout);
            let mut front = self.lists[l].front;
            while front != NONE {
                let n = &self.nodes[front as usize];
                if n.since.saturating_add(timeout) > now {
                    break;
                }
                let next = n.next;
                let node = self.nodes.remove(front as usize);
                if next != NONE {
                    self.nodes[next as usize].prev = NONE;
                }
                due.push((node.id, node.attempt, front));
                front = next;
            }
            let list = &mut self.lists[l];
            list.front = front;
            if front == NONE {
                list.back = NONE;
            }
        }
        due
    }

    /// When the next attempt becomes overdue, if one is watched.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lists
            .iter()
            .filter(|l| l.front != NONE)
            .map(|l| {
                let since = self.nodes[l.front as usize].since;
                self.epoch + Duration::from_nanos(since) + l.timeout
            })
            .min()
    }

    fn nanos(&self, at: Instant) -> u64 {
        nanos_of(at.saturating_duration_since(self.epoch))
    }

    /// Appends `node` to its list; whether it is the list's front.
    fn push_back(&mut self, node: u32) -> bool {
        let list = &mut self.lists[self.nodes[node as usize].list as usize];
        let back = list.back;
        list.back = node;
        if back == NONE {
            list.front = node;
        }
        let n = &mut self.nodes[node as usize];
        n.prev = back;
        n.next = NONE;
        if back != NONE {
            self.nodes[back as usize].next = node;
        }
        back == NONE
    }

    fn unlink(&mut self, node: u32) {
        let (prev, next, list) = {
            let n = &self.nodes[node as usize];
            (n.prev, n.next, n.list)
        };
        if prev != NONE {
            self.nodes[prev as usize].next = next;
        }
        if next != NONE {
            self.nodes[next as usize].prev = prev;
        }
        let list = &mut self.lists[list as usize];
        if list.front == node {
            list.front = next;
        }
        if list.back == node {
            list.back = prev;
        }
        let n = &mut self.nodes[node as usize];
        n.prev = NONE;
        n.next = NONE;
    }
}

/// `d` in ns, saturating.
fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_front_is_the_longest_silent_and_only_overdue_attempts_pop() {
        // Times are after the epoch (a running attempt starts after the engine).
        let mut s = Silence::default();
        let t0 = Instant::now();
        let (ida, idb, idc): (Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from("a"), Arc::from("b"), Arc::from("c"));
        let (a, front) = s.watch(ida.clone(), 1, ms(100), t0);
        assert_eq!(front, Some(t0 + ms(100)));
        let (b, front) = s.watch(idb.clone(), 1, ms(100), t0 + ms(10));
        assert_eq!(front, None, "behind a");
        let (c, front) = s.watch(idc.clone(), 2, ms(500), t0);
        assert_eq!(front, Some(t0 + ms(500)), "the front of its own list");
        assert_eq!(s.next_deadline(), Some(t0 + ms(100)));

        // a heartbeats: b is the front now.
        s.touch(a, &ida, t0 + ms(50));
        assert_eq!(s.next_deadline(), Some(t0 + ms(110)));
        assert!(s.overdue(t0 + ms(109)).is_empty());
        let due = s.overdue(t0 + ms(150));
        assert_eq!(
            due.len(),
            2,
            "b (since 10) and a (since 50) are silent for 100 ms"
        );
        assert_eq!((&*due[0].0, due[0].2), ("b", b));
        assert_eq!((&*due[1].0, due[1].2), ("a", a));
        assert_eq!(s.next_deadline(), Some(t0 + ms(500)));

        s.unwatch(c, &idb); // not c's owner: nothing happens
        assert_eq!(s.next_deadline(), Some(t0 + ms(500)));
        s.unwatch(c, &idc);
        assert_eq!(s.next_deadline(), None);
        assert!(s.overdue(t0 + ms(10_000)).is_empty());
        assert!(s.lists.iter().all(|l| l.front == NONE) && s.nodes.is_empty());
    }

    #[test]
    fn unwatching_from_the_middle_and_the_ends_keeps_the_order() {
        // Times are after the epoch (a running attempt starts after the engine).
        let mut s = Silence::default();
        let t0 = Instant::now();
        let ids: Vec<Arc<str>> = (0..5).map(|i| Arc::from(format!("n{i}"))).collect();
        let nodes: Vec<u32> = (0..5u64)
            .map(|i| s.watch(ids[i as usize].clone(), 1, ms(100), t0 + ms(i)).0)
            .collect();
        s.unwatch(nodes[2], &ids[2]);
        s.unwatch(nodes[0], &ids[0]);
        s.unwatch(nodes[4], &ids[4]);
        let due: Vec<String> = s
            .overdue(t0 + ms(1_000))
            .into_iter()
            .map(|(id, ..)| id.to_string())
            .collect();
        assert_eq!(due, ["n1", "n3"]);
        // A freed node reused by another activity is not touched through its old owner.
        let (reused, _) = s.watch(Arc::from("other"), 1, ms(100), t0);
        let old = nodes.iter().position(|n| *n == reused).unwrap();
        s.touch(reused, &ids[old], t0 + ms(5_000));
        assert_eq!(s.next_deadline(), Some(t0 + ms(100)));
    }
}
