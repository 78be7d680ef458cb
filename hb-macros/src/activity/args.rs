//! The `#[activity(...)]` arguments: parsed with `syn::meta::parser`, each value checked on its
//! own, then checked against each other. Every mistake is recorded; parsing goes on past it.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, LitStr, Path, Token, token};

use super::values::{
    backoff_opt, checkpoint_size_opt, choice, crate_opt, duration_opt, expect_value, key_name,
    max_attempts_opt, name_opt, non_retryable_opt, skip_value,
};
use crate::ctxt::Ctxt;
use crate::duration;
use crate::keys;

/// Every option, in the order the docs list them.
pub(crate) const OPTIONS: &[&str] = &[
    "heartbeat_timeout",
    "heartbeat_interval",
    "start_to_close_timeout",
    "schedule_to_close_timeout",
    "retry(..)",
    "stall_timeout",
    "cancel",
    "cancel_grace",
    "on_bad_checkpoint",
    "max_checkpoint_size",
    "name",
    "crate",
];

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

/// The keys of `retry(...)`.
pub(crate) const RETRY_KEYS: &[&str] = &[
    "max_attempts",
    "initial_interval",
    "backoff",
    "max_interval",
    "non_retryable",
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

/// One option as written: the key (for "duplicate" spans), the value expression (for value
/// errors) and what it means.
#[derive(Debug, Clone)]
pub(crate) struct Opt<T> {
    pub(crate) key: Path,
    pub(crate) expr: Expr,
    pub(crate) value: T,
}

impl<T> Opt<T> {
    /// `key = value`, for errors about the option as a whole.
    pub(crate) fn whole(&self) -> TokenStream {
        let (key, expr) = (&self.key, &self.expr);
        quote!(#key = #expr)
    }
}

/// `cancel = "abort" | "cooperative"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelMode {
    Abort,
    Cooperative,
}

/// `on_bad_checkpoint = "restart" | "fail"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadCheckpoint {
    Restart,
    Fail,
}

/// Everything `#[activity(...)]` accepts. A field is `None` when the option was left out or its
/// value was wrong (the error is in the `Ctxt`).
#[derive(Debug, Default)]
pub(crate) struct ActivityArgs {
    pub(crate) krate: Option<Opt<Path>>,
    pub(crate) name: Option<Opt<String>>,
    pub(crate) heartbeat_timeout: Option<Opt<Duration>>,
    pub(crate) heartbeat_interval: Option<Opt<Duration>>,
    pub(crate) start_to_close_timeout: Option<Opt<Duration>>,
    pub(crate) schedule_to_close_timeout: Option<Opt<Duration>>,
    pub(crate) retry: Option<RetryArgs>,
    pub(crate) stall_timeout: Option<Opt<Duration>>,
    pub(crate) cancel: Option<Opt<CancelMode>>,
    pub(crate) cancel_grace: Option<Opt<Duration>>,
    pub(crate) on_bad_checkpoint: Option<Opt<BadCheckpoint>>,
    pub(crate) max_checkpoint_size: Option<Opt<u64>>,
}

/// `retry(...)`.
#[derive(Debug)]
pub(crate) struct RetryArgs {
    pub(crate) max_attempts: Option<Opt<u32>>,
    pub(crate) initial_interval: Option<Opt<Duration>>,
    pub(crate) backoff: Option<Opt<f64>>,
    pub(crate) max_interval: Option<Opt<Duration>>,
    pub(crate) non_retryable: Option<Opt<Vec<LitStr>>>,
}

impl ActivityArgs {
    /// Parses the attribute's arguments, recording every error in `cx`.
    pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Self {
        let mut args = ActivityArgs::default();
        let mut seen = Vec::new();
        let parser = syn::meta::parser(|meta| args.parse_option(cx, &mut seen, &meta));
        if let Err(e) = parser.parse2(tokens) {
            cx.syn_error(e);
        }
        args.validate(cx);
        args
    }

    /// The path of the runtime crate: `crate = "..."` or `::hb_runtime`.
    pub(crate) fn krate(&self) -> TokenStream {
        match &self.krate {
            Some(k) => k.value.to_token_stream(),
            None => quote!(::hb_runtime),
        }
    }

