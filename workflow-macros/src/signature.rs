//! Checks the signature of a `#[workflow]` or `#[activity]` function and extracts what the
//! expansion needs: the context parameter, the input, and the `Ok` / `Err` types.

use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

/// Which macro is checking: changes the expected context type and the wording.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Workflow,
    Activity,
}

impl Kind {
    fn context(self) -> &'static str {
        match self {
            Kind::Workflow => "WorkflowContext",
            Kind::Activity => "ActivityContext",
        }
    }
    fn attr(self) -> &'static str {
        match self {
            Kind::Workflow => "#[workflow]",
            Kind::Activity => "#[activity]",
        }
    }
    fn example(self) -> &'static str {
        match self {
            Kind::Workflow => {
                "async fn my_workflow(ctx: WorkflowContext, input: Input) -> Result<Output, WorkflowError>"
            }
            Kind::Activity => {
                "async fn my_activity(ctx: ActivityContext, input: Input) -> Result<Output, ActivityError>"
            }
        }
    }
}

/// The checked signature.
pub struct Signature {
    /// The context parameter's pattern (an identifier, or `_`).
    pub ctx: Pat,
    /// The input parameter, if any.
    pub input: Option<(Pat, Type)>,
    /// `T` of `Result<T, E>`.
    pub ok: Type,
    /// `E` of `Result<T, E>`.
    pub err: Type,
}

/// Checks `f` and reports every problem at once. Returns the signature as far as it could be
/// read even when it has errors (missing parts are filled in), so that the body can still be
/// checked and its errors reported in the same build.
pub fn check(f: &ItemFn, kind: Kind) -> (Signature, Option<syn::Error>) {
    let mut errors: Vec<syn::Error> = Vec::new();
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span(),
            format!(
                "{} functions must be `async`: `{}`",
                kind.attr(),
                kind.example()
            ),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new(
            sig.generics.span(),
            format!(
                "{} functions cannot be generic: their state and input are stored and must have \
                 one concrete type; use concrete types",
                kind.attr()
            ),
        ));
    }
    if let Some(c) = &sig.constness {
        errors.push(syn::Error::new(
            c.span(),
            format!("{} functions cannot be `const`", kind.attr()),
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new(
            v.span(),
            "variadic parameters are not supported",
        ));
    }
    let mut params = sig.inputs.iter();
    let ctx = match params.next() {
        Some(FnArg::Typed(pt)) if is_context_type(&pt.ty, kind) => Some((*pt.pat).clone()),
        Some(FnArg::Receiver(r)) => {
            errors.push(syn::Error::new(
                r.span(),
                format!(
                    "{} functions cannot take `self`; make it a free function: `{}`",
                    kind.attr(),
                    kind.example()
                ),
            ));
            None
        }
        Some(other) => {
            errors.push(syn::Error::new(
                other.span(),
                format!(
                    "the first parameter must be the context, `ctx: {}`: `{}`",
                    kind.context(),
                    kind.example()
                ),
            ));
            None
        }
        None => {
            errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                format!(
                    "missing the context parameter `ctx: {}`: `{}`",
                    kind.context(),
                    kind.example()
                ),
            ));
            None
        }
    };
    let input = match params.next() {
        Some(FnArg::Typed(pt)) => {
            if is_context_type(&pt.ty, Kind::Workflow) || is_context_type(&pt.ty, Kind::Activity) {
                errors.push(syn::Error::new(
                    pt.ty.span(),
                    "the context must be the first parameter and appear only once",
                ));
            }
            Some(((*pt.pat).clone(), (*pt.ty).clone()))
        }
        Some(FnArg::Receiver(r)) => {
            errors.push(syn::Error::new(r.span(), "`self` is not supported here"));
            None
        }
        None => None,
    };
    if let Some(extra) = params.next() {
        errors.push(syn::Error::new(
            extra.span(),
            "a workflow or activity takes one input after its context; \
             put several values in a struct or a tuple",
        ));
    }
    let result = match &sig.output {
        ReturnType::Type(_, ty) if kind == Kind::Activity => {
            let r = result_types(ty);
            if let Some((_, err)) = &r {
                if !is_named(err, "ActivityError") {
                    errors.push(syn::Error::new(
                        err.span(),
                        "an activity returns `Result<Output, ActivityError>`; inside it, `?` \
                         converts any `std::error::Error` into an `ActivityError`",
                    ));
                }
            }
            r
        }
        ReturnType::Type(_, ty) => result_types(ty),
        ReturnType::Default => None,
    };
    let (ok, err) = match result {
        Some(r) => r,
        None => {
            let span = match &sig.output {
                ReturnType::Type(_, ty) => ty.span(),
                ReturnType::Default => sig.ident.span(),
            };
            errors.push(syn::Error::new(
                span,
                format!(
                    "{} functions must return `Result<Output, Error>` with both types written out: `{}`",
                    kind.attr(),
                    kind.example()
                ),
            ));
            (syn::parse_quote!(()), syn::parse_quote!(()))
        }
    };
    let error = errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    });
    let sig = Signature {
        // Without a context parameter, the body most likely still calls it `ctx`.
        ctx: ctx.unwrap_or_else(|| syn::parse_quote!(ctx)),
        input,
        ok,
        err,
    };
    (sig, error)
}

/// Whether the function takes `self` (it then sits in an `impl`, where no struct can be
/// declared).
pub fn has_receiver(f: &ItemFn) -> bool {
    f.sig.inputs.iter().any(|a| matches!(a, FnArg::Receiver(_)))
}

fn is_named(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == name))
}

fn is_context_type(ty: &Type, kind: Kind) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == kind.context()),
        _ => false,
    }
}

fn result_types(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let ok = types.next()?;
    let err = types.next()?;
    if types.next().is_some() {
        return None;
    }
    Some((ok, err))
}
