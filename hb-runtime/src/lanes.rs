//! Items due a fixed period after they were last seen, without a timer each.
//!
//! Items with the same period are kept in one lane, ordered by when they were last seen:
//! seeing an item again moves it to the back (a few index writes), and only the front of a
//! lane can be due. The heartbeat pump keeps its running attempts here (due: the next
//! heartbeat), and the engine its attempts' heartbeat timeouts (due: silent for too long). A
//! timer per item, re-armed whenever it is seen, would cost a timer operation each time.
//!
//! A lane lives while it has items: periods come from users (a heartbeat timeout per start, of
//! any number of milliseconds), so memory and the work of [`Lanes::due`] and
//! [`Lanes::next_due`] follow the periods of the items kept, not every period ever seen.
//! Times are nanoseconds from an epoch, saturating: no period, up to [`Duration::MAX`],
//! overflows.

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
    /// Its place in `Lanes::order`.
    at: u32,
}

/// The lanes, one per period of the items kept.
pub(crate) struct Lanes<T> {
    /// Each lane has an item; a lane's key stays put while it lives (its items name it).
    lanes: slab::Slab<Lane>,
    /// The lane of each period, looked up on every insert.
    by_period: foldhash::HashMap<Duration, u32>,
    /// The lanes' keys, densely: what `due` and `next_due` walk.
    order: Vec<u32>,
    nodes: slab::Slab<Node<T>>,
    /// Every time given is at or after it (made before the items it keeps); an earlier one
    /// counts as the epoch.
    epoch: Instant,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            lanes: slab::Slab::new(),
            by_period: foldhash::HashMap::default(),
            order: Vec::new(),
            nodes: slab::Slab::new(),
            epoch: Instant::now(),
        }
    }
}

