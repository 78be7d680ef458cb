//! Reading one option's value: durations, choices, names, paths, integers, lists. Each reader
//! records its own error in the `Ctxt` and returns `None`, so parsing goes on.

use std::time::Duration;

use syn::{BinOp, Expr, ExprLit, Lit, LitStr, Path, UnOp};

use super::args::{HARD_CHECKPOINT_LIMIT, Value};
use super::options::{Choice, Kind, Spec};
use crate::ctxt::Ctxt;
use crate::duration;
use crate::meta::{crate_path, key_name, lit_str};

/// The value of the option `spec` (written `key = expr`), read by its kind; `None` after
/// recording why it is wrong.
pub(super) fn read(cx: &Ctxt, spec: &'static Spec, key: &Path, expr: &Expr) -> Option<Value> {
    match &spec.kind {
        Kind::Duration => duration_value(cx, key, expr).map(Value::Duration),
        Kind::Choice { values, .. } => choice(cx, key, expr, values).map(Value::Choice),
        Kind::Size => checkpoint_size(cx, expr).map(Value::Size),
        Kind::Attempts => max_attempts(cx, expr).map(Value::Attempts),
        Kind::Factor => backoff(cx, expr).map(Value::Factor),
        Kind::TypeNames => non_retryable(cx, expr).map(Value::TypeNames),
        Kind::Name => name(cx, expr).map(Value::Name),
        Kind::Crate => crate_path(cx, expr).map(Value::Crate),
        // A list, read by `args::parse_retry`.
        Kind::Retry => None,
    }
}

fn duration_value(cx: &Ctxt, key: &Path, expr: &Expr) -> Option<Duration> {
    match duration::from_expr(&key_name(key), expr) {
        Ok(value) => Some(value),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    }
}

/// A string option with a fixed set of values.
fn choice(
    cx: &Ctxt,
    key: &Path,
    expr: &Expr,
    values: &'static [Choice],
) -> Option<&'static Choice> {
    let name = key_name(key);
    let list = values
        .iter()
        .map(|c| format!("\"{}\"", c.value))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some(lit) = lit_str(expr) else {
        cx.error_spanned_by(expr, format!("`{name}` takes a string: {list}"));
        return None;
    };
    let text = lit.value();
    match values.iter().find(|c| c.value == text) {
        Some(choice) => Some(choice),
        None => {
            cx.error_spanned_by(lit, format!("unknown {name} \"{text}\"; expected {list}"));
            None
        }
    }
}

fn name(cx: &Ctxt, expr: &Expr) -> Option<String> {
    let Some(lit) = lit_str(expr) else {
        cx.error_spanned_by(
            expr,
            "`name` takes a string literal: the activity type name, e.g. name = \"process-batch\"",
        );
        return None;
    };
    let value = lit.value();
    if value.trim().is_empty() {
        cx.error_spanned_by(
            lit,
            "the activity name must not be empty; leave `name` out to use the function's name",
        );
        return None;
    }
    if value.trim() != value {
        cx.error_spanned_by(
            lit,
            "the activity name must not start or end with whitespace",
        );
        return None;
    }
    Some(value)
}

/// An integer written as a literal or simple constant arithmetic (`256 * 1024`, `1 << 20`).
fn const_int(expr: &Expr) -> Result<u128, &Expr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse::<u128>().map_err(|_| expr),
        Expr::Paren(p) => const_int(&p.expr),
        Expr::Group(g) => const_int(&g.expr),
        Expr::Binary(b) => {
            let (l, r) = (const_int(&b.left)?, const_int(&b.right)?);
            let value = match b.op {
                BinOp::Mul(_) => l.checked_mul(r),
                BinOp::Add(_) => l.checked_add(r),
                BinOp::Sub(_) => l.checked_sub(r),
                BinOp::Shl(_) => u32::try_from(r)
                    .ok()
                    .and_then(|r| l.checked_shl(r))
                    .filter(|v| v >> r.min(127) == l),
                _ => None,
            };
            value.ok_or(expr)
        }
        _ => Err(expr),
    }
}

fn checkpoint_size(cx: &Ctxt, expr: &Expr) -> Option<u64> {
    let value = match const_int(expr) {
        Ok(v) => v,
        Err(bad) => {
            let msg = if matches!(bad, Expr::Unary(u) if matches!(u.op, UnOp::Neg(_))) {
                "max_checkpoint_size must be positive".to_owned()
            } else {
                "max_checkpoint_size takes a number of bytes as an integer literal \
                 (or simple arithmetic such as `512 * 1024`)"
                    .to_owned()
            };
            cx.error_spanned_by(bad, msg);
            return None;
        }
    };
    if value == 0 || value > HARD_CHECKPOINT_LIMIT {
        cx.error_spanned_by(
            expr,
            format!(
                "max_checkpoint_size must be between 1 and {HARD_CHECKPOINT_LIMIT} bytes \
                 (2 MiB, Temporal's hard limit on one payload); got {value}"
            ),
        );
        return None;
    }
    // At most 2 MiB, so it fits.
    Some(u64::try_from(value).unwrap_or(u64::MAX))
}

fn max_attempts(cx: &Ctxt, expr: &Expr) -> Option<u32> {
    match const_int(expr).map(u32::try_from) {
        Ok(Ok(value)) => Some(value),
        Ok(Err(_)) => {
            cx.error_spanned_by(
                expr,
                format!("max_attempts must fit in a u32 (at most {})", u32::MAX),
            );
            None
        }
        Err(bad) => {
            cx.error_spanned_by(
                bad,
                "max_attempts takes a whole number of attempts, first attempt included \
                 (0 = unlimited), e.g. max_attempts = 5",
            );
            None
        }
    }
}

fn backoff(cx: &Ctxt, expr: &Expr) -> Option<f64> {
    let parsed = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok(),
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse::<u64>().ok().map(|v| v as f64),
        _ => None,
    };
    let Some(value) = parsed.filter(|v| v.is_finite()) else {
        cx.error_spanned_by(
            expr,
            "backoff takes a number literal of at least 1.0, e.g. backoff = 2.0",
        );
        return None;
    };
    if value < 1.0 {
        cx.error_spanned_by(
            expr,
            format!(
                "backoff must be at least 1.0 (got {value}): it multiplies the delay after each \
                 retry, and a delay that shrinks would retry ever faster"
            ),
        );
        return None;
    }
    Some(value)
}

fn non_retryable(cx: &Ctxt, expr: &Expr) -> Option<Vec<LitStr>> {
    const HOW: &str = "non_retryable takes a list of error type names: \
                       non_retryable = [\"BadInput\", \"NotFound\"]";
    let elems: Vec<&Expr> = match expr {
        Expr::Array(array) => array.elems.iter().collect(),
        Expr::Lit(_) => vec![expr],
        _ => {
            cx.error_spanned_by(expr, HOW);
            return None;
        }
    };
    let mut names = Vec::new();
    let mut ok = true;
    for elem in elems {
        match lit_str(elem) {
            Some(lit) if !lit.value().is_empty() => names.push(lit.clone()),
            Some(lit) => {
                ok = false;
                cx.error_spanned_by(lit, "an error type name must not be empty");
            }
            None => {
                ok = false;
                cx.error_spanned_by(elem, HOW);
            }
        }
    }
    ok.then_some(names)
}
