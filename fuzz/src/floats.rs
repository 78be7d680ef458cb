//! Comparing values that went through JSON, floats within a few ulps.

use serde::Serialize;
use serde_json::Value;

/// Whether `a` and `b` serialise to the same JSON, allowing floats to differ in the last
/// places: serde_json, as hb builds it (without its `float_roundtrip` feature), parses a float
/// by multiplying or dividing its digits by a rounded power of ten (once or twice), so the
/// shortest text of an `f64` may come back as a neighbour a few ulps away, and a value holding
/// floats drifts on every round trip (`fuzz/regressions/checkpoint/`). With
/// `HB_FUZZ_STRICT=1` set, round trips must be exact.
pub fn same_but_float_drift<T: Serialize>(a: &T, b: &T) -> bool {
    if crate::strict() {
        return false;
    }
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => close(&a, &b),
        _ => false,
    }
}

/// The drift tolerated, in ulps.
const MAX_DRIFT: u64 = 4;

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || ((x.is_f64() || y.is_f64())
                    && matches!((x.as_f64(), y.as_f64()), (Some(x), Some(y)) if ulps(x, y) <= MAX_DRIFT))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, x), (ky, y))| kx == ky && close(x, y))
        }
        _ => a == b,
    }
}

/// The distance between two finite floats in units in the last place.
fn ulps(x: f64, y: f64) -> u64 {
    if x == y {
        return 0;
    }
    if x.is_sign_negative() != y.is_sign_negative() {
        return u64::MAX;
    }
    x.to_bits().abs_diff(y.to_bits())
}
