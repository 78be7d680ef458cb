//! What each key's activities are: their type (one no worker runs), timeouts and retry
//! policy drawn from the seed, and whether their work is heartbeated from outside.

use std::time::Duration;

use super::super::rng::Rng;
use crate::options::{ActivityOptions, RetryPolicy};

/// What a key's activities are.
#[derive(Debug, Clone)]
pub(super) struct KeyConfig {
    pub(super) activity_type: &'static str,
    pub(super) options: ActivityOptions,
    /// Its work is heartbeated by token from outside (its body never checkpoints)...
    pub(super) external: bool,
    /// ... by another process, through the file (else by a task of the engine's process).
    pub(super) through_file: bool,
}

impl KeyConfig {
    pub(super) fn generate(rng: &mut Rng) -> Self {
        let ms = Duration::from_millis;
        let activity_type = match rng.below(10) {
            0 => "orphan",
            1..=5 => "alpha",
            _ => "beta",
        };
        let mut o = ActivityOptions::new();
        o.heartbeat_timeout = rng.pick(&[
            None,
            Some(ms(200)),
            Some(ms(1_000)),
            Some(ms(10_000)),
            Some(ms(10_000)),
            Some(ms(30_000)),
            Some(ms(3_600_000)),
        ]);
        o.start_to_close_timeout = rng.pick(&[None, None, None, Some(ms(300)), Some(ms(20_000))]);
        o.schedule_to_close_timeout =
            rng.pick(&[None, None, None, None, Some(ms(5_000)), Some(ms(120_000))]);
        let mut retry = RetryPolicy::new()
            .max_attempts(rng.pick(&[0, 1, 2, 3, 5]))
            .initial_interval(rng.pick(&[
                Duration::ZERO,
                ms(10),
                ms(1_000),
                ms(30_000),
                // "Never retry on your own": a natural sentinel.
                Duration::MAX,
            ]))
            .backoff(rng.pick(&[1.0, 2.0, 1e9]));
        if rng.one_in(3) {
            retry = retry.max_interval(rng.pick(&[ms(500), ms(3_600_000)]));
        }
        o.retry = retry;
        KeyConfig {
            activity_type,
            options: o,
            external: rng.one_in(5),
            through_file: rng.one_in(2),
        }
    }
}
