//! `#[workflow]`: compiles an `async fn` into an explicit, serializable state machine.
//!
//! Stages, one module each:
//! 1. `signature`: check the signature, find the context, the input, `Ok` and `Err` types.
//! 2. `ir` (lowering): the body becomes a structured IR where every await is a statement.
//! 3. `live` (analysis): for each suspension point, the frames around it and the bindings
//!    live there; those become the fields of its variant.
//! 4. `codegen`: the enum, the trampoline `resume`, the graph, the `Workflow` impl.
//!
//! ```text
//! // Input:
//! #[workflow]
//! async fn transfer(ctx: WorkflowContext, t: Transfer) -> Result<Receipt, WorkflowError> {
//!     let hold = ctx.activity(reserve, t.amount).await?;
//!     ctx.sleep(MINUTE).await?;
//!     let r = ctx.activity(capture, hold).await?;
//!     Ok(r)
//! }
//! // Output:
//! pub struct transfer;                                  // the handle: Workflow impl
//! #[derive(Serialize, Deserialize)]
//! pub enum TransferState {
//!     Start { t: Transfer },
//!     Reserve { op_id: OpId },                          // `t` is dead after the first await
//!     Sleep { op_id: OpId, hold: <reserve as Activity>::Output },
//!     Capture { op_id: OpId },
//!     Finished,
//! }
//! impl WorkflowMachine for TransferState { fn resume(..) { /* trampoline */ } }
//! ```

mod codegen;
mod ir;
mod joins;
mod live;
mod names;

use crate::args::Args;
use crate::signature::{self, Kind};
use names::{pat_bindings, BindKind, Binding};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::ItemFn;

