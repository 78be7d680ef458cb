//! Properties of the duration arithmetic in `RetryPolicy` and `ActivityOptions`: any policy and
//! any attempt give a delay without panicking, within the cap, never shrinking; any timeouts
//! give a heartbeat interval.

use std::time::Duration;

use hb_runtime::{ActivityOptions, RetryPolicy};
use proptest::prelude::*;

/// Durations from zero to `Duration::MAX`, the edges often.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX / 100),
        Just(Duration::MAX / 100 + Duration::from_nanos(1)),
        any::<u64>().prop_map(Duration::from_nanos),
        (0u64..10_000_000).prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// Backoff coefficients, nonsense included.
fn backoff() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-1.0),
        Just(1.0),
        Just(1.0 + f64::EPSILON),
        Just(2.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        0.0..4.0f64,
        1.0..1.000_001f64,
        any::<f64>(),
    ]
}

fn attempt() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(u32::MAX), 0u32..200, any::<u32>()]
}

/// A policy from any values, set both through the setters and straight into the fields (the
/// fields are public, so the setters' clean-up cannot be relied on).
fn policy() -> impl Strategy<Value = RetryPolicy> {
    (
        duration(),
        backoff(),
        proptest::option::of(duration()),
        any::<bool>(),
    )
        .prop_map(|(initial, backoff, max, raw)| {
            let mut p = RetryPolicy::new().initial_interval(initial);
            if raw {
                p.backoff = backoff;
                p.max_interval = max;
            } else {
                p = p.backoff(backoff);
                if let Some(max) = max {
                    p = p.max_interval(max);
                }
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_delay_stays_between_the_initial_interval_and_the_cap(p in policy(), n in attempt()) {
        let (initial, cap) = (p.effective_initial_interval(), p.effective_max_interval());
        let delay = p.delay_after(n);
        prop_assert!(delay <= cap, "{delay:?} above the cap {cap:?}");
        prop_assert!(delay >= initial.min(cap), "{delay:?} below {:?}", initial.min(cap));
        prop_assert!(!initial.is_zero());
    }

    #[test]
    fn the_first_delay_is_the_initial_interval_exactly(p in policy()) {
        let first = p.effective_initial_interval().min(p.effective_max_interval());
        prop_assert_eq!(p.delay_after(0), first);
        prop_assert_eq!(p.delay_after(1), first);
    }

    #[test]
    fn a_later_attempt_never_waits_less(p in policy(), a in attempt(), b in attempt()) {
        let (a, b) = (a.min(b), a.max(b));
        prop_assert!(p.delay_after(a) <= p.delay_after(b), "{:?} then {:?}", p.delay_after(a), p.delay_after(b));
        let next = a.saturating_add(1);
        prop_assert!(p.delay_after(a) <= p.delay_after(next));
    }

    #[test]
    fn every_attempt_in_a_row_waits_at_least_as_long(p in policy(), from in attempt()) {
        let mut prev = p.delay_after(from);
        for n in from.saturating_add(1)..=from.saturating_add(64) {
            let d = p.delay_after(n);
            prop_assert!(prev <= d, "attempt {n}: {d:?} after {prev:?}");
            prev = d;
        }
    }

    #[test]
    fn a_doubling_policy_doubles_until_the_cap(
        initial_ms in 1u64..1_000_000,
        max_ms in proptest::option::of(1u64..100_000_000_000),
        n in 1u32..80,
    ) {
        let mut p = RetryPolicy::new().initial_interval(Duration::from_millis(initial_ms)).backoff(2.0);
        if let Some(m) = max_ms {
            p = p.max_interval(Duration::from_millis(m));
        }
        let cap_ms = max_ms.unwrap_or(initial_ms * 100);
        let expected = initial_ms.checked_shl(n - 1).filter(|d| d >> (n - 1) == initial_ms);
        let expected = Duration::from_millis(expected.map_or(cap_ms, |d| d.min(cap_ms)));
        prop_assert_eq!(p.delay_after(n), expected);
    }

    #[test]
    fn the_backoff_in_force_is_a_number_of_at_least_one(b in backoff()) {
        let set = RetryPolicy::new().backoff(b);
        let mut raw = RetryPolicy::new();
        raw.backoff = b;
        for e in [set.backoff, set.effective_backoff(), raw.effective_backoff()] {
            prop_assert!(e.is_finite() && e >= 1.0, "{b} became {e}");
        }
        if b.is_finite() && b >= 1.0 {
            prop_assert_eq!(set.backoff, b);
        }
        prop_assert_eq!(set, set, "equal to itself (no NaN kept)");
    }

    #[test]
    fn any_timeouts_give_a_heartbeat_interval(
        timeout in proptest::option::of(duration()),
        interval in proptest::option::of(duration()),
    ) {
        let mut o = ActivityOptions::new();
        o.heartbeat_timeout = timeout;
        o.heartbeat_interval = interval;
        let every = o.effective_heartbeat_interval();
        prop_assert!(every >= Duration::from_millis(1));
        match o.effective_heartbeat_timeout() {
            Some(t) => {
                let most = (t / 5 * 4).max(Duration::from_millis(1));
                prop_assert!(every <= most, "{every:?} for a timeout of {t:?}");
            }
            None => prop_assert!(timeout.is_none_or(|t| t.is_zero())),
        }
    }
}

#[test]
fn nonsense_policies_have_a_documented_meaning() {
    let s = Duration::from_secs;
    // Zero intervals mean the defaults (1 s, then 100 × initial), as on a Temporal server.
    let zero = RetryPolicy::new()
        .initial_interval(Duration::ZERO)
        .max_interval(Duration::ZERO);
    assert_eq!(zero.delay_after(1), s(1));
    assert_eq!(zero.delay_after(1_000), s(100));
    // A backoff below 1 keeps the delay where it started.
    let flat = RetryPolicy::new().backoff(0.5);
    assert_eq!(flat.delay_after(100), s(1));
    // A cap below the initial interval wins.
    let capped = RetryPolicy::new()
        .initial_interval(s(10))
        .max_interval(s(3));
    assert_eq!((capped.delay_after(1), capped.delay_after(9)), (s(3), s(3)));
    // An infinite backoff reaches the cap on the second retry.
    let jump = RetryPolicy::new().backoff(f64::INFINITY);
    assert_eq!((jump.delay_after(1), jump.delay_after(2)), (s(1), s(100)));
    // The largest interval is "never by itself", whatever the cap.
    for max in [None, Some(Duration::MAX), Some(s(1))] {
        let mut p = RetryPolicy::new().initial_interval(Duration::MAX);
        p.max_interval = max;
        assert_eq!(p.delay_after(u32::MAX), max.unwrap_or(Duration::MAX));
    }
}

#[test]
fn a_backoff_just_above_one_still_grows_over_many_attempts() {
    let p = RetryPolicy::new()
        .initial_interval(Duration::from_secs(1))
        .backoff(1.000_001)
        .max_interval(Duration::MAX);
    let (a, b) = (p.delay_after(1), p.delay_after(u32::MAX));
    assert!(a < b, "{a:?} then {b:?}");
}

// Found by the properties above.

#[test]
fn the_first_delay_is_exact_even_past_what_f64_holds() {
    // Rounded up to 184467440737095520 s through f64 (whose 53 bits hold ns for 104 days).
    let initial = Duration::MAX / 100 + Duration::from_nanos(1);
    let p = RetryPolicy::new().initial_interval(initial).backoff(1.0);
    assert_eq!(p.delay_after(1), initial);
    assert_eq!(p.delay_after(u32::MAX), initial);
}

#[test]
fn doubling_is_exact_to_the_nanosecond() {
    // 350.984 s × 2^15 came out 1 ns short when computed in f64 seconds.
    let p = RetryPolicy::new()
        .initial_interval(Duration::from_millis(350_984))
        .max_interval(Duration::from_millis(23_002_087_424));
    assert_eq!(p.delay_after(16), Duration::from_millis(350_984 << 15));
}
