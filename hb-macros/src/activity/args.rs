//! The `#[activity(...)]` arguments: parsed with `syn::meta::parser` against the options table
//! (`options.rs`), each value checked on its own, then checked against each other. Every
//! mistake is recorded; parsing goes on past it.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, LitStr, Path, Token, token};

use super::options::{self, Choice, Kind, OPTIONS, RETRY, Spec};
use super::values;
use crate::ctxt::Ctxt;
use crate::duration;
use crate::meta::KeyList;

/// Keys people reach for, and what they mean in hb.
const RENAMED: &[(&str, &str)] = &[
    ("heartbeat", "`heartbeat_timeout = \"..\"`"),
    ("heartbeat_every", "`heartbeat_interval`"),
    (
        "interval",
        "`heartbeat_interval` (or `retry(initial_interval = ..)`)",
    ),
    (
        "timeout",
        "`start_to_close_timeout` (one attempt) or `schedule_to_close_timeout` (all attempts)",
    ),
    ("start_to_close", "`start_to_close_timeout`"),
    ("schedule_to_close", "`schedule_to_close_timeout`"),
    ("retries", "`retry(max_attempts = ..)`"),
    (
        "max_retries",
        "`retry(max_attempts = ..)` (it counts the first attempt too)",
    ),
    ("max_attempts", "`retry(max_attempts = ..)`"),
    ("attempts", "`retry(max_attempts = ..)`"),
    ("retry_policy", "`retry(..)`"),
    ("backoff", "`retry(backoff = ..)`"),
    ("backoff_coefficient", "`retry(backoff = ..)`"),
    ("initial_interval", "`retry(initial_interval = ..)`"),
    ("max_interval", "`retry(max_interval = ..)`"),
    ("non_retryable", "`retry(non_retryable = [..])`"),
    ("stall", "`stall_timeout`"),
    (
        "cancel_mode",
        "`cancel = \"abort\"` or `cancel = \"cooperative\"`",
    ),
    (
        "cancellation",
        "`cancel = \"abort\"` or `cancel = \"cooperative\"`",
    ),
    (
        "on_cancel",
        "`cancel = \"abort\"` or `cancel = \"cooperative\"`",
    ),
    ("grace", "`cancel_grace`"),
    ("grace_period", "`cancel_grace`"),
    ("cancel_timeout", "`cancel_grace`"),
    ("krate", "`crate`"),
    ("activity_name", "`name`"),
    ("activity_type", "`name`"),
    ("type_name", "`name`"),
    ("checkpoint_size", "`max_checkpoint_size`"),
    ("max_checkpoint_bytes", "`max_checkpoint_size`"),
    ("max_details_size", "`max_checkpoint_size`"),
    ("bad_checkpoint", "`on_bad_checkpoint`"),
    ("on_decode_error", "`on_bad_checkpoint`"),
];

const RETRY_RENAMED: &[(&str, &str)] = &[
    ("attempts", "`max_attempts`"),
    (
        "retries",
        "`max_attempts` (it counts the first attempt too)",
    ),
    (
        "max_retries",
        "`max_attempts` (it counts the first attempt too)",
    ),
    ("backoff_coefficient", "`backoff`"),
    ("coefficient", "`backoff`"),
    ("multiplier", "`backoff`"),
    ("initial", "`initial_interval`"),
    ("interval", "`initial_interval`"),
    ("delay", "`initial_interval`"),
    ("maximum_interval", "`max_interval`"),
    ("max_delay", "`max_interval`"),
    ("non_retryable_errors", "`non_retryable`"),
    ("non_retryable_error_types", "`non_retryable`"),
    ("no_retry", "`non_retryable`"),
];

/// The largest `max_checkpoint_size`: Temporal's hard limit on one payload (2 MiB).
pub(crate) const HARD_CHECKPOINT_LIMIT: u128 = 2 * 1024 * 1024;

/// A value read from an option.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Duration(Duration),
    Choice(&'static Choice),
    Size(u64),
    Attempts(u32),
    Factor(f64),
    TypeNames(Vec<LitStr>),
    Retry(Vec<Entry>),
    Name(String),
    Crate(Path),
}

/// One option as written: its row, the whole of it (for errors about the option as a whole)
/// and its value.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) spec: &'static Spec,
    /// `key = value` (or `retry(..)`).
    pub(crate) whole: TokenStream,
    pub(crate) value: Value,
}

