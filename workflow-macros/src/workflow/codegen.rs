//! Code generation: the state enum, its `resume`, and the `Workflow` impl.
//!
//! `resume` is a trampoline over the enum:
//!
//! ```text
//! 'tramp: loop {
//!     match mem::replace(state, Finished) {
//!         Start { input } => { <whole body, forward> }
//!         Sleep { op_id, t, hold } => {
//!             let v = match poll(cx, op_id) { Some(v) => v, None => { restore; return Pending } };
//!             <the code after that await, rebuilt from its frames, forward>
//!         }
//!         ...
//!     }
//! }
//! ```
//!
//! "Forward" code is the user's code with each await replaced by a *suspension*: start the
//! operation, store the live bindings in the next variant, `continue 'tramp` (which polls it at
//! once, so operations that resolve immediately never leave the step). Code after an
//! unconditional suspension is dropped, so each arm holds only the code from one await to the
//! next ones. Resuming inside nested control flow rebuilds the enclosing constructs from the
//! frames: the rest of each block, and for loops a copy of the loop whose first iteration is
//! the rest of the current one.

use super::ir::{
    AwaitInfo, Block, CompensableSpec, Compound, Node, OpKind, ParallelSpec, Region, ScopeNode,
    ScopeSpec, Sink,
};
use super::live::{self, Frame, Live};
use super::names::{BindKind, Binding};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use std::collections::{BTreeMap, BTreeSet};
use syn::visit_mut::VisitMut;
use syn::{Expr, Type};

/// A field of a state variant.
pub struct Field {
    pub binding: Binding,
    pub frame: usize,
    /// Field name in the variant.
    pub name: syn::Ident,
    /// Hygienic local the field is moved into on resume.
    pub local: syn::Ident,
    /// Stored type.
    pub ty: Type,
}

pub struct Codegen<'a> {
    pub awaits: &'a [AwaitInfo],
    parallels: &'a [ParallelSpec],
    /// The state types of each parallel block's branch machines.
    branch_types: &'a [Vec<syn::Ident>],
    compensables: &'a [CompensableSpec],
    /// The state types of each compensable block's handlers (compensation, confirmation).
    handler_types: &'a [(Option<syn::Ident>, Option<syn::Ident>)],
    pub workflow_name: String,
    pub errors: Option<syn::Error>,
    pub fields: Vec<Vec<Field>>,
    /// Bindings only overwritten after each suspension point: declared again, not stored.
    declared: Vec<Vec<(Binding, usize)>>,
    /// Edges of the state graph: (from, to), with `None` for Start / Finished.
    pub edges: BTreeSet<(Option<usize>, Option<usize>)>,
    cx: syn::Ident,
    state: syn::Ident,
    tramp: syn::Lifetime,
    op: syn::Ident,
    value: syn::Ident,
    targets: BTreeSet<Option<usize>>,
    /// How many exits (`return`, `?`) each region's guarded code has emitted so far.
    region_exits: BTreeMap<usize, usize>,
    /// The same for each scope's body, by label.
    scope_exits: BTreeMap<String, usize>,
}

fn hygienic(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::mixed_site())
}

/// A loop around the code being emitted.
#[derive(Clone)]
enum LoopCtx {
    /// A loop being resumed in its first iteration: that iteration's code stands outside any
    /// real loop, in a block labelled `first`; `break` and `continue` aimed at the loop leave
    /// that block with a `LoopControl`.
    First {
        label: Option<String>,
        first: syn::Lifetime,
    },
    /// An ordinary loop in the emitted code.
    Native { label: Option<String> },
}

/// Where `return` and `?` lead from the code being emitted.
#[derive(Clone, Copy)]
enum ExitTo<'r> {
    /// Out of a guarded region, through its handler.
    Region(&'r Region),
    /// Out of a scope's async block, as its value.
    Scope(&'r ScopeNode),
}

/// What the code being emitted sits in: where `return` and `?` lead (the workflow's driver
/// when `None`), and the loops around it (for `break` and `continue`).
#[derive(Clone, Default)]
struct Ectx<'r> {
    exit: Option<ExitTo<'r>>,
    loops: Vec<LoopCtx>,
}

impl<'r> Ectx<'r> {
    fn in_region(&self, r: &'r Region) -> Self {
        Ectx {
            exit: Some(ExitTo::Region(r)),
            loops: self.loops.clone(),
        }
    }
    /// The body of a scope: a fresh function-like context (an async block).
    fn in_scope(scope: &'r ScopeNode) -> Self {
        Ectx {
            exit: Some(ExitTo::Scope(scope)),
            loops: Vec::new(),
        }
    }
    fn in_loop(&self, l: LoopCtx) -> Self {
        let mut e = self.clone();
        e.loops.push(l);
        e
    }
}

fn label_name(label: &Option<syn::Label>) -> Option<String> {
    label.as_ref().map(|l| l.name.ident.to_string())
}

impl<'a> Codegen<'a> {
    pub fn new(
        awaits: &'a [AwaitInfo],
        parallels: &'a [ParallelSpec],
        branch_types: &'a [Vec<syn::Ident>],
        compensables: &'a [CompensableSpec],
        handler_types: &'a [(Option<syn::Ident>, Option<syn::Ident>)],
        workflow_name: String,
    ) -> Self {
        Codegen {
            awaits,
            parallels,
            branch_types,
            compensables,
            handler_types,
            workflow_name,
            errors: None,
            fields: (0..awaits.len()).map(|_| Vec::new()).collect(),
            declared: (0..awaits.len()).map(|_| Vec::new()).collect(),
            edges: BTreeSet::new(),
            cx: hygienic("__wf_cx"),
            state: hygienic("__wf_state"),
            tramp: syn::Lifetime::new("'__wf_tramp", Span::mixed_site()),
            op: hygienic("__wf_op"),
            value: hygienic("__wf_value"),
            targets: BTreeSet::new(),
            region_exits: BTreeMap::new(),
            scope_exits: BTreeMap::new(),
        }
    }