impl<T> Lanes<T> {
    /// Keeps `item`, due `period` after `seen`. Returns its key and, when it is the front of
    /// its lane (whoever sleeps until the next due item may sleep past it), when it is due
    /// (saturating: a due time past what an `Instant` holds is the latest it holds).
    ///
    /// Times given to a lane should mostly increase: an item seen before others of its lane
    /// is placed before them, a step for each it passes.
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
        let Some(lane) = self.lane_of(period) else {
            return (NONE, None);
        };
        let seen = self.nanos(seen);
        self.nodes.insert(Node {
            item,
            lane,
            seen,
            prev: NONE,
            next: NONE,
        });
        let front = self.link(key);
        let due = seen.saturating_add(nanos_of(period));
        (key, front.then(|| self.instant(due)))
    }

    /// The item under `key`, if kept.
    pub(crate) fn get(&self, key: u32) -> Option<&T> {
        self.nodes.get(key as usize).map(|n| &n.item)
    }

    /// Item `key` was seen at `now`: to the back of its lane (see [`insert`](Self::insert)).
    pub(crate) fn touch(&mut self, key: u32, now: Instant) {
        if !self.nodes.contains(key as usize) {
            return;
        }
        self.unlink(key);
        self.nodes[key as usize].seen = self.nanos(now);
        self.link(key);
    }

    /// Stops keeping `key`; its item. Its lane goes when it was the last of it.
    pub(crate) fn remove(&mut self, key: u32) -> Option<T> {
        if !self.nodes.contains(key as usize) {
            return None;
        }
        let lane = self.unlink(key);
        if self.lanes[lane as usize].front == NONE {
            self.drop_lane(lane);
        }
        Some(self.nodes.remove(key as usize).item)
    }

    /// The keys of the items due at `now` (`seen + period <= now`), lane by lane, longest
    /// unseen first. They stay kept: [`touch`](Self::touch) or [`remove`](Self::remove) each.
    pub(crate) fn due(&self, now: Instant) -> Vec<u32> {
        let now = self.nanos(now);
        let mut due = Vec::new();
        for &lane in &self.order {
            let lane = &self.lanes[lane as usize];
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

    /// When the next item is due, if any is kept: its due time rounded up to a multiple of
    /// `round(period)` (its lane's; at least 1 ns) from the epoch, saturating as in
    /// [`insert`](Self::insert).
    pub(crate) fn next_due(&self, round: impl Fn(Duration) -> Duration) -> Option<Instant> {
        self.order
            .iter()
            .map(|&lane| {
                let lane = &self.lanes[lane as usize];
                let due = self.nodes[lane.front as usize]
                    .seen
                    .saturating_add(nanos_of(lane.period));
                let step = nanos_of(round(lane.period)).max(1);
                due.div_ceil(step).saturating_mul(step)
            })
            .min()
            .map(|due| self.instant(due))
    }

    /// How many items are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.nodes.len()
    }

    /// How many lanes there are.
    #[cfg(test)]
    fn lane_count(&self) -> usize {
        self.order.len()
    }

    fn nanos(&self, at: Instant) -> u64 {
        nanos_of(at.saturating_duration_since(self.epoch))
    }

    /// The instant `ns` after the epoch, or the latest of half as far, a quarter, ... that an
    /// `Instant` holds (platforms differ; no sleep lasts that long anyway).
    fn instant(&self, mut ns: u64) -> Instant {
        loop {
            if let Some(at) = self.epoch.checked_add(Duration::from_nanos(ns)) {
                return at;
            }
            ns /= 2;
        }
    }

    /// The lane of `period`, made if there is none; `None` past `u32` lanes.
    fn lane_of(&mut self, period: Duration) -> Option<u32> {
        if let Some(&lane) = self.by_period.get(&period) {
            return Some(lane);
        }
        let lane = u32::try_from(self.lanes.vacant_key()).ok()?;
        let at = u32::try_from(self.order.len()).ok()?;
        self.lanes.insert(Lane {
            period,
            front: NONE,
            back: NONE,
            at,
        });
        self.order.push(lane);
        self.by_period.insert(period, lane);
        Some(lane)
    }

    /// Forgets `lane` (empty).
    fn drop_lane(&mut self, lane: u32) {
        let Lane { period, at, .. } = self.lanes.remove(lane as usize);
        self.by_period.remove(&period);
        self.order.swap_remove(at as usize);
        if let Some(&moved) = self.order.get(at as usize) {
            self.lanes[moved as usize].at = at;
        }
    }

    /// Puts `key` in its lane after the items seen at or before it (from the back: usually
    /// right there); whether it is the lane's front.
    fn link(&mut self, key: u32) -> bool {
        let (lane, seen) = {
            let n = &self.nodes[key as usize];
            (n.lane, n.seen)
        };
        let mut prev = self.lanes[lane as usize].back;
        while prev != NONE && self.nodes[prev as usize].seen > seen {
            prev = self.nodes[prev as usize].prev;
        }
        let l = &mut self.lanes[lane as usize];
        let next = if prev == NONE {
            std::mem::replace(&mut l.front, key)
        } else {
            std::mem::replace(&mut self.nodes[prev as usize].next, key)
        };
        if next == NONE {
            l.back = key;
        } else {
            self.nodes[next as usize].prev = key;
        }
        let n = &mut self.nodes[key as usize];
        n.prev = prev;
        n.next = next;
        prev == NONE
    }

    /// Takes `key` out of its lane (which may be left empty); its lane.
    fn unlink(&mut self, key: u32) -> u32 {
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
        let l = &mut self.lanes[lane as usize];
        if l.front == key {
            l.front = next;
        }
        if l.back == key {
            l.back = prev;
        }
        let n = &mut self.nodes[key as usize];
        n.prev = NONE;
        n.next = NONE;
        lane
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
    #[test]
    fn a_lane_goes_with_its_last_item() {
        // Per-start heartbeat timeouts: a period each.
        let mut l = Lanes::default();
        let t0 = Instant::now();
        let keys: Vec<u32> = (1..=1_000u64).map(|i| l.insert(i, ms(i), t0).0).collect();
        assert_eq!(l.lane_count(), 1_000);
        for &k in &keys[1..] {
            l.remove(k);
        }
        assert_eq!(l.lane_count(), 1);
        assert_eq!(l.due(t0 + ms(1)), [keys[0]]);
        l.remove(keys[0]);
        assert_eq!((l.lane_count(), l.len(), l.next_due(exact)), (0, 0, None));
    }

    #[test]
    fn the_longest_period_does_not_overflow() {
        // A period of `Duration::MAX` (a timeout meaning "never") is due at the end of time.
        let mut l = Lanes::default();
        let t0 = Instant::now();
        let (a, front) = l.insert("a", Duration::MAX, t0);
        let end = front.expect("the front of its lane");
        assert!(end > t0 + Duration::from_secs(500 * 365 * 24 * 3600));
        assert_eq!(l.next_due(exact), Some(end));
        assert_eq!(l.next_due(|p| p), Some(end));
        assert!(l.due(t0 + Duration::from_secs(1 << 33)).is_empty());
        l.touch(a, t0 + ms(1));
        assert_eq!(l.due(end), [a], "due once its time comes, saturating");
    }

    #[test]
    fn an_item_seen_earlier_goes_before_those_seen_later() {
        let mut l = Lanes::default();
        let t0 = Instant::now();
        let (late, _) = l.insert("late", ms(100), t0 + ms(50));
        let (early, front) = l.insert("early", ms(100), t0 + ms(10));
        assert_eq!(front, Some(t0 + ms(110)), "the new front");
        assert_eq!(l.due(t0 + ms(110)), [early]);
        l.touch(late, t0 + ms(5));
        assert_eq!(l.due(t0 + ms(110)), [late, early]);
    }
}

#[cfg(test)]
mod properties {
    //! `Lanes` against a model: a list of items with their period and when they were seen.

    use super::*;
    use proptest::prelude::*;

    /// Periods: a few common ones (shared lanes), any number of ns, and the largest.
    fn period() -> impl Strategy<Value = Duration> {
        prop_oneof![
            4 => prop::sample::select(vec![
                Duration::ZERO,
                Duration::from_nanos(1),
                Duration::from_millis(1),
                Duration::from_millis(10),
                Duration::from_millis(100),
                Duration::from_secs(1),
            ]),
            2 => (0u64..1_000_000_000).prop_map(Duration::from_nanos),
            1 => Just(Duration::MAX),
            1 => Just(Duration::from_nanos(u64::MAX)),
            1 => any::<u64>().prop_map(Duration::from_nanos),
            1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    /// How far the clock moves before an operation: mostly a little, sometimes not at all or
    /// to near the end of time.
    fn step() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..200_000_000,
            2 => Just(0u64),
            1 => any::<u64>(),
        ]
    }

    /// How long before the clock an operation says it happened: mostly now, sometimes
    /// earlier (out of order).
    fn back() -> impl Strategy<Value = u64> {
        prop_oneof![6 => Just(0u64), 1 => 0u64..500_000_000, 1 => any::<u64>()]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Duration),
        /// The `n`th kept item (modulo), or a key not kept when none is.
        Touch(usize),
        Remove(usize),
        /// A key that may or may not be kept.
        RemoveKey(u32),
        Due,
        /// What the pump does: touch every due item.
        DueTouch,
        /// What the engine does: remove every due item.
        DueRemove,
        NextDue(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => period().prop_map(Op::Insert),
            3 => any::<usize>().prop_map(Op::Touch),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => (0u32..64).prop_map(Op::RemoveKey),
            2 => Just(Op::Due),
            1 => Just(Op::DueTouch),
            1 => Just(Op::DueRemove),
            2 => (0u8..4).prop_map(Op::NextDue),
        ]
    }

    struct Item {
        id: u64,
        period: Duration,
        seen: u64,
        /// When it was inserted or last touched: among items seen at the same time, the
        /// earlier first.
        order: u64,
    }

    #[derive(Default)]
    struct Model {
        items: std::collections::BTreeMap<u32, Item>,
        order: u64,
    }

    impl Model {
        fn due_at(i: &Item) -> u64 {
            i.seen.saturating_add(nanos_of(i.period))
        }

        /// The due items of each period, longest unseen first.
        fn due(&self, now: u64) -> std::collections::BTreeMap<Duration, Vec<u32>> {
            let mut due: std::collections::BTreeMap<Duration, Vec<(u64, u64, u32)>> =
                Default::default();
            for (&k, i) in &self.items {
                if Self::due_at(i) <= now {
                    due.entry(i.period).or_default().push((i.seen, i.order, k));
                }
            }
            due.into_iter()
                .map(|(p, mut v)| {
                    v.sort_unstable();
                    (p, v.into_iter().map(|(_, _, k)| k).collect())
                })
                .collect()
        }

        fn periods(&self) -> usize {
            let set: std::collections::BTreeSet<Duration> =
                self.items.values().map(|i| i.period).collect();
            set.len()
        }

        fn nth(&self, n: usize) -> Option<u32> {
            let len = self.items.len();
            (len > 0).then(|| *self.items.keys().nth(n % len).unwrap())
        }
    }

    fn rounding(which: u8) -> impl Fn(Duration) -> Duration {
        move |period: Duration| match which {
            0 => Duration::from_nanos(1),
            // The pump's slots.
            1 => (period / 20).clamp(Duration::from_millis(1), Duration::from_millis(10)),
            2 => Duration::ZERO,
            _ => period,
        }
    }

    /// The links of every lane agree with each other and with the lanes' bookkeeping.
    fn check_links<T>(l: &Lanes<T>) {
        assert_eq!(l.order.len(), l.lanes.len());
        assert_eq!(l.by_period.len(), l.lanes.len());
        let mut seen_nodes = 0;
        for (at, &lane) in l.order.iter().enumerate() {
            let ln = &l.lanes[lane as usize];
            assert_eq!(ln.at as usize, at);
            assert_eq!(l.by_period[&ln.period], lane);
            assert_ne!(ln.front, NONE, "a lane without items is kept");
            let (mut key, mut prev, mut last_seen) = (ln.front, NONE, 0);
            while key != NONE {
                let n = &l.nodes[key as usize];
                assert_eq!((n.lane, n.prev), (lane, prev));
                assert!(n.seen >= last_seen, "out of order");
                (prev, last_seen, key) = (key, n.seen, n.next);
                seen_nodes += 1;
            }
            assert_eq!(ln.back, prev);
        }
        assert_eq!(seen_nodes, l.nodes.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn lanes_agree_with_a_list_of_items(
            ops in prop::collection::vec((step(), back(), op()), 1..200)
        ) {
            let mut l: Lanes<u64> = Lanes::default();
            let epoch = l.epoch;
            let at = |ns: u64| epoch + Duration::from_nanos(ns);
            let mut m = Model::default();
            let (mut clock, mut next_id) = (0u64, 0u64);
            for (step, back, op) in ops {
                clock = clock.saturating_add(step);
                let now = clock.saturating_sub(back);
                match op {
                    Op::Insert(period) => {
                        let (key, front) = l.insert(next_id, period, at(now));
                        prop_assert_ne!(key, NONE);
                        prop_assert!(!m.items.contains_key(&key), "key {} given twice", key);
                        let is_front = m.items.values().all(|i| i.period != period || i.seen > now);
                        let due = now.saturating_add(nanos_of(period));
                        prop_assert_eq!(front, is_front.then(|| at(due)));
                        m.order += 1;
                        m.items.insert(key, Item { id: next_id, period, seen: now, order: m.order });
                        next_id += 1;
                    }
                    Op::Touch(n) => {
                        let key = m.nth(n).unwrap_or(n as u32);
                        l.touch(key, at(now));
                        m.order += 1;
                        if let Some(i) = m.items.get_mut(&key) {
                            (i.seen, i.order) = (now, m.order);
                        }
                    }
                    Op::Remove(n) => {
                        let key = m.nth(n).unwrap_or(n as u32);
                        prop_assert_eq!(l.remove(key), m.items.remove(&key).map(|i| i.id));
                    }
                    Op::RemoveKey(key) => {
                        prop_assert_eq!(l.remove(key), m.items.remove(&key).map(|i| i.id));
                    }
                    Op::Due | Op::DueTouch | Op::DueRemove => {
                        let due = l.due(at(now));
                        // Lane by lane: each period's keys together, in the model's order.
                        let mut got: Vec<(Duration, Vec<u32>)> = Vec::new();
                        for &key in &due {
                            let period = m.items[&key].period;
                            match got.last_mut() {
                                Some((p, keys)) if *p == period => keys.push(key),
                                _ => got.push((period, vec![key])),
                            }
                        }
                        let periods = got.len();
                        let got: std::collections::BTreeMap<_, _> = got.into_iter().collect();
                        prop_assert_eq!(got.len(), periods, "a lane's due items apart");
                        prop_assert_eq!(&got, &m.due(now));
                        for key in due {
                            if matches!(op, Op::DueTouch) {
                                l.touch(key, at(now));
                                m.order += 1;
                                let i = m.items.get_mut(&key).unwrap();
                                (i.seen, i.order) = (now, m.order);
                            } else if matches!(op, Op::DueRemove) {
                                prop_assert_eq!(l.remove(key), m.items.remove(&key).map(|i| i.id));
                            }
                        }
                    }
                    Op::NextDue(which) => {
                        let round = rounding(which);
                        let expected = m.items.values().map(|i| {
                            let step = nanos_of(round(i.period)).max(1);
                            Model::due_at(i).div_ceil(step).saturating_mul(step)
                        }).min();
                        prop_assert_eq!(l.next_due(&round), expected.map(at));
                    }
                }
                prop_assert_eq!(l.len(), m.items.len());
                for (&key, i) in &m.items {
                    prop_assert_eq!(l.get(key), Some(&i.id));
                }
                prop_assert_eq!(l.lane_count(), m.periods());
                check_links(&l);
            }
        }
    }
}