/// Everything `#[activity(...)]` was given, each valid option once, in the order written. An
/// option with a wrong value is left out (its error is in the `Ctxt`).
#[derive(Debug, Default)]
pub(crate) struct ActivityArgs {
    pub(crate) entries: Vec<Entry>,
}

impl ActivityArgs {
    /// Parses the attribute's arguments, recording every error in `cx`.
    pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Self {
        let mut args = ActivityArgs::default();
        let listed = options::listed(OPTIONS);
        let mut keys = KeyList::new(
            cx,
            "#[activity] option",
            "option",
            listed.iter().map(String::as_str).collect(),
            RENAMED,
        );
        let parser = syn::meta::parser(|meta| {
            parse_option(cx, &mut keys, OPTIONS, &meta, &mut args.entries)
        });
        if let Err(e) = parser.parse2(tokens) {
            cx.syn_error(e);
        }
        args.validate(cx);
        args
    }

    /// The option `key`, if given (and valid).
    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        find(&self.entries, key)
    }

    /// The `retry(..)` options given.
    pub(crate) fn retry(&self) -> &[Entry] {
        match self.get("retry").map(|e| &e.value) {
            Some(Value::Retry(entries)) => entries,
            _ => &[],
        }
    }

    /// The path of the runtime crate: `crate = "..."` or `::hb_runtime`.
    pub(crate) fn krate(&self) -> TokenStream {
        match self.get("crate").map(|e| &e.value) {
            Some(Value::Crate(path)) => path.to_token_stream(),
            _ => quote!(::hb_runtime),
        }
    }

    /// `name = "..."`, if given.
    pub(crate) fn name(&self) -> Option<&str> {
        match self.get("name").map(|e| &e.value) {
            Some(Value::Name(name)) => Some(name),
            _ => None,
        }
    }

    /// The rules between options.
    fn validate(&self, cx: &Ctxt) {
        let show = |d: Duration| duration::display(d);
        let entries = &self.entries;
        let heartbeat = duration_of(entries, "heartbeat_timeout");
        let attempt = duration_of(entries, "start_to_close_timeout");
        if let (Some((interval, entry)), Some((timeout, _))) =
            (duration_of(entries, "heartbeat_interval"), heartbeat)
        {
            let max = duration::scale(timeout, 4, 5);
            if interval > max {
                cx.error_spanned_by(
                    &entry.whole,
                    format!(
                        "heartbeat_interval ({}) must be at most 0.8 × heartbeat_timeout ({}), \
                         i.e. {}: a heartbeat that is a little late must still arrive before the \
                         backend gives up on the attempt; use heartbeat_interval = \"{}\" or less",
                        show(interval),
                        show(timeout),
                        show(max),
                        show(max),
                    ),
                );
            }
        }
        if let (Some((heartbeat, entry)), Some((attempt, _))) = (heartbeat, attempt)
            && attempt < heartbeat
        {
            cx.error_spanned_by(
                &entry.whole,
                format!(
                    "heartbeat_timeout ({}) is longer than start_to_close_timeout ({}): the \
                     attempt times out before a missing heartbeat could ever be noticed",
                    show(heartbeat),
                    show(attempt),
                ),
            );
        }
        if let (Some((attempt, _)), Some((total, entry))) =
            (attempt, duration_of(entries, "schedule_to_close_timeout"))
            && total < attempt
        {
            cx.error_spanned_by(
                &entry.whole,
                format!(
                    "schedule_to_close_timeout ({}) is shorter than start_to_close_timeout \
                     ({}): it bounds all attempts together, so it must be at least as long as \
                     one attempt",
                    show(total),
                    show(attempt),
                ),
            );
        }
        if let (Some(stall), None) = (self.get("stall_timeout"), heartbeat) {
            cx.error_spanned_by(
                &stall.whole,
                "stall_timeout needs heartbeat_timeout: a stalled attempt is ended by withholding \
                 its heartbeats, which only times it out when the backend expects heartbeats; \
                 add heartbeat_timeout = \"..\"",
            );
        }
        if let Some(grace) = self.get("cancel_grace") {
            match self.get("cancel") {
                Some(Entry {
                    value:
                        Value::Choice(Choice {
                            variant: "Cooperative",
                            ..
                        }),
                    ..
                }) => {}
                Some(abort) => cx.error_spanned_by(
                    &grace.whole,
                    format!(
                        "cancel_grace only applies with cancel = \"cooperative\"; `{}` drops the \
                         body at its next .await, with no grace period",
                        abort.whole
                    ),
                ),
                None => cx.error_spanned_by(
                    &grace.whole,
                    "cancel_grace only applies with cancel = \"cooperative\"; the default \
                     (cancel = \"abort\") drops the body at its next .await, with no grace period",
                ),
            }
        }
        let retry = self.retry();
        if let (Some((initial, _)), Some((max, entry))) = (
            duration_of(retry, "initial_interval"),
            duration_of(retry, "max_interval"),
        ) && max < initial
        {
            cx.error_spanned_by(
                &entry.whole,
                format!(
                    "max_interval ({}) is shorter than initial_interval ({}): the retry delay \
                     starts at initial_interval and grows up to max_interval",
                    show(max),
                    show(initial),
                ),
            );
        }
    }
}

