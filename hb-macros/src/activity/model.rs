//! What the `#[activity]` function says: its parameters' roles, its input, checkpoint and output
//! types, and where its attributes go. Every rule about the signature is checked here.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote};
use syn::ext::IdentExt;
use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Block, FnArg, GenericArgument, GenericParam, Generics, Ident, ItemFn, PatType,
    PathArguments, ReturnType, Signature, Type, TypeImplTrait, TypeReference, Visibility,
};

use super::body;
use crate::ctxt::Ctxt;

/// What a parameter is to the activity, in the order written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `ctx: ActivityContext`, always first.
    Context,
    /// The n-th `#[state]` parameter.
    State(usize),
    /// The `#[checkpoint]` parameter.
    Checkpoint,
    /// The input parameter.
    Input,
    /// A parameter that breaks a rule (the error is recorded); only the fallback sees it.
    Invalid,
}

/// The user's attributes, sorted by the item they belong on.
#[derive(Debug, Default)]
pub(crate) struct RoutedAttrs {
    /// `#[cfg(..)]`: on every generated item, so the activity comes and goes as a whole.
    pub(crate) cfg: Vec<Attribute>,
    /// Docs, `#[deprecated]`, `#[must_use]`, `#[cfg_attr]`: on the function users call.
    pub(crate) public: Vec<Attribute>,
    /// `#[allow]` and friends: on the function users call and on the body.
    pub(crate) lints: Vec<Attribute>,
    /// Anything else (`#[tracing::instrument]`, `#[inline]`): on the body, which is the code.
    pub(crate) body: Vec<Attribute>,
    /// Whether the user wrote docs.
    pub(crate) has_docs: bool,
}

/// `Result<Ok, Err>` as written.
#[derive(Debug, Clone)]
pub(crate) struct ReturnTypes {
    pub(crate) ok: Type,
    /// `None` for a bare one-argument `Result<Ok>` alias: inferred.
    pub(crate) err: Option<Type>,
}

/// The analysed function.
#[derive(Debug)]
pub(crate) struct ActivityFn {
    pub(crate) attrs: RoutedAttrs,
    pub(crate) vis: Visibility,
    /// The signature as written, with `#[state]`/`#[checkpoint]` removed from the parameters.
    pub(crate) sig: Signature,
    pub(crate) block: Box<Block>,
    /// One per parameter of `sig`.
    pub(crate) roles: Vec<Role>,
    pub(crate) input: Option<Type>,
    pub(crate) checkpoint: Option<Type>,
    pub(crate) states: Vec<Type>,
    pub(crate) ret: Option<ReturnTypes>,
    /// The function takes `self`: it sits in an `impl` block, where only the function itself
    /// may be emitted again.
    pub(crate) has_receiver: bool,
    /// The signature broke a rule; the expansion falls back to a shell.
    pub(crate) has_errors: bool,
    /// Whether `block` calls `ctx.checkpoint(..)` (those calls now check their argument
    /// through the marker's `__hb_checkpoint`, which the expansion must emit).
    pub(crate) checkpoints: bool,
}

impl ActivityFn {
    pub(crate) fn ident(&self) -> &Ident {
        &self.sig.ident
    }

    /// The function as written, minus the parameter attributes only `#[activity]` understands.
    pub(crate) fn original(&self) -> ItemFn {
        let attrs = self.attrs.all();
        ItemFn {
            attrs,
            vis: self.vis.clone(),
            sig: self.sig.clone(),
            block: self.block.clone(),
        }
    }