pub fn expand(args: Args, f: ItemFn) -> TokenStream {
    let name = &f.sig.ident;
    let vis = &f.vis;
    let docs: Vec<_> = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let handle = if signature::has_receiver(&f) {
        TokenStream::new() // inside an `impl`: only the errors
    } else {
        quote! {
            #(#docs)*
            #[allow(non_camel_case_types)]
            #[derive(Clone, Copy, Debug, Default)]
            #vis struct #name;
        }
    };
    match try_expand(args, &f) {
        Ok(tokens) => quote!(#handle #tokens),
        Err(e) => {
            let err = e.to_compile_error();
            // Beside errors in the body, a stand-in implementation keeps the rest of the crate
            // compiling, so that one mistake does not turn every use of the workflow into
            // another error. It is only ever built together with the errors. With a broken
            // signature there is no sensible stand-in.
            let fallback = match signature::check(&f, Kind::Workflow) {
                (sig, None) => fallback(&f, &sig),
                (_, Some(_)) => TokenStream::new(),
            };
            quote!(#handle #fallback #err)
        }
    }
}

fn fallback(f: &ItemFn, sig: &signature::Signature) -> TokenStream {
    let name = &f.sig.ident;
    let state_ty = format_ident!("{}State", ir::camel(&name.to_string()));
    let (ok, err) = (&sig.ok, &sig.err);
    let input_ty = match &sig.input {
        Some((_, ty)) => quote!(#ty),
        None => quote!(()),
    };
    let registered = name.to_string();
    quote! {
        #[derive(::workflow_core::__private::serde::Serialize, ::workflow_core::__private::serde::Deserialize)]
        #[serde(crate = "::workflow_core::__private::serde")]
        #[doc(hidden)]
        pub enum #state_ty { Finished }
        impl ::workflow_core::WorkflowMachine for #state_ty {
            type Output = ::core::result::Result<#ok, #err>;
            fn resume(&mut self, _: &::workflow_core::__private::StepContext) -> ::workflow_core::Step<Self::Output> {
                ::workflow_core::Step::Pending
            }
            fn state_name(&self) -> &'static str { "Finished" }
        }
        impl ::workflow_core::Workflow for #name {
            const NAME: &'static str = #registered;
            const SCHEMA: u64 = 0;
            type Input = #input_ty;
            type Output = #ok;
            type Error = #err;
            type State = #state_ty;
            fn start(_: Self::Input) -> Self::State { #state_ty::Finished }
            fn graph() -> ::workflow_core::StateGraph {
                ::workflow_core::StateGraph {
                    workflow: ::std::string::String::from(#registered),
                    states: ::std::vec::Vec::new(),
                    transitions: ::std::vec::Vec::new(),
                }
            }
        }
    }
}

fn try_expand(args: Args, f: &ItemFn) -> syn::Result<TokenStream> {
    // The body is checked even when the signature is wrong, so that all errors show at once.
    let (sig, mut sig_errors) = signature::check(f, Kind::Workflow);
    // `join!` and `select!` anywhere in the body, handlers and branches included.
    for e in joins::check(&f.block) {
        combine(&mut sig_errors, e);
    }
    let name = &f.sig.ident;
    let vis = &f.vis;
    let registered = args
        .name
        .map(|n| n.value())
        .unwrap_or_else(|| name.to_string());
    let state_ty = format_ident!("{}State", ir::camel(&name.to_string()));
    let (ok, err) = (&sig.ok, &sig.err);

    let root_ctx = match &sig.ctx {
        syn::Pat::Ident(p) => p.ident.clone(),
        _ => syn::Ident::new("__wf_ctx", Span::mixed_site()),
    };
    // The input: one field of the start state.
    let (input_ty, start_fields) = match &sig.input {
        Some((pat, ty)) => {
            let field = match pat {
                syn::Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
                _ => format_ident!("input", span = ty.span()),
            };
            (quote!(#ty), vec![(field, pat.clone(), ty.clone())])
        }
        None => (quote!(()), Vec::new()),
    };
    let machine = compile_machine(
        MachineSpec {
            state_ty: state_ty.clone(),
            vis: vis.clone(),
            registered: registered.clone(),
            root_ctx,
            start_fields: start_fields.clone(),
            body: &f.block,
            ok: ok.clone(),
            err: err.clone(),
            branch: false,
            started_block: false,
            doc: format!(
                " The state machine compiled from workflow `{name}`: one variant per suspension point."
            ),
        },
        sig_errors,
    )?;
    let Machine {
        tokens,
        schema,
        graph,
        names,
        compensable,
        started,
    } = machine;
    let cx = syn::Ident::new("__wf_cx", Span::mixed_site());
    let input = syn::Ident::new("__wf_input", Span::mixed_site());
    let drive = syn::Ident::new("__wf_drive", Span::mixed_site());
    let start_value = match start_fields.first() {
        Some((f, _, _)) => quote!(#state_ty::Start { #f: #input }),
        None => quote!({ let () = #input; #state_ty::Start {} }),
    };
    let driven = quote!(::workflow_core::__private::into_step(Self::#drive(
        self,
        #cx,
        ::workflow_core::__private::ScopeId::ROOT,
    )));
    let resume_body = if compensable {
        // R12: once the code returned, compensate (failed or cancelled) or confirm
        // (completed) the compensable blocks that completed, then close.
        let handlers = syn::Ident::new("__wf_handlers", Span::mixed_site());
        quote! {
            let returned = if ::workflow_core::__private::is_closing(#cx) {
                ::core::option::Option::None
            } else {
                match #driven {
                    ::workflow_core::Step::Pending => return ::workflow_core::Step::Pending,
                    ::workflow_core::Step::Ready(result) => ::core::option::Option::Some(result),
                }
            };
            ::workflow_core::__private::close_with_handlers(#cx, returned, Self::#handlers)
        }
    } else {
        driven
    };
    let resume_body = if started {
        // R3.7: the blocks of started scopes and the workflow's own code run in turns.
        let driver = syn::Ident::new("__wf_started", Span::mixed_site());
        quote! {
            ::workflow_core::__private::resume_with_started(#cx, Self::#driver, || { #resume_body })
        }
    } else {
        resume_body
    };
    Ok(quote! {
        #tokens

        impl ::workflow_core::WorkflowMachine for #state_ty {
            type Output = ::core::result::Result<#ok, #err>;
            fn resume(
                &mut self,
                #cx: &::workflow_core::__private::StepContext,
            ) -> ::workflow_core::Step<Self::Output> {
                #resume_body
            }
            fn state_name(&self) -> &'static str {
                match self {
                    #(#names,)*
                    Self::Finished => "Finished",
                }
            }
        }

        impl ::workflow_core::Workflow for #name {
            const NAME: &'static str = #registered;
            const SCHEMA: u64 = ::workflow_core::__private::fingerprint(#schema);
            type Input = #input_ty;
            type Output = #ok;
            type Error = #err;
            type State = #state_ty;
            fn start(#input: Self::Input) -> Self::State {
                #start_value
            }
            fn graph() -> ::workflow_core::StateGraph {
                #graph
            }
        }
    })
}

/// What to compile into a state machine: the workflow's body, or one parallel branch.
struct MachineSpec<'a> {
    state_ty: syn::Ident,
    vis: syn::Visibility,
    registered: String,
    root_ctx: syn::Ident,
    /// The start state's fields: the input (workflow) or the captured locals (branch).
    start_fields: Vec<(syn::Ident, syn::Pat, syn::Type)>,
    body: &'a syn::Block,
    ok: syn::Type,
    err: syn::Type,
    /// A parallel branch: errors leaving it count like errors leaving a scope.
    branch: bool,
    /// The block of a scope started with `.start()` (a branch that yields a value): it
    /// implements `StartedBlock` rather than `Branch`.
    started_block: bool,
    doc: String,
}

/// A compiled machine: the enum, its driver (and nested branch machines), its schema text,
/// its graph, and its state names.
struct Machine {
    tokens: TokenStream,
    schema: String,
    graph: TokenStream,
    names: Vec<TokenStream>,
    /// Whether it has compensable blocks (and so an associated `__wf_handlers` driver).
    compensable: bool,
    /// Whether it starts scopes with `.start()` (and so has a `__wf_started` driver).
    started: bool,
}

fn combine(errors: &mut Option<syn::Error>, e: syn::Error) {
    match errors {
        Some(all) => all.combine(e),
        None => *errors = Some(e),
    }
}

fn compile_machine(m: MachineSpec<'_>, mut errors: Option<syn::Error>) -> syn::Result<Machine> {
    let MachineSpec {
        state_ty,
        vis,
        registered,
        root_ctx,
        start_fields,
        body: source,
        ok,
        err,
        branch,
        started_block,
        doc,
    } = m;
    let mut params = vec![Binding {
        ident: root_ctx.clone(),
        mutable: false,
        kind: BindKind::Ambient,
    }];
    for (_, pat, ty) in &start_fields {
        pat_bindings(pat, Some(ty), &mut params);
    }
    let result_ty: syn::Type = syn::parse_quote!(::core::result::Result<#ok, #err>);
    let mut lowering = ir::Lowering::new(
        state_ty.to_string(),
        root_ctx.clone(),
        params.clone(),
        result_ty,
    );
    if branch {
        lowering = lowering.for_branch();
    }
    let mut body = lowering.lower_body(source);
    body.pre = params;
    lowering.name_states();
    if let Some(e) = lowering.errors.take() {
        combine(&mut errors, e);
    }

    // Each parallel branch is a machine of its own, compiled the same way.
    let mut nested = Vec::new();
    let mut branch_types: Vec<Vec<syn::Ident>> = Vec::new();
    let mut nested_schema = String::new();
    for (pi, spec) in lowering.parallels.iter().enumerate() {
        let mut types = Vec::new();
        for (bi, b) in spec.branches.iter().enumerate() {
            let ty = format_ident!("{}Parallel{}Branch{}", state_ty, pi, bi);
            let fields = capture_fields(&b.captures);
            match compile_machine(
                MachineSpec {
                    state_ty: ty.clone(),
                    vis: vis.clone(),
                    registered: format!("{registered} (parallel branch {bi})"),
                    root_ctx: spec.ctx.clone(),
                    start_fields: fields,
                    body: &b.body,
                    ok: syn::parse_quote!(()),
                    err: syn::parse_quote!(::workflow_core::WorkflowError),
                    branch: true,
                    started_block: false,
                    doc: format!(" Branch {bi} of a parallel block of `{registered}`, as a machine of its own."),
                },
                None,
            ) {
                Ok(machine) => {
                    nested_schema.push_str(&format!("|{ty}[{}]", machine.schema));
                    nested.push(machine.tokens);
                }
                Err(e) => combine(&mut errors, e),
            }
            types.push(ty);
        }
        branch_types.push(types);
    }

    // Each compensable block's handlers too: machines kept until the workflow closes.
    let mut handler_types: Vec<(Option<syn::Ident>, Option<syn::Ident>)> = Vec::new();
    let mut dispatch = Vec::new();
    for (site, spec) in lowering.compensables.iter().enumerate() {
        let mut compile_handler = |b: &Option<ir::BranchSpec>, what: &str, confirm: bool| {
            let b = b.as_ref()?;
            let ty = format_ident!("{}{}{}", state_ty, what, site);
            let fields = capture_fields(&b.captures);
            match compile_machine(
                MachineSpec {
                    state_ty: ty.clone(),
                    vis: vis.clone(),
                    registered: format!("{registered} ({what} of compensable block #{site})"),
                    root_ctx: spec.ctx.clone(),
                    start_fields: fields,
                    body: &b.body,
                    ok: syn::parse_quote!(()),
                    err: syn::parse_quote!(::workflow_core::WorkflowError),
                    branch: true,
                    started_block: false,
                    doc: format!(
                        " The {what} handler of compensable block #{site} of `{registered}`."
                    ),
                },
                None,
            ) {
                Ok(machine) => {
                    nested_schema.push_str(&format!("|{ty}[{}]", machine.schema));
                    nested.push(machine.tokens);
                }
                Err(e) => combine(&mut errors, e),
            }
            let site = site as u32;
            dispatch.push(quote! {
                (#site, #confirm) => ::workflow_core::__private::drive_stored::<#ty>(state, cx, scope),
            });
            Some(ty)
        };
        let compensate = compile_handler(&spec.compensate, "Compensate", false);
        let confirm = compile_handler(&spec.confirm, "Confirm", true);
        handler_types.push((compensate, confirm));
    }

    // Each scope started with `.start()`: its block is a machine kept in the instance while
    // it runs (R3.7).
    let mut started_dispatch = Vec::new();
    for (site, spec) in lowering.started.iter().enumerate() {
        let ty = ir::Lowering::started_machine(&state_ty.to_string(), site);
        let fields = capture_fields(&spec.captures);
        match compile_machine(
            MachineSpec {
                state_ty: ty.clone(),
                vis: vis.clone(),
                registered: format!("{registered} (started scope #{site})"),
                root_ctx: spec.ctx.clone(),
                start_fields: fields,
                body: &spec.body,
                ok: spec.ok.clone(),
                err: syn::parse_quote!(::workflow_core::WorkflowError),
                branch: true,
                started_block: true,
                doc: format!(
                    " The block of the scope started with `.start()` #{site} of `{registered}`, as a machine of its own."
                ),
            },
            None,
        ) {
            Ok(machine) => {
                nested_schema.push_str(&format!("|{ty}[{}]", machine.schema));
                nested.push(machine.tokens);
            }
            Err(e) => combine(&mut errors, e),
        }
        let site = site as u32;
        started_dispatch.push(quote! {
            #site => ::workflow_core::__private::drive_stored_block::<#ty>(state, cx, scope),
        });
    }

    let mut gen = codegen::Codegen::new(
        &lowering.awaits,
        &lowering.parallels,
        &branch_types,
        &lowering.compensables,
        &handler_types,
        registered.clone(),
    );
    gen.compute_fields(&body);
    let start_arm = gen.start_arm(&body, &start_fields);
    let resume_arms = gen.resume_arms(&body);
    if let Some(e) = gen.errors.take() {
        combine(&mut errors, e);
    }
    if let Some(e) = errors {
        return Err(e);
    }

    // The enum.
    let start_variant_fields: Vec<TokenStream> = start_fields
        .iter()
        .map(|(f, _, ty)| quote!(#f: #ty))
        .collect();
    let field_doc = if branch {
        " A local of the enclosing workflow this branch uses (its own copy)."
    } else {
        " The workflow's input."
    };
    let start_variant_decls: Vec<TokenStream> = start_fields
        .iter()
        .map(|(f, _, ty)| quote!(#[doc = #field_doc] #f: #ty))
        .collect();
    let start_doc = if start_fields.is_empty() {
        " Before the first step."
    } else if branch {
        " Before the first step; holds the branch's copies of the locals it uses."
    } else {
        " Before the first step; holds the input."
    };
    let mut variants = vec![quote!(
        #[doc = #start_doc]
        Start { #(#start_variant_decls),* }
    )];
    let mut schema = format!(
        "{registered}|{}|{}|Start{{{}}}",
        quote!(#ok),
        quote!(#err),
        quote!(#(#start_variant_fields),*)
    );
    let mut names = vec![quote!(Self::Start { .. } => "Start")];
    for (i, a) in lowering.awaits.iter().enumerate() {
        let v = &a.variant;
        let fields: Vec<TokenStream> = gen.fields[i]
            .iter()
            .map(|f| {
                let (n, t) = (&f.name, &f.ty);
                quote!(#n: #t)
            })
            .collect();
        let doc = format!(
            " Suspended at the {}{}.",
            a.desc,
            if a.in_handler {
                " inside a cancellation handler"
            } else {
                ""
            }
        );
        let field_decls = gen.fields[i].iter().map(|f| {
            let (n, t) = (&f.name, &f.ty);
            let ident = f.binding.ident.to_string();
            let doc = if ident.starts_with("__wf_exit") {
                " How the guarded code was being left, to finish leaving after the handler."
                    .to_string()
            } else if ident.starts_with("__wf_iter") {
                " The items of the `for` loop still to run, last first.".to_string()
            } else if ident.starts_with("__wf_aw") {
                " The result of an earlier await of the same expression.".to_string()
            } else {
                format!(" `{ident}`, still needed after this await.")
            };
            quote!(#[doc = #doc] #n: #t)
        });
        let op_fields = match &a.kind {
            ir::OpKind::Handlers(_) => quote!(),
            ir::OpKind::Parallel(pi) => {
                let branches = branch_types[*pi].iter().enumerate().map(|(bi, ty)| {
                    let f = format_ident!("branch_{}", bi);
                    quote!(#[doc = " A branch's own machine."] #f: #ty)
                });
                quote! {
                    #[doc = " The block's scopes and the branches' results so far."]
                    parallel: ::workflow_core::__private::ParallelRun,
                    #(#branches,)*
                }
            }
            _ => quote! {
                #[doc = " The operation awaited here."]
                op_id: ::workflow_core::__private::OpId,
            },
        };
        variants.push(quote!(
            #[doc = #doc]
            #v {
                #op_fields
                #(#field_decls),*
            }
        ));
        schema.push_str(&format!("|{v}{{{}}}", quote!(#op_fields #(#fields),*)));
        let vname = v.to_string();
        names.push(quote!(Self::#v { .. } => #vname));
    }
    schema.push_str(&nested_schema);
    // For every stored local, a check whose error names the local's state: it comes before
    // serde's own errors about the derive, and says which await keeps the value alive.
    let mut storable_checks = Vec::new();
    for (i, a) in lowering.awaits.iter().enumerate() {
        for f in &gen.fields[i] {
            let user_local = !f.binding.name().starts_with("__wf_");
            if !user_local || matches!(f.binding.kind, BindKind::Context) {
                continue;
            }
            let at = f.binding.ident.span();
            let ty = respan(f.ty.to_token_stream(), at);
            let state = syn::Ident::new(&a.variant.to_string(), at);
            storable_checks.push(quote_spanned! {at=>
                const _: () = {
                    #[allow(non_camel_case_types, dead_code)]
                    enum #state {}
                    #[allow(dead_code)]
                    fn check() {
                        ::workflow_core::__private::kept_across::<#ty, #state>();
                    }
                };
            });
        }
    }
    // Token spacing differs between compilers; the fingerprint must not.
    let schema: String = schema.chars().filter(|c| !c.is_whitespace()).collect();
    let graph = graph_tokens(&registered, &lowering.awaits, &gen, &start_fields);
    let drive = syn::Ident::new("__wf_drive", Span::mixed_site());
    let cx = syn::Ident::new("__wf_cx", Span::mixed_site());
    let scope = syn::Ident::new("__wf_scope", Span::mixed_site());
    let state = syn::Ident::new("__wf_state", Span::mixed_site());
    let tramp = syn::Lifetime::new("'__wf_tramp", Span::mixed_site());
    let started_impl = started_block.then(|| {
        quote! {
            impl ::workflow_core::__private::StartedBlock for #state_ty {
                fn drive(
                    &mut self,
                    #cx: &::workflow_core::__private::StepContext,
                    #scope: ::workflow_core::__private::ScopeId,
                ) -> ::core::option::Option<::core::result::Result<
                    ::workflow_core::__private::serde_json::Value,
                    ::workflow_core::WorkflowError,
                >> {
                    ::workflow_core::__private::started_step(Self::#drive(self, #cx, #scope))
                }
            }
        }
    });
    let branch_impl = (branch && !started_block).then(|| {
        quote! {
            impl ::workflow_core::__private::Branch for #state_ty {
                fn drive(
                    &mut self,
                    #cx: &::workflow_core::__private::StepContext,
                    #scope: ::workflow_core::__private::ScopeId,
                ) -> ::core::option::Option<::core::result::Result<(), ::workflow_core::WorkflowError>> {
                    ::workflow_core::__private::branch_step(Self::#drive(self, #cx, #scope))
                }
            }
        }
    });
    let tokens = quote! {
        #(#storable_checks)*
        #(#nested)*

        #[doc = #doc]
        #[derive(::workflow_core::__private::serde::Serialize, ::workflow_core::__private::serde::Deserialize)]
        #[serde(crate = "::workflow_core::__private::serde")]
        #[allow(clippy::large_enum_variant)]
        #vis enum #state_ty {
            #(#variants,)*
            /// Finished: the code returned.
            Finished,
        }

        impl #state_ty {
            #[allow(
                unreachable_code,
                unused_variables,
                unused_mut,
                unused_assignments,
                unused_braces,
                unused_labels,
                clippy::all
            )]
            fn #drive(
                #state: &mut Self,
                #cx: &::workflow_core::__private::StepContext,
                #scope: ::workflow_core::__private::ScopeId,
            ) -> ::core::result::Result<::workflow_core::__private::Flow<#ok>, #err> {
                let #root_ctx = ::workflow_core::__private::attach(#cx, #scope);
                #tramp: loop {
                    match ::core::mem::replace(#state, Self::Finished) {
                        #start_arm
                        #(#resume_arms)*
                        Self::Finished => {
                            return ::core::result::Result::Err(::core::convert::From::from(
                                ::workflow_core::__private::resumed_after_finish(#registered),
                            ));
                        }
                    }
                }
            }
        }

        #branch_impl
        #started_impl
    };
    let compensable = !dispatch.is_empty() || lowering.awaits_handlers;
    let handlers_fn = compensable.then(|| {
        let handlers = syn::Ident::new("__wf_handlers", Span::mixed_site());
        quote! {
            impl #state_ty {
                /// Runs the compensation or confirmation handler of a compensable block.
                fn #handlers(
                    site: u32,
                    confirm: bool,
                    state: &mut ::workflow_core::__private::serde_json::Value,
                    cx: &::workflow_core::__private::StepContext,
                    scope: ::workflow_core::__private::ScopeId,
                ) -> ::core::option::Option<::core::result::Result<(), ::workflow_core::WorkflowError>> {
                    match (site, confirm) {
                        #(#dispatch)*
                        _ => ::core::option::Option::Some(::core::result::Result::Err(
                            ::workflow_core::__private::resumed_after_finish("an unknown compensable block"),
                        )),
                    }
                }
            }
        }
    });
    let started = !started_dispatch.is_empty();
    let started_fn = started.then(|| {
        let driver = syn::Ident::new("__wf_started", Span::mixed_site());
        quote! {
            impl #state_ty {
                /// Runs the block of a scope started with `.start()`.
                fn #driver(
                    site: u32,
                    state: &mut ::workflow_core::__private::serde_json::Value,
                    cx: &::workflow_core::__private::StepContext,
                    scope: ::workflow_core::__private::ScopeId,
                ) -> ::core::option::Option<::core::result::Result<
                    ::workflow_core::__private::serde_json::Value,
                    ::workflow_core::WorkflowError,
                >> {
                    match site {
                        #(#started_dispatch)*
                        _ => ::core::option::Option::Some(::core::result::Result::Err(
                            ::workflow_core::__private::resumed_after_finish("an unknown started scope"),
                        )),
                    }
                }
            }
        }
    });
    let tokens = quote!(#tokens #handlers_fn #started_fn);
    Ok(Machine {
        tokens,
        schema,
        graph,
        names,
        compensable,
        started,
    })
}

fn graph_tokens(
    workflow: &str,
    awaits: &[ir::AwaitInfo],
    gen: &codegen::Codegen<'_>,
    start_fields: &[(syn::Ident, syn::Pat, syn::Type)],
) -> TokenStream {
    let state_name = |p: Option<usize>, end: &str| match p {
        Some(i) => awaits[i].variant.to_string(),
        None => end.to_string(),
    };
    let mut states = Vec::new();
    let start_names: Vec<String> = start_fields.iter().map(|(f, _, _)| f.to_string()).collect();
    states.push(quote!(::workflow_core::StateNode {
        name: ::std::string::String::from("Start"),
        kind: ::workflow_core::StateKind::Start,
        awaits: ::std::string::String::new(),
        fields: ::std::vec![#(::std::string::String::from(#start_names)),*],
    }));
    for (i, a) in awaits.iter().enumerate() {
        let name = a.variant.to_string();
        let desc = &a.desc;
        let kind = if a.in_handler {
            quote!(::workflow_core::StateKind::Handler)
        } else {
            quote!(::workflow_core::StateKind::Await)
        };
        let fields: Vec<String> = gen.fields[i].iter().map(|f| f.name.to_string()).collect();
        states.push(quote!(::workflow_core::StateNode {
            name: ::std::string::String::from(#name),
            kind: #kind,
            awaits: ::std::string::String::from(#desc),
            fields: ::std::vec![#(::std::string::String::from(#fields)),*],
        }));
    }
    states.push(quote!(::workflow_core::StateNode {
        name: ::std::string::String::from("Finished"),
        kind: ::workflow_core::StateKind::Finished,
        awaits: ::std::string::String::new(),
        fields: ::std::vec::Vec::new(),
    }));
    let transitions = gen.edges.iter().map(|(from, to)| {
        let f = state_name(*from, "Start");
        let t = state_name(*to, "Finished");
        let on_cancel = match (from, to) {
            (_, Some(t)) if awaits[*t].in_handler => from.is_none_or(|f| !awaits[f].in_handler),
            _ => false,
        };
        quote!(::workflow_core::Transition {
            from: ::std::string::String::from(#f),
            to: ::std::string::String::from(#t),
            on_cancel: #on_cancel,
        })
    });
    quote! {
        ::workflow_core::StateGraph {
            workflow: ::std::string::String::from(#workflow),
            states: ::std::vec![#(#states),*],
            transitions: ::std::vec![#(#transitions),*],
        }
    }
}

/// The start-state fields of a nested machine (a parallel branch, a compensable block's
/// handler, a started scope's block): one per outer local it copies.
fn capture_fields(captures: &[Binding]) -> Vec<(syn::Ident, syn::Pat, syn::Type)> {
    captures
        .iter()
        .filter_map(|c| match &c.kind {
            BindKind::Value(Some(t)) => {
                let ident = &c.ident;
                Some((c.ident.clone(), syn::parse_quote!(#ident), t.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The same tokens, all at `span` (so that an error about a type names the binding).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}
