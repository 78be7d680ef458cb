//! Re-spanning generated paths onto the user's tokens, so a failed trait bound is reported on
//! the user's type rather than on the attribute.

use proc_macro2::{Group, Span, TokenStream, TokenTree};

/// `tokens` with every span (inside groups too) set to `span`.
///
/// Use it on paths and types only, never on generated local variables: a variable's span
/// carries its hygiene, and a use must match its binding.
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(g) => {
                let mut group = Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                TokenTree::Group(group)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// The span of the first token of `tokens` (where rustc puts a single-span error).
pub(crate) fn first_span<T: quote::ToTokens>(tokens: &T) -> Span {
    tokens
        .to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}
