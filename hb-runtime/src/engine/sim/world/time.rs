//! Time passing: the simulated clock moves from one event to the next (a pump tick, a commit
//! due, a timer, a heartbeat-timeout sweep) until the target, with no real sleeping.

use std::time::Duration;

use tokio::time::Instant;

use super::World;

impl World {
    /// Time passes to `now + d`: on the way, pump ticks, commits and timers happen when due.
    pub(super) fn advance(&mut self, d: Duration) {
        let target = crate::engine::clock::later(self.now(), d);
        for _ in 0..100_000 {
            self.end_cancelled();
            let (timer_at, sweep_at, commit_by) = {
                let shell = self.shell.lock();
                (
                    shell.timers.keys().next().map(|(at, _)| *at),
                    shell.sweep_at,
                    shell.commit_by,
                )
            };
            let tick_at = self.running.iter().map(|r| r.next_tick).min();
            let next = [timer_at, sweep_at, commit_by, tick_at]
                .into_iter()
                .flatten()
                .min()
                .map_or(target, |t| t.min(target));
            self.clock.advance_to(next);
            let now = self.now();
            if commit_by.is_some_and(|c| c <= now) {
                self.commit();
            }
            self.fire_timers(now);
            if sweep_at.is_some_and(|s| s <= now) {
                let mut shell = self.shell.lock();
                shell.sweep_at = None;
                let next = shell.change(|core, fx| core.sweep(now, fx));
                if let Some(at) = next {
                    shell.sweep_at = Some(shell.sweep_at.map_or(at, |s| s.min(at)));
                }
            }
            self.ticks(now);
            if now >= target {
                return;
            }
        }
        self.fail(
            "hang",
            "time cannot move: events keep coming due at once".into(),
        );
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        loop {
            let mut shell = self.shell.lock();
            let Some(entry) = shell.timers.first_entry() else {
                return;
            };
            if entry.key().0 > now {
                return;
            }
            let timer = entry.remove();
            self.events.timers += 1;
            shell.change(|core, fx| core.on_timer(&timer, fx));
        }
    }
}
