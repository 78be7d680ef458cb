//! The `#[derive(Checkpoint)]` expansion: one `impl Checkpoint` (serde's derives provide the
//! rest), plus a compile-time check that a migration goes from a lower version.
//!
//! ```text
//! impl Checkpoint for Progress {
//!     const VERSION: u32 = 2;
//!     const TYPE_NAME: &'static str = "Progress";
//!     fn decode_version(v, value) -> Result<Self, _> { decode_migrated::<Self, ProgressV1>(v, value) }
//!     fn progress(&self) -> Option<Progress> { Some(Progress { done: .., total: .. }) }
//! }
//! const _: () = assert!(<ProgressV1 as Checkpoint>::VERSION < 2, "..");
//! ```

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{DeriveInput, GenericArgument, PathArguments, Type, parse_quote};

use super::model::{CheckpointType, ProgressField};
use crate::ctxt::{Ctxt, Failed};
use crate::respan::{first_span, respan};

/// The expansion, or every error found with what to emit beside them: the impl with whatever
/// was valid, so code that uses the type as a checkpoint does not fail a second time.
pub(crate) fn expand(input: TokenStream) -> Result<TokenStream, Failed> {
    let cx = Ctxt::new();
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => {
            cx.syn_error(e);
            return cx.finish(TokenStream::new());
        }
    };
    let is_union = matches!(input.data, syn::Data::Union(_));
    let model = CheckpointType::from_derive(&cx, input);
    let tokens = if is_union {
        TokenStream::new()
    } else {
        emit(&model)
    };
    cx.finish(tokens)
}