    /// Analyses `func`, recording in `cx` every rule its signature breaks, and checks the
    /// `ctx.checkpoint(..)` calls of its body against its checkpoint parameter (see `body`).
    pub(crate) fn from_fn(cx: &Ctxt, func: ItemFn) -> ActivityFn {
        let mut check = Check {
            cx,
            failed: false,
            input_hint: String::new(),
        };
        let ItemFn {
            attrs,
            vis,
            mut sig,
            mut block,
        } = func;
        let attrs = RoutedAttrs::route(attrs);
        check.qualifiers(&sig);
        check.generics(&sig.generics);

        // The body first: which parameter it checkpoints says what a missing `#[checkpoint]`
        // is, below. A method is re-emitted as written, so its body is left alone.
        let calls = match (body::context_name(&sig), sig.receiver()) {
            (Some(ctx), None) => body::checkpoint_calls(&mut block, &ctx, &body::check_path(&sig)),
            _ => Vec::new(),
        };
        let unmarked = body::unmarked_params(&sig);
        let marked = sig.inputs.iter().any(|arg| {
            matches!(arg, FnArg::Typed(p) if p.attrs.iter().any(|a| a.path().is_ident("checkpoint")))
        });
        if !marked {
            check.input_hint = body::which_to_mark(&unmarked, &calls);
        }

        let mut roles = Vec::new();
        let (mut input, mut checkpoint, mut states) = (None, None, Vec::new());
        let mut has_receiver = false;
        let param_count = sig.inputs.len();
        let mut typed_index = 0;
        for arg in sig.inputs.iter_mut() {
            let pat_type = match arg {
                FnArg::Receiver(receiver) => {
                    has_receiver = true;
                    check.error(
                        &*receiver,
                        "#[activity] goes on a free async fn, not a method; reach shared \
                         resources (a pool, a client) with #[state] parameters",
                    );
                    roles.push(Role::Invalid);
                    continue;
                }
                FnArg::Typed(pat_type) => pat_type,
            };
            let index = typed_index;
            typed_index += 1;
            let marker = check.take_marker(pat_type);
            check.owned_type(&pat_type.ty);
            let is_ctx = is_context(&pat_type.ty);
            let role = if index == 0 {
                if is_ctx && marker.is_none() {
                    Role::Context
                } else {
                    let hint = if is_context_ref(&pat_type.ty) {
                        " (by value, not a reference)"
                    } else {
                        ""
                    };
                    check.error(
                        &*pat_type,
                        format!("the first parameter must be `ctx: ActivityContext`{hint}"),
                    );
                    if is_context_ref(&pat_type.ty) {
                        Role::Invalid
                    } else {
                        check.classify(pat_type, marker, &mut input, &mut checkpoint, &mut states)
                    }
                }
            } else if is_ctx && marker.is_none() {
                check.error(
                    &*pat_type,
                    "the context is the first parameter, and there is only one",
                );
                Role::Invalid
            } else {
                check.classify(pat_type, marker, &mut input, &mut checkpoint, &mut states)
            };
            roles.push(role);
        }
        if param_count == 0 {
            check.error_at(
                sig.paren_token.span.join(),
                "the first parameter must be `ctx: ActivityContext`",
            );
        }
        let ret = check.return_type(&sig);
        // Without `#[checkpoint]`, the checkpoint type is `()`: a call fails at run time. (With
        // two inputs, the error above already said to mark one.)
        if !marked && unmarked.len() < 2 {
            for call in &calls {
                check.error(&call.call, body::unmarked_call(call, &unmarked));
            }
        }
        ActivityFn {
            attrs,
            vis,
            sig,
            block,
            roles,
            input,
            checkpoint,
            states,
            ret,
            has_receiver,
            has_errors: check.failed,
            checkpoints: !calls.is_empty(),
        }
    }
}

/// `__hb_activity_<name>`: the marker type the expansion defines for the function `ident`.
pub(crate) fn marker_name(ident: &Ident) -> Ident {
    format_ident!("__hb_activity_{}", ident.unraw(), span = ident.span())
}

/// Which hb marker a parameter carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    State,
    Checkpoint,
}

/// Records errors and remembers that there were some.
struct Check<'a> {
    cx: &'a Ctxt,
    failed: bool,
    /// Without a `#[checkpoint]` parameter, which parameter may have meant to be one:
    /// `if `p: Progress` is its checkpoint`.
    input_hint: String,
}

