//! Reading `key = value` lists, shared by the macros' own arguments (`#[activity(...)]`, read
//! with `syn::meta::parser`) and their helper attributes (`#[checkpoint(...)]`, read with
//! `parse_nested_meta`): a key is named, checked against the valid ones, reported once when
//! repeated, and its value skipped when it is wrong, the same way everywhere.

use proc_macro2::TokenTree;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, Lit, LitStr, Path, Token, token};

use crate::ctxt::Ctxt;
use crate::keys;

/// The key as written (`crate` included), or the whole path for `a::b`.
pub(crate) fn key_name(path: &Path) -> String {
    match path.get_ident() {
        Some(ident) => ident.to_string(),
        None => path.to_token_stream().to_string().replace(' ', ""),
    }
}

/// Consumes whatever follows a key (`= expr`, `(...)` or nothing) so parsing goes on.
pub(crate) fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(token::Paren) {
        let _: TokenTree = meta.input.parse()?;
    }
    Ok(())
}

/// The string literal `expr` is, if it is one.
pub(crate) fn lit_str(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        Expr::Group(g) => lit_str(&g.expr),
        _ => None,
    }
}

/// The value of `crate = "my_crate::hb"`: the path hb_runtime is re-exported at. Records an
/// error and returns `None` when it is not a string holding a path.
pub(crate) fn crate_path(cx: &Ctxt, expr: &Expr) -> Option<Path> {
    const HOW: &str = "`crate` takes the path hb_runtime is re-exported at, as a string: \
                       crate = \"my_crate::hb\"";
    let Some(lit) = lit_str(expr) else {
        cx.error_spanned_by(expr, HOW);
        return None;
    };
    match lit.parse_with(Path::parse_mod_style) {
        Ok(path) => Some(path),
        Err(_) => {
            cx.error_spanned_by(lit, format!("\"{}\" is not a path; {HOW}", lit.value()));
            None
        }
    }
}

/// A key that passed [`KeyList::read`].
pub(crate) struct Key {
    pub(crate) name: String,
    /// `false` for a repeat (already reported): read its value, then ignore it.
    pub(crate) first: bool,
}

/// The keys of one list, each checked against the valid ones and remembered, so an unknown key
/// lists the valid ones (with a suggestion) and a repeated one is reported.
pub(crate) struct KeyList<'a> {
    cx: &'a Ctxt,
    /// "#[activity] option": what an unknown key is reported as.
    what: &'static str,
    /// "option": what a repeated key is reported as.
    noun: &'static str,
    /// As listed in messages: `retry(..)` for a key that takes a list.
    valid: Vec<&'a str>,
    /// Keys people reach for, and what to write instead.
    renamed: &'a [(&'a str, &'a str)],
    seen: Vec<String>,
}

impl<'a> KeyList<'a> {
    pub(crate) fn new(
        cx: &'a Ctxt,
        what: &'static str,
        noun: &'static str,
        valid: Vec<&'a str>,
        renamed: &'a [(&'a str, &'a str)],
    ) -> Self {
        KeyList {
            cx,
            what,
            noun,
            valid,
            renamed,
            seen: Vec::new(),
        }
    }

    /// The key of `meta`, or `None` when it is not a valid one: then the error is recorded
    /// (`misplaced` may give a message of its own, for a key that belongs in another list)
    /// and its value skipped.
    pub(crate) fn read(
        &mut self,
        meta: &ParseNestedMeta,
        misplaced: impl FnOnce(&str) -> Option<String>,
    ) -> syn::Result<Option<Key>> {
        let name = key_name(&meta.path);
        let known = self
            .valid
            .iter()
            .any(|k| k.trim_end_matches("(..)") == name);
        if !known {
            skip_value(meta)?;
            let message = misplaced(&name)
                .unwrap_or_else(|| keys::unknown(self.what, &name, &self.valid, self.renamed));
            self.cx.error_spanned_by(&meta.path, message);
            return Ok(None);
        }
        let first = !self.seen.contains(&name);
        if first {
            self.seen.push(name.clone());
        } else {
            self.cx.error_spanned_by(
                &meta.path,
                format!(
                    "duplicate {} `{name}`: each option may be given once",
                    self.noun
                ),
            );
        }
        Ok(Some(Key { name, first }))
    }
}