fn emit(model: &CheckpointType) -> TokenStream {
    let krate = model.attrs.krate();
    let private = quote!(#krate::__private);
    let ident = &model.ident;
    let type_name = ident.unraw().to_string();
    let version = model.attrs.version.as_ref().map(|v| v.value);

    let mut generics = model.generics.clone();
    let generic = generics.type_params().next().is_some();
    let (_, ty_generics, _) = model.generics.split_for_impl();
    if generic {
        // serde's derives bound each parameter on their impls; the supertraits of `Checkpoint`
        // hold exactly when those impls apply.
        let this: Type = parse_quote!(#ident #ty_generics);
        generics.make_where_clause().predicates.push(parse_quote! {
            #this: #private::Serialize
                + #private::DeserializeOwned
                + ::core::default::Default
                + ::core::clone::Clone
                + ::core::marker::Send
                + ::core::marker::Sync
                + 'static
        });
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();

    // With a migration, the version check runs at compile time: eagerly in a free constant for
    // a plain type, in `VERSION` itself (evaluated on use) for a generic one.
    let mut version_const = version.map(|v| quote!(const VERSION: u32 = #v;));
    let mut assertion = TokenStream::new();
    let mut decode = TokenStream::new();
    if let Some(old) = &model.attrs.migrate_from {
        let old_ty = &old.value;
        let v = version.unwrap_or(1);
        let message = format!(
            "#[checkpoint(migrate_from = {})]: the old type's VERSION must be below {}'s \
             version ({v}); give it its own, lower #[checkpoint(version = ..)]",
            old_ty.to_token_stream().to_string().replace(' ', ""),
            type_name,
        );
        let check = respan(
            quote!(::core::assert!(<#old_ty as #private::Checkpoint>::VERSION < #v, #message)),
            first_span(old_ty),
        );
        if v < 2 {
            // Already reported ("needs a version above the old type's"); the check would only
            // say it again.
        } else if generic {
            version_const = Some(quote!(const VERSION: u32 = { #check; #v };));
        } else {
            assertion = quote!(const _: () = #check;);
        }
        let decode_migrated = respan(
            quote!(#private::decode_migrated::<Self, #old_ty>),
            first_span(old_ty),
        );
        decode = quote! {
            fn decode_version(
                __hb_version: u32,
                __hb_value: #private::Value,
            ) -> #private::Result<Self, #private::CheckpointDecodeError> {
                #decode_migrated(__hb_version, __hb_value)
            }
        };
    }

    let progress = model.done.as_ref().map(|done| {
        let done = count(&private, done);
        let total = match &model.total {
            Some(total) => match option_inner(&total.ty) {
                // `Option<u64>`: an unknown total stays unknown.
                Some(inner) => {
                    let to_count = respan(
                        quote!(<#inner as #private::ProgressCount>::to_count),
                        first_span(inner),
                    );
                    let member = &total.member;
                    quote! {
                        #private::Option::map(#private::Option::as_ref(&self.#member), #to_count)
                    }
                }
                None => {
                    let total = count(&private, total);
                    quote!(#private::Option::Some(#total))
                }
            },
            None => quote!(#private::Option::None),
        };
        quote! {
            fn progress(&self) -> #private::Option<#private::Progress> {
                #private::Option::Some(#private::Progress {
                    done: #done,
                    total: #total,
                })
            }
        }
    });

    quote! {
        #[automatically_derived]
        impl #impl_generics #private::Checkpoint for #ident #ty_generics #where_clause {
            #version_const
            const TYPE_NAME: &'static str = #type_name;
            #decode
            #progress
        }
        #assertion
    }
}

/// `<T as ProgressCount>::to_count(&self.field)`, re-spanned on `T` so a field type that cannot
/// count progress is reported where it is written.
fn count(private: &TokenStream, field: &ProgressField) -> TokenStream {
    let ty = &field.ty;
    let member = &field.member;
    let to_count = respan(
        quote!(<#ty as #private::ProgressCount>::to_count),
        first_span(ty),
    );
    quote!(#to_count(&self.#member))
}

/// `T` when `ty` is written `Option<T>` (any path ending in `Option`).
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Option" || path.qself.is_some() {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match (args.args.first(), args.args.len()) {
        (Some(GenericArgument::Type(inner)), 1) => Some(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_ok(input: TokenStream) -> String {
        match expand(input) {
            Ok(tokens) => tokens.to_string(),
            Err(failed) => panic!(
                "{:?}",
                failed
                    .errors
                    .into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            ),
        }
    }

    fn contains(haystack: &str, needle: TokenStream) {
        let needle = needle.to_string();
        assert!(
            haystack.contains(&needle),
            "expected\n  {needle}\nin\n  {haystack}"
        );
    }

    #[test]
    fn plain_struct_with_progress() {
        let out = expand_ok(quote! {
            #[derive(Serialize)]
            #[checkpoint(version = 2, migrate_from = ProgressV1)]
            struct Progress { #[checkpoint(done)] next: u64, #[checkpoint(total)] total: Option<u32> }
        });
        contains(
            &out,
            quote!(impl ::hb_runtime::__private::Checkpoint for Progress),
        );
        contains(
            &out,
            quote!(
                const VERSION: u32 = 2u32;
                const TYPE_NAME: &'static str = "Progress";
            ),
        );
        contains(
            &out,
            quote!(
                ::hb_runtime::__private::decode_migrated::<Self, ProgressV1>(
                    __hb_version,
                    __hb_value
                )
            ),
        );
        contains(
            &out,
            quote!(done: <u64 as ::hb_runtime::__private::ProgressCount>::to_count(&self.next)),
        );
        contains(
            &out,
            quote! {
                total: ::hb_runtime::__private::Option::map(
                    ::hb_runtime::__private::Option::as_ref(&self.total),
                    <u32 as ::hb_runtime::__private::ProgressCount>::to_count
                )
            },
        );
        contains(&out, quote!(const _: () = ::core::assert!));
        contains(
            &out,
            quote!(<ProgressV1 as ::hb_runtime::__private::Checkpoint>::VERSION < 2u32),
        );
    }

    #[test]
    fn generics_get_supertrait_bounds() {
        let out = expand_ok(quote! {
            #[checkpoint(version = 2, migrate_from = Old<T>, crate = "my::hb")]
            enum E<T> where T: Clone { A(T), B }
        });
        contains(
            &out,
            quote!(impl<T> my::hb::__private::Checkpoint for E<T> where T: Clone, E<T>: my::hb::__private::Serialize),
        );
        contains(
            &out,
            quote!(<Old<T> as my::hb::__private::Checkpoint>::VERSION < 2u32),
        );
        assert!(
            out.contains("const VERSION : u32 = { :: core :: assert !"),
            "{out}"
        );
        assert!(!out.contains("const _"));
        assert!(!out.contains("fn progress"));
    }

    #[test]
    fn defaults_stay_defaults() {
        let out = expand_ok(quote!(
            struct Unit;
        ));
        assert_eq!(
            out,
            quote! {
                #[automatically_derived]
                impl ::hb_runtime::__private::Checkpoint for Unit {
                    const TYPE_NAME: &'static str = "Unit";
                }
            }
            .to_string()
        );
        let out = expand_ok(quote!(
            struct D(#[checkpoint(done)] u8);
        ));
        contains(&out, quote!(total: ::hb_runtime::__private::Option::None));
        contains(&out, quote!(to_count(&self.0)));
    }

    #[test]
    fn errors_keep_the_impl() {
        let input = quote!(
            #[checkpoint(version = 0)]
            struct P {
                #[checkpoint(total)]
                t: u64,
            }
        );
        let failed = expand(input).unwrap_err();
        let errors: Vec<String> = failed.errors.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let out = failed.fallback.to_string();
        contains(&out, quote!(impl ::hb_runtime::__private::Checkpoint for P));
    }
}
