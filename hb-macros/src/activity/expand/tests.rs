use super::*;

fn expand_ok(args: TokenStream, item: TokenStream) -> String {
    match expand(args, item) {
        Ok(tokens) => tokens.to_string(),
        Err(failed) => panic!(
            "unexpected errors: {:?}",
            failed
                .errors
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        ),
    }
}

fn errors(args: TokenStream, item: TokenStream) -> Vec<String> {
    match expand(args, item) {
        Ok(_) => Vec::new(),
        Err(failed) => failed.errors.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// What is emitted beside the errors (the analysis ran once, for both).
fn fallback(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item) {
        Ok(tokens) => panic!("expected errors, got {tokens}"),
        Err(failed) => failed.fallback,
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
fn a_full_expansion() {
    let out = expand_ok(
        quote!(
            heartbeat_timeout = "10s",
            retry(max_attempts = 5, non_retryable = ["Bad"])
        ),
        quote! {
            /// Processes a batch.
            pub async fn process_batch(
                ctx: ActivityContext,
                #[checkpoint] mut p: Progress,
                input: Batch,
            ) -> Result<Report, ActivityError> {
                Ok(Report)
            }
        },
    );
    contains(
        &out,
        quote!(
            pub struct __hb_activity_process_batch;
        ),
    );
    contains(
        &out,
        quote!(
            pub type process_batch = __hb_activity_process_batch;
        ),
    );
    contains(
        &out,
        quote! {
            pub const fn process_batch() -> __hb_activity_process_batch {
                __hb_activity_process_batch
            }
        },
    );
    contains(
        &out,
        quote!(impl ::hb_runtime::__private::Activity for __hb_activity_process_batch),
    );
    contains(
        &out,
        quote!(
            const NAME: &'static str = "process_batch";
        ),
    );
    contains(
        &out,
        quote!(
            type Input = Batch;
            type Output = Report;
            type Checkpoint = Progress;
        ),
    );
    contains(
        &out,
        quote! {
            ::hb_runtime::__private::ActivityOptions::new()
                .heartbeat_timeout(::hb_runtime::__private::Duration::from_secs(10u64))
                .retry(::hb_runtime::__private::RetryPolicy::new().max_attempts(5u32).non_retryable(&["Bad"]))
        },
    );
    contains(
        &out,
        quote! {
            async fn __hb_body(ctx: ActivityContext, mut p: Progress, input: Batch,)
                -> Result<Report, ActivityError> { Ok(Report) }
        },
    );
    contains(
        &out,
        quote!(__private::body(
            __hb_body(__hb_ctx, __hb_checkpoint, __hb_input),
            |__hb_error| ::hb_runtime::__private::into_activity_error::<ActivityError>(__hb_error)
        )),
    );
    contains(&out, quote!(#[doc = r" Processes a batch."]));
    assert!(out.contains("*hb activity*"), "{out}");
    assert!(!out.contains("check_state"));
}

#[test]
fn generics_states_and_names() {
    let out = expand_ok(
        quote!(name = "custom", crate = "my::hb"),
        quote! {
            pub(crate) async fn wrap<T: Clone>(
                ctx: ActivityContext,
                #[state] db: Db,
                input: Wrapper<T>,
            ) -> Result<T, MyError> where T: Default { Ok(T::default()) }
        },
    );
    contains(
        &out,
        quote! {
            pub(crate) struct __hb_activity_wrap<T: Clone>(my::hb::__private::PhantomData<fn() -> (T,)>)
                where T: Default;
        },
    );
    contains(
        &out,
        quote!(
            pub(crate) type wrap<T> = __hb_activity_wrap<T>;
        ),
    );
    contains(
        &out,
        quote! {
            impl<T: Clone> my::hb::__private::Activity for __hb_activity_wrap<T>
            where T: Default, T: ::core::marker::Send + ::core::marker::Sync + 'static
        },
    );
    contains(
        &out,
        quote!(
            const NAME: &'static str = "custom";
        ),
    );
    contains(
        &out,
        quote!(my::hb::__private::StateMap::require::<Db>(__hb_state)?;),
    );
    contains(
        &out,
        quote!(let __hb_state_0 = match my::hb::__private::state::<Db>(&__hb_ctx)),
    );
    contains(
        &out,
        quote!(__private::body(
            __hb_body::<T>(__hb_ctx, __hb_state_0, __hb_input),
            |__hb_error| my::hb::__private::into_activity_error::<MyError>(__hb_error)
        )),
    );
    contains(
        &out,
        quote!(my::hb::__private::Result::Err(__hb_error) => return my::hb::__private::failed(__hb_error),),
    );
    // No user docs: no generated docs either, so `missing_docs` still works.
    assert!(!out.contains("*hb activity*"));
    // No checkpoint parameter: `()`, and the run parameter is ignored.
    contains(
        &out,
        quote!(
            type Checkpoint = ();
        ),
    );
    contains(&out, quote!(_: Self::Checkpoint));
}

#[test]
fn no_input_is_unit() {
    let out = expand_ok(
        TokenStream::new(),
        quote!(
            async fn tick(_ctx: ActivityContext) -> Result<(), ActivityError> {
                Ok(())
            }
        ),
    );
    contains(
        &out,
        quote!(
            type Input = ();
        ),
    );
    contains(&out, quote!(_: Self::Input));
    contains(&out, quote!(__hb_body(__hb_ctx), |__hb_error|));
}

#[test]
fn cfg_goes_everywhere_and_lints_on_the_body() {
    let out = expand_ok(
        TokenStream::new(),
        quote! {
            #[cfg(unix)]
            #[allow(unused_mut)]
            #[some::instrument]
            async fn c(ctx: ActivityContext) -> Result<(), ActivityError> { Ok(()) }
        },
    );
    // struct, Clone, Copy, Debug, Default, alias, fn, Activity impl.
    assert_eq!(out.matches("# [cfg (unix)]").count(), 8, "{out}");
    assert_eq!(out.matches("# [allow (unused_mut)]").count(), 2, "{out}");
    contains(&out, quote!(#[some::instrument] async fn __hb_body));
}

#[test]
fn raw_identifiers() {
    let out = expand_ok(
        TokenStream::new(),
        quote!(
            async fn r#match(ctx: ActivityContext) -> Result<(), ActivityError> {
                Ok(())
            }
        ),
    );
    contains(
        &out,
        quote!(
            struct __hb_activity_match;
        ),
    );
    contains(
        &out,
        quote!(
            const NAME: &'static str = "match";
        ),
    );
    contains(&out, quote!(const fn r#match()));
}

#[test]
fn option_and_signature_errors_are_reported_together() {
    let errors = errors(
        quote!(heartbeat = "1s", stall_timeout = "1m"),
        quote!(
            fn f(input: u64) -> u64 {
                input
            }
        ),
    );
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].contains("did you mean `heartbeat_timeout"));
    assert!(errors[1].contains("stall_timeout needs heartbeat_timeout"));
    assert!(errors[2].contains("`async fn`"));
    assert!(errors[3].contains("the first parameter"));
    assert!(errors[4].contains("returns `Result<Output, ActivityError>`"));
}

#[test]
fn fallback_keeps_names_usable() {
    // Only an option is wrong: the full expansion, without that option.
    let item = quote!(
        async fn ok(ctx: ActivityContext, n: u64) -> Result<u64, E> {
            Ok(n)
        }
    );
    let out = fallback(quote!(heartbeat_timeout = "0s"), item).to_string();
    contains(&out, quote!(async fn __hb_body));
    contains(&out, quote!(const fn ok()));
    assert!(!out.contains("heartbeat_timeout ("), "{out}");

    // The signature is wrong: a shell with the same names and types.
    let item = quote!(
        fn bad(ctx: ActivityContext, n: u64) -> Result<u64, E> {
            Ok(n)
        }
    );
    let out = fallback(TokenStream::new(), item).to_string();
    contains(&out, quote!(const fn bad()));
    contains(
        &out,
        quote!(
            type Input = u64;
            type Output = u64;
        ),
    );
    contains(&out, quote!(::core::unreachable!));
    assert!(!out.contains("__hb_body"));

    // Lifetimes were rejected: the shell drops them and the types using them.
    let item = quote!(
        async fn lt<'a, T>(ctx: ActivityContext, s: &'a T) -> Result<u64, E> {
            Ok(1)
        }
    );
    let out = fallback(TokenStream::new(), item).to_string();
    contains(&out, quote!(struct __hb_activity_lt<T>));
    contains(
        &out,
        quote!(
            type Input = ();
        ),
    );

    // A method: re-emitted as written (it lives in an impl block).
    let item = quote!(
        async fn m(&self, #[state] s: S) -> Result<(), E> {
            Ok(())
        }
    );
    let out = fallback(TokenStream::new(), item).to_string();
    assert_eq!(
        out,
        quote!(
            async fn m(&self, s: S) -> Result<(), E> {
                Ok(())
            }
        )
        .to_string()
    );

    // Not a function: unchanged.
    let item = quote!(
        struct S;
    );
    assert_eq!(
        fallback(TokenStream::new(), item.clone()).to_string(),
        item.to_string()
    );
    assert_eq!(errors(TokenStream::new(), item).len(), 1);
}

#[test]
fn every_option_is_emitted() {
    let out = expand_ok(
        quote! {
            heartbeat_timeout = "10s", heartbeat_interval = "1500ms",
            start_to_close_timeout = "1h", schedule_to_close_timeout = "2h",
            retry(max_attempts = 0, initial_interval = "1s", backoff = 1.5, max_interval = "1m"),
            stall_timeout = "2m", cancel = "cooperative", cancel_grace = "5s",
            on_bad_checkpoint = "fail", max_checkpoint_size = 1024
        },
        quote!(
            async fn all(ctx: ActivityContext) -> Result<(), ActivityError> {
                Ok(())
            }
        ),
    );
    for setter in [
        ". heartbeat_timeout (",
        ". heartbeat_interval (:: hb_runtime :: __private :: Duration :: from_millis (1500u64))",
        ". start_to_close_timeout (",
        ". schedule_to_close_timeout (",
        ". stall_timeout (",
        ". cancel_grace (",
        ". max_attempts (0u32)",
        ". backoff (1.5f64)",
        ". max_interval (",
        ". cancel (:: hb_runtime :: __private :: CancelMode :: Cooperative)",
        ". on_bad_checkpoint (:: hb_runtime :: __private :: BadCheckpointPolicy :: Fail)",
        ". max_checkpoint_size (1024)",
    ] {
        assert!(out.contains(setter), "missing {setter} in {out}");
    }
}

#[test]
fn checkpoint_calls_go_through_the_type_check() {
    let out = expand_ok(
        TokenStream::new(),
        quote! {
            async fn f<T>(ctx: ActivityContext, #[checkpoint] p: Cursor<T>) -> Result<(), E> {
                ctx.checkpoint(&p)?;
                Ok(())
            }
        },
    );
    contains(
        &out,
        quote!(ctx.checkpoint(__hb_activity_f::<T>::__hb_checkpoint(&p))?;),
    );
    contains(
        &out,
        quote! {
            impl<T> __hb_activity_f<T> {
                #[inline(always)]
                #[doc(hidden)]
                const fn __hb_checkpoint(__hb_value: &Cursor<T>) -> &Cursor<T> {
                    __hb_value
                }
            }
        },
    );

    // No call, no function.
    let out = expand_ok(
        TokenStream::new(),
        quote! {
            async fn g(ctx: ActivityContext, #[checkpoint] p: u64) -> Result<u64, E> { Ok(p) }
        },
    );
    assert!(!out.contains("fn __hb_checkpoint"), "{out}");
}
