//! Items due a fixed period after they were last seen, without a timer each.
//!
//! Items with the same period are kept in one lane, ordered by when they were last seen:
//! seeing an item again moves it to the back (a few index writes), and only the front of a
//! lane can be due. The heartbeat pump keeps its running attempts here (due: the next
//! heartbeat), and the engine its attempts' heartbeat timeouts (due: silent for too long). A
//! timer per item, re-armed whenever it is seen, would cost a timer operation each time.

use std::time::Duration;

use tokio::time::Instant;

/// No item (the end of a lane, or an item not kept).
pub(crate) const NONE: u32 = u32::MAX;

/// One item (kept small: there is one per running attempt).
struct Node<T> {
    item: T,
    /// Its lane, in `Lanes::lanes`.
    lane: u32,
    /// When it was last seen, in ns since `Lanes::epoch`.
    seen: u64,
    prev: u32,
    next: u32,
}

struct Lane {
    period: Duration,
    front: u32,
    back: u32,
}

/// The lanes, one per period.
pub(crate) struct Lanes<T> {
    /// Lanes are kept once made (there are few periods) and reused.
    lanes: Vec<Lane>,
    nodes: slab::Slab<Node<T>>,
    /// Every time given is at or after it (made before the items it keeps).
    epoch: Instant,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            lanes: Vec::new(),
            nodes: slab::Slab::new(),
            epoch: Instant::now(),
        }
    }
}

impl<T> Lanes<T> {
    /// Keeps `item`, due `period` after `seen`. Returns its key and, when it is the front of
    /// its lane (whoever sleeps until the next due item may sleep past it), when it is due.
    pub(crate) fn insert(
        &mut self,
        item: T,
        period: Duration,
        seen: Instant,
    ) -> (u32, Option<Instant>) {
        let key = match u32::try_from(self.nodes.vacant_key()) {
            Ok(key) if key != NONE => key,
            _ => return (NONE, None),
        };
        let lane = match self.lanes.iter().position(|l| l.period == period) {
            Some(i) => i,
            None => {
                self.lanes.push(Lane {
                    period,
                    front: NONE,
                    back: NONE,
                });
                self.lanes.len() - 1
            }
        };
        let Ok(lane) = u32::try_from(lane) else {
            return (NONE, None);
        };
        let seen_ns = self.nanos(seen);
        self.nodes.insert(Node {
            item,
            lane,
            seen: seen_ns,
            prev: NONE,
            next: NONE,
        });
        let front = self.push_back(key);
        (key, front.then_some(seen + period))
    }

    /// The item under `key`, if kept.
    pub(crate) fn get(&self, key: u32) -> Option<&T> {
        self.nodes.get(key as usize).map(|n| &n.item)
    }

    /// Item `key` was seen at `now`: to the back of its lane.
    pub(crate) fn touch(&mut self, key: u32, now: Instant) {
        if !self.nodes.contains(key as usize) {
            return;
        }
        self.unlink(key);
        self.nodes[key as usize].seen = self.nanos(now);
        self.push_back(key);
    }

    /// Stops keeping `key`; its item.
    pub(crate) fn remove(&mut self, key: u32) -> Option<T> {
        if !self.nodes.contains(key as usize) {
            return None;
        }
        self.unlink(key);
        Some(self.nodes.remove(key as usize).item)
    }

    /// The keys of the items due at `now` (`seen + period <= now`), lane by lane, longest
    /// unseen first. They stay kept: [`touch`](Self::touch) or [`remove`](Self::remove) each.
    pub(crate) fn due(&self, now: Instant) -> Vec<u32> {
        let now = self.nanos(now);
        let mut due = Vec::new();
        for lane in &self.lanes {
            let period = nanos_of(lane.period);
            let mut key = lane.front;
            while key != NONE {
                let n = &self.nodes[key as usize];
                if n.seen.saturating_add(period) > now {
                    break;
                }
                due.push(key);
                key = n.next;
            }
        }
        due
    }

    /// When the next item is due, rounded up by `round` (its lane's period), if any is kept.
    pub(crate) fn next_due(&self, round: impl Fn(Duration) -> Duration) -> Option<Instant> {
        self.lanes
            .iter()
            .filter(|l| l.front != NONE)
            .map(|l| {
                let due = self.nodes[l.front as usize]
                    .seen
                    .saturating_add(nanos_of(l.period));
                let step = nanos_of(round(l.period)).max(1);
                let due = due.div_ceil(step).saturating_mul(step);
                self.epoch + Duration::from_nanos(due)
            })
            .min()
    }

