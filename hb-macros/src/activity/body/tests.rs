use super::*;
use syn::parse_quote;

/// The calls found in `block` on `ctx`, rewritten with `check`, and the block after.
fn run(mut block: Block) -> (Vec<Call>, String) {
    let ctx: Ident = parse_quote!(ctx);
    let calls = checkpoint_calls(&mut block, &ctx, &quote!(check));
    (calls, quote!(#block).to_string())
}

fn rewritten(block: &str, expected: usize) {
    assert_eq!(
        block.matches("check (").count(),
        expected,
        "expected {expected} rewritten calls in {block}"
    );
}

#[test]
fn rewrites_calls_on_the_context() {
    let (calls, out) = run(parse_quote!({
        ctx.checkpoint(&p)?;
        (&ctx).checkpoint(&p)?;
        ctx.clone().checkpoint(&p)?;
        ctx.flush().await?;
        other.checkpoint(&p)?;
        ctx.checkpoint(&p, 2);
    }));
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].arg.as_ref().unwrap(), "p");
    assert_eq!(calls[0].receiver, "ctx");
    assert_eq!(calls[0].call.to_string(), "checkpoint (& p)");
    assert!(out.contains("ctx . checkpoint (check (& p))"), "{out}");
    rewritten(&out, 3);
}

#[test]
fn follows_aliases_and_closures_that_get_the_context() {
    let (calls, out) = run(parse_quote!({
        let c = &ctx;
        c.checkpoint(&p)?;
        let d = ctx.clone();
        d.checkpoint(&p)?;
        ctx.run_blocking(move |b| b.checkpoint(&p)).await?;
        let f = |x: &ActivityContext| x.checkpoint(&p);
        let g = async move { ctx.checkpoint(&p) };
        let h = || ctx.checkpoint(&p);
    }));
    assert_eq!(calls.len(), 6, "{out}");
    rewritten(&out, 6);
}

#[test]
fn stops_where_the_name_is_shadowed() {
    let (calls, out) = run(parse_quote!({
        {
            let ctx = Other::new();
            ctx.checkpoint(&p);
        }
        ctx.checkpoint(&p)?;
        let f = |ctx: Other| ctx.checkpoint(1);
        let g = |ctx| ctx.checkpoint(1);
        for ctx in others {
            ctx.checkpoint(1);
        }
        match x {
            Some(ctx) => ctx.checkpoint(1),
            None => {}
        }
        if let Some(ctx) = x {
            ctx.checkpoint(1);
        } else {
            ctx.checkpoint(&p)?;
        }
        while let Some(ctx) = it.next() {
            ctx.checkpoint(1);
        }
        fn helper(ctx: Other) {
            ctx.checkpoint(1);
        }
        println!("{:?}", ctx.checkpoint(&p));
        let ctx = other;
        ctx.checkpoint(1);
    }));
    // The outer `ctx` before the inner block's shadow ended, and the `else` branch.
    assert_eq!(calls.len(), 2, "{out}");
    rewritten(&out, 2);
}

#[test]
fn names_the_parameter_to_mark() {
    let sig: Signature = parse_quote! {
        fn a(ctx: ActivityContext, #[state] db: Db, mut p: Progress<u8>, items: Vec<u64>)
    };
    assert_eq!(context_name(&sig).unwrap(), "ctx");
    let unmarked = unmarked_params(&sig);
    let (calls, _) = run(parse_quote!({
        ctx.checkpoint(&p)?;
    }));
    assert_eq!(
        which_to_mark(&unmarked, &calls),
        "if `p: Progress<u8>` is its checkpoint"
    );
    assert_eq!(
        which_to_mark(&unmarked, &[]),
        "if `p: Progress<u8>` or `items: Vec<u64>` is its checkpoint"
    );
    assert!(
        unmarked_call(&calls[0], &unmarked)
            .ends_with("if `p: Progress<u8>` is its checkpoint, mark it `#[checkpoint]`")
    );
    let generic: Signature = parse_quote!(fn g<T, U: Clone>(ctx: ActivityContext));
    assert_eq!(
        check_path(&generic).to_string(),
        "__hb_activity_g :: < T , U > :: __hb_checkpoint"
    );
}
