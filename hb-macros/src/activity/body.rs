//! The `ctx.checkpoint(..)` calls in an activity's body, found so that a checkpoint the activity
//! cannot take is a compile error rather than a failure of every run:
//!
//! - with a `#[checkpoint]` parameter, each call's argument is passed through an identity
//!   function taking `&Checkpoint` (an `#[inline(always)]` associated function of the marker
//!   type, so the call compiles to the same code):
//!
//!   ```text
//!   ctx.checkpoint(&other)  →  ctx.checkpoint(__hb_activity_f::__hb_checkpoint(&other))
//!   ```
//!
//!   and a value of another type is "expected `&Progress`, found `&Other`" on `&other`. The
//!   function names the checkpoint type in its signature, outside the body, so a local item
//!   of the same name in the body changes nothing, and a generic activity names its own
//!   parameters (`__hb_activity_f::<T>::..`).
//! - without one, the checkpoint type is `()` and every call fails at run time; the model
//!   reports each call instead, naming `#[checkpoint]` and, when the call passes an unmarked
//!   parameter, that parameter (`which_to_mark`, `unmarked_call`).
//!
//! A call counts when its receiver is a name that holds the context: the context parameter,
//! a `let` of it (`let c = &ctx;`, `let c = ctx.clone();`), a closure parameter or `let`
//! typed `ActivityContext`, and the closure parameter of `ctx.run_blocking(|c| ..)`, for as
//! long as no other binding of that name shadows it. Not seen, and left to the run-time check
//! (`CheckpointError::WrongType`): calls inside macro invocations (`tokio::select!`,
//! `assert!(..)`), in nested items, on a context reached another way (a field, a helper
//! function's parameter), and `ActivityContext::checkpoint(&ctx, ..)`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Arm, Block, Expr, ExprClosure, ExprForLoop, ExprIf, ExprLet, ExprMethodCall, ExprWhile, FnArg,
    Ident, Item, Local, Pat, Signature,
};

use super::model::{is_context, marker_name};
use crate::respan::{first_span, respan};

/// One `ctx.checkpoint(arg)` call.
#[derive(Debug)]
pub(crate) struct Call {
    /// `checkpoint(arg)` as written, for spans.
    pub(crate) call: TokenStream,
    /// The receiver as written (`ctx`), for messages.
    pub(crate) receiver: String,
    /// The variable passed, when the argument is one (`&p`, `p`).
    pub(crate) arg: Option<Ident>,
}

/// Finds the checkpoint calls on `ctx` in `block`, and rewrites them to pass their argument
/// through `check`, the path of the identity function.
pub(crate) fn checkpoint_calls(block: &mut Block, ctx: &Ident, check: &TokenStream) -> Vec<Call> {
    let mut finder = Finder {
        contexts: vec![ctx.clone()],
        check,
        calls: Vec::new(),
    };
    finder.visit_block_mut(block);
    finder.calls
}

struct Finder<'a> {
    /// The names that hold the context here.
    contexts: Vec<Ident>,
    check: &'a TokenStream,
    calls: Vec<Call>,
}

impl Finder<'_> {
    /// Whether `expr` is the context: one of its names, possibly borrowed, parenthesised or
    /// cloned.
    fn is_context(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p
                .path
                .get_ident()
                .is_some_and(|ident| self.contexts.contains(ident)),
            Expr::Reference(r) => self.is_context(&r.expr),
            Expr::Paren(p) => self.is_context(&p.expr),
            Expr::Group(g) => self.is_context(&g.expr),
            Expr::MethodCall(m) if m.method == "clone" && m.args.is_empty() => {
                self.is_context(&m.receiver)
            }
            _ => false,
        }
    }

    /// Records the names `pat` binds: they hold the context when `context` says so, and
    /// shadow it otherwise.
    fn bind(&mut self, pat: &Pat, context: bool) {
        let mut names = Vec::new();
        bound_names(pat, &mut names);
        self.contexts.retain(|c| !names.contains(c));
        if context && let Pat::Ident(p) = strip_type(pat) {
            self.contexts.push(p.ident.clone());
        }
    }

    /// Visits `f` with the names in scope restored afterwards.
    fn scoped(&mut self, f: impl FnOnce(&mut Self)) {
        let saved = self.contexts.clone();
        f(self);
        self.contexts = saved;
    }

    fn visit_closure(&mut self, closure: &mut ExprClosure, param_is_context: bool) {
        self.scoped(|this| {
            for input in &closure.inputs {
                let typed = typed_context(input);
                this.bind(
                    input,
                    typed || (param_is_context && closure.inputs.len() == 1),
                );
            }
            this.visit_expr_mut(&mut closure.body);
        });
    }
}