    /// How many items are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn nanos(&self, at: Instant) -> u64 {
        nanos_of(at.saturating_duration_since(self.epoch))
    }

    /// Appends `key` to its lane; whether it is the lane's front.
    fn push_back(&mut self, key: u32) -> bool {
        let lane = &mut self.lanes[self.nodes[key as usize].lane as usize];
        let back = lane.back;
        lane.back = key;
        if back == NONE {
            lane.front = key;
        }
        let n = &mut self.nodes[key as usize];
        n.prev = back;
        n.next = NONE;
        if back != NONE {
            self.nodes[back as usize].next = key;
        }
        back == NONE
    }

    fn unlink(&mut self, key: u32) {
        let (prev, next, lane) = {
            let n = &self.nodes[key as usize];
            (n.prev, n.next, n.lane)
        };
        if prev != NONE {
            self.nodes[prev as usize].next = next;
        }
        if next != NONE {
            self.nodes[next as usize].prev = prev;
        }
        let lane = &mut self.lanes[lane as usize];
        if lane.front == key {
            lane.front = next;
        }
        if lane.back == key {
            lane.back = prev;
        }
        let n = &mut self.nodes[key as usize];
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

    fn exact(_: Duration) -> Duration {
        Duration::from_nanos(1)
    }

    #[test]
    fn the_front_is_the_longest_unseen_and_only_it_can_be_due() {
        // Times are after the epoch (an item is kept after its lanes are made).
        let mut l = Lanes::default();
        let t0 = Instant::now();
        let (a, front) = l.insert("a", ms(100), t0);
        assert_eq!(front, Some(t0 + ms(100)));
        let (b, front) = l.insert("b", ms(100), t0 + ms(10));
        assert_eq!(front, None, "behind a");
        let (c, front) = l.insert("c", ms(500), t0);
        assert_eq!(front, Some(t0 + ms(500)), "the front of its own lane");
        assert_eq!(l.next_due(exact), Some(t0 + ms(100)));

        // a is seen again: b is the front now.
        l.touch(a, t0 + ms(50));
        assert_eq!(l.next_due(exact), Some(t0 + ms(110)));
        assert!(l.due(t0 + ms(109)).is_empty());
        assert_eq!(
            l.due(t0 + ms(150)),
            [b, a],
            "b (seen at 10) then a (seen at 50)"
        );
        assert_eq!(l.remove(b), Some("b"));
        assert_eq!(l.remove(a), Some("a"));
        assert_eq!(l.remove(a), None);
        assert_eq!(l.next_due(exact), Some(t0 + ms(500)));
        assert_eq!(l.get(c), Some(&"c"));
        l.remove(c);
        assert_eq!((l.next_due(exact), l.len()), (None, 0));
        assert!(l.due(t0 + ms(10_000)).is_empty());
    }

    #[test]
    fn removing_from_the_middle_and_the_ends_keeps_the_order() {
        let mut l = Lanes::default();
        let t0 = Instant::now();
        let keys: Vec<u32> = (0..5u64)
            .map(|i| l.insert(i, ms(100), t0 + ms(i)).0)
            .collect();
        l.remove(keys[2]);
        l.remove(keys[0]);
        l.remove(keys[4]);
        let due: Vec<u64> = l
            .due(t0 + ms(1_000))
            .into_iter()
            .map(|k| *l.get(k).unwrap())
            .collect();
        assert_eq!(due, [1, 3]);
        // A touched item goes to the back of its lane.
        l.touch(keys[1], t0 + ms(200));
        assert_eq!(l.due(t0 + ms(1_000)), [keys[3], keys[1]]);
    }

    #[test]
    fn due_times_round_up_to_the_step_of_their_lane() {
        let mut l = Lanes::default();
        let t0 = Instant::now();
        l.insert((), ms(100), t0 + ms(1));
        let due = l.next_due(|period| period / 20).unwrap();
        // 5 ms steps from the epoch: the due time, at or after t0 + 101 ms, rounded up.
        assert!(due >= t0 + ms(101) && due < t0 + ms(101) + ms(5));
    }
}
