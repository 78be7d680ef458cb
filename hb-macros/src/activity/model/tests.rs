use super::*;
use syn::parse_quote;

fn analyse(func: ItemFn) -> (ActivityFn, Vec<String>) {
    let cx = Ctxt::new();
    let model = ActivityFn::from_fn(&cx, func);
    let errors = match cx.check() {
        Ok(()) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    };
    (model, errors)
}

#[test]
fn roles_and_types() {
    let (model, errors) = analyse(parse_quote! {
        /// Docs.
        #[allow(unused_mut)]
        #[cfg(feature = "x")]
        #[tracing::instrument]
        pub async fn process_batch<T: Clone>(
            ctx: hb_runtime::ActivityContext,
            #[state] db: Db,
            #[checkpoint] mut p: Progress,
            #[state] http: Client,
            Batch { items }: Batch<T>,
        ) -> Result<Report, MyError> where T: Send { Ok(Report::new(items)) }
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!model.has_errors);
    assert_eq!(
        model.roles,
        [
            Role::Context,
            Role::State(0),
            Role::Checkpoint,
            Role::State(1),
            Role::Input
        ]
    );
    assert_eq!(model.states.len(), 2);
    let input = model.input.as_ref().unwrap();
    assert_eq!(quote!(#input).to_string(), "Batch < T >");
    let ret = model.ret.as_ref().unwrap();
    let (ok, err) = (&ret.ok, &ret.err);
    assert_eq!(quote!(#ok, #err).to_string(), "Report , MyError");
    assert!(model.attrs.has_docs);
    assert_eq!(model.attrs.cfg.len(), 1);
    assert_eq!(model.attrs.lints.len(), 1);
    assert_eq!(model.attrs.body.len(), 1);
    // The markers are gone from the re-emitted signature.
    let sig = &model.sig;
    assert!(!quote!(#sig).to_string().contains("state"));
}

#[test]
fn every_signature_rule() {
    let (model, errors) = analyse(parse_quote! {
        fn bad<'a, const N: usize>(
            input: &'a str,
            #[checkpoint] a: u64,
            #[checkpoint] b: u64,
            more: String,
            f: impl Fn(),
            ctx2: ActivityContext,
        ) -> u64 { 0 }
    });
    assert!(model.has_errors);
    let expected = [
        "#[activity] goes on an `async fn`",
        "an activity cannot have lifetime parameters",
        "an activity cannot have const parameters",
        "activity parameters own their data",
        "the first parameter must be `ctx: ActivityContext`",
        "at most one `#[checkpoint]` parameter",
        "an activity takes one input",
        "`impl Trait` is not allowed",
        "an activity takes one input",
        "the context is the first parameter",
        "an activity returns `Result<Output, ActivityError>`",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, expected) in errors.iter().zip(expected) {
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
    }
}

#[test]
fn receivers_and_missing_pieces() {
    let (model, errors) = analyse(parse_quote! {
        async fn method(&self, ctx: ActivityContext) -> Result<(), ActivityError> { Ok(()) }
    });
    assert!(model.has_receiver);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("free async fn"));

    let (_, errors) = analyse(parse_quote!(
        async fn nothing() {}
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("the first parameter must be"));
    assert!(errors[1].contains("returns `Result<Output, ActivityError>`"));

    let (_, errors) = analyse(parse_quote! {
        async fn r(ctx: &ActivityContext) -> Option<u64> { Some(1) }
    });
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("(by value, not a reference)"));
    assert!(errors[1].contains("returns `Result<Output"));
}

#[test]
fn marker_misuse() {
    let (_, errors) = analyse(parse_quote! {
        async fn m(ctx: ActivityContext, #[state(x)] #[checkpoint] a: u64, #[state] #[state] s: S)
            -> Result<(), E> { Ok(()) }
    });
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("`#[state]` takes no arguments"));
    assert!(errors[1].contains("not both"));
    assert!(errors[2].starts_with("duplicate `#[state]`"));
}

#[test]
fn static_references_are_fine() {
    let (_, errors) = analyse(parse_quote! {
        async fn s(ctx: ActivityContext, #[state] cfg: &'static Config, input: Vec<String>)
            -> Result<(), E> { Ok(()) }
    });
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn one_argument_result_aliases() {
    let err_of = |func: ItemFn| {
        let (model, errors) = analyse(func);
        assert!(errors.is_empty(), "{errors:?}");
        let ret = model.ret.unwrap();
        let (ok, err) = (&ret.ok, &ret.err);
        (quote!(#ok).to_string(), quote!(#err).to_string())
    };
    assert_eq!(
        err_of(parse_quote! {
            async fn a(ctx: ActivityContext) -> anyhow::Result<u64> { Ok(1) }
        }),
        ("u64".to_owned(), "anyhow :: Error".to_owned())
    );
    assert_eq!(
        err_of(parse_quote! {
            async fn a(ctx: ActivityContext) -> std::io::Result<Vec<u8>> { Ok(vec![]) }
        }),
        ("Vec < u8 >".to_owned(), "std :: io :: Error".to_owned())
    );
    // A bare alias: the error type is inferred.
    assert_eq!(
        err_of(parse_quote! {
            async fn a(ctx: ActivityContext) -> Result<u64> { Ok(1) }
        }),
        ("u64".to_owned(), String::new())
    );
}