    fn parse_option(
        &mut self,
        cx: &Ctxt,
        seen: &mut Vec<String>,
        meta: &ParseNestedMeta,
    ) -> syn::Result<()> {
        let key = key_name(&meta.path);
        if !OPTIONS.iter().any(|k| k.trim_end_matches("(..)") == key) {
            skip_value(meta)?;
            cx.error_spanned_by(
                &meta.path,
                keys::unknown("#[activity] option", &key, OPTIONS, RENAMED),
            );
            return Ok(());
        }
        let first = crate::keys::first_time(cx, seen, &meta.path, &key, || {
            format!("duplicate option `{key}`: each option may be given once")
        });
        if key == "retry" {
            let retry = RetryArgs::parse(cx, meta)?;
            if first {
                self.retry = retry;
            }
            return Ok(());
        }
        let Some(expr) = expect_value(cx, meta, &key)? else {
            return Ok(());
        };
        if !first {
            return Ok(());
        }
        let k = meta.path.clone();
        match key.as_str() {
            "heartbeat_timeout" => self.heartbeat_timeout = duration_opt(cx, k, expr),
            "heartbeat_interval" => self.heartbeat_interval = duration_opt(cx, k, expr),
            "start_to_close_timeout" => self.start_to_close_timeout = duration_opt(cx, k, expr),
            "schedule_to_close_timeout" => {
                self.schedule_to_close_timeout = duration_opt(cx, k, expr)
            }
            "stall_timeout" => self.stall_timeout = duration_opt(cx, k, expr),
            "cancel_grace" => self.cancel_grace = duration_opt(cx, k, expr),
            "cancel" => {
                self.cancel = choice(
                    cx,
                    k,
                    expr,
                    &[
                        ("abort", CancelMode::Abort),
                        ("cooperative", CancelMode::Cooperative),
                    ],
                )
            }
            "on_bad_checkpoint" => {
                self.on_bad_checkpoint = choice(
                    cx,
                    k,
                    expr,
                    &[
                        ("restart", BadCheckpoint::Restart),
                        ("fail", BadCheckpoint::Fail),
                    ],
                )
            }
            "name" => self.name = name_opt(cx, k, expr),
            "crate" => self.krate = crate_opt(cx, k, expr),
            "max_checkpoint_size" => self.max_checkpoint_size = checkpoint_size_opt(cx, k, expr),
            // Every key in OPTIONS is matched above.
            _ => {}
        }
        Ok(())
    }