    fn error(&mut self, e: syn::Error) {
        match &mut self.errors {
            Some(all) => all.combine(e),
            None => self.errors = Some(e),
        }
    }

    /// The type of a region's exit variable, when the enclosing body's value type is known.
    fn exit_type(r: &Region) -> Option<Type> {
        let value = r.exit_ty.as_ref()?;
        Some(syn::parse_quote!(::workflow_core::__private::Exit<#value>))
    }

    /// Pass 1: the fields of every suspension state.
    pub fn compute_fields(&mut self, body: &Block) {
        let mut found: Vec<(usize, Vec<Live>)> = Vec::new();
        {
            let exit = |r: &Region| Binding {
                ident: r.exit.clone(),
                mutable: false,
                kind: BindKind::Value(Self::exit_type(r)),
            };
            // A parallel block's condition is evaluated again on every resume.
            let awaits = self.awaits;
            let parallels = self.parallels;
            let resume_reads = |point: usize| match awaits.get(point).map(|a| &a.kind) {
                Some(OpKind::Parallel(pi)) => parallels
                    .get(*pi)
                    .map(|p| super::names::FreeVars::expr(&p.condition).free)
                    .unwrap_or_default(),
                _ => BTreeSet::new(),
            };
            live::walk(body, &mut Vec::new(), &mut |point, frames| {
                found.push((point, live::live_at(frames, &exit, &resume_reads)));
            });
        }
        for (point, lives) in found {
            let mut names: BTreeMap<String, usize> = BTreeMap::new();
            names.insert("op_id".into(), 1);
            names.insert("parallel".into(), 1);
            if let OpKind::Parallel(pi) = &self.awaits[point].kind {
                for bi in 0..self.branch_types[*pi].len() {
                    names.insert(format!("branch_{bi}"), 1);
                }
            }
            let mut fields = Vec::new();
            for l in lives {
                let name = l.binding.name();
                if l.need == live::Need::Declaration {
                    self.declared[point].push((l.binding, l.frame));
                    continue;
                }
                if l.hidden {
                    self.error(syn::Error::new(
                        l.binding.ident.span(),
                        format!(
                            "`{name}` is still needed after the await of the {}, but another \
                             `{name}` declared later hides it there, so the workflow cannot save \
                             it; rename one of them",
                            self.awaits[point].desc
                        ),
                    ));
                }
                let ty = match &l.binding.kind {
                    BindKind::Value(Some(Type::Reference(r))) => {
                        self.error(syn::Error::new(
                            l.binding.ident.span(),
                            format!(
                                "`{name}` is a reference (`{}`) used after the await of the {}: \
                                 the workflow state is stored and reloaded, so it cannot hold \
                                 borrows; keep an owned value instead (clone it, or move it)",
                                quote!(#r).to_string().replace(" ", ""),
                                self.awaits[point].desc
                            ),
                        ));
                        syn::parse_quote!(())
                    }
                    BindKind::Value(Some(ty)) => ty.clone(),
                    BindKind::Context => syn::parse_quote!(::workflow_core::__private::ScopeId),
                    BindKind::Value(None) if name.starts_with("__wf_exit") => {
                        self.error(syn::Error::new(
                            l.binding.ident.span(),
                            "this handler awaits, so how the scope's code was being left is kept \
                             in the workflow state, and the macro needs the type of the scope's \
                             result: write it where the result goes, e.g. \
                             `let r: Result<u64, WorkflowError> = ctx.cancellable(async { .. }).await;`",
                        ));
                        syn::parse_quote!(())
                    }
                    BindKind::Value(None) | BindKind::Ambient => {
                        self.error(syn::Error::new(
                            l.binding.ident.span(),
                            format!(
                                "`{name}` is used after the await of the {} and so is stored in the \
                                 workflow state, but the macro cannot name its type; annotate it \
                                 (`let {name}: Type = ...`), or if it comes from a pattern, re-bind \
                                 it with its type before the await (`let {name}: Type = {name};`); \
                                 the type must implement Serialize and Deserialize",
                                self.awaits[point].desc
                            ),
                        ));
                        syn::parse_quote!(())
                    }
                };
                let base = if name.starts_with("__wf_exit") {
                    "pending_exit".to_string()
                } else {
                    name.trim_start_matches("__wf_").to_string()
                };
                let n = names.entry(base.clone()).or_insert(0);
                *n += 1;
                let field_name = if *n == 1 { base } else { format!("{base}_{n}") };
                let binding_span = l.binding.ident.span();
                fields.push(Field {
                    binding: l.binding,
                    frame: l.frame,
                    local: hygienic(&format!("__wf_l_{field_name}")),
                    // The binding's span: serde's errors about the field point at the binding.
                    name: format_ident!("{}", field_name, span = binding_span),
                    ty,
                });
            }
            self.fields[point] = fields;
        }
    }

    /// Pass 2: one match arm per suspension state.
    pub fn resume_arms(&mut self, body: &Block) -> Vec<TokenStream> {
        let mut collected: Vec<(usize, Vec<Frame<'_>>)> = Vec::new();
        live::walk(body, &mut Vec::new(), &mut |point, frames| {
            collected.push((point, frames.to_vec()));
        });
        collected
            .into_iter()
            .map(|(point, frames)| self.resume_arm(point, &frames))
            .collect()
    }

    /// The arm for the start state.
    pub fn start_arm(
        &mut self,
        body: &Block,
        start_fields: &[(syn::Ident, syn::Pat, Type)],
    ) -> TokenStream {
        self.targets.clear();
        let (code, diverges) = self.fwd_block(body, &Ectx::default());
        if !diverges {
            self.targets.insert(None);
        }
        self.flush_edges(None);
        let pats = start_fields.iter().map(|(f, _, _)| {
            let local = hygienic(&format!("__wf_l_{f}"));
            quote!(#f: #local)
        });
        let binds = start_fields.iter().map(|(f, pat, ty)| {
            let local = hygienic(&format!("__wf_l_{f}"));
            quote!(let #pat: #ty = #local;)
        });
        let finish = self.finish_tokens(code);
        quote! {
            Self::Start { #(#pats),* } => {
                #(#binds)*
                #finish
            }
        }
    }

    fn finish_tokens(&self, code: TokenStream) -> TokenStream {
        quote!(return ::workflow_core::__private::finish(#code);)
    }

    fn flush_edges(&mut self, from: Option<usize>) {
        for t in std::mem::take(&mut self.targets) {
            self.edges.insert((from, t));
        }
    }

    /// The fields that say what a state waits for, as a pattern (and constructor) over the
    /// hygienic locals holding them: the operation's id, or a parallel block's run and
    /// branch machines.
    fn op_fields(&self, point: usize) -> TokenStream {
        let op = &self.op;
        match &self.awaits[point].kind {
            OpKind::Parallel(pi) => {
                let run = hygienic("__wf_parallel");
                let branches = (0..self.branch_types[*pi].len()).map(|bi| {
                    let field = format_ident!("branch_{}", bi);
                    let local = hygienic(&format!("__wf_branch{bi}"));
                    quote!(#field: #local)
                });
                quote!(parallel: #run, #(#branches,)*)
            }
            OpKind::Handlers(_) => quote!(),
            _ => quote!(op_id: #op,),
        }
    }

    fn restore(&self, point: usize) -> TokenStream {
        let variant = &self.awaits[point].variant;
        let state = &self.state;
        let op_fields = self.op_fields(point);
        let fields = self.fields[point].iter().map(|f| {
            let (name, local) = (&f.name, &f.local);
            quote!(#name: #local)
        });
        quote!(*#state = Self::#variant { #op_fields #(#fields),* };)
    }

    fn resume_arm(&mut self, point: usize, frames: &[Frame<'_>]) -> TokenStream {
        self.targets.clear();
        self.region_exits.clear();
        self.scope_exits.clear();
        let info = &self.awaits[point];
        let variant = info.variant.clone();
        let ty = info.output_type();
        let (op, cx, value) = (self.op.clone(), self.cx.clone(), self.value.clone());
        let pats: Vec<TokenStream> = self.fields[point]
            .iter()
            .map(|f| {
                let (name, local) = (&f.name, &f.local);
                quote!(#name: #local)
            })
            .collect();
        let restore = self.restore(point);
        let polled = match &info.kind {
            OpKind::Parallel(pi) => {
                // Drive the branch machines; the block's value once all have ended.
                let run = hygienic("__wf_parallel");
                let n = self.branch_types[*pi].len();
                let locals = (0..n).map(|bi| hygienic(&format!("__wf_branch{bi}")));
                let condition = &self.parallels[*pi].condition;
                let branches = hygienic("__wf_branches");
                let cond = hygienic("__wf_condition");
                quote!({
                    let #cond = ::workflow_core::__private::parallel_condition(#condition);
                    let mut #branches: [&mut dyn ::workflow_core::__private::Branch; #n] =
                        [#(&mut #locals),*];
                    ::workflow_core::__private::drive_parallel(#cx, &mut #run, &mut #branches, &#cond)
                })
            }
            OpKind::Handlers(_) => {
                let handlers = hygienic("__wf_handlers");
                quote!(::workflow_core::__private::drive_explicit(#cx, Self::#handlers))
            }
            _ => quote!(::workflow_core::__private::poll::<#ty>(#cx, #op)),
        };
        let head = quote! {
            let #value: #ty = match #polled {
                ::core::option::Option::Some(#value) => #value,
                ::core::option::Option::None => {
                    #restore
                    return ::core::result::Result::Ok(::workflow_core::__private::Flow::Pending);
                }
            };
        };

        // Innermost frame first: the hole is the await's own binding.
        let temp = match frames.last() {
            Some(Frame::Block { block, pos }) => match &block.nodes[*pos] {
                Node::Await { temp, .. } => temp.clone(),
                _ => hygienic("__wf_unused"),
            },
            _ => hygienic("__wf_unused"),
        };
        let mut code = quote!(let #temp = #value;);
        let mut diverges = false;
        // What the code at each frame index sits in.
        let mut ectx_at: Vec<Ectx<'_>> = Vec::with_capacity(frames.len());
        let mut cur = Ectx::default();
        for (fi, f) in frames.iter().enumerate() {
            ectx_at.push(cur.clone());
            match f {
                Frame::Region(r) => cur = cur.in_region(r),
                Frame::Scope(scope) => cur = Ectx::in_scope(scope),
                Frame::Loop { label, .. } => {
                    cur = cur.in_loop(LoopCtx::First {
                        label: label_name(label),
                        first: syn::Lifetime::new(&format!("'__wf_first{fi}"), Span::mixed_site()),
                    })
                }
                _ => {}
            }
        }
        for (fi, frame) in frames.iter().enumerate().rev() {
            let inner_ectx = match frame {
                Frame::Region(r) => ectx_at[fi].in_region(r),
                Frame::Scope(scope) => Ectx::in_scope(scope),
                _ => ectx_at[fi].clone(),
            };
            code = match frame {
                Frame::Block { block, pos } => {
                    let binds = self.rebind(point, fi);
                    let (rest, d) = if diverges {
                        (TokenStream::new(), true)
                    } else {
                        self.fwd_nodes(&block.nodes[pos + 1..], &inner_ectx)
                    };
                    diverges |= d;
                    quote!({ #binds #code #rest })
                }
                Frame::Sink(sink) => apply_sink(sink, code),
                Frame::RegionTail => code,
                Frame::Label(label) => {
                    // A `break 'label` in the code above lands after the block: keep what follows.
                    diverges = false;
                    quote!(#label #code)
                }
                Frame::Loop { label, body } => {
                    // The resumed iteration runs outside the loop (so that it may move values
                    // out of the state), then the loop itself runs for the next iterations.
                    let first = syn::Lifetime::new(&format!("'__wf_first{fi}"), Span::mixed_site());
                    let ctl = hygienic(&format!("__wf_ctl{fi}"));
                    let value = hygienic("__wf_break");
                    let native = ectx_at[fi].in_loop(LoopCtx::Native {
                        label: label_name(label),
                    });
                    let (again, _) = self.fwd_block(body, &native);
                    let breaks = loop_breaks(body);
                    let ty = if breaks.valued {
                        quote!(::workflow_core::__private::LoopControl<_>)
                    } else if breaks.any {
                        quote!(::workflow_core::__private::LoopControl<()>)
                    } else {
                        // Never left by `break`: like the loop it rebuilds, this never
                        // produces a value (its type is `!`).
                        quote!(::workflow_core::__private::LoopControl<::core::convert::Infallible>)
                    };
                    let on_break = if breaks.any {
                        quote!(#value)
                    } else {
                        quote!(match #value {})
                    };
                    diverges = false;
                    quote!({
                        let #ctl: #ty = #first: {
                            #code;
                            ::workflow_core::__private::LoopControl::Next
                        };
                        match #ctl {
                            ::workflow_core::__private::LoopControl::Break(#value) => #on_break,
                            ::workflow_core::__private::LoopControl::Next => #label loop #again,
                        }
                    })
                }
                Frame::Region(r) => {
                    let exits = self.region_exits.get(&r.index).copied().unwrap_or(0);
                    let leaves = !diverges || exits > 0;
                    let e = self.region_expr(r, code, leaves, &ectx_at[fi]);
                    diverges = !leaves;
                    e
                }
                Frame::Handler(r) => {
                    let binds = self.rebind(point, fi);
                    let dispatch = self.dispatch(r, &ectx_at[fi]);
                    let done = handler_done(r, code, diverges);
                    diverges = false;
                    quote!({ #binds #done #dispatch })
                }
                Frame::Scope(scope) => {
                    let exits = self
                        .scope_exits
                        .get(&scope.label.to_string())
                        .copied()
                        .unwrap_or(0);
                    diverges &= exits == 0;
                    let open = self.rebind(point, fi);
                    self.scope_expr(scope, open, code, !diverges)
                }
            };
        }
        if !diverges {
            self.targets.insert(None);
        }
        self.flush_edges(Some(point));
        let finish = self.finish_tokens(code);
        let op_fields = self.op_fields(point);
        let mutable = matches!(self.awaits[point].kind, OpKind::Parallel(_)).then(|| {
            // The run and the branch machines are driven in place.
            let n = match &self.awaits[point].kind {
                OpKind::Parallel(pi) => self.branch_types[*pi].len(),
                _ => 0,
            };
            let run = hygienic("__wf_parallel");
            let locals = (0..n).map(|bi| hygienic(&format!("__wf_branch{bi}")));
            quote!(let mut #run = #run; #(let mut #locals = #locals;)*)
        });
        quote! {
            Self::#variant { #op_fields #(#pats),* } => {
                #mutable
                #head
                #finish
            }
        }
    }

    /// Re-binds the fields that belong to frame `fi` under their source names, and declares
    /// again the bindings that the code after the point only overwrites.
    fn rebind(&self, point: usize, fi: usize) -> TokenStream {
        let cx = &self.cx;
        let declared: TokenStream = self.declared[point]
            .iter()
            .filter(|(_, frame)| *frame == fi)
            .map(|(b, _)| {
                let ident = &b.ident;
                let mutability = b.mutable.then(|| quote!(mut));
                match &b.kind {
                    BindKind::Value(Some(ty)) => quote!(let #mutability #ident: #ty;),
                    _ => quote!(let #mutability #ident;),
                }
            })
            .collect();
        let stored: TokenStream = self.fields[point]
            .iter()
            .filter(|f| f.frame == fi)
            .map(|f| {
                let ident = &f.binding.ident;
                let local = &f.local;
                match f.binding.kind {
                    BindKind::Context => {
                        quote!(let #ident = ::workflow_core::__private::attach(#cx, #local);)
                    }
                    _ if f.binding.mutable => quote!(let mut #ident = #local;),
                    _ => quote!(let #ident = #local;),
                }
            })
            .collect();
        quote!(#declared #stored)
    }

    fn fwd_block(&mut self, b: &Block, ectx: &Ectx<'_>) -> (TokenStream, bool) {
        let (code, diverges) = self.fwd_nodes(&b.nodes, ectx);
        (quote!({ #code }), diverges)
    }

    /// Forward code for a node sequence; `true` if it ends in an unconditional suspension.
    fn fwd_nodes(&mut self, nodes: &[Node], ectx: &Ectx<'_>) -> (TokenStream, bool) {
        let mut out = TokenStream::new();
        for node in nodes {
            match node {
                Node::Plain { stmt, .. } => {
                    let returns = matches!(stmt, syn::Stmt::Expr(Expr::Return(_), _));
                    let mut stmt = stmt.clone();
                    self.rewrite(ectx, |rw| rw.visit_stmt_mut(&mut stmt));
                    out.extend(quote!(#stmt));
                    if returns {
                        // Nothing after a `return` runs (liveness agrees: see `live_at`).
                        return (out, true);
                    }
                }
                Node::Await {
                    point, temp, op, ..
                } => {
                    let op = self.rewrite_expr(op, ectx);
                    out.extend(self.suspend(*point, temp, &op));
                    // `compensate()` / `confirm()` answered at once (a refusal) go on inline; anything
                    // else suspends.
                    if !matches!(self.awaits[*point].kind, OpKind::Handlers(_)) {
                        return (out, true);
                    }
                }
                Node::Compound { c, sink, .. } => {
                    let (e, diverges) = self.fwd_compound(c, ectx);
                    out.extend(apply_sink(sink, e));
                    if diverges {
                        // Nothing after it is reachable; emitting it would also give an
                        // unannotated `let` of it the type `()`.
                        return (out, true);
                    }
                }
                Node::Region(r) => {
                    let before = self.region_exits.get(&r.index).copied().unwrap_or(0);
                    let (body, suspends) = self.fwd_block(&r.body, &ectx.in_region(r));
                    let exits = self.region_exits.get(&r.index).copied().unwrap_or(0) - before;
                    let leaves = !suspends || exits > 0;
                    out.extend(self.region_expr(r, body, leaves, ectx));
                    if !leaves {
                        return (out, true);
                    }
                }
            }
        }
        (out, false)
    }

    /// Applies the exit rewriting of [`ReturnRewriter`] for code emitted in `ectx`.
    fn rewrite(&mut self, ectx: &Ectx<'_>, f: impl FnOnce(&mut ReturnRewriter<'_, 'a, '_>)) {
        let mut rw = ReturnRewriter {
            ectx: ectx.clone(),
            gen: self,
            returns: false,
        };
        f(&mut rw);
        if rw.returns {
            self.targets.insert(None);
        }
    }

    fn rewrite_expr(&mut self, e: &Expr, ectx: &Ectx<'_>) -> Expr {
        let mut e = e.clone();
        self.rewrite(ectx, |rw| rw.visit_expr_mut(&mut e));
        e
    }

    /// Forward code for control flow; `true` if it never falls through to what follows
    /// (every path suspends, or leaves by a jump that does not land right after it).
    fn fwd_compound(&mut self, c: &Compound, ectx: &Ectx<'_>) -> (TokenStream, bool) {
        match c {
            Compound::If { cond, then, els } => {
                let cond = self.rewrite_expr(cond, ectx);
                let (then, then_div) = self.fwd_block(then, ectx);
                match els {
                    Some(els) => {
                        let (els, els_div) = self.fwd_block(els, ectx);
                        (quote!(if #cond #then else #els), then_div && els_div)
                    }
                    None => (quote!(if #cond #then), false),
                }
            }
            Compound::Match { scrutinee, arms } => {
                let scrutinee = self.rewrite_expr(scrutinee, ectx);
                let mut all_diverge = !arms.is_empty();
                let arms: Vec<TokenStream> = arms
                    .iter()
                    .map(|a| {
                        let (body, d) = self.fwd_block(&a.body, ectx);
                        all_diverge &= d;
                        let pat = &a.pat;
                        let guard = a.guard.as_ref().map(|g| {
                            let g = self.rewrite_expr(g, ectx);
                            quote!(if #g)
                        });
                        quote!(#pat #guard => #body,)
                    })
                    .collect();
                (quote!(match #scrutinee { #(#arms)* }), all_diverge)
            }
            Compound::Loop { label, body } => {
                let native = ectx.in_loop(LoopCtx::Native {
                    label: label_name(label),
                });
                let (code, _) = self.fwd_block(body, &native);
                let never_breaks = !loop_breaks(body).any;
                (quote!(#label loop #code), never_breaks)
            }
            Compound::Block { label, body } => {
                let (code, d) = self.fwd_block(body, ectx);
                // `break 'label` lands right after a labelled block.
                (quote!(#label #code), d && label.is_none())
            }
            Compound::Scope(scope) => {
                let key = scope.label.to_string();
                let before = self.scope_exits.get(&key).copied().unwrap_or(0);
                let (body, suspends) = self.fwd_block(&scope.body, &Ectx::in_scope(scope));
                let exits = self.scope_exits.get(&key).copied().unwrap_or(0) - before;
                let ctx = &scope.ctx;
                let spec = match &scope.spec {
                    ScopeSpec::Cancellable => {
                        quote!(::workflow_core::__private::ScopeSpec::Cancellable)
                    }
                    ScopeSpec::NonCancellable => {
                        quote!(::workflow_core::__private::ScopeSpec::NonCancellable)
                    }
                    ScopeSpec::Timeout(d) => {
                        let d = self.rewrite_expr(d, ectx);
                        quote!(::workflow_core::__private::ScopeSpec::Timeout(#d))
                    }
                };
                let inner = &scope.inner;
                let open =
                    quote!(let #inner = ::workflow_core::__private::open_scope(&#ctx, #spec););
                let diverges = suspends && exits == 0;
                (self.scope_expr(scope, open, body, !diverges), diverges)
            }
        }
    }

    /// A scope's code: `open` binds its context, `body` is its async block's code (a block).
    /// `ends`: the body can end in this arm (else what follows it is dead, and typing it
    /// would fail).
    fn scope_expr(
        &self,
        scope: &ScopeNode,
        open: TokenStream,
        body: TokenStream,
        ends: bool,
    ) -> TokenStream {
        let (ctx, inner, label) = (&scope.ctx, &scope.inner, &scope.label);
        let value = hygienic("__wf_scope_value");
        let register = scope
            .compensable
            .filter(|_| ends)
            .map(|site| self.register_compensable(site, &value));
        quote!({
            #open
            let #ctx = #inner;
            let #value = #label: #body;
            ::workflow_core::__private::close_scope(&#inner);
            #register
            #value
        })
    }

    /// Once a compensable block completed (`Ok`), keeps its handlers' machines, each with
    /// its own copy of the locals it uses (R12).
    fn register_compensable(&self, site: usize, value: &syn::Ident) -> TokenStream {
        let cx = &self.cx;
        let spec = &self.compensables[site];
        let (compensate_ty, confirm_ty) = &self.handler_types[site];
        let start = |b: &Option<super::ir::BranchSpec>, ty: &Option<syn::Ident>| match (b, ty) {
            (Some(b), Some(ty)) => {
                let captures = b.captures.iter().map(|c| {
                    let ident = &c.ident;
                    quote!(#ident: ::core::clone::Clone::clone(&#ident))
                });
                quote!(::core::option::Option::Some(#ty::Start { #(#captures),* }))
            }
            _ => quote!(::core::option::Option::None::<()>),
        };
        let compensate = start(&spec.compensate, compensate_ty);
        let confirm = start(&spec.confirm, confirm_ty);
        let site = site as u32;
        quote! {
            if ::core::result::Result::is_ok(&#value) {
                ::workflow_core::__private::register_compensable(#cx, #site, #compensate, #confirm);
            }
        }
    }

    fn suspend(&mut self, point: usize, temp: &syn::Ident, op_expr: &Expr) -> TokenStream {
        self.targets.insert(Some(point));
        let variant = &self.awaits[point].variant;
        let (op, state, tramp) = (&self.op, &self.state, &self.tramp);
        let fields = self.fields[point].iter().map(|f| {
            let name = &f.name;
            let ident = &f.binding.ident;
            match f.binding.kind {
                BindKind::Context => quote!(#name: ::workflow_core::__private::scope_of(&#ident)),
                _ => quote!(#name: #ident),
            }
        });
        let fields: Vec<TokenStream> = fields.collect();
        let span = self.awaits[point].span;
        if let OpKind::Parallel(pi) = &self.awaits[point].kind {
            // Open the block's scopes and build each branch machine with its own copy of the
            // locals it uses.
            let spec = &self.parallels[*pi];
            let ctx = &spec.ctx;
            let run = hygienic("__wf_parallel");
            let n = spec.branches.len();
            let branches = spec.branches.iter().enumerate().map(|(bi, b)| {
                let ty = &self.branch_types[*pi][bi];
                let local = hygienic(&format!("__wf_branch{bi}"));
                let captures = b.captures.iter().map(|c| {
                    let ident = &c.ident;
                    quote!(#ident: ::core::clone::Clone::clone(&#ident))
                });
                quote!(let #local = #ty::Start { #(#captures),* };)
            });
            let op_fields = self.op_fields(point);
            return quote_spanned! {span=>
                let #temp = {
                    let #run = ::workflow_core::__private::open_parallel(&#ctx, #n);
                    #(#branches)*
                    *#state = Self::#variant { #op_fields #(#fields),* };
                    continue #tramp;
                };
            };
        }
        if let OpKind::Handlers(compensate) = &self.awaits[point].kind {
            // Queue the handlers; a refusal (compensating confirmed blocks) is the value.
            let ctx = root_receiver(op_expr);
            let ty = self.awaits[point].output_type();
            return quote_spanned! {span=>
                let #temp: #ty = match ::workflow_core::__private::begin_explicit(&#ctx, #compensate) {
                    ::core::result::Result::Err(e) => ::core::result::Result::Err(e),
                    ::core::result::Result::Ok(()) => {
                        *#state = Self::#variant { #(#fields),* };
                        continue #tramp;
                    }
                };
            };
        }
        let start = quote_spanned!(span=> ::workflow_core::__private::start(#op_expr));
        quote! {
            let #temp = {
                let #op = #start;
                *#state = Self::#variant { op_id: #op, #(#fields),* };
                continue #tramp;
            };
        }
    }

    fn region_label(r: &Region) -> syn::Lifetime {
        syn::Lifetime::new(&format!("'__wf_region{}", r.index), Span::mixed_site())
    }

    /// The code of a region guarded by `on_cancel!`, given the code of its body (`body`, an
    /// expression) and the region the whole thing sits in (`outer`).
    fn region_expr(
        &mut self,
        r: &Region,
        body: TokenStream,
        leaves: bool,
        outer: &Ectx<'_>,
    ) -> TokenStream {
        if !leaves {
            // From here the guarded code always suspends before it could be left: the
            // handler cannot run in this step (an arm resuming later emits it).
            return body;
        }
        let exit = &r.exit;
        let label = Self::region_label(r);
        let exit_ty = Self::exit_type(r).map(|t| quote!(: #t));
        let init = if r.body_level {
            quote!(#label: { ::workflow_core::__private::Exit::Return(#body) })
        } else {
            // The guarded code is the rest of a block that is not the function body: it must
            // not produce a value (a type error here, pointing at `on_cancel!`, says so).
            let span = r.span;
            let unit = quote_spanned!(span=> let () = #body;);
            quote!(#label: { #unit ::workflow_core::__private::Exit::Normal })
        };
        let (handler, handler_suspends) = self.fwd_block(&r.handler, outer);
        let dispatch = self.dispatch(r, outer);
        let guard = &r.guard;
        let param = &r.param.ident;
        let level = if r.in_scope {
            quote!(::workflow_core::__private::GuardLevel::Scope)
        } else {
            quote!(::workflow_core::__private::GuardLevel::Workflow)
        };
        let handler_done = handler_done(r, handler, handler_suspends);
        let cx = &self.cx;
        let name = format!("on_cancel#{}", r.index);
        quote!({
            let #exit #exit_ty = #init;
            if ::workflow_core::__private::handler_runs(&#guard, &#exit, #level) {
                let #param = ::workflow_core::__private::handler_context(#cx, #name);
                #handler_done
            }
            #dispatch
        })
    }

    /// Leaves a region the way its body left it, once the handler (if any) has run.
    fn dispatch(&mut self, r: &Region, outer: &Ectx<'_>) -> TokenStream {
        let exit = &r.exit;
        let result = hygienic("__wf_result");
        if r.body_level {
            let name = &self.workflow_name;
            quote! {
                match #exit {
                    ::workflow_core::__private::Exit::Return(#result) => #result,
                    // A function-level region is only left through its value or `return`.
                    ::workflow_core::__private::Exit::Normal => ::core::result::Result::Err(
                        ::core::convert::From::from(::workflow_core::__private::left_without_result(#name)),
                    ),
                }
            }
        } else {
            let ret = self.emit_return(quote!(#result), outer.exit);
            quote! {
                match #exit {
                    ::workflow_core::__private::Exit::Return(#result) => { #ret }
                    ::workflow_core::__private::Exit::Normal => {}
                }
            }
        }
    }

    fn emit_return(&mut self, value: TokenStream, exit: Option<ExitTo<'_>>) -> TokenStream {
        match exit {
            Some(ExitTo::Region(r)) => {
                *self.region_exits.entry(r.index).or_insert(0) += 1;
                let label = Self::region_label(r);
                quote!(break #label (::workflow_core::__private::Exit::Return(#value)))
            }
            Some(ExitTo::Scope(scope)) => {
                *self.scope_exits.entry(scope.label.to_string()).or_insert(0) += 1;
                let label = &scope.label;
                quote!(break #label (#value))
            }
            None => {
                self.targets.insert(None);
                quote!(return ::workflow_core::__private::finish(#value))
            }
        }
    }
}

/// The context an operation expression is built on (`ctx` in `ctx.compensate()`).
fn root_receiver(e: &Expr) -> TokenStream {
    match e {
        Expr::MethodCall(m) => match &*m.receiver {
            Expr::MethodCall(_) => root_receiver(&m.receiver),
            other => quote!(#other),
        },
        Expr::Paren(p) => root_receiver(&p.expr),
        other => quote!(#other),
    }
}

/// The handler's code as a statement, checked to end without a value (R4.2). Code that
/// always suspends has no end here; the arm that resumes it checks its end.
fn handler_done(r: &Region, code: TokenStream, suspends: bool) -> TokenStream {
    if suspends {
        return quote!(#code;);
    }
    if r.handler_ends_without_value {
        // Its value is `()` or it diverges (a handler may panic, like any workflow code):
        // `()` as the expected type, so that a diverging end coerces to it instead of leaving
        // the type to never-type fallback (an error in edition 2024, a deny-by-default lint
        // before it).
        let span = r.handler_span;
        return quote_spanned!(span=> let () = #code;);
    }
    // The handler's code is one block; give that block the span of the handler's last
    // expression, so that an error about its value points there.
    let span = r.handler_span;
    let mut tokens = code.clone().into_iter();
    let code = match (tokens.next(), tokens.next()) {
        (Some(proc_macro2::TokenTree::Group(g)), None) => {
            let mut block = proc_macro2::Group::new(g.delimiter(), g.stream());
            block.set_span(span);
            quote!(#block)
        }
        _ => code,
    };
    quote_spanned!(span=> ::workflow_core::__private::handler_done(#code);)
}

fn apply_sink(sink: &Sink, code: TokenStream) -> TokenStream {
    match sink {
        Sink::Let { pat } => quote!(let #pat = #code;),
        Sink::Stmt => quote!(#code;),
        Sink::Tail => code,
    }
}

/// The `break`s aimed at a loop, found in its body.
struct LoopBreaks {
    /// Some `break` leaves the loop.
    any: bool,
    /// Some `break value` leaves the loop with a value.
    valued: bool,
}

/// The `break`s in `b` aimed at the loop whose body it is (unlabelled ones outside nested
/// loops, and labelled ones naming a loop that is not nested).
fn loop_breaks(b: &Block) -> LoopBreaks {
    struct Finder {
        inner_labels: Vec<Option<String>>,
        found: LoopBreaks,
    }
    impl Finder {
        fn targets_us(&self, label: &Option<syn::Lifetime>) -> bool {
            match label {
                None => self.inner_labels.is_empty(),
                Some(l) => !self
                    .inner_labels
                    .iter()
                    .any(|x| x.as_deref() == Some(&l.ident.to_string())),
            }
        }
        fn nested(&mut self, label: &Option<syn::Label>, f: impl FnOnce(&mut Self)) {
            self.inner_labels.push(label_name(label));
            f(self);
            self.inner_labels.pop();
        }
    }
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
        fn visit_item(&mut self, _: &'ast syn::Item) {}
        fn visit_expr_loop(&mut self, l: &'ast syn::ExprLoop) {
            self.nested(&l.label, |f| syn::visit::visit_block(f, &l.body));
        }
        fn visit_expr_while(&mut self, l: &'ast syn::ExprWhile) {
            self.visit_expr(&l.cond);
            self.nested(&l.label, |f| syn::visit::visit_block(f, &l.body));
        }
        fn visit_expr_for_loop(&mut self, l: &'ast syn::ExprForLoop) {
            self.visit_expr(&l.expr);
            self.nested(&l.label, |f| syn::visit::visit_block(f, &l.body));
        }
        fn visit_expr_break(&mut self, b: &'ast syn::ExprBreak) {
            if self.targets_us(&b.label) {
                self.found.any = true;
                self.found.valued |= b.expr.is_some();
            }
            if let Some(e) = &b.expr {
                self.visit_expr(e);
            }
        }
    }
    fn nodes(ns: &[Node], f: &mut Finder) {
        use syn::visit::Visit;
        for n in ns {
            match n {
                Node::Plain { stmt, .. } => f.visit_stmt(stmt),
                Node::Await { .. } => {}
                Node::Compound { c, .. } => match c {
                    Compound::If { then, els, .. } => {
                        nodes(&then.nodes, f);
                        if let Some(e) = els {
                            nodes(&e.nodes, f);
                        }
                    }
                    Compound::Match { arms, .. } => {
                        arms.iter().for_each(|a| nodes(&a.body.nodes, f))
                    }
                    Compound::Block { body, .. } => nodes(&body.nodes, f),
                    Compound::Loop { label, body } => {
                        f.nested(label, |f| nodes(&body.nodes, f));
                    }
                    // An async block: nothing in it can leave an enclosing loop.
                    Compound::Scope(_) => {}
                },
                Node::Region(r) => nodes(&r.body.nodes, f),
            }
        }
    }
    let mut f = Finder {
        inner_labels: Vec::new(),
        found: LoopBreaks {
            any: false,
            valued: false,
        },
    };
    nodes(&b.nodes, &mut f);
    f.found
}

/// Rewrites the exits of plain user code for the place it is emitted in: `return` goes
/// through the driver (or leaves the guarded region through its handler), `?` inside a region
/// too, and `break` / `continue` aimed at a loop being resumed leave its first iteration.
struct ReturnRewriter<'g, 'a, 'r> {
    ectx: Ectx<'r>,
    gen: &'g mut Codegen<'a>,
    returns: bool,
}

impl ReturnRewriter<'_, '_, '_> {
    /// The resumed loop a `break`/`continue` with this label targets, if it is one.
    fn first_target(&self, label: &Option<syn::Lifetime>) -> Option<syn::Lifetime> {
        let wanted = label.as_ref().map(|l| l.ident.to_string());
        for l in self.ectx.loops.iter().rev() {
            let (name, first) = match l {
                LoopCtx::First { label, first } => (label, Some(first)),
                LoopCtx::Native { label } => (label, None),
            };
            if wanted.is_none() || wanted == *name {
                return first.cloned();
            }
        }
        None
    }

    fn with_native(&mut self, label: &Option<syn::Label>, f: impl FnOnce(&mut Self)) {
        self.ectx.loops.push(LoopCtx::Native {
            label: label_name(label),
        });
        f(self);
        self.ectx.loops.pop();
    }
}

impl VisitMut for ReturnRewriter<'_, '_, '_> {
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
    fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
    fn visit_expr_async_mut(&mut self, _: &mut syn::ExprAsync) {}
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Return(r) => {
                let mut value: Expr = match r.expr.take() {
                    Some(v) => *v,
                    None => syn::parse_quote!(()),
                };
                self.visit_expr_mut(&mut value);
                self.returns = true;
                let tokens = self.gen.emit_return(quote!(#value), self.ectx.exit);
                *e = syn::parse_quote!(#tokens);
            }
            Expr::Try(t) if self.ectx.exit.is_some() => {
                let mut inner = (*t.expr).clone();
                self.visit_expr_mut(&mut inner);
                self.returns = true;
                let err = hygienic("__wf_err");
                let ok = hygienic("__wf_ok");
                let ret = self.gen.emit_return(
                    quote!(::core::result::Result::Err(::core::convert::From::from(#err))),
                    self.ectx.exit,
                );
                *e = syn::parse_quote!(match #inner {
                    ::core::result::Result::Ok(#ok) => #ok,
                    ::core::result::Result::Err(#err) => #ret,
                });
            }
            Expr::Try(_) => {
                self.returns = true;
                syn::visit_mut::visit_expr_mut(self, e);
            }
            Expr::Break(b) => {
                if let Some(v) = &mut b.expr {
                    self.visit_expr_mut(v);
                }
                if let Some(first) = self.first_target(&b.label) {
                    let value = match b.expr.take() {
                        Some(v) => quote!(#v),
                        None => quote!(()),
                    };
                    *e = syn::parse_quote!(
                        break #first (::workflow_core::__private::LoopControl::Break(#value))
                    );
                }
            }
            Expr::Continue(c) => {
                if let Some(first) = self.first_target(&c.label) {
                    *e = syn::parse_quote!(break #first (::workflow_core::__private::LoopControl::Next));
                }
            }
            Expr::Loop(l) => {
                let label = l.label.clone();
                self.with_native(&label, |v| v.visit_block_mut(&mut l.body));
            }
            Expr::While(w) => {
                self.visit_expr_mut(&mut w.cond);
                let label = w.label.clone();
                self.with_native(&label, |v| v.visit_block_mut(&mut w.body));
            }
            Expr::ForLoop(f) => {
                self.visit_expr_mut(&mut f.expr);
                let label = f.label.clone();
                self.with_native(&label, |v| v.visit_block_mut(&mut f.body));
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }
}
