//! The `#[activity]` expansion: a marker type per function, an `Activity` impl whose `run` holds
//! the user's body unchanged, and the function name turned into the marker's constructor.
//!
//! For `pub async fn process_batch(ctx, #[checkpoint] p: Progress, input: Batch) -> Result<R, E>`:
//!
//! ```text
//! #[doc(hidden)] pub struct __hb_activity_process_batch;          // + Clone, Copy, Debug, Default
//! pub type process_batch = __hb_activity_process_batch;           // type namespace: Handle<process_batch>
//! /// user docs
//! pub const fn process_batch() -> __hb_activity_process_batch {..} // value namespace: register(process_batch)
//! impl Activity for __hb_activity_process_batch {
//!     const NAME = "process_batch"; type Input = Batch; type Output = R; type Checkpoint = Progress;
//!     fn options(&self) -> ActivityOptions { ActivityOptions::new().heartbeat_timeout(..) }
//!     fn run(&self, ctx, ckpt, input) -> BoxFuture<..> {
//!         async fn __hb_body(ctx: ActivityContext, p: Progress, input: Batch) -> Result<R, E> { body }
//!         Box::pin(body(__hb_body(ctx, ckpt, input), into_activity_error)) // a MapErr, no async block
//!     }
//! }
//! ```
//!
//! The body keeps the user's signature, return type included, so type errors in it point at
//! what the user wrote (tracing-attributes' "fake return edge").

use proc_macro2::{Delimiter, Group, Span, TokenStream};
use quote::{ToTokens, format_ident, quote};
use syn::ext::IdentExt;
use syn::{GenericParam, Generics, Ident, ItemFn, Type, parse_quote};

use super::args::{ActivityArgs, Entry, Value};
use super::model::{ActivityFn, Role, is_owned, marker_name};
use super::options::{Kind, OPTIONS, RETRY, Spec};
use crate::ctxt::{Ctxt, Failed};
use crate::duration;
use crate::respan::{first_span, respan};

/// The expansion, or every error found with what to emit beside them so the rest of the user's
/// code keeps compiling: the full expansion when only options were wrong, a shell with the
/// same names when the signature was, or the item unchanged when it is not a free function.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, Failed> {
    let cx = Ctxt::new();
    let args = ActivityArgs::parse(&cx, args);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            cx.error_at(
                Span::call_site(),
                "#[activity] goes on an `async fn` with a body",
            );
            return cx.finish(item);
        }
    };
    let model = ActivityFn::from_fn(&cx, func);
    let tokens = if model.has_receiver {
        model.original().into_token_stream()
    } else {
        Emitter::new(&args, &model).emit()
    };
    cx.finish(tokens)
}

struct Emitter<'a> {
    args: &'a ActivityArgs,
    f: &'a ActivityFn,
    /// `::hb_runtime::__private` (or the `crate = ".."` path's).
    private: TokenStream,
    /// `__hb_activity_process_batch`.
    marker: Ident,
    /// The function name without `r#`.
    fn_name: String,
    /// The generics the generated items carry: the user's, minus anything rejected.
    generics: Generics,
}

impl<'a> Emitter<'a> {
    fn new(args: &'a ActivityArgs, f: &'a ActivityFn) -> Self {
        let krate = args.krate();
        let ident = f.ident();
        let fn_name = ident.unraw().to_string();
        let mut generics = f.sig.generics.clone();
        if f.has_errors {
            // Lifetime and const parameters were reported; the shell goes on without them.
            let had_others = generics
                .params
                .iter()
                .any(|p| !matches!(p, GenericParam::Type(_)));
            generics.params = generics
                .params
                .into_iter()
                .filter(|p| matches!(p, GenericParam::Type(_)))
                .collect();
            if had_others {
                generics.where_clause = None;
            }
        }
        Emitter {
            args,
            f,
            private: quote!(#krate::__private),
            marker: marker_name(ident),
            fn_name,
            generics,
        }
    }

    fn emit(&self) -> TokenStream {
        let items = self.marker_items();
        let activity = self.activity_impl();
        let check = self.checkpoint_check();
        quote!(#items #activity #check)
    }

    /// `__hb_checkpoint`, the identity function the body's `ctx.checkpoint(..)` calls pass
    /// their argument through (see `body`), when the body has such calls.
    fn checkpoint_check(&self) -> TokenStream {
        let f = self.f;
        let (Some(ty), true, false) = (&f.checkpoint, f.checkpoints, f.has_errors) else {
            return TokenStream::new();
        };
        let cfg = &f.attrs.cfg;
        let marker = &self.marker;
        let (impl_generics, ty_generics, where_clause) = self.generics.split_for_impl();
        // Its name carries the span of the user's checkpoint type, so rustc's "associated
        // function defined here", under "expected `&Progress`, found `&Other`", points at the
        // `#[checkpoint]` parameter the expected type comes from.
        let name = Ident::new("__hb_checkpoint", first_span(ty));
        quote! {
            #(#cfg)*
            impl #impl_generics #marker #ty_generics #where_clause {
                #[inline(always)]
                #[doc(hidden)]
                const fn #name(__hb_value: &#ty) -> &#ty {
                    __hb_value
                }
            }
        }
    }

