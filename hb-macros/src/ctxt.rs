//! An error collector, so a user with three mistakes sees three messages at once (serde_derive's
//! `Ctxt`).

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

/// A list of errors that must be [`check`](Ctxt::check)ed before it is dropped.
///
/// Shared by `&` so that parsing helpers can record errors while the caller keeps going.
pub(crate) struct Ctxt {
    /// `None` once checked: dropping an unchecked `Ctxt` is a bug in the macro (errors would be
    /// lost silently), caught by the `Drop` impl.
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records an error spanned on `tokens` (the whole of them: a multi-token span).
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&self, tokens: T, message: M) {
        self.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an error at one span.
    pub(crate) fn error_at<M: Display>(&self, span: proc_macro2::Span, message: M) {
        self.push(syn::Error::new(span, message));
    }

    /// Records an error from syn (a parse error, or one built elsewhere).
    pub(crate) fn syn_error(&self, error: syn::Error) {
        self.push(error);
    }

    fn push(&self, error: syn::Error) {
        if let Some(errors) = self.errors.borrow_mut().as_mut() {
            errors.push(error);
        }
    }

    /// Consumes the collector: `Err` with every recorded error combined, in the order recorded.
    pub(crate) fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().unwrap_or_default();
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }

    /// Consumes the collector with the macro's output: `tokens` when no error was recorded,
    /// else the errors, with `tokens` as what to emit beside them.
    pub(crate) fn finish(self, tokens: TokenStream) -> Result<TokenStream, Failed> {
        match self.check() {
            Ok(()) => Ok(tokens),
            Err(errors) => Err(Failed {
                errors,
                fallback: tokens,
            }),
        }
    }
}

/// A macro run that found errors. The analysis runs once: what it could build is the
/// fallback, emitted beside the errors so the rest of the user's code keeps compiling (tokio's
/// `entry.rs`, thiserror's `fallback.rs`).
#[derive(Debug)]
pub(crate) struct Failed {
    /// Every error, combined.
    pub(crate) errors: syn::Error,
    /// The item as written, or as much of the expansion as was valid.
    pub(crate) fallback: TokenStream,
}

impl Failed {
    /// The errors, then the fallback.
    pub(crate) fn into_tokens(self) -> TokenStream {
        let errors = self.errors.into_compile_error();
        let fallback = self.fallback;
        quote!(#errors #fallback)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        // A macro bug, never a user's mistake: every path must call `check`.
        if !thread::panicking() && self.errors.borrow().is_some() {
            panic!("hb-macros: an error collector was dropped without being checked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    #[test]
    fn collects_every_error_in_order() {
        let cx = Ctxt::new();
        cx.error_at(Span::call_site(), "first");
        cx.error_spanned_by(quote::quote!(a b), "second");
        let err = cx.check().unwrap_err();
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn empty_is_ok() {
        let cx = Ctxt::new();
        assert!(cx.check().is_ok());
    }
}
