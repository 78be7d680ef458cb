use super::*;

fn parse(tokens: TokenStream) -> (ActivityArgs, Vec<String>) {
    let cx = Ctxt::new();
    let args = ActivityArgs::parse(&cx, tokens);
    let errors = match cx.check() {
        Ok(()) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    };
    (args, errors)
}

#[test]
fn parses_every_option() {
    let (args, errors) = parse(quote! {
        heartbeat_timeout = "10s", heartbeat_interval = "2s", start_to_close_timeout = "1h",
        schedule_to_close_timeout = "4h",
        retry(max_attempts = 5, initial_interval = "1s", backoff = 2, max_interval = "1m",
              non_retryable = ["BadInput", "NotFound"]),
        stall_timeout = "2m", cancel = "cooperative", cancel_grace = "5s",
        on_bad_checkpoint = "fail", max_checkpoint_size = 512 * 1024, name = "batch",
        crate = "my::hb"
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(args.entries.len(), OPTIONS.len(), "one entry per option");
    assert_eq!(
        duration_of(&args.entries, "heartbeat_timeout").unwrap().0,
        Duration::from_secs(10)
    );
    assert_eq!(
        duration_of(&args.entries, "schedule_to_close_timeout")
            .unwrap()
            .0,
        Duration::from_secs(4 * 3600)
    );
    let retry = args.retry();
    assert_eq!(retry.len(), RETRY.len());
    assert!(matches!(
        find(retry, "max_attempts").unwrap().value,
        Value::Attempts(5)
    ));
    assert!(matches!(
        find(retry, "backoff").unwrap().value,
        Value::Factor(2.0)
    ));
    assert!(
        matches!(&find(retry, "non_retryable").unwrap().value, Value::TypeNames(names) if names.len() == 2)
    );
    assert!(matches!(
        args.get("cancel").unwrap().value,
        Value::Choice(Choice {
            variant: "Cooperative",
            ..
        })
    ));
    assert!(matches!(
        args.get("on_bad_checkpoint").unwrap().value,
        Value::Choice(Choice {
            variant: "Fail",
            ..
        })
    ));
    assert!(matches!(
        args.get("max_checkpoint_size").unwrap().value,
        Value::Size(524_288)
    ));
    assert_eq!(args.name(), Some("batch"));
    assert_eq!(args.krate().to_string(), "my :: hb");
}

#[test]
fn collects_every_error_and_keeps_going() {
    let (args, errors) = parse(quote! {
        heartbeat = "10s", heartbeat_timeout = "0s", start_to_close_timeout = "1h",
        start_to_close_timeout = "2h", cancel = "later", retry(retries = 3, backoff = 0.5),
        max_checkpoint_size = 4194304, name = "ok"
    });
    assert_eq!(errors.len(), 7, "{errors:#?}");
    assert!(errors[0].contains("did you mean `heartbeat_timeout = \"..\"`"));
    assert!(errors[1].contains("is zero"));
    assert!(errors[2].starts_with("duplicate option `start_to_close_timeout`"));
    assert!(errors[3].contains("unknown cancel \"later\""));
    assert!(errors[4].contains("did you mean `max_attempts`"));
    assert!(errors[5].contains("backoff must be at least 1.0"));
    assert!(errors[6].contains("2 MiB"));
    // The options that were right are kept, and only those.
    assert_eq!(
        duration_of(&args.entries, "start_to_close_timeout")
            .unwrap()
            .0,
        Duration::from_secs(3600)
    );
    assert_eq!(args.name(), Some("ok"));
    let kept: Vec<&str> = args.entries.iter().map(|e| e.spec.key).collect();
    assert_eq!(kept, ["start_to_close_timeout", "retry", "name"]);
    assert!(args.retry().is_empty());
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let (_, errors) = parse(quote!(frobnicate = 1, timeout = "1h", max_retries = 3));
    assert_eq!(errors.len(), 3);
    assert!(errors[0].starts_with(
        "unknown #[activity] option `frobnicate` (expected one of: `heartbeat_timeout`"
    ));
    assert!(errors[1].contains("did you mean `start_to_close_timeout` (one attempt)"));
    assert!(errors[2].contains("did you mean `retry(max_attempts = ..)`"));
}

#[test]
fn cross_option_rules() {
    let (_, errors) = parse(quote! {
        heartbeat_timeout = "10s", heartbeat_interval = "9s", start_to_close_timeout = "5s",
        schedule_to_close_timeout = "1s", cancel_grace = "5s",
        retry(initial_interval = "10s", max_interval = "1s")
    });
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].contains("at most 0.8 × heartbeat_timeout (10s), i.e. 8s"));
    assert!(errors[1].contains("longer than start_to_close_timeout"));
    assert!(errors[2].contains("shorter than start_to_close_timeout"));
    assert!(errors[3].contains("cancel_grace only applies"));
    assert!(errors[4].contains("max_interval (1s) is shorter than initial_interval (10s)"));

    let (_, errors) = parse(quote!(
        stall_timeout = "1m",
        cancel = "abort",
        cancel_grace = "1s"
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("stall_timeout needs heartbeat_timeout"));
    assert!(errors[1].contains("`cancel = \"abort\"` drops the body"));
}

#[test]
fn wrong_shapes() {
    let (_, errors) = parse(quote! {
        heartbeat_timeout("10s"), retry = 3, name, crate = "not a path", backoff = 2.0,
        retry(max_attempts = -1)
    });
    assert_eq!(errors.len(), 7, "{errors:#?}");
    assert_eq!(errors[0], "expected `heartbeat_timeout = \"10s\"`");
    assert!(errors[1].starts_with("`retry` takes a list"));
    assert_eq!(errors[2], "expected `name = \"process-batch\"`");
    assert!(errors[3].contains("is not a path"));
    assert!(errors[4].contains("did you mean `retry(backoff = ..)`"));
    assert!(errors[5].starts_with("duplicate option `retry`"));
    assert!(errors[6].starts_with("max_attempts takes a whole number"));
}

#[test]
fn syntax_errors_are_reported() {
    let (_, errors) = parse(quote!(heartbeat_timeout = ));
    assert_eq!(errors.len(), 1);
}