    /// The rules between options.
    fn validate(&self, cx: &Ctxt) {
        let show = |d: Duration| duration::display(d);
        if let (Some(interval), Some(timeout)) = (&self.heartbeat_interval, &self.heartbeat_timeout)
        {
            let max = duration::scale(timeout.value, 4, 5);
            if interval.value > max {
                cx.error_spanned_by(
                    interval.whole(),
                    format!(
                        "heartbeat_interval ({}) must be at most 0.8 × heartbeat_timeout ({}), \
                         i.e. {}: a heartbeat that is a little late must still arrive before the \
                         backend gives up on the attempt; use heartbeat_interval = \"{}\" or less",
                        show(interval.value),
                        show(timeout.value),
                        show(max),
                        show(max),
                    ),
                );
            }
        }
        if let (Some(heartbeat), Some(attempt)) =
            (&self.heartbeat_timeout, &self.start_to_close_timeout)
            && attempt.value < heartbeat.value
        {
            cx.error_spanned_by(
                heartbeat.whole(),
                format!(
                    "heartbeat_timeout ({}) is longer than start_to_close_timeout ({}): the \
                         attempt times out before a missing heartbeat could ever be noticed",
                    show(heartbeat.value),
                    show(attempt.value),
                ),
            );
        }
        if let (Some(attempt), Some(total)) = (
            &self.start_to_close_timeout,
            &self.schedule_to_close_timeout,
        ) && total.value < attempt.value
        {
            cx.error_spanned_by(
                total.whole(),
                format!(
                    "schedule_to_close_timeout ({}) is shorter than start_to_close_timeout \
                         ({}): it bounds all attempts together, so it must be at least as long as \
                         one attempt",
                    show(total.value),
                    show(attempt.value),
                ),
            );
        }
        if let (Some(stall), None) = (&self.stall_timeout, &self.heartbeat_timeout) {
            cx.error_spanned_by(
                stall.whole(),
                "stall_timeout needs heartbeat_timeout: a stalled attempt is ended by withholding \
                 its heartbeats, which only times it out when the backend expects heartbeats; \
                 add heartbeat_timeout = \"..\"",
            );
        }
        if let Some(grace) = &self.cancel_grace {
            match &self.cancel {
                Some(Opt {
                    value: CancelMode::Cooperative,
                    ..
                }) => {}
                Some(abort) => cx.error_spanned_by(
                    grace.whole(),
                    format!(
                        "cancel_grace only applies with cancel = \"cooperative\"; `{}` drops the \
                         body at its next .await, with no grace period",
                        abort.whole()
                    ),
                ),
                None => cx.error_spanned_by(
                    grace.whole(),
                    "cancel_grace only applies with cancel = \"cooperative\"; the default \
                     (cancel = \"abort\") drops the body at its next .await, with no grace period",
                ),
            }
        }
        if let Some(retry) = &self.retry
            && let (Some(initial), Some(max)) = (&retry.initial_interval, &retry.max_interval)
            && max.value < initial.value
        {
            cx.error_spanned_by(
                max.whole(),
                format!(
                    "max_interval ({}) is shorter than initial_interval ({}): the retry \
                             delay starts at initial_interval and grows up to max_interval",
                    show(max.value),
                    show(initial.value),
                ),
            );
        }
    }
}

impl RetryArgs {
    fn empty() -> Self {
        RetryArgs {
            max_attempts: None,
            initial_interval: None,
            backoff: None,
            max_interval: None,
            non_retryable: None,
        }
    }

    /// Parses `retry(...)`; `None` when it was not a list.
    fn parse(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Self>> {
        if !meta.input.peek(token::Paren) {
            let path = &meta.path;
            let whole = if meta.input.peek(Token![=]) {
                let value: Expr = meta.value()?.parse()?;
                quote!(#path = #value)
            } else {
                path.to_token_stream()
            };
            cx.error_spanned_by(
                whole,
                "`retry` takes a list: retry(max_attempts = 5, initial_interval = \"1s\", \
                 backoff = 2.0, max_interval = \"1m\", non_retryable = [\"BadInput\"])",
            );
            return Ok(None);
        }
        let mut retry = RetryArgs::empty();
        let mut seen = Vec::new();
        meta.parse_nested_meta(|inner| retry.parse_key(cx, &mut seen, &inner))?;
        Ok(Some(retry))
    }

    fn parse_key(
        &mut self,
        cx: &Ctxt,
        seen: &mut Vec<String>,
        meta: &ParseNestedMeta,
    ) -> syn::Result<()> {
        let key = key_name(&meta.path);
        if !RETRY_KEYS.contains(&key.as_str()) {
            skip_value(meta)?;
            cx.error_spanned_by(
                &meta.path,
                keys::unknown("retry option", &key, RETRY_KEYS, RETRY_RENAMED),
            );
            return Ok(());
        }
        let first = crate::keys::first_time(cx, seen, &meta.path, &key, || {
            format!("duplicate retry option `{key}`: each option may be given once")
        });
        let Some(expr) = expect_value(cx, meta, &key)? else {
            return Ok(());
        };
        if !first {
            return Ok(());
        }
        let k = meta.path.clone();
        match key.as_str() {
            "max_attempts" => self.max_attempts = max_attempts_opt(cx, k, expr),
            "initial_interval" => self.initial_interval = duration_opt(cx, k, expr),
            "max_interval" => self.max_interval = duration_opt(cx, k, expr),
            "backoff" => self.backoff = backoff_opt(cx, k, expr),
            "non_retryable" => self.non_retryable = non_retryable_opt(cx, k, expr),
            // Every key in RETRY_KEYS is matched above.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
