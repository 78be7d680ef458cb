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

use super::args::{ActivityArgs, BadCheckpoint, CancelMode};
use super::model::{ActivityFn, Role, is_owned};
use crate::ctxt::Ctxt;
use crate::duration;
use crate::respan::{first_span, respan};

/// The expansion, or every error found (then emit [`fallback`] beside them).
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (tokens, result) = run(args, item);
    result.map(|()| tokens)
}

/// What to emit beside the errors so the rest of the user's code keeps compiling: the full
/// expansion when only options were wrong, a shell with the same names when the signature was,
/// or the item unchanged when it is not a free function.
pub(crate) fn fallback(args: TokenStream, item: TokenStream) -> TokenStream {
    run(args, item).0
}

fn run(args: TokenStream, item: TokenStream) -> (TokenStream, syn::Result<()>) {
    let cx = Ctxt::new();
    let args = ActivityArgs::parse(&cx, args);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            cx.error_at(
                Span::call_site(),
                "#[activity] goes on an `async fn` with a body",
            );
            return (item, cx.check());
        }
    };
    let model = ActivityFn::from_fn(&cx, func);
    let tokens = if model.has_receiver {
        model.original().into_token_stream()
    } else {
        Emitter::new(&args, &model).emit()
    };
    (tokens, cx.check())
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
            marker: format_ident!("__hb_activity_{}", fn_name, span = ident.span()),
            fn_name,
            generics,
        }
    }

    fn emit(&self) -> TokenStream {
        let items = self.marker_items();
        let activity = self.activity_impl();
        quote!(#items #activity)
    }

    /// The activity type name.
    fn name(&self) -> String {
        match &self.args.name {
            Some(name) => name.value.clone(),
            None => self.fn_name.clone(),
        }
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
            impl #impl_generics ::core::clone::Clone for #marker #ty_generics #where_clause {
                #[inline]
                fn clone(&self) -> Self {
                    *self
                }
            }

            #(#cfg)*
            impl #impl_generics ::core::marker::Copy for #marker #ty_generics #where_clause {}

            #(#cfg)*
            impl #impl_generics ::core::fmt::Debug for #marker #ty_generics #where_clause {
                fn fmt(&self, __hb_f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Formatter::write_str(__hb_f, #debug_name)
                }
            }

            #(#cfg)*
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
        let a = self.args;
        let mut options = Vec::new();
        let show = |d: &Option<super::args::Opt<std::time::Duration>>, key: &str| {
            d.as_ref()
                .map(|o| format!("{key} {}", duration::display(o.value)))
        };
        options.extend(show(&a.heartbeat_timeout, "heartbeat_timeout"));
        options.extend(show(&a.start_to_close_timeout, "start_to_close_timeout"));
        options.extend(show(
            &a.schedule_to_close_timeout,
            "schedule_to_close_timeout",
        ));
        options.extend(show(&a.stall_timeout, "stall_timeout"));
        if let Some(max) = a.retry.as_ref().and_then(|r| r.max_attempts.as_ref()) {
            options.push(match max.value {
                0 => "retried without limit".to_owned(),
                1 => "never retried".to_owned(),
                n => format!("at most {n} attempts"),
            });
        }
        if let Some(cancel) = &a.cancel
            && cancel.value == CancelMode::Cooperative
        {
            options.push("cooperative cancellation".to_owned());
        }
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
        let a = self.args;
        let dur = |d: std::time::Duration| duration::to_tokens(private, d);
        let mut chain = quote!(#private::ActivityOptions::new());
        let durations = [
            ("heartbeat_timeout", &a.heartbeat_timeout),
            ("heartbeat_interval", &a.heartbeat_interval),
            ("start_to_close_timeout", &a.start_to_close_timeout),
            ("schedule_to_close_timeout", &a.schedule_to_close_timeout),
            ("stall_timeout", &a.stall_timeout),
            ("cancel_grace", &a.cancel_grace),
        ];
        for (setter, opt) in durations {
            if let Some(opt) = opt {
                let setter = Ident::new(setter, Span::call_site());
                let value = dur(opt.value);
                chain.extend(quote!(.#setter(#value)));
            }
        }
        if let Some(retry) = &a.retry {
            let mut policy = quote!(#private::RetryPolicy::new());
            if let Some(n) = &retry.max_attempts {
                let n = n.value;
                policy.extend(quote!(.max_attempts(#n)));
            }
            if let Some(d) = &retry.initial_interval {
                let d = dur(d.value);
                policy.extend(quote!(.initial_interval(#d)));
            }
            if let Some(b) = &retry.backoff {
                let b = proc_macro2::Literal::f64_suffixed(b.value);
                policy.extend(quote!(.backoff(#b)));
            }
            if let Some(d) = &retry.max_interval {
                let d = dur(d.value);
                policy.extend(quote!(.max_interval(#d)));
            }
            if let Some(list) = &retry.non_retryable {
                let names = &list.value;
                policy.extend(quote!(.non_retryable(&[#(#names),*])));
            }
            chain.extend(quote!(.retry(#policy)));
        }
        if let Some(cancel) = &a.cancel {
            let mode = match cancel.value {
                CancelMode::Abort => quote!(Abort),
                CancelMode::Cooperative => quote!(Cooperative),
            };
            chain.extend(quote!(.cancel(#private::CancelMode::#mode)));
        }
        if let Some(policy) = &a.on_bad_checkpoint {
            let policy = match policy.value {
                BadCheckpoint::Restart => quote!(Restart),
                BadCheckpoint::Fail => quote!(Fail),
            };
            chain.extend(quote!(.on_bad_checkpoint(#private::BadCheckpointPolicy::#policy)));
        }
        if let Some(size) = &a.max_checkpoint_size {
            let size = proc_macro2::Literal::usize_unsuffixed(
                usize::try_from(size.value).unwrap_or(usize::MAX),
            );
            chain.extend(quote!(.max_checkpoint_size(#size)));
        }
        chain
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
        // Re-spanned on the error type: "`E: Into<ActivityError>` is not satisfied" lands on `E`.
        let into_error = match &f.ret {
            Some(ret) => {
                let err = &ret.err;
                respan(
                    quote!(#private::into_activity_error::<#err>),
                    first_span(err),
                )
            }
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

#[cfg(test)]
mod tests;