/// The option `key` among `entries`.
fn find<'a>(entries: &'a [Entry], key: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.spec.key == key)
}

/// The duration option `key` among `entries`, with its entry.
fn duration_of<'a>(entries: &'a [Entry], key: &str) -> Option<(Duration, &'a Entry)> {
    match find(entries, key) {
        Some(
            entry @ Entry {
                value: Value::Duration(d),
                ..
            },
        ) => Some((*d, entry)),
        _ => None,
    }
}

/// Reads one option of `table` into `entries`.
fn parse_option(
    cx: &Ctxt,
    keys: &mut KeyList,
    table: &'static [Spec],
    meta: &ParseNestedMeta,
    entries: &mut Vec<Entry>,
) -> syn::Result<()> {
    let Some(key) = keys.read(meta, |_| None)? else {
        return Ok(());
    };
    let Some(spec) = table.iter().find(|s| s.key == key.name) else {
        return Ok(());
    };
    let path = &meta.path;
    if let Kind::Retry = spec.kind {
        let retry = parse_retry(cx, meta)?;
        if let (true, Some(retry)) = (key.first, retry) {
            entries.push(Entry {
                spec,
                whole: path.to_token_stream(),
                value: Value::Retry(retry),
            });
        }
        return Ok(());
    }
    let Some(expr) = expect_value(cx, meta, spec)? else {
        return Ok(());
    };
    if !key.first {
        return Ok(());
    }
    if let Some(value) = values::read(cx, spec, path, &expr) {
        entries.push(Entry {
            spec,
            whole: quote!(#path = #expr),
            value,
        });
    }
    Ok(())
}

/// The `= value` of a `key = value` option; records an error for `key` or `key(...)`.
fn expect_value(cx: &Ctxt, meta: &ParseNestedMeta, spec: &Spec) -> syn::Result<Option<Expr>> {
    if meta.input.peek(Token![=]) {
        return Ok(Some(meta.value()?.parse()?));
    }
    let path = &meta.path;
    let whole = if meta.input.peek(token::Paren) {
        let group: proc_macro2::TokenTree = meta.input.parse()?;
        quote!(#path #group)
    } else {
        path.to_token_stream()
    };
    cx.error_spanned_by(whole, format!("expected `{}`", spec.written()));
    Ok(None)
}

/// Parses `retry(...)`; `None` when it was not a list.
fn parse_retry(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Vec<Entry>>> {
    if !meta.input.peek(token::Paren) {
        let path = &meta.path;
        let whole = if meta.input.peek(Token![=]) {
            let value: Expr = meta.value()?.parse()?;
            quote!(#path = #value)
        } else {
            path.to_token_stream()
        };
        let example: Vec<String> = RETRY.iter().map(Spec::written).collect();
        cx.error_spanned_by(
            whole,
            format!("`retry` takes a list: retry({})", example.join(", ")),
        );
        return Ok(None);
    }
    let listed = options::listed(RETRY);
    let mut keys = KeyList::new(
        cx,
        "retry option",
        "retry option",
        listed.iter().map(String::as_str).collect(),
        RETRY_RENAMED,
    );
    let mut entries = Vec::new();
    meta.parse_nested_meta(|inner| parse_option(cx, &mut keys, RETRY, &inner, &mut entries))?;
    Ok(Some(entries))
}

#[cfg(test)]
mod tests;
