//! Durations written as humantime strings (`"10s"`, `"1h 30m"`), parsed at compile time.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, ExprLit, Lit, LitStr};

/// Parses the value of `key = <expr>` as a non-zero humantime duration.
pub(crate) fn from_expr(key: &str, expr: &Expr) -> syn::Result<Duration> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => parse(lit),
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => Err(syn::Error::new_spanned(
            int,
            format!(
                "`{key}` takes a duration string with a unit, e.g. `{key} = \"{}s\"`",
                int.base10_digits()
            ),
        )),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "`{key}` takes a duration string literal such as \"10s\", \"5m\" or \"1h 30m\" \
                 (it is checked at compile time)"
            ),
        )),
    }
}

/// Parses a humantime string literal; zero and bad syntax are errors on the literal.
pub(crate) fn parse(lit: &LitStr) -> syn::Result<Duration> {
    let text = lit.value();
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err(syn::Error::new_spanned(
            lit,
            format!("the duration \"{text}\" is zero; leave the option out instead"),
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(syn::Error::new_spanned(
            lit,
            format!(
                "invalid duration \"{text}\": {e}; write durations like \"500ms\", \"10s\", \
                 \"5m\" or \"1h 30m\""
            ),
        )),
    }
}

/// How a duration reads in messages and generated docs: `10s`, `1h 30m`.
pub(crate) fn display(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A constant expression of type `core::time::Duration`, through the runtime's re-export.
pub(crate) fn to_tokens(private: &TokenStream, d: Duration) -> TokenStream {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let sub_milli = nanos % 1_000_000;
    if nanos == 0 {
        quote!(#private::Duration::from_secs(#secs))
    } else if sub_milli == 0 && secs < u64::MAX / 1000 {
        let millis = secs * 1000 + u64::from(nanos / 1_000_000);
        quote!(#private::Duration::from_millis(#millis))
    } else {
        quote!(#private::Duration::new(#secs, #nanos))
    }
}

/// `d × num / den`, exactly (for the `0.8 × heartbeat_timeout` rule).
pub(crate) fn scale(d: Duration, num: u32, den: u32) -> Duration {
    let nanos = d.as_nanos() * u128::from(num) / u128::from(den.max(1));
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder of a division by 10^9 always fits in u32.
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> LitStr {
        LitStr::new(s, proc_macro2::Span::call_site())
    }

    #[test]
    fn parses_humantime() {
        assert_eq!(parse(&lit("10s")).unwrap(), Duration::from_secs(10));
        assert_eq!(parse(&lit("1h 30m")).unwrap(), Duration::from_secs(5400));
        assert_eq!(parse(&lit("250ms")).unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn rejects_zero_and_garbage() {
        let zero = parse(&lit("0s")).unwrap_err().to_string();
        assert!(zero.contains("is zero"), "{zero}");
        let bad = parse(&lit("ten seconds")).unwrap_err().to_string();
        assert!(bad.starts_with("invalid duration \"ten seconds\""), "{bad}");
    }

    #[test]
    fn rejects_bare_numbers_and_non_literals() {
        let int: Expr = syn::parse_quote!(10);
        let msg = from_expr("heartbeat_timeout", &int)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("heartbeat_timeout = \"10s\""), "{msg}");
        let path: Expr = syn::parse_quote!(TEN);
        assert!(from_expr("x", &path).is_err());
    }

    #[test]
    fn emits_the_simplest_constructor() {
        let p = quote!(p);
        assert_eq!(
            to_tokens(&p, Duration::from_secs(10)).to_string(),
            quote!(p::Duration::from_secs(10u64)).to_string()
        );
        assert_eq!(
            to_tokens(&p, Duration::from_millis(1500)).to_string(),
            quote!(p::Duration::from_millis(1500u64)).to_string()
        );
        assert_eq!(
            to_tokens(&p, Duration::new(1, 5)).to_string(),
            quote!(p::Duration::new(1u64, 5u32)).to_string()
        );
    }

    #[test]
    fn scales_exactly() {
        assert_eq!(scale(Duration::from_secs(10), 4, 5), Duration::from_secs(8));
        assert_eq!(
            scale(Duration::from_millis(1), 4, 5),
            Duration::from_micros(800)
        );
    }
}