    /// The activity type name.
    fn name(&self) -> String {
        self.args.name().unwrap_or(&self.fn_name).to_owned()
    }

    fn type_params(&self) -> Vec<&Ident> {
        self.generics.type_params().map(|p| &p.ident).collect()
    }

    /// `__hb_activity_x(PhantomData)`, or `__hb_activity_x` when not generic.
    fn construct(&self) -> TokenStream {
        let (marker, private) = (&self.marker, &self.private);
        if self.type_params().is_empty() {
            quote!(#marker)
        } else {
            quote!(#marker(#private::PhantomData))
        }
    }

    /// The marker struct and its impls, the type alias and the constructor function.
    fn marker_items(&self) -> TokenStream {
        let Emitter {
            private, marker, ..
        } = self;
        let f = self.f;
        let cfg = &f.attrs.cfg;
        let vis = &f.vis;
        let ident = f.ident();
        let params = self.type_params();
        let (impl_generics, ty_generics, where_clause) = self.generics.split_for_impl();
        let strukt = if params.is_empty() {
            quote!(#vis struct #marker #where_clause;)
        } else {
            quote! {
                #vis struct #marker #impl_generics (
                    #private::PhantomData<fn() -> (#(#params,)*)>
                ) #where_clause;
            }
        };
        let alias_doc = format!(
            " The type of the `{0}` activity, for where a type is expected \
             (`Handle<{0}>`); pass `{0}` itself to `register` or `start`.",
            self.fn_name
        );
        let construct = self.construct();
        let public = &f.attrs.public;
        let lints = &f.attrs.lints;
        let generated_doc = self.generated_doc();
        let debug_name = &self.fn_name;
        // The generated tokens of the function carry its name's span, so lints about the
        // function (`missing_docs`, `dead_code`) point at the name rather than at the attribute.
        // Nothing in it is a local variable, so hygiene is unaffected.
        let const_fn = respan(quote!(const fn), ident.span());
        let parens = respan(quote!(()), ident.span());
        let arrow = respan(quote!(->), ident.span());
        let ctor_body = respan(quote!({ #construct }), ident.span());
        let alias_params = if params.is_empty() {
            TokenStream::new()
        } else {
            quote!(<#(#params),*>)
        };
        quote! {
            #(#cfg)*
            #[doc(hidden)]
            #[allow(non_camel_case_types, dead_code, unreachable_pub)]
            #strukt

            #(#cfg)*
            #[automatically_derived]
            impl #impl_generics ::core::clone::Clone for #marker #ty_generics #where_clause {
                #[inline]
                fn clone(&self) -> Self {
                    *self
                }
            }

            #(#cfg)*
            #[automatically_derived]
            impl #impl_generics ::core::marker::Copy for #marker #ty_generics #where_clause {}

            #(#cfg)*
            #[automatically_derived]
            impl #impl_generics ::core::fmt::Debug for #marker #ty_generics #where_clause {
                fn fmt(&self, __hb_f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Formatter::write_str(__hb_f, #debug_name)
                }
            }

            #(#cfg)*
            #[automatically_derived]
            impl #impl_generics ::core::default::Default for #marker #ty_generics #where_clause {
                #[inline]
                fn default() -> Self {
                    #construct
                }
            }

            #(#cfg)*
            #[doc = #alias_doc]
            #[allow(non_camel_case_types, dead_code, unreachable_pub)]
            #vis type #ident #alias_params = #marker #alias_params;

            #(#cfg)*
            #(#public)*
            #generated_doc
            #(#lints)*
            #[inline]
            #vis #const_fn #ident #impl_generics #parens #arrow #marker #ty_generics #where_clause
                #ctor_body
        }
    }

    /// A doc paragraph after the user's docs saying what the function is now. Added only when
    /// the user wrote docs, so `missing_docs` still fires on an undocumented activity.
    fn generated_doc(&self) -> TokenStream {
        if !self.f.attrs.has_docs {
            return TokenStream::new();
        }
        let options = summary(OPTIONS, &self.args.entries);
        let options = if options.is_empty() {
            String::new()
        } else {
            format!(": {}", options.join(", "))
        };
        let text = format!(
            " *hb activity* `\"{}\"`{options}. Pass `{}` to `register`, `start` or the test \
             environment.",
            self.name(),
            self.fn_name,
        );
        quote! {
            #[doc = ""]
            #[doc = #text]
        }
    }

    /// `ActivityOptions::new().heartbeat_timeout(..)...`.
    fn options(&self) -> TokenStream {
        let private = &self.private;
        let setters = setters(private, OPTIONS, &self.args.entries);
        quote!(#private::ActivityOptions::new() #setters)
    }

    /// `impl Activity for __hb_activity_x { .. }`; with a signature error, a shell whose `run`
    /// is never reached (the crate does not compile).
    fn activity_impl(&self) -> TokenStream {
        let Emitter {
            private, marker, ..
        } = self;
        let f = self.f;
        let cfg = &f.attrs.cfg;
        let name = self.name();
        let unit = quote!(());
        // Types mentioning a rejected lifetime parameter would only add errors to the shell.
        let rejected_generics = self.generics.params.len() != f.sig.generics.params.len();
        let usable = |ty: Option<&Type>| match ty {
            Some(ty) if !rejected_generics && is_owned(ty) => ty.to_token_stream(),
            _ => unit.clone(),
        };
        let input = usable(f.input.as_ref());
        let checkpoint = usable(f.checkpoint.as_ref());
        let output = usable(f.ret.as_ref().map(|r| &r.ok));

        let mut generics = self.generics.clone();
        let params: Vec<Ident> = self.type_params().into_iter().cloned().collect();
        if !params.is_empty() {
            let where_clause = generics.make_where_clause();
            for param in &params {
                where_clause.predicates.push(parse_quote! {
                    #param: ::core::marker::Send + ::core::marker::Sync + 'static
                });
            }
        }
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let (_, ty_generics, _) = self.generics.split_for_impl();
        let options = self.options();
        let check_state = self.check_state();
        let run = if f.has_errors {
            quote! {
                fn run(
                    &self,
                    _: #private::ActivityContext,
                    _: Self::Checkpoint,
                    _: Self::Input,
                ) -> #private::BoxFuture<
                    'static,
                    #private::Result<Self::Output, #private::ActivityError>,
                > {
                    ::core::unreachable!("#[activity] reported an error at compile time")
                }
            }
        } else {
            self.run_fn()
        };
        quote! {
            #(#cfg)*
            #[automatically_derived]
            impl #impl_generics #private::Activity for #marker #ty_generics #where_clause {
                const NAME: &'static str = #name;
                type Input = #input;
                type Output = #output;
                type Checkpoint = #checkpoint;

                fn options(&self) -> #private::ActivityOptions {
                    #options
                }

                #check_state

                #run
            }
        }
    }

    /// `check_state` requiring each `#[state]` type, when there are any.
    fn check_state(&self) -> TokenStream {
        let private = &self.private;
        let states = &self.f.states;
        if states.is_empty() || self.f.has_errors {
            return TokenStream::new();
        }
        quote! {
            fn check_state(
                &self,
                __hb_state: &#private::StateMap,
            ) -> #private::Result<(), #private::MissingState> {
                #( #private::StateMap::require::<#states>(__hb_state)?; )*
                #private::Result::Ok(())
            }
        }
    }

    /// `run`: the user's function as an inner `async fn __hb_body`, called with the context,
    /// the worker state, the checkpoint and the input in the order the user wrote them.
    fn run_fn(&self) -> TokenStream {
        let private = &self.private;
        let f = self.f;
        let lints = &f.attrs.lints;
        let body_attrs = &f.attrs.body;
        let mut sig = f.sig.clone();
        sig.ident = Ident::new("__hb_body", Span::call_site());
        let block = &f.block;

        let ctx = Ident::new("__hb_ctx", Span::call_site());
        let checkpoint = Ident::new("__hb_checkpoint", Span::call_site());
        let input = Ident::new("__hb_input", Span::call_site());
        let state_var = |i: usize| format_ident!("__hb_state_{}", i);
        let call_args = f.roles.iter().map(|role| match role {
            Role::Context => ctx.to_token_stream(),
            Role::State(i) => state_var(*i).into_token_stream(),
            Role::Checkpoint => checkpoint.to_token_stream(),
            Role::Input | Role::Invalid => input.to_token_stream(),
        });
        let checkpoint_pat = if f.checkpoint.is_some() {
            checkpoint.to_token_stream()
        } else {
            quote!(_)
        };
        let input_pat = if f.input.is_some() {
            input.to_token_stream()
        } else {
            quote!(_)
        };
        // `state::<S>` re-spanned on `S`: a type that is not `Clone + Send + Sync + 'static`
        // is reported where the user wrote it.
        let fetch_state = f.states.iter().enumerate().map(|(i, ty)| {
            let var = state_var(i);
            let fetch = respan(quote!(#private::state::<#ty>), first_span(ty));
            quote! {
                let #var = match #fetch(&#ctx) {
                    #private::Result::Ok(__hb_value) => __hb_value,
                    #private::Result::Err(__hb_error) => return #private::failed(__hb_error),
                };
            }
        });
        let params = self.type_params();
        let turbofish = if params.is_empty() {
            TokenStream::new()
        } else {
            quote!(::<#(#params),*>)
        };
        // Re-spanned on the error type: "`E` does not convert into `ActivityError`" lands on
        // `E`.
        let into_error = match f.ret.as_ref().and_then(|r| r.err.as_ref()) {
            Some(err) => respan(
                quote!(#private::into_activity_error::<#err>),
                first_span(err),
            ),
            None => quote!(#private::into_activity_error),
        };
        // The future's span is the function name's: "future cannot be sent between threads
        // safely" points there. Only the paths and delimiters are re-spanned: the variables
        // inside keep the hygiene of their bindings. The body's future is wrapped in a
        // combinator, not an `async` block, which would keep a second copy of the arguments
        // for the whole run.
        let span = f.ident().span();
        let box_pin = respan(quote!(#private::Box::pin), span);
        let wrap = respan(quote!(#private::body), span);
        let mut args = Group::new(
            Delimiter::Parenthesis,
            // A closure calling the conversion, not the conversion itself: an error type that
            // does not convert is then reported once, on the type.
            quote!(__hb_body #turbofish (#(#call_args),*), |__hb_error| #into_error(__hb_error)),
        );
        args.set_span(span);
        let mut call = Group::new(Delimiter::Parenthesis, quote!(#wrap #args));
        call.set_span(span);
        quote! {
            fn run(
                &self,
                #ctx: #private::ActivityContext,
                #checkpoint_pat: Self::Checkpoint,
                #input_pat: Self::Input,
            ) -> #private::BoxFuture<
                'static,
                #private::Result<Self::Output, #private::ActivityError>,
            > {
                #(#lints)*
                #(#body_attrs)*
                #sig #block

                #(#fetch_state)*
                #box_pin #call
            }
        }
    }
}

/// `.key(value)` for each option that sets one, in the table's order.
fn setters(private: &TokenStream, table: &[Spec], entries: &[Entry]) -> TokenStream {
    let mut chain = TokenStream::new();
    for entry in in_order(table, entries) {
        let value = match (&entry.value, &entry.spec.kind) {
            (Value::Duration(d), _) => duration::to_tokens(private, *d),
            (Value::Choice(choice), Kind::Choice { ty, .. }) => {
                let ty = Ident::new(ty, Span::call_site());
                let variant = Ident::new(choice.variant, Span::call_site());
                quote!(#private::#ty::#variant)
            }
            (Value::Size(size), _) => {
                proc_macro2::Literal::usize_unsuffixed(usize::try_from(*size).unwrap_or(usize::MAX))
                    .into_token_stream()
            }
            (Value::Attempts(n), _) => n.to_token_stream(),
            (Value::Factor(x), _) => proc_macro2::Literal::f64_suffixed(*x).into_token_stream(),
            (Value::TypeNames(names), _) => quote!(&[#(#names),*]),
            (Value::Retry(retry), _) => {
                let policy = setters(private, RETRY, retry);
                quote!(#private::RetryPolicy::new() #policy)
            }
            // Not a setter: `const NAME`, and the path of everything generated.
            (Value::Name(_) | Value::Crate(_) | Value::Choice(_), _) => continue,
        };
        let setter = Ident::new(entry.spec.key, Span::call_site());
        chain.extend(quote!(.#setter(#value)));
    }
    chain
}

/// What the docs paragraph says about the options (`heartbeat_timeout 10s`, `at most 5
/// attempts`, ..), in the table's order.
fn summary(table: &[Spec], entries: &[Entry]) -> Vec<String> {
    let mut said = Vec::new();
    for entry in in_order(table, entries).filter(|e| e.spec.summary) {
        match &entry.value {
            Value::Duration(d) => {
                said.push(format!("{} {}", entry.spec.key, duration::display(*d)));
            }
            Value::Attempts(n) => said.push(match n {
                0 => "retried without limit".to_owned(),
                1 => "never retried".to_owned(),
                n => format!("at most {n} attempts"),
            }),
            Value::Choice(choice) => said.extend(choice.summary.map(str::to_owned)),
            Value::Retry(retry) => said.extend(summary(RETRY, retry)),
            _ => {}
        }
    }
    said
}

/// `entries` in the order of `table`'s rows.
fn in_order<'a>(table: &'a [Spec], entries: &'a [Entry]) -> impl Iterator<Item = &'a Entry> {
    table
        .iter()
        .filter_map(|spec| entries.iter().find(|e| e.spec.key == spec.key))
}

#[cfg(test)]
mod tests;
