//! Reading one option's value: durations, choices, names, paths, integers, lists. Each reader
//! records its own error in the `Ctxt` and returns `None`, so parsing goes on.

use std::time::Duration;

use proc_macro2::TokenTree;
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::{BinOp, Expr, ExprLit, Lit, LitStr, Path, Token, UnOp, token};

use super::args::{HARD_CHECKPOINT_LIMIT, Opt};
use crate::ctxt::Ctxt;
use crate::duration;

/// The key as written (`crate` included), or the whole path for `a::b`.
pub(super) fn key_name(path: &Path) -> String {
    match path.get_ident() {
        Some(ident) => ident.to_string(),
        None => path.to_token_stream().to_string().replace(' ', ""),
    }
}

/// Consumes whatever follows an unknown key (`= expr`, `(...)` or nothing) so parsing goes on.
pub(super) fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(token::Paren) {
        let _: TokenTree = meta.input.parse()?;
    }
    Ok(())
}

/// What an option's value looks like, for "expected `key = ..`" messages.
fn example(key: &str) -> &'static str {
    match key {
        "heartbeat_timeout" => "\"10s\"",
        "heartbeat_interval" => "\"2s\"",
        "start_to_close_timeout" => "\"1h\"",
        "schedule_to_close_timeout" => "\"4h\"",
        "stall_timeout" => "\"2m\"",
        "cancel_grace" => "\"5s\"",
        "initial_interval" => "\"1s\"",
        "max_interval" => "\"1m\"",
        "cancel" => "\"cooperative\"",
        "on_bad_checkpoint" => "\"fail\"",
        "name" => "\"process-batch\"",
        "crate" => "\"my_crate::hb\"",
        "max_checkpoint_size" => "262144",
        "max_attempts" => "5",
        "backoff" => "2.0",
        "non_retryable" => "[\"BadInput\"]",
        _ => "..",
    }
}

/// The `= value` of a `key = value` option; records an error for `key` or `key(...)`.
pub(super) fn expect_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: &str,
) -> syn::Result<Option<Expr>> {
    if meta.input.peek(Token![=]) {
        return Ok(Some(meta.value()?.parse()?));
    }
    let path = &meta.path;
    let whole = if meta.input.peek(token::Paren) {
        let group: TokenTree = meta.input.parse()?;
        quote!(#path #group)
    } else {
        path.to_token_stream()
    };
    cx.error_spanned_by(whole, format!("expected `{key} = {}`", example(key)));
    Ok(None)
}

fn lit_str(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        Expr::Group(g) => lit_str(&g.expr),
        _ => None,
    }
}

pub(super) fn duration_opt(cx: &Ctxt, key: Path, expr: Expr) -> Option<Opt<Duration>> {
    match duration::from_expr(&key_name(&key), &expr) {
        Ok(value) => Some(Opt { key, expr, value }),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    }
}

/// A string option with a fixed set of values.
pub(super) fn choice<T: Copy>(
    cx: &Ctxt,
    key: Path,
    expr: Expr,
    values: &[(&str, T)],
) -> Option<Opt<T>> {
    let name = key_name(&key);
    let list = values
        .iter()
        .map(|(v, _)| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some(lit) = lit_str(&expr) else {
        cx.error_spanned_by(&expr, format!("`{name}` takes a string: {list}"));
        return None;
    };
    let text = lit.value();
    match values.iter().find(|(v, _)| *v == text) {
        Some((_, value)) => Some(Opt {
            key,
            expr,
            value: *value,
        }),
        None => {
            cx.error_spanned_by(lit, format!("unknown {name} \"{text}\"; expected {list}"));
            None
        }
    }
}

pub(super) fn name_opt(cx: &Ctxt, key: Path, expr: Expr) -> Option<Opt<String>> {
    let Some(lit) = lit_str(&expr) else {
        cx.error_spanned_by(
            &expr,
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
    Some(Opt { key, expr, value })
}

pub(super) fn crate_opt(cx: &Ctxt, key: Path, expr: Expr) -> Option<Opt<Path>> {
    const HOW: &str = "`crate` takes the path hb_runtime is re-exported at, as a string: \
                       crate = \"my_crate::hb\"";
    let Some(lit) = lit_str(&expr) else {
        cx.error_spanned_by(&expr, HOW);
        return None;
    };
    match lit.parse_with(Path::parse_mod_style) {
        Ok(path) => Some(Opt {
            key,
            expr,
            value: path,
        }),
        Err(_) => {
            cx.error_spanned_by(lit, format!("\"{}\" is not a path; {HOW}", lit.value()));
            None
        }
    }
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

pub(super) fn checkpoint_size_opt(cx: &Ctxt, key: Path, expr: Expr) -> Option<Opt<u64>> {
    let value = match const_int(&expr) {
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
            &expr,
            format!(
                "max_checkpoint_size must be between 1 and {HARD_CHECKPOINT_LIMIT} bytes \
                 (2 MiB, Temporal's hard limit on one payload); got {value}"
            ),
        );
        return None;
    }
    // At most 2 MiB, so it fits.
    let value = u64::try_from(value).unwrap_or(u64::MAX);
    Some(Opt { key, expr, value })
}

pub(super) fn max_attempts_opt(cx: &Ctxt, key: Path, expr: Expr) -> Option<Opt<u32>> {
    match const_int(&expr).map(u32::try_from) {
        Ok(Ok(value)) => Some(Opt { key, expr, value }),
        Ok(Err(_)) => {
            cx.error_spanned_by(
                &expr,
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

pub(super) fn backoff_opt(cx: &Ctxt, key: Path, expr: Expr) -> Option<Opt<f64>> {
    let parsed = match &expr {
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
            &expr,
            "backoff takes a number literal of at least 1.0, e.g. backoff = 2.0",
        );
        return None;
    };
    if value < 1.0 {
        cx.error_spanned_by(
            &expr,
            format!(
                "backoff must be at least 1.0 (got {value}): it multiplies the delay after each \
                 retry, and a delay that shrinks would retry ever faster"
            ),
        );
        return None;
    }
    Some(Opt { key, expr, value })
}

pub(super) fn non_retryable_opt(cx: &Ctxt, key: Path, expr: Expr) -> Option<Opt<Vec<LitStr>>> {
    const HOW: &str = "non_retryable takes a list of error type names: \
                       non_retryable = [\"BadInput\", \"NotFound\"]";
    let elems: Vec<&Expr> = match &expr {
        Expr::Array(array) => array.elems.iter().collect(),
        Expr::Lit(_) => vec![&expr],
        _ => {
            cx.error_spanned_by(&expr, HOW);
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
    ok.then_some(Opt {
        key,
        expr,
        value: names,
    })
}