impl VisitMut for Finder<'_> {
    // A nested item is a scope of its own: its `ctx` is not this one.
    fn visit_item_mut(&mut self, _: &mut Item) {}

    fn visit_block_mut(&mut self, block: &mut Block) {
        self.scoped(|this| visit_mut::visit_block_mut(this, block));
    }

    fn visit_local_mut(&mut self, local: &mut Local) {
        // The initialiser and the `else` see the names from before the `let`.
        if let Some(init) = &mut local.init {
            self.visit_expr_mut(&mut init.expr);
            if let Some((_, diverge)) = &mut init.diverge {
                self.visit_expr_mut(diverge);
            }
        }
        let alias = local
            .init
            .as_ref()
            .is_some_and(|init| init.diverge.is_none() && self.is_context(&init.expr));
        self.bind(&local.pat, alias || typed_context(&local.pat));
    }

    fn visit_expr_closure_mut(&mut self, closure: &mut ExprClosure) {
        self.visit_closure(closure, false);
    }

    fn visit_arm_mut(&mut self, arm: &mut Arm) {
        self.scoped(|this| {
            this.bind(&arm.pat, false);
            if let Some((_, guard)) = &mut arm.guard {
                this.visit_expr_mut(guard);
            }
            this.visit_expr_mut(&mut arm.body);
        });
    }

    fn visit_expr_for_loop_mut(&mut self, for_loop: &mut ExprForLoop) {
        self.visit_expr_mut(&mut for_loop.expr);
        self.scoped(|this| {
            this.bind(&for_loop.pat, false);
            this.visit_block_mut(&mut for_loop.body);
        });
    }

    // `if let`/`while let` bind for the rest of the condition and the body (`visit_expr_let_mut`
    // records the binding; the scope ends with the body).
    fn visit_expr_if_mut(&mut self, expr_if: &mut ExprIf) {
        self.scoped(|this| {
            this.visit_expr_mut(&mut expr_if.cond);
            this.visit_block_mut(&mut expr_if.then_branch);
        });
        if let Some((_, otherwise)) = &mut expr_if.else_branch {
            self.visit_expr_mut(otherwise);
        }
    }

    fn visit_expr_while_mut(&mut self, expr_while: &mut ExprWhile) {
        self.scoped(|this| {
            this.visit_expr_mut(&mut expr_while.cond);
            this.visit_block_mut(&mut expr_while.body);
        });
    }

    fn visit_expr_let_mut(&mut self, expr_let: &mut ExprLet) {
        self.visit_expr_mut(&mut expr_let.expr);
        self.bind(&expr_let.pat, false);
    }

    fn visit_expr_method_call_mut(&mut self, call: &mut ExprMethodCall) {
        self.visit_expr_mut(&mut call.receiver);
        let on_context = self.is_context(&call.receiver);
        for arg in call.args.iter_mut() {
            match arg {
                // `run_blocking` hands its closure a clone of the context.
                Expr::Closure(closure) if on_context && call.method == "run_blocking" => {
                    self.visit_closure(closure, true)
                }
                arg => self.visit_expr_mut(arg),
            }
        }
        if !on_context || call.method != "checkpoint" || call.args.len() != 1 {
            return;
        }
        let method = &call.method;
        let turbofish = &call.turbofish;
        let args = &call.args;
        let mut written = quote!(#method #turbofish);
        let paren = call.paren_token;
        paren.surround(&mut written, |tokens| tokens.extend(quote!(#args)));
        let receiver = &call.receiver;
        self.calls.push(Call {
            call: written,
            receiver: quote!(#receiver).to_string().replace(' ', ""),
            arg: args.first().and_then(variable),
        });
        if let Some(arg) = call.args.first_mut() {
            // The path carries the argument's span: rustc puts "arguments to this function
            // are incorrect" there, beside "expected `&Progress`, found `&Other`".
            let check = respan(self.check.clone(), first_span(arg));
            let checked = Expr::Verbatim(quote!(#check(#arg)));
            *arg = checked;
        }
    }
}

/// The name the context parameter binds (`ctx`, `mut ctx`, `_ctx`), when it is one.
pub(crate) fn context_name(sig: &Signature) -> Option<Ident> {
    let first = sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Typed(p) => Some(p),
        FnArg::Receiver(_) => None,
    })?;
    match &*first.pat {
        Pat::Ident(p) if p.subpat.is_none() && is_context(&first.ty) => Some(p.ident.clone()),
        _ => None,
    }
}

/// The function checkpoint arguments go through: `__hb_activity_f::<T, ..>::__hb_checkpoint`.
pub(crate) fn check_path(sig: &Signature) -> TokenStream {
    let marker = marker_name(&sig.ident);
    let params: Vec<&Ident> = sig.generics.type_params().map(|p| &p.ident).collect();
    if params.is_empty() {
        quote!(#marker::__hb_checkpoint)
    } else {
        quote!(#marker::<#(#params),*>::__hb_checkpoint)
    }
}

/// A parameter after the context with neither `#[state]` nor `#[checkpoint]`: the input, or
/// one that should have been marked.
#[derive(Debug)]
pub(crate) struct Unmarked {
    /// The name it binds, when its pattern is a name.
    name: Option<Ident>,
    /// As written, for messages: `p: Progress`.
    shown: String,
}

/// The parameters after the context with neither marker.
pub(crate) fn unmarked_params(sig: &Signature) -> Vec<Unmarked> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(p) => Some(p),
            FnArg::Receiver(_) => None,
        })
        .skip(1)
        .filter(|p| {
            !p.attrs
                .iter()
                .any(|a| a.path().is_ident("state") || a.path().is_ident("checkpoint"))
        })
        .map(|p| {
            let ty = &p.ty;
            match &*p.pat {
                Pat::Ident(ident) => Unmarked {
                    name: Some(ident.ident.clone()),
                    shown: tidy(&format!("{}: {}", ident.ident, quote!(#ty))),
                },
                pat => Unmarked {
                    name: None,
                    shown: tidy(&quote!(#pat: #ty).to_string()),
                },
            }
        })
        .collect()
}

/// The unmarked parameter `call` checkpoints, if it passes one.
fn checkpointed<'a>(unmarked: &'a [Unmarked], call: &Call) -> Option<&'a Unmarked> {
    unmarked
        .iter()
        .find(|u| u.name.is_some() && u.name == call.arg)
}

/// For an activity without `#[checkpoint]`: `if `p: Progress` is its checkpoint`, naming the
/// parameter the body checkpoints, else every candidate.
pub(crate) fn which_to_mark(unmarked: &[Unmarked], calls: &[Call]) -> String {
    if let Some(u) = calls.iter().find_map(|call| checkpointed(unmarked, call)) {
        return format!("if `{}` is its checkpoint", u.shown);
    }
    match unmarked {
        [a, b] => format!("if `{}` or `{}` is its checkpoint", a.shown, b.shown),
        all => format!(
            "if one of {} is its checkpoint",
            all.iter()
                .map(|u| format!("`{}`", u.shown))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The error for `call` in an activity without `#[checkpoint]`, whose checkpoint type is `()`.
pub(crate) fn unmarked_call(call: &Call, unmarked: &[Unmarked]) -> String {
    let fix = match checkpointed(unmarked, call) {
        Some(u) => format!(
            "if `{}` is its checkpoint, mark it `#[checkpoint]`",
            u.shown
        ),
        None => "mark the parameter that holds its progress `#[checkpoint]` (e.g. \
                 `#[checkpoint] p: Progress`)"
            .to_owned(),
    };
    format!(
        "this activity has no `#[checkpoint]` parameter, so its checkpoint type is `()` and \
         `{}.checkpoint(..)` fails at run time (CheckpointError::WrongType); {fix}",
        call.receiver
    )
}

/// Tokens as a person writes them: `Vec<u64>` rather than `Vec < u64 >`.
fn tidy(text: &str) -> String {
    let mut out = text.to_owned();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" ;", ";"),
        (" :", ":"),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// The variable `expr` names (`p`, `&p`, `&mut p`, `(p)`).
fn variable(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
        Expr::Reference(r) => variable(&r.expr),
        Expr::Paren(p) => variable(&p.expr),
        Expr::Group(g) => variable(&g.expr),
        _ => None,
    }
}

/// `pat` without a type ascription.
fn strip_type(pat: &Pat) -> &Pat {
    match pat {
        Pat::Type(t) => strip_type(&t.pat),
        Pat::Paren(p) => strip_type(&p.pat),
        other => other,
    }
}

/// Whether `pat` is `name: ActivityContext` or `name: &ActivityContext`.
fn typed_context(pat: &Pat) -> bool {
    match pat {
        Pat::Type(t) => match &*t.ty {
            syn::Type::Reference(r) => is_context(&r.elem),
            ty => is_context(ty),
        },
        _ => false,
    }
}

/// Every name `pat` binds (and any identifier pattern, which may be a constant: treating it as
/// a binding only stops a rewrite).
fn bound_names(pat: &Pat, names: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            names.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                bound_names(sub, names);
            }
        }
        Pat::Or(p) => p.cases.iter().for_each(|p| bound_names(p, names)),
        Pat::Paren(p) => bound_names(&p.pat, names),
        Pat::Reference(p) => bound_names(&p.pat, names),
        Pat::Slice(p) => p.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| bound_names(&f.pat, names)),
        Pat::Tuple(p) => p.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::Type(p) => bound_names(&p.pat, names),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