impl Check<'_> {
    fn error<T: ToTokens, M: std::fmt::Display>(&mut self, tokens: T, message: M) {
        self.failed = true;
        self.cx.error_spanned_by(tokens, message);
    }

    fn error_at<M: std::fmt::Display>(&mut self, span: Span, message: M) {
        self.failed = true;
        self.cx.error_at(span, message);
    }

    fn qualifiers(&mut self, sig: &Signature) {
        if let Some(constness) = &sig.constness {
            self.error(constness, "an activity cannot be a `const fn`");
        }
        if sig.asyncness.is_none() {
            self.error(
                sig.fn_token,
                "#[activity] goes on an `async fn`; write `async fn` here",
            );
        }
        if let Some(unsafety) = &sig.unsafety {
            self.error(unsafety, "an activity cannot be an `unsafe fn`");
        }
        if let Some(abi) = &sig.abi {
            self.error(abi, "an activity cannot have an `extern` ABI");
        }
        if let Some(variadic) = &sig.variadic {
            self.error(variadic, "an activity cannot be variadic");
        }
    }

    fn generics(&mut self, generics: &Generics) {
        for param in &generics.params {
            match param {
                GenericParam::Type(_) => {}
                GenericParam::Lifetime(lt) => self.error(
                    lt,
                    "an activity cannot have lifetime parameters: its input, checkpoint and \
                     output are decoded from payloads, so they own their data ('static)",
                ),
                GenericParam::Const(c) => self.error(
                    c,
                    "an activity cannot have const parameters; take the value in the input or \
                     use a type parameter",
                ),
            }
        }
    }

    /// Removes `#[state]`/`#[checkpoint]` from the parameter and says which one it carried
    /// (with the attribute, for spans).
    fn take_marker(&mut self, pat_type: &mut PatType) -> Option<(Marker, Attribute)> {
        let mut marker: Option<(Marker, Attribute)> = None;
        let mut kept = Vec::with_capacity(pat_type.attrs.len());
        for attr in std::mem::take(&mut pat_type.attrs) {
            let this = if attr.path().is_ident("state") {
                Marker::State
            } else if attr.path().is_ident("checkpoint") {
                Marker::Checkpoint
            } else {
                kept.push(attr);
                continue;
            };
            let name = if this == Marker::State {
                "state"
            } else {
                "checkpoint"
            };
            if attr.meta.require_path_only().is_err() {
                self.error(&attr, format!("`#[{name}]` takes no arguments"));
            }
            match &marker {
                None => marker = Some((this, attr)),
                Some((prev, _)) if *prev == this => {
                    self.error(&attr, format!("duplicate `#[{name}]`"));
                }
                Some(_) => self.error(
                    &attr,
                    "a parameter is either `#[state]` or `#[checkpoint]`, not both",
                ),
            }
        }
        pat_type.attrs = kept;
        marker
    }

    /// Records the role of a parameter after the context.
    fn classify(
        &mut self,
        pat_type: &PatType,
        marker: Option<(Marker, Attribute)>,
        input: &mut Option<Type>,
        checkpoint: &mut Option<Type>,
        states: &mut Vec<Type>,
    ) -> Role {
        let ty = (*pat_type.ty).clone();
        match marker {
            Some((Marker::State, _)) => {
                states.push(ty);
                Role::State(states.len() - 1)
            }
            Some((Marker::Checkpoint, attr)) if checkpoint.is_some() => {
                self.error(
                    quote!(#attr #pat_type),
                    "an activity has at most one `#[checkpoint]` parameter; put everything it \
                     saves in one checkpoint struct",
                );
                Role::Invalid
            }
            Some((Marker::Checkpoint, _)) => {
                *checkpoint = Some(ty);
                Role::Checkpoint
            }
            None if input.is_some() && !self.input_hint.is_empty() => {
                let hint = &self.input_hint;
                self.error(
                    pat_type,
                    format!(
                        "an activity takes one input; {hint}, mark it `#[checkpoint]` (several \
                         values go in one struct; worker resources are `#[state]`)"
                    ),
                );
                Role::Invalid
            }
            None if input.is_some() => {
                self.error(
                    pat_type,
                    "an activity takes one input; put several values in a struct (or mark \
                     worker resources `#[state]`)",
                );
                Role::Invalid
            }
            None => {
                *input = Some(ty);
                Role::Input
            }
        }
    }

    /// Parameters are decoded from payloads or cloned from worker state: no `impl Trait`, no
    /// borrowed data.
    fn owned_type(&mut self, ty: &Type) {
        let mut finder = Borrowed::default();
        finder.visit_type_mut(&mut ty.clone());
        for impl_trait in finder.impl_traits {
            self.error(
                impl_trait,
                "`impl Trait` is not allowed in an activity's parameters: the type must be named \
                 to decode it; use a concrete type or a type parameter",
            );
        }
        for reference in finder.references {
            self.error(
                reference,
                "activity parameters own their data (they are decoded from payloads or cloned \
                 from worker state); use an owned type such as `String` or `Vec<T>`, or an \
                 `Arc<T>` #[state]",
            );
        }
    }

    fn return_type(&mut self, sig: &Signature) -> Option<ReturnTypes> {
        const EXPECTED: &str = "an activity returns `Result<Output, ActivityError>` (any error \
                                type that converts into `ActivityError` works too)";
        let ty = match &sig.output {
            ReturnType::Type(_, ty) => ty,
            ReturnType::Default => {
                // Span the signature up to its closing parenthesis, where `-> ..` goes.
                let mut parens = Group::new(Delimiter::Parenthesis, TokenStream::new());
                parens.set_span(sig.paren_token.span.join());
                let (fn_token, ident) = (&sig.fn_token, &sig.ident);
                let tokens: TokenStream = quote!(#fn_token #ident)
                    .into_iter()
                    .chain(Some(TokenTree::Group(parens)))
                    .collect();
                self.error(tokens, EXPECTED);
                return None;
            }
        };
        let Some((ok, err)) = result_args(ty) else {
            self.error(ty, EXPECTED);
            return None;
        };
        let mut finder = Borrowed::default();
        finder.visit_type_mut(&mut ty.clone());
        for impl_trait in &finder.impl_traits {
            self.error(
                impl_trait,
                "`impl Trait` is not allowed in an activity's return type: the output type must \
                 be named to encode it",
            );
        }
        if !finder.impl_traits.is_empty() {
            return None;
        }
        Some(ReturnTypes { ok, err })
    }
}

/// Whether `ty` is free of `impl Trait` and borrowed data, so a shell may name it.
pub(crate) fn is_owned(ty: &Type) -> bool {
    let mut finder = Borrowed::default();
    finder.visit_type_mut(&mut ty.clone());
    finder.impl_traits.is_empty() && finder.references.is_empty()
}

/// `Result<O, E>` (any path ending in `Result` with two type arguments), or a one-argument
/// alias: `anyhow::Result<O>` and `io::Result<O>` are `Result<O, anyhow::Error>` and
/// `Result<O, io::Error>` (the module's `Error`, by convention); a bare `Result<O>` leaves the
/// error type to inference.
fn result_args(ty: &Type) -> Option<(Type, Option<Type>)> {
    let Type::Path(path) = ty else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().map(|arg| match arg {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(Some(ok)), Some(Some(err)), None) => Some((ok, Some(err))),
        (Some(Some(ok)), None, None) if path.path.segments.len() == 1 => Some((ok, None)),
        (Some(Some(ok)), None, None) => {
            // `a::b::Result<O>` → `a::b::Error`, spanned like the path.
            let mut error = path.clone();
            if let Some(last) = error.path.segments.last_mut() {
                last.ident = Ident::new("Error", last.ident.span());
                last.arguments = PathArguments::None;
            }
            Some((ok, Some(Type::Path(error))))
        }
        _ => None,
    }
}

/// `ActivityContext` or `some::path::ActivityContext`.
pub(crate) fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "ActivityContext" && s.arguments.is_empty()),
        Type::Group(g) => is_context(&g.elem),
        Type::Paren(p) => is_context(&p.elem),
        _ => false,
    }
}

fn is_context_ref(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r) if is_context(&r.elem))
}

/// Finds `impl Trait` and non-`'static` references inside a type.
#[derive(Default)]
struct Borrowed {
    impl_traits: Vec<TypeImplTrait>,
    references: Vec<TypeReference>,
}

impl VisitMut for Borrowed {
    fn visit_type_impl_trait_mut(&mut self, node: &mut TypeImplTrait) {
        self.impl_traits.push(node.clone());
    }

    fn visit_type_reference_mut(&mut self, node: &mut TypeReference) {
        let is_static = node.lifetime.as_ref().is_some_and(|l| l.ident == "static");
        if !is_static && !is_context(&node.elem) {
            self.references.push(node.clone());
            return;
        }
        visit_mut::visit_type_reference_mut(self, node);
    }
}

impl RoutedAttrs {
    fn route(attrs: Vec<Attribute>) -> Self {
        let mut routed = RoutedAttrs::default();
        for attr in attrs {
            let path = attr.path();
            if path.is_ident("cfg") {
                routed.cfg.push(attr);
            } else if path.is_ident("doc") {
                routed.has_docs = true;
                routed.public.push(attr);
            } else if ["deprecated", "must_use", "cfg_attr"]
                .iter()
                .any(|name| path.is_ident(name))
            {
                routed.public.push(attr);
            } else if ["allow", "warn", "deny", "forbid", "expect"]
                .iter()
                .any(|name| path.is_ident(name))
            {
                routed.lints.push(attr);
            } else {
                routed.body.push(attr);
            }
        }
        routed
    }

    /// Every attribute, for re-emitting the function unchanged.
    fn all(&self) -> Vec<Attribute> {
        let mut all = self.cfg.clone();
        all.extend(self.public.iter().cloned());
        all.extend(self.lints.iter().cloned());
        all.extend(self.body.iter().cloned());
        all
    }
}

#[cfg(test)]
mod tests;
