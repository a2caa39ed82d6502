//! Lowering: the workflow body as written → a small structured IR in which every `.await`
//! is its own statement.
//!
//! ```text
//! // Input:
//! let r: Receipt = ctx.activity(charge, order).await?;
//! if ctx.sleep(d).await.is_err() { return Err(..) }
//! for item in items { ctx.activity(ship, item).await?; }
//! // Output (as IR):
//! Await { temp: __wf_aw0, op: ctx.activity(charge, order) }
//! Plain { let r: Receipt = __wf_aw0?; }
//! Await { temp: __wf_aw1, op: ctx.sleep(d) }
//! Compound(If { cond: __wf_aw1.is_err(), .. })          // plain `if` if no await inside
//! Plain { let mut __wf_iter2: Vec<Item> = collect_rev(items); }
//! Compound(Loop { body: [Plain(let Some(i) = __wf_iter2.pop() else { break }),
//!                        Plain(let item: Item = i), Await{..}, ..] })
//! ```
//!
//! Control flow that contains an await (`if`, `match`, `loop`, `while`, `for`, blocks) becomes
//! a `Compound` node whose value goes to a `Sink` (a `let`, a statement, or the block's value).
//! Everything else stays a `Plain` statement, copied verbatim into the generated code.
//! `while` and `for` are desugared into `loop`; a `for` loop over a range keeps its position
//! (`RangeIter`: next item and bound), any other `for` loop collects its items into a `Vec`
//! so that the remaining items can be kept in the state.
//! `on_cancel!(|c| ..)` turns the rest of its block into a `Region` guarded by the handler.

use super::joins::is_join_or_select;
use super::names::{
    expr_has_await, infer_type, is_on_cancel, pat_bindings, tokens_have_await, BindKind, Binding,
};
use proc_macro2::Span;
use quote::{format_ident, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, Pat, Type};

pub struct Block {
    /// Bindings visible from the start of the block (match-arm or `if let` patterns, the
    /// handler's context parameter).
    pub pre: Vec<Binding>,
    pub nodes: Vec<Node>,
}

pub enum Node {
    Plain {
        stmt: syn::Stmt,
        binds: Vec<Binding>,
    },
    /// `let temp = op.await;`
    Await {
        point: usize,
        temp: syn::Ident,
        op: Expr,
        binds: Vec<Binding>,
    },
    Compound {
        c: Compound,
        sink: Sink,
        binds: Vec<Binding>,
    },
    /// Always the last node of its block: the rest of the block after `on_cancel!`.
    Region(Box<Region>),
}

pub enum Sink {
    Let { pat: Pat },
    Stmt,
    Tail,
}

pub enum Compound {
    If {
        cond: Expr,
        then: Block,
        els: Option<Block>,
    },
    Match {
        scrutinee: Expr,
        arms: Vec<Arm>,
    },
    Loop {
        label: Option<syn::Label>,
        body: Block,
    },
    Block {
        label: Option<syn::Label>,
        body: Block,
    },
    /// `ctx.cancellable(async { .. }).await` and its kin: the body runs in a new scope.
    Scope(Box<ScopeNode>),
}

/// What kind of scope an awaited scope call opens.
pub enum ScopeSpec {
    Cancellable,
    NonCancellable,
    Timeout(Expr),
}

pub struct ScopeNode {
    pub spec: ScopeSpec,
    /// For a compensable block: its index in `Lowering::compensables`.
    pub compensable: Option<usize>,
    /// The outer locals its handlers copy when the block completes (read then).
    pub compensable_reads: Vec<syn::Ident>,
    /// The context the scope is opened on; inside the body the same name is the scope's.
    pub ctx: syn::Ident,
    /// Hygienic name of the scope's own context, which nested scopes cannot shadow: the
    /// state keeps this one, and `ctx` is re-derived from it.
    pub inner: syn::Ident,
    pub body: Block,
    /// Label of the block standing for the async block (`return` and `?` leave it).
    pub label: syn::Lifetime,
}

/// A function or scope body being lowered.
struct Body {
    /// The type of its value, if known.
    value_ty: Option<Type>,
    in_scope: bool,
    /// The context that is current in it.
    ctx: syn::Ident,
}

pub struct Arm {
    pub pat: Pat,
    pub guard: Option<Expr>,
    pub body: Block,
}

pub struct Region {
    pub index: usize,
    pub param: Binding,
    pub handler: Block,
    pub body: Block,
    /// The region is the rest of a body (the function's or a scope's): its value is that
    /// body's value.
    pub body_level: bool,
    /// Whether the enclosing body is the workflow's or a scope's (what an error leaving it
    /// means for the handler).
    pub in_scope: bool,
    /// The type of the enclosing body's value, which `return` hands out through the region,
    /// when the macro knows it (needed only if the handler awaits).
    pub exit_ty: Option<Type>,
    /// The context whose scope the handler guards.
    pub guard: syn::Ident,
    /// Hygienic name of the variable that remembers how the region was left.
    pub exit: syn::Ident,
    /// The `on_cancel!` invocation, for errors about the region.
    pub span: Span,
    /// The handler's body, for errors about its value.
    pub handler_span: Span,
    /// The handler's value is `()` or it never ends (no last expression, or one that
    /// diverges like `panic!(..)`): generated code gives it the type `()` explicitly, so that
    /// a handler that panics does not leave the type of its value to never-type fallback.
    pub handler_ends_without_value: bool,
}

#[derive(Clone)]
pub enum OpKind {
    Activity(syn::Path),
    Sleep,
    Cancelled,
    /// Awaiting an `OpHandle<T>` started earlier: yields `T`.
    Handle(Type),
    /// `ctx.race(handles)`: yields `Raced`.
    Race,
    /// `ctx.join(handles)`: yields `Joined`.
    Join,
    /// `ctx.child(workflow, id, input)`: yields the child workflow's output.
    Child(syn::Path),
    /// `ctx.cancel_external(id, reason)`: resolves once the cancel is recorded.
    CancelExternal,
    /// `ctx.parallel(condition, [async { .. }, ..])`: the index of its `ParallelSpec`.
    Parallel(usize),
    /// `ctx.compensate()` (true) / `ctx.confirm()` (false): runs the handlers of the
    /// completed compensable blocks now.
    Handlers(bool),
}

/// A parallel block: each branch becomes its own nested machine.
pub struct ParallelSpec {
    /// The context the block runs under (inside each branch, `ctx` is the branch's own).
    pub ctx: syn::Ident,
    /// The completion condition, evaluated after each branch ends.
    pub condition: Expr,
    pub branches: Vec<BranchSpec>,
}

/// A compensable block (R12): its body runs as a cancellable scope; once it completes, its
/// handlers are kept as nested machines (with copies of the locals they use) until the
/// workflow compensates or confirms them.
pub struct CompensableSpec {
    /// The context the handlers' `ctx` stands for (a fresh disconnected context when run).
    pub ctx: syn::Ident,
    pub compensate: Option<BranchSpec>,
    pub confirm: Option<BranchSpec>,
}

/// A scope started with `.start()` (R3.7): its block becomes a machine of its own, kept in
/// the instance while it runs, with its own copies of the outer locals it uses.
pub struct StartedSpec {
    pub body: syn::Block,
    pub captures: Vec<Binding>,
    /// The context the block runs under (inside it, the same name is the scope's context).
    pub ctx: syn::Ident,
    /// The `Ok` type of the block's `Result<T, WorkflowError>` (from `ScopeHandle<T>`).
    pub ok: Type,
}

/// One branch: its body and the outer locals it uses (each gets its own copy).
pub struct BranchSpec {
    pub body: syn::Block,
    pub captures: Vec<Binding>,
}

pub struct AwaitInfo {
    pub base_name: String,
    pub variant: syn::Ident,
    pub kind: OpKind,
    pub desc: String,
    pub in_handler: bool,
    pub span: Span,
}

impl AwaitInfo {
    /// The type awaiting the operation yields.
    pub fn output_type(&self) -> Type {
        match &self.kind {
            OpKind::Activity(path) => syn::parse_quote! {
                ::core::result::Result<<#path as ::workflow_core::Activity>::Output, ::workflow_core::WorkflowError>
            },
            OpKind::Sleep => {
                syn::parse_quote!(::core::result::Result<(), ::workflow_core::WorkflowError>)
            }
            OpKind::Cancelled => syn::parse_quote!(()),
            OpKind::Handle(output) => output.clone(),
            OpKind::Race => syn::parse_quote! {
                ::core::result::Result<::workflow_core::Raced, ::workflow_core::WorkflowError>
            },
            OpKind::Join => syn::parse_quote! {
                ::core::result::Result<::workflow_core::Joined, ::workflow_core::WorkflowError>
            },
            OpKind::Child(path) => syn::parse_quote! {
                ::core::result::Result<<#path as ::workflow_core::Workflow>::Output, ::workflow_core::WorkflowError>
            },
            OpKind::CancelExternal => {
                syn::parse_quote!(::core::result::Result<(), ::workflow_core::WorkflowError>)
            }
            OpKind::Parallel(_) => syn::parse_quote! {
                ::core::result::Result<::workflow_core::ParallelOutcome, ::workflow_core::WorkflowError>
            },
            OpKind::Handlers(_) => {
                syn::parse_quote!(::core::result::Result<(), ::workflow_core::WorkflowError>)
            }
        }
    }
}

pub struct Lowering {
    pub errors: Option<syn::Error>,
    pub awaits: Vec<AwaitInfo>,
    pub regions: usize,
    temps: usize,
    scopes: Vec<Vec<Binding>>,
    handler_depth: usize,
    /// The disconnected contexts of the handlers being lowered, innermost last.
    handler_params: Vec<(syn::Ident, syn::Ident)>,
    root_ctx: syn::Ident,
    bodies: Vec<Body>,
    scope_count: usize,
    /// The type a scope about to be lowered gives its value (from `let r: T = ..`).
    expected_scope_ty: Option<Type>,
    /// The parallel blocks met, by `OpKind::Parallel` index.
    pub parallels: Vec<ParallelSpec>,
    /// The compensable blocks met, by site.
    pub compensables: Vec<CompensableSpec>,
    /// The scopes started with `.start()`, by site.
    pub started: Vec<StartedSpec>,
    /// The name of the machine being compiled (the started blocks' machines are named after
    /// it).
    machine: String,
    /// Lowering a parallel branch (where compensable blocks are not supported).
    in_branch: bool,
    /// Whether the body awaits `compensate()` or `confirm()` (it then needs the handler
    /// driver even without a compensable block of its own).
    pub awaits_handlers: bool,
    loops_in_region: Vec<RegionLoops>,
}

/// Loops entered since the innermost region started, to reject `break`/`continue` that would
/// leave the guarded code.
#[derive(Default)]
struct RegionLoops {
    labels: Vec<String>,
    depth: usize,
}

fn hygienic(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::mixed_site())
}

impl Lowering {
    /// `result_ty` is the workflow function's `Result<O, E>`.
    pub fn new(
        machine: String,
        root_ctx: syn::Ident,
        params: Vec<Binding>,
        result_ty: Type,
    ) -> Self {
        Lowering {
            machine,
            started: Vec::new(),
            errors: None,
            awaits: Vec::new(),
            regions: 0,
            temps: 0,
            scopes: vec![params],
            handler_depth: 0,
            handler_params: Vec::new(),
            bodies: vec![Body {
                value_ty: Some(result_ty),
                in_scope: false,
                ctx: root_ctx.clone(),
            }],
            root_ctx,
            loops_in_region: Vec::new(),
            scope_count: 0,
            expected_scope_ty: None,
            parallels: Vec::new(),
            compensables: Vec::new(),
            in_branch: false,
            awaits_handlers: false,
        }
    }

    /// Lowers a branch body as the body of its own machine: errors leaving it count like
    /// errors leaving a scope.
    pub fn for_branch(mut self) -> Self {
        if let Some(b) = self.bodies.first_mut() {
            b.in_scope = true;
        }
        self.in_branch = true;
        self
    }

    /// Recognises `C.compensable(async { .. })` followed by optional
    /// `.compensate(async { .. })` and `.confirm(async { .. })`, on a context variable `C`.
    #[allow(clippy::type_complexity)]
    fn compensable_call<'e>(
        &self,
        e: &'e Expr,
    ) -> Option<(
        syn::Ident,
        &'e syn::Block,
        Option<&'e syn::Block>,
        Option<&'e syn::Block>,
    )> {
        let mut compensate = None;
        let mut confirm = None;
        let mut cur = e;
        loop {
            let Expr::MethodCall(m) = cur else {
                return None;
            };
            let [Expr::Async(block)] = m.args.iter().collect::<Vec<_>>().as_slice() else {
                return None;
            };
            match m.method.to_string().as_str() {
                "compensate" if compensate.is_none() => compensate = Some(&block.block),
                "confirm" if confirm.is_none() => confirm = Some(&block.block),
                "compensable" => {
                    let Expr::Path(p) = &*m.receiver else {
                        return None;
                    };
                    let ctx = p.path.get_ident()?;
                    if !self.is_context(&ctx.to_string()) {
                        return None;
                    }
                    return Some((ctx.clone(), &block.block, compensate, confirm));
                }
                _ => return None,
            }
            cur = &m.receiver;
        }
    }

    /// Recognises `C.parallel(condition, [async { .. }, ..])` on a context variable `C`.
    fn parallel_call<'e>(
        &self,
        e: &'e Expr,
    ) -> Option<(syn::Ident, &'e Expr, Vec<&'e syn::Block>)> {
        let Expr::MethodCall(m) = e else { return None };
        if m.method != "parallel" {
            return None;
        }
        let Expr::Path(p) = &*m.receiver else {
            return None;
        };
        let ctx = p.path.get_ident()?;
        if !self.is_context(&ctx.to_string()) {
            return None;
        }
        let args: Vec<&Expr> = m.args.iter().collect();
        let [condition, Expr::Array(branches)] = args.as_slice() else {
            return None;
        };
        let blocks: Option<Vec<&syn::Block>> = branches
            .elems
            .iter()
            .map(|b| match b {
                Expr::Async(a) => Some(&a.block),
                _ => None,
            })
            .collect();
        Some((ctx.clone(), condition, blocks?))
    }

    /// The outer locals a branch uses: it gets its own copy of each, so each needs a type.
    fn branch_captures(&mut self, ctx: &syn::Ident, body: &syn::Block, what: &str) -> Vec<Binding> {
        let mut v = super::names::FreeVars::default();
        syn::visit::Visit::visit_block(&mut v, body);
        let mut captures = Vec::new();
        for name in v.free {
            if *ctx == name {
                continue;
            }
            let Some(binding) = self
                .scopes
                .iter()
                .rev()
                .flat_map(|s| s.iter().rev())
                .find(|b| b.ident == name)
                .cloned()
            else {
                continue; // not a local: an item, a constant, a function
            };
            match &binding.kind {
                BindKind::Value(Some(_)) => captures.push(binding),
                BindKind::Value(None) => self.error(syn::Error::new(
                    binding.ident.span(),
                    format!(
                        "`{name}` is used in {what}, which runs as its own machine \
                         with its own copy of it, so the macro needs its type: annotate it \
                         (`let {name}: Type = ...`)"
                    ),
                )),
                BindKind::Context | BindKind::Ambient => self.error(syn::Error::new(
                    binding.ident.span(),
                    format!("{what} can only use its own context `{ctx}`, not `{name}`"),
                )),
            }
        }
        captures
    }

    fn current_ctx(&self) -> syn::Ident {
        self.bodies
            .last()
            .map(|b| b.ctx.clone())
            .unwrap_or_else(|| self.root_ctx.clone())
    }

    /// Recognises `C.cancellable(async { .. })`, `C.non_cancellable(async { .. })` and
    /// `C.with_timeout(d, async { .. })` on a context variable `C`.
    /// A scope or a compensable block: an await whose value is its async block's, so an
    /// annotation around it gives the block its value type.
    fn scope_like(&self, e: &Expr) -> bool {
        self.scope_call(e).is_some() || self.compensable_call(e).is_some()
    }

    fn scope_call<'e>(&self, e: &'e Expr) -> Option<(syn::Ident, ScopeSpec, &'e syn::Block)> {
        let Expr::MethodCall(m) = e else { return None };
        let Expr::Path(p) = &*m.receiver else {
            return None;
        };
        let ctx = p.path.get_ident()?;
        if !self.is_context(&ctx.to_string()) {
            return None;
        }
        let args: Vec<&Expr> = m.args.iter().collect();
        let (spec, body) = match (m.method.to_string().as_str(), args.as_slice()) {
            ("cancellable", [Expr::Async(a)]) => (ScopeSpec::Cancellable, a),
            ("non_cancellable", [Expr::Async(a)]) => (ScopeSpec::NonCancellable, a),
            ("with_timeout", [d, Expr::Async(a)]) => (ScopeSpec::Timeout((*d).clone()), a),
            _ => return None,
        };
        Some((ctx.clone(), spec, &body.block))
    }

    /// Recognises `C.cancellable(async { .. }).start()` and its kin: a scope started without
    /// being awaited (R3.7).
    fn started_call<'e>(&self, e: &'e Expr) -> Option<(syn::Ident, ScopeSpec, &'e syn::Block)> {
        let Expr::MethodCall(m) = e else { return None };
        if m.method != "start" || !m.args.is_empty() {
            return None;
        }
        self.scope_call(&m.receiver)
    }

    /// A started scope used other than as the value of a `let`.
    fn unbound_started(&mut self, e: &Expr) {
        self.error(syn::Error::new(
            start_span(e),
            "bind a started scope's handle with `let`, annotated with its block's `Ok` type: \
             `let handle: ScopeHandle<T> = ctx.cancellable(async { .. }).start();`, then \
             await, race or join `handle` (a block nobody awaits is dropped when the workflow \
             returns)",
        ));
    }

    /// The name of the machine compiled from the block of started scope `site`.
    pub fn started_machine(machine: &str, site: usize) -> syn::Ident {
        format_ident!("{}Started{}", machine, site)
    }

    /// `let h: ScopeHandle<T> = C.cancellable(async { .. }).start();`: the block becomes a
    /// machine of its own (`StartedSpec`); the statement builds it, with copies of the outer
    /// locals it uses, and starts it.
    fn lower_started(
        &mut self,
        local: &syn::Local,
        pat: &Pat,
        ty: Option<&Type>,
        (ctx, spec, body): (syn::Ident, ScopeSpec, syn::Block),
        out: &mut Vec<Node>,
    ) {
        let span = start_span(
            local
                .init
                .as_ref()
                .map_or(&syn::parse_quote!(()), |i| &*i.expr),
        );
        if self.in_branch {
            self.error(syn::Error::new(
                span,
                "a scope can be started with `.start()` only in the workflow body (or its scopes \
                 and handlers), not in a parallel branch, a compensable block's handler or \
                 another started scope's block: await the scope here instead",
            ));
        }
        let Some(ok) = ty.and_then(scope_handle_output) else {
            self.error(syn::Error::new(
                span,
                "a started scope's block runs as a machine of its own, so the macro needs the \
                 type of its value: annotate the handle with the block's `Ok` type, \
                 `let handle: ScopeHandle<T> = ctx.cancellable(async { .. }).start();` (the \
                 block yields `Result<T, WorkflowError>`)",
            ));
            // Declared as a handle all the same, so that awaiting it adds no second error.
            let stand_in: Type = syn::parse_quote!(::workflow_core::ScopeHandle<()>);
            let mut binds = Vec::new();
            pat_bindings(pat, Some(&stand_in), &mut binds);
            self.declare(&binds);
            return;
        };
        let captures = self.branch_captures(&ctx, &body, "a started scope's block");
        let site = self.started.len();
        let machine = Self::started_machine(&self.machine, site);
        let fields = captures.iter().map(|c| {
            let ident = &c.ident;
            quote::quote!(#ident: ::core::clone::Clone::clone(&#ident))
        });
        let spec = match spec {
            ScopeSpec::Cancellable => {
                quote::quote!(::workflow_core::__private::ScopeSpec::Cancellable)
            }
            ScopeSpec::NonCancellable => {
                quote::quote!(::workflow_core::__private::ScopeSpec::NonCancellable)
            }
            ScopeSpec::Timeout(d) => {
                quote::quote!(::workflow_core::__private::ScopeSpec::Timeout(#d))
            }
        };
        let site_lit = site as u32;
        let init: Expr = syn::parse_quote_spanned! {span=>
            ::workflow_core::__private::start_scope::<#machine, #ok>(
                &#ctx,
                #site_lit,
                #spec,
                #machine::Start { #(#fields),* },
            )
        };
        self.started.push(StartedSpec {
            body,
            captures,
            ctx,
            ok,
        });
        let mut local = local.clone();
        if let Some(i) = &mut local.init {
            *i.expr = init;
        }
        let mut binds = Vec::new();
        pat_bindings(pat, ty, &mut binds);
        self.declare(&binds);
        self.push_plain(syn::Stmt::Local(local), binds, out);
    }

    fn lower_scope(&mut self, ctx: syn::Ident, spec: ScopeSpec, body: &syn::Block) -> ScopeNode {
        let index = self.scope_count;
        self.scope_count += 1;
        let value_ty = self.expected_scope_ty.take();
        self.bodies.push(Body {
            value_ty,
            in_scope: true,
            ctx: ctx.clone(),
        });
        // `break` and `continue` cannot leave an async block; jumps are checked afresh.
        let outer_loops = std::mem::take(&mut self.loops_in_region);
        // Inside the body, `ctx` is the scope's context: re-derived on every resume from the
        // scope's own (stored) context, never stored itself.
        let pre = vec![Binding {
            ident: ctx.clone(),
            mutable: false,
            kind: BindKind::Ambient,
        }];
        self.scopes.push(pre.clone());
        let nodes = self.lower_stmts(&body.stmts, true);
        self.scopes.pop();
        self.loops_in_region = outer_loops;
        self.bodies.pop();
        ScopeNode {
            spec,
            ctx,
            inner: hygienic(&format!("__wf_scope_ctx{index}")),
            compensable: None,
            compensable_reads: Vec::new(),
            body: Block { pre, nodes },
            label: syn::Lifetime::new(&format!("'__wf_scope{index}"), Span::mixed_site()),
        }
    }

    pub fn error(&mut self, e: syn::Error) {
        match &mut self.errors {
            Some(all) => all.combine(e),
            None => self.errors = Some(e),
        }
    }

    fn lookup(&self, name: &str) -> Option<BindKind> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|s| s.iter().rev())
            .find(|b| b.ident == name)
            .map(|b| b.kind.clone())
    }

    fn is_context(&self, name: &str) -> bool {
        matches!(
            self.lookup(name),
            Some(BindKind::Context) | Some(BindKind::Ambient)
        )
    }

    /// A context variable, or `ctx.disconnected()` of one.
    fn is_context_expr(&self, e: &Expr) -> bool {
        match e {
            Expr::Paren(p) => self.is_context_expr(&p.expr),
            Expr::Path(p) => p
                .path
                .get_ident()
                .is_some_and(|i| self.is_context(&i.to_string())),
            Expr::MethodCall(m) => m.method == "disconnected" && self.is_context_expr(&m.receiver),
            _ => false,
        }
    }

    fn declare(&mut self, binds: &[Binding]) {
        if let Some(top) = self.scopes.last_mut() {
            top.extend(binds.iter().cloned());
        }
    }

    fn infer(&self, e: &Expr) -> Option<Type> {
        // `op.start()` starts an operation without waiting: a handle of its output.
        if let Expr::MethodCall(m) = e {
            if m.method == "start" && m.args.is_empty() {
                if let Ok((kind, _, _)) = self.classify(&m.receiver) {
                    let info = AwaitInfo {
                        base_name: String::new(),
                        variant: format_ident!("Unused"),
                        kind,
                        desc: String::new(),
                        in_handler: false,
                        span: Span::call_site(),
                    };
                    let output = info.output_type();
                    return Some(syn::parse_quote!(::workflow_core::OpHandle<#output>));
                }
            }
        }
        infer_type(e, &|n| self.lookup(n))
    }

    /// Lowers the function body.
    pub fn lower_body(&mut self, body: &syn::Block) -> Block {
        let nodes = self.lower_stmts(&body.stmts, true);
        Block {
            pre: Vec::new(),
            nodes,
        }
    }

    fn lower_block(&mut self, block: &syn::Block, pre: Vec<Binding>) -> Block {
        self.scopes.push(pre.clone());
        let nodes = self.lower_stmts(&block.stmts, false);
        self.scopes.pop();
        Block { pre, nodes }
    }

    fn lower_stmts(&mut self, stmts: &[syn::Stmt], body_level: bool) -> Vec<Node> {
        let mut nodes = Vec::new();
        for (i, stmt) in stmts.iter().enumerate() {
            if let syn::Stmt::Macro(m) = stmt {
                if is_on_cancel(&m.mac) {
                    let region = self.lower_region(m, &stmts[i + 1..], body_level);
                    if let Some(region) = region {
                        nodes.push(Node::Region(Box::new(region)));
                    }
                    return nodes;
                }
            }
            let is_last = i + 1 == stmts.len();
            self.lower_stmt(stmt, is_last, body_level && is_last, &mut nodes);
        }
        nodes
    }

    fn lower_region(
        &mut self,
        m: &syn::StmtMacro,
        rest: &[syn::Stmt],
        body_level: bool,
    ) -> Option<Region> {
        if self.handler_depth > 0 {
            self.error(syn::Error::new_spanned(
                &m.mac,
                "`on_cancel!` cannot be nested inside a cancellation handler; \
                 the handler already runs with a disconnected context that is never cancelled",
            ));
            return None;
        }
        let closure: syn::ExprClosure = match m.mac.parse_body() {
            Ok(c) => c,
            Err(e) => {
                self.error(syn::Error::new(
                    e.span(),
                    format!(
                        "expected `on_cancel!(|cleanup| {{ .. }})`: a closure taking the \
                         disconnected context ({e})"
                    ),
                ));
                return None;
            }
        };
        let param = match closure.inputs.first() {
            Some(Pat::Ident(p)) if closure.inputs.len() == 1 => p.ident.clone(),
            Some(Pat::Type(t)) if closure.inputs.len() == 1 => match &*t.pat {
                Pat::Ident(p) => p.ident.clone(),
                other => {
                    self.error(syn::Error::new_spanned(
                        other,
                        "name the handler's context with a plain identifier, e.g. `|cleanup|`",
                    ));
                    return None;
                }
            },
            _ => {
                self.error(syn::Error::new_spanned(
                    &closure.inputs,
                    "the handler takes exactly one parameter, its disconnected context: \
                     `on_cancel!(|cleanup| { .. })`",
                ));
                return None;
            }
        };
        let mut fails = HandlerExits::default();
        fails.visit_expr(&closure.body);
        for e in fails.errors {
            self.error(e);
        }
        let index = self.regions;
        self.regions += 1;
        let param = Binding {
            ident: param,
            mutable: false,
            kind: BindKind::Context,
        };
        let handler_body: syn::Block = match &*closure.body {
            Expr::Block(b) => b.block.clone(),
            other => syn::parse_quote!({ #other }),
        };
        // The guarded code first, then the handler: states are numbered in source order of
        // execution, which is how the graph reads best.
        if !body_level {
            if let Some(syn::Stmt::Expr(tail, None)) = rest.last() {
                if produces_value(tail) {
                    self.error(syn::Error::new_spanned(
                        tail,
                        "the code guarded by `on_cancel!` is the rest of this block, so it \
                         cannot give the block a value: end this expression with `;` and use \
                         its value inside the block, or move `on_cancel!` to the workflow body \
                         (where the guarded code may produce the workflow's result)",
                    ));
                }
            }
        }
        self.loops_in_region.push(RegionLoops::default());
        self.scopes.push(Vec::new());
        let body_nodes = self.lower_stmts(rest, body_level);
        self.scopes.pop();
        self.loops_in_region.pop();

        self.handler_depth += 1;
        let guard = self.current_ctx();
        self.handler_params
            .push((param.ident.clone(), guard.clone()));
        self.loops_in_region.push(RegionLoops::default());
        let handler = self.lower_block(&handler_body, vec![param.clone()]);
        self.loops_in_region.pop();
        self.handler_params.pop();
        self.handler_depth -= 1;
        Some(Region {
            index,
            param,
            handler,
            body: Block {
                pre: Vec::new(),
                nodes: body_nodes,
            },
            body_level,
            in_scope: self.bodies.last().is_some_and(|b| b.in_scope),
            exit_ty: self.bodies.last().and_then(|b| b.value_ty.clone()),
            guard,
            // Located at `on_cancel!`, so that an error about storing it points there.
            exit: syn::Ident::new(
                &format!("__wf_exit_{index}"),
                Span::mixed_site().located_at(m.mac.path.span()),
            ),
            span: m.mac.path.span(),
            handler_span: match handler_body.stmts.last() {
                Some(syn::Stmt::Expr(tail, None)) => tail.span(),
                _ => closure.body.span(),
            },
            handler_ends_without_value: ends_without_value(&handler_body),
        })
    }

    fn push_plain(&mut self, stmt: syn::Stmt, binds: Vec<Binding>, out: &mut Vec<Node>) {
        self.check_hidden_awaits(&stmt);
        self.check_region_jumps(&stmt);
        out.push(Node::Plain { stmt, binds });
    }

    /// `body_tail`: the statement is the last expression of a function or scope body.
    fn lower_stmt(
        &mut self,
        stmt: &syn::Stmt,
        is_last: bool,
        body_tail: bool,
        out: &mut Vec<Node>,
    ) {
        match stmt {
            syn::Stmt::Local(local) => self.lower_local(local, out),
            syn::Stmt::Expr(e, _) if self.started_call(e).is_some() => self.unbound_started(e),
            syn::Stmt::Expr(e, semi) => {
                if !expr_has_await(e) {
                    self.push_plain(stmt.clone(), Vec::new(), out);
                    return;
                }
                let sink = if semi.is_none() && is_last {
                    Sink::Tail
                } else {
                    Sink::Stmt
                };
                if let Some(c) = self.compound(e, out) {
                    out.push(Node::Compound {
                        c,
                        sink,
                        binds: Vec::new(),
                    });
                    return;
                }
                let mut e = e.clone();
                if let (true, Expr::Await(a)) = (body_tail && semi.is_none(), &e) {
                    if self.scope_like(&a.base) {
                        // A scope as a body's last expression: its value is the body's.
                        self.expected_scope_ty =
                            self.bodies.last().and_then(|b| b.value_ty.clone());
                    }
                }
                let mut work = false;
                self.hoist(&mut e, out, &mut work);
                self.expected_scope_ty = None;
                self.push_plain(syn::Stmt::Expr(e, *semi), Vec::new(), out);
            }
            syn::Stmt::Macro(_) => self.push_plain(stmt.clone(), Vec::new(), out),
            syn::Stmt::Item(_) => self.push_plain(stmt.clone(), Vec::new(), out),
        }
    }

    fn lower_local(&mut self, local: &syn::Local, out: &mut Vec<Node>) {
        let (pat, ty) = match &local.pat {
            Pat::Type(t) => ((*t.pat).clone(), Some((*t.ty).clone())),
            p => (p.clone(), None),
        };
        let Some(init) = &local.init else {
            let mut binds = Vec::new();
            pat_bindings(&pat, ty.as_ref(), &mut binds);
            self.declare(&binds);
            self.push_plain(syn::Stmt::Local(local.clone()), binds, out);
            return;
        };
        if let Some((_, diverge)) = &init.diverge {
            if expr_has_await(diverge) {
                self.error(syn::Error::new_spanned(
                    diverge,
                    "`.await` in the `else` of a `let ... else` is not supported; \
                     use a `match` with the await in an arm",
                ));
            }
        }
        if init.diverge.is_none() {
            if let Some((ctx, spec, body)) = self.started_call(&init.expr) {
                let started = (ctx, spec, body.clone());
                self.lower_started(local, &pat, ty.as_ref(), started, out);
                return;
            }
        }
        // A context derived from another context stays a context.
        let kind = if self.is_context_expr(&init.expr) {
            Some(BindKind::Context)
        } else {
            None
        };
        if init.diverge.is_none() && expr_has_await(&init.expr) {
            if let Some(c) = self.compound(&init.expr, out) {
                let mut binds = Vec::new();
                pat_bindings(&pat, ty.as_ref(), &mut binds);
                self.declare(&binds);
                let pat = match &ty {
                    Some(ty) => Pat::Type(syn::PatType {
                        attrs: Vec::new(),
                        pat: Box::new(pat),
                        colon_token: Default::default(),
                        ty: Box::new(ty.clone()),
                    }),
                    None => pat,
                };
                out.push(Node::Compound {
                    c,
                    sink: Sink::Let { pat },
                    binds,
                });
                return;
            }
        }
        let mut local = local.clone();
        if let Some(init) = &mut local.init {
            if let (Some(ty), Expr::Await(a)) = (&ty, &*init.expr) {
                if self.scope_like(&a.base) {
                    self.expected_scope_ty = Some(ty.clone());
                }
            }
            let mut work = false;
            self.hoist(&mut init.expr, out, &mut work);
            self.expected_scope_ty = None;
        }
        let inferred = ty
            .clone()
            .or_else(|| local.init.as_ref().and_then(|i| self.infer(&i.expr)));
        let mut binds = Vec::new();
        pat_bindings(&pat, inferred.as_ref(), &mut binds);
        if let (Some(kind), [b]) = (kind, binds.as_mut_slice()) {
            b.kind = kind;
        }
        self.declare(&binds);
        self.push_plain(syn::Stmt::Local(local), binds, out);
    }

    /// Lowers control flow that contains an await. Nodes that must run before it (hoisted
    /// awaits of a condition, a `for` loop's item list) go to `out`.
    fn compound(&mut self, e: &Expr, out: &mut Vec<Node>) -> Option<Compound> {
        match e {
            Expr::If(i) => {
                let mut cond = (*i.cond).clone();
                let mut work = false;
                self.hoist(&mut cond, out, &mut work);
                let mut pre = Vec::new();
                if let Expr::Let(l) = &cond {
                    // `if let Err(e) = r` with `r: Result<T, E>` gives `e: E`.
                    let ty = self.infer(&l.expr);
                    pat_bindings(&l.pat, ty.as_ref(), &mut pre);
                }
                let then = self.lower_block(&i.then_branch, pre);
                let els = i.else_branch.as_ref().map(|(_, e)| match &**e {
                    Expr::Block(b) if b.label.is_none() => self.lower_block(&b.block, Vec::new()),
                    other => {
                        let b: syn::Block = syn::parse_quote!({ #other });
                        self.lower_block(&b, Vec::new())
                    }
                });
                Some(Compound::If { cond, then, els })
            }
            Expr::Match(m) => {
                let mut scrutinee = (*m.expr).clone();
                let mut work = false;
                self.hoist(&mut scrutinee, out, &mut work);
                let scrutinee_ty = self.infer(&scrutinee);
                let arms = m
                    .arms
                    .iter()
                    .map(|arm| {
                        let mut pre = Vec::new();
                        pat_bindings(&arm.pat, scrutinee_ty.as_ref(), &mut pre);
                        if let Some((_, g)) = &arm.guard {
                            if expr_has_await(g) {
                                self.error(syn::Error::new_spanned(
                                    g,
                                    "`.await` in a match guard is not supported; \
                                     await before the `match` and bind the result with `let`",
                                ));
                            }
                        }
                        let body: syn::Block = match &*arm.body {
                            Expr::Block(b) if b.label.is_none() => b.block.clone(),
                            other => syn::parse_quote!({ #other }),
                        };
                        Arm {
                            pat: arm.pat.clone(),
                            guard: arm.guard.as_ref().map(|(_, g)| (**g).clone()),
                            body: self.lower_block(&body, pre),
                        }
                    })
                    .collect();
                Some(Compound::Match { scrutinee, arms })
            }
            Expr::Loop(l) => {
                let body = self.lower_loop_body(&l.label, &l.body);
                Some(Compound::Loop {
                    label: l.label.clone(),
                    body,
                })
            }
            Expr::Block(b) => Some(Compound::Block {
                label: b.label.clone(),
                body: self.lower_block(&b.block, Vec::new()),
            }),
            Expr::While(w) => {
                let body = &w.body;
                let stmts = &body.stmts;
                let desugared: syn::Block = match &*w.cond {
                    Expr::Let(l) => {
                        let (pat, scrut) = (&l.pat, &l.expr);
                        syn::parse_quote!({ let #pat = #scrut else { break; }; #(#stmts)* })
                    }
                    cond => syn::parse_quote!({ if !(#cond) { break; } #(#stmts)* }),
                };
                let body = self.lower_loop_body(&w.label, &desugared);
                Some(Compound::Loop {
                    label: w.label.clone(),
                    body,
                })
            }
            Expr::ForLoop(f) => {
                // The iterable is evaluated once, before the loop: awaits in it go first.
                let mut iterable = (*f.expr).clone();
                let mut work = false;
                self.hoist(&mut iterable, out, &mut work);
                let Some(item) = self.for_item_type(&iterable) else {
                    let message = if is_range(&iterable) {
                        "the position of a `for` loop over a range whose body awaits is kept in \
                         the workflow state, so the macro must know the range's type; give a \
                         bound a type, e.g. `0u64..n`, or bind a bound first: \
                         `let end: u64 = ...; for i in 0..end { .. }`"
                    } else {
                        "the items of a `for` loop whose body awaits are kept in the workflow \
                         state, so the macro must know their type; iterate over a variable with \
                         a declared type instead, e.g. `let items: Vec<Item> = ...; for item in items { .. }`"
                    };
                    self.error(syn::Error::new_spanned(&f.expr, message));
                    // Lowered anyway (as a plain block), so that this is the only error.
                    return Some(Compound::Block {
                        label: None,
                        body: Block {
                            pre: Vec::new(),
                            nodes: Vec::new(),
                        },
                    });
                };
                let iter = hygienic(&format!("__wf_iter{}", self.temps));
                self.temps += 1;
                // A range is kept as its position (two numbers); anything else as the list
                // of its remaining items, last first.
                let (list_ty, prelude): (Type, syn::Stmt) = if is_range(&iterable) {
                    let ty = syn::parse_quote!(::workflow_core::__private::RangeIter<#item>);
                    let init = syn::parse_quote! {
                        let mut #iter: #ty = ::core::convert::From::from(#iterable);
                    };
                    (ty, init)
                } else {
                    let ty = syn::parse_quote!(::std::vec::Vec<#item>);
                    let init = syn::parse_quote! {
                        let mut #iter: #ty = ::workflow_core::__private::collect_rev(#iterable);
                    };
                    (ty, init)
                };
                if let syn::Stmt::Local(prelude) = &prelude {
                    self.lower_local(prelude, out);
                }
                if let Some(Node::Plain { binds, .. }) = out.last_mut() {
                    for b in binds.iter_mut() {
                        b.kind = BindKind::Value(Some(list_ty.clone()));
                    }
                }
                let pat = &f.pat;
                let stmts = &f.body.stmts;
                let next = if is_range(&iterable) {
                    quote::quote!(::core::iter::Iterator::next(&mut #iter))
                } else {
                    quote::quote!(#iter.pop())
                };
                // The loop's pattern gets the item type, so that what it binds can be kept.
                let item_var = hygienic(&format!("__wf_item{}", self.temps));
                let desugared: syn::Block = syn::parse_quote!({
                    let ::core::option::Option::Some(#item_var) = #next else { break; };
                    let #pat: #item = #item_var;
                    #(#stmts)*
                });
                let body = self.lower_loop_body(&f.label, &desugared);
                Some(Compound::Loop {
                    label: f.label.clone(),
                    body,
                })
            }
            _ => None,
        }
    }

    fn lower_loop_body(&mut self, label: &Option<syn::Label>, body: &syn::Block) -> Block {
        if let Some(r) = self.loops_in_region.last_mut() {
            r.depth += 1;
            if let Some(l) = label {
                r.labels.push(l.name.ident.to_string());
            }
        }
        let b = self.lower_block(body, Vec::new());
        if let Some(r) = self.loops_in_region.last_mut() {
            r.depth -= 1;
            if label.is_some() {
                r.labels.pop();
            }
        }
        b
    }

    /// The element type of a `for` loop's iterable, when the macro can name it.
    fn for_item_type(&self, e: &Expr) -> Option<Type> {
        match e {
            Expr::Paren(p) => self.for_item_type(&p.expr),
            Expr::Range(r) => r
                .start
                .as_deref()
                .and_then(|s| self.infer(s))
                .or_else(|| r.end.as_deref().and_then(|s| self.infer(s))),
            Expr::MethodCall(m) if m.method == "into_iter" || m.method == "clone" => {
                self.for_item_type(&m.receiver)
            }
            Expr::Reference(_) => None,
            other => {
                let ty = self.infer(other)?;
                Some(syn::parse_quote!(<#ty as ::core::iter::IntoIterator>::Item))
            }
        }
    }

    /// Moves every `.await` out of `e` into `Await` nodes, in evaluation order, replacing each
    /// with its temporary. `work` records whether code with possible side effects was
    /// evaluated before: an await after it would change the order of evaluation.
    fn hoist(&mut self, e: &mut Expr, out: &mut Vec<Node>, work: &mut bool) {
        if self.started_call(e).is_some() {
            self.unbound_started(e);
            return;
        }
        if !expr_has_await(e) {
            if has_work(e) {
                *work = true;
            }
            return;
        }
        match e {
            Expr::Await(a) if self.parallel_call(&a.base).is_some() => {
                if *work {
                    self.error(syn::Error::new(
                        a.await_token.span(),
                        "this parallel block runs after other calls in the same expression; \
                         bind the earlier part with `let` first",
                    ));
                }
                let span = a.base.span();
                let Some((ctx, condition, blocks)) = self.parallel_call(&a.base) else {
                    return;
                };
                let blocks: Vec<syn::Block> = blocks.into_iter().cloned().collect();
                let condition = condition.clone();
                let branches: Vec<BranchSpec> = blocks
                    .into_iter()
                    .map(|body| BranchSpec {
                        captures: self.branch_captures(&ctx, &body, "a parallel branch"),
                        body,
                    })
                    .collect();
                let index = self.parallels.len();
                // For liveness, starting the block reads the condition and every capture.
                let reads: Vec<&syn::Ident> = branches
                    .iter()
                    .flat_map(|b: &BranchSpec| b.captures.iter().map(|c| &c.ident))
                    .collect();
                let start_reads: Expr = syn::parse_quote!((#condition, #(#reads),*));
                self.parallels.push(ParallelSpec {
                    ctx,
                    condition: condition.clone(),
                    branches,
                });
                let in_handler = self.handler_depth > 0;
                let base_name = format!("{}Parallel", if in_handler { "OnCancel" } else { "" });
                self.awaits.push(AwaitInfo {
                    variant: format_ident!("{}", base_name),
                    base_name,
                    kind: OpKind::Parallel(index),
                    desc: "parallel block".to_string(),
                    in_handler,
                    span,
                });
                let point = self.awaits.len() - 1;
                let temp = hygienic(&format!("__wf_aw{point}"));
                let binds = vec![Binding {
                    ident: temp.clone(),
                    mutable: false,
                    kind: BindKind::Value(Some(self.awaits[point].output_type())),
                }];
                self.declare(&binds);
                out.push(Node::Await {
                    point,
                    temp: temp.clone(),
                    op: start_reads,
                    binds,
                });
                *e = syn::parse_quote_spanned!(span=> #temp);
            }
            Expr::Await(a) if self.compensable_call(&a.base).is_some() => {
                if *work {
                    self.error(syn::Error::new(
                        a.await_token.span(),
                        "this compensable block runs after other calls in the same expression; \
                         bind the earlier part with `let` first",
                    ));
                }
                let span = a.base.span();
                if self.in_branch || self.handler_depth > 0 {
                    self.error(syn::Error::new(
                        span,
                        "compensable blocks belong in the workflow body (or its scopes), not in a \
                         parallel branch or a cancellation handler",
                    ));
                    return;
                }
                let Some((ctx, body, compensate, confirm)) = self.compensable_call(&a.base) else {
                    return;
                };
                let (body, compensate, confirm) =
                    (body.clone(), compensate.cloned(), confirm.cloned());
                // The handlers' copies are taken when the block completes, from the locals in
                // scope around it.
                let handler = |this: &mut Self, b: Option<syn::Block>| {
                    b.map(|body| BranchSpec {
                        captures: this.branch_captures(
                            &ctx,
                            &body,
                            "a compensable block's handler",
                        ),
                        body,
                    })
                };
                let compensate = handler(self, compensate);
                let confirm = handler(self, confirm);
                let reads: Vec<syn::Ident> = compensate
                    .iter()
                    .chain(confirm.iter())
                    .flat_map(|b| b.captures.iter().map(|c| c.ident.clone()))
                    .collect();
                let site = self.compensables.len();
                self.compensables.push(CompensableSpec {
                    ctx: ctx.clone(),
                    compensate,
                    confirm,
                });
                let value_ty = self.expected_scope_ty.clone();
                let mut scope = self.lower_scope(ctx, ScopeSpec::Cancellable, &body);
                scope.compensable = Some(site);
                scope.compensable_reads = reads;
                let temp = hygienic(&format!("__wf_scope_value{}", self.temps));
                self.temps += 1;
                let binds = vec![Binding {
                    ident: temp.clone(),
                    mutable: false,
                    kind: BindKind::Value(value_ty),
                }];
                self.declare(&binds);
                out.push(Node::Compound {
                    c: Compound::Scope(Box::new(scope)),
                    sink: Sink::Let {
                        pat: syn::parse_quote!(#temp),
                    },
                    binds,
                });
                *e = syn::parse_quote_spanned!(span=> #temp);
            }
            Expr::Await(a) if self.scope_call(&a.base).is_some() => {
                if *work {
                    self.error(syn::Error::new(
                        a.await_token.span(),
                        "this scope runs after other calls in the same expression; bind the \
                         earlier part with `let` first so that the workflow keeps the order as written",
                    ));
                }
                let span = a.base.span();
                let Some((ctx, spec, body)) = self.scope_call(&a.base) else {
                    return;
                };
                let body = body.clone();
                let value_ty = self.expected_scope_ty.clone();
                let scope = self.lower_scope(ctx, spec, &body);
                let temp = hygienic(&format!("__wf_scope_value{}", self.temps));
                self.temps += 1;
                let binds = vec![Binding {
                    ident: temp.clone(),
                    mutable: false,
                    kind: BindKind::Value(value_ty),
                }];
                self.declare(&binds);
                out.push(Node::Compound {
                    c: Compound::Scope(Box::new(scope)),
                    sink: Sink::Let {
                        pat: syn::parse_quote!(#temp),
                    },
                    binds,
                });
                *e = syn::parse_quote_spanned!(span=> #temp);
            }
            Expr::Await(a) => {
                // The operation's own arguments run when it starts, at the hoisted position,
                // so they do not count as work before the await; awaits nested in them do.
                if expr_has_await(&a.base) {
                    let mut nested = *work;
                    self.hoist(&mut a.base, out, &mut nested);
                }
                if *work {
                    self.error(syn::Error::new(
                        a.await_token.span(),
                        "this `.await` runs after other calls in the same expression; bind the \
                         earlier part with `let` first so that the workflow keeps the order as written",
                    ));
                }
                let span = a.base.span();
                let Some(point) = self.new_await(&a.base) else {
                    return;
                };
                let temp = hygienic(&format!("__wf_aw{point}"));
                let ty = self.awaits[point].output_type();
                let binds = vec![Binding {
                    ident: temp.clone(),
                    mutable: false,
                    kind: BindKind::Value(Some(ty)),
                }];
                self.declare(&binds);
                out.push(Node::Await {
                    point,
                    temp: temp.clone(),
                    op: (*a.base).clone(),
                    binds,
                });
                *e = syn::parse_quote_spanned!(span=> #temp);
            }
            Expr::Paren(x) => self.hoist(&mut x.expr, out, work),
            Expr::Group(x) => self.hoist(&mut x.expr, out, work),
            Expr::Try(x) => self.hoist(&mut x.expr, out, work),
            Expr::Field(x) => self.hoist(&mut x.base, out, work),
            Expr::Unary(x) => self.hoist(&mut x.expr, out, work),
            Expr::Cast(x) => self.hoist(&mut x.expr, out, work),
            Expr::Reference(x) => self.hoist(&mut x.expr, out, work),
            Expr::Return(x) => {
                if let Some(x) = &mut x.expr {
                    self.hoist(x, out, work)
                }
            }
            Expr::Break(x) => {
                if let Some(x) = &mut x.expr {
                    self.hoist(x, out, work)
                }
            }
            Expr::Let(x) => self.hoist(&mut x.expr, out, work),
            Expr::MethodCall(m) => {
                self.hoist(&mut m.receiver, out, work);
                for a in m.args.iter_mut() {
                    self.hoist(a, out, work);
                }
                *work = true;
            }
            Expr::Call(c) => {
                self.hoist(&mut c.func, out, work);
                for a in c.args.iter_mut() {
                    self.hoist(a, out, work);
                }
                *work = true;
            }
            Expr::Binary(b) => {
                self.hoist(&mut b.left, out, work);
                if matches!(b.op, syn::BinOp::And(_) | syn::BinOp::Or(_))
                    && expr_has_await(&b.right)
                {
                    self.error(syn::Error::new_spanned(
                        &b.right,
                        "an `.await` on the right of `&&` or `||` would run only sometimes; \
                         use an `if` around it instead",
                    ));
                    return;
                }
                self.hoist(&mut b.right, out, work);
            }
            Expr::Index(i) => {
                self.hoist(&mut i.expr, out, work);
                self.hoist(&mut i.index, out, work);
            }
            Expr::Tuple(t) => t.elems.iter_mut().for_each(|x| self.hoist(x, out, work)),
            Expr::Array(t) => t.elems.iter_mut().for_each(|x| self.hoist(x, out, work)),
            Expr::Struct(s) => {
                for f in s.fields.iter_mut() {
                    self.hoist(&mut f.expr, out, work);
                }
            }
            Expr::Assign(a) => {
                self.hoist(&mut a.right, out, work);
                self.hoist(&mut a.left, out, work);
            }
            Expr::Range(r) => {
                if let Some(x) = &mut r.start {
                    self.hoist(x, out, work);
                }
                if let Some(x) = &mut r.end {
                    self.hoist(x, out, work);
                }
            }
            other => {
                self.error(syn::Error::new_spanned(
                    &*other,
                    "control flow containing `.await` cannot be used inside a larger expression; \
                     bind it with `let value = ...;` and use `value`",
                ));
            }
        }
    }

    /// Recognises the awaited expression as a workflow operation and allocates its
    /// suspension point.
    /// What an awaited (or started) expression is: a workflow operation built on a context,
    /// or a handle of an operation started earlier. `Err` says why it is not one.
    fn classify(&self, base: &Expr) -> Result<(OpKind, String, String), syn::Error> {
        if let Expr::Path(p) = base {
            if let Some(ident) = p.path.get_ident() {
                if let Some(BindKind::Value(Some(ty))) = self.lookup(&ident.to_string()) {
                    if let Some(output) = handle_output(&ty) {
                        return Ok((
                            OpKind::Handle(output),
                            format!("Await{}", camel(&ident.to_string())),
                            format!("operation started as `{ident}`"),
                        ));
                    }
                }
            }
        }
        let mut cur = base;
        let root = loop {
            match cur {
                Expr::Paren(p) => cur = &p.expr,
                Expr::Group(g) => cur = &g.expr,
                Expr::MethodCall(m) => {
                    if self.is_context_expr(&m.receiver) {
                        break Some(m);
                    }
                    cur = &m.receiver;
                }
                _ => break None,
            }
        };
        let Some(root) = root else {
            return Err(not_an_operation(base));
        };
        if let Some((handler, guard)) = self.handler_params.last() {
            if matches!(&*root.receiver, Expr::Path(p) if p.path.is_ident(guard)) {
                let ctx = guard.to_string();
                return Err(syn::Error::new_spanned(
                    &root.receiver,
                    format!(
                        "`{ctx}` is the context of the code this handler guards, and the handler \
                         runs only once that context has been cancelled: this operation would \
                         fail at once with a cancellation error and never start; use the \
                         handler's disconnected context instead: `{handler}.{}(..)`",
                        root.method
                    ),
                ));
            }
        }
        match root.method.to_string().as_str() {
            // A local activity yields what the same activity would (R6.7); its state and
            // graph node say it is local.
            method @ ("activity" | "local_activity") => match root.args.first() {
                Some(Expr::Path(p)) if p.qself.is_none() => {
                    let last = p
                        .path
                        .segments
                        .last()
                        .map(|s| s.ident.to_string())
                        .unwrap_or_default();
                    let (name, desc) = if method == "local_activity" {
                        (
                            format!("Local{}", camel(&last)),
                            format!("local activity `{last}`"),
                        )
                    } else {
                        (camel(&last), format!("activity `{last}`"))
                    };
                    Ok((OpKind::Activity(p.path.clone()), name, desc))
                }
                other => {
                    let span = other.map_or_else(|| root.method.span(), |o| o.span());
                    Err(syn::Error::new(
                        span,
                        format!(
                            "name the activity by its path, e.g. `ctx.{method}(charge_card, \
                             input)`, so that the macro knows the type of its result"
                        ),
                    ))
                }
            },
            "race" => Ok((OpKind::Race, "Race".to_string(), "race".to_string())),
            "join" => Ok((OpKind::Join, "Join".to_string(), "join".to_string())),
            "child" => match root.args.first() {
                Some(Expr::Path(p)) if p.qself.is_none() => {
                    let last = p
                        .path
                        .segments
                        .last()
                        .map(|s| s.ident.to_string())
                        .unwrap_or_default();
                    Ok((
                        OpKind::Child(p.path.clone()),
                        format!("Child{}", camel(&last)),
                        format!("child workflow `{last}`"),
                    ))
                }
                other => {
                    let span = other.map_or_else(|| root.method.span(), |o| o.span());
                    Err(syn::Error::new(
                        span,
                        "name the child workflow by its path, e.g. `ctx.child(ship_order, id, input)`, \
                         so that the macro knows the type of its result",
                    ))
                }
            },
            "compensate" | "confirm" if root.args.is_empty() => {
                if self.in_branch {
                    return Err(syn::Error::new_spanned(
                        &root.method,
                        "compensable blocks belong to the workflow body: `compensate()` and \
                         `confirm()` cannot be awaited in a parallel branch or a handler machine",
                    ));
                }
                let compensate = root.method == "compensate";
                Ok((
                    OpKind::Handlers(compensate),
                    if compensate {
                        "Compensating"
                    } else {
                        "Confirming"
                    }
                    .to_string(),
                    if compensate {
                        "compensation of the completed blocks"
                    } else {
                        "confirmation of the completed blocks"
                    }
                    .to_string(),
                ))
            }
            "cancel_external" => Ok((
                OpKind::CancelExternal,
                "CancelExternal".to_string(),
                "cancel of another workflow".to_string(),
            )),
            "sleep" => Ok((OpKind::Sleep, "Sleep".to_string(), "timer".to_string())),
            "cancelled" => Ok((
                OpKind::Cancelled,
                "AwaitCancel".to_string(),
                "cancellation signal".to_string(),
            )),
            other => Err(syn::Error::new_spanned(
                &root.method,
                format!(
                    "`{other}` is not an operation of a workflow context; the operations a \
                     workflow can await are `activity(..)`, `local_activity(..)`, `child(..)`, \
                     `sleep(..)`, `cancelled()`, `race(..)`, `join(..)`, `cancel_external(..)`, \
                     `compensate()`, `confirm()` and the scopes \
                     `cancellable`, `non_cancellable`, `with_timeout`"
                ),
            )),
        }
    }

    /// Recognises the awaited expression as a workflow operation and allocates its
    /// suspension point.
    fn new_await(&mut self, base: &Expr) -> Option<usize> {
        if matches!(base, Expr::Macro(m) if is_join_or_select(&m.mac)) {
            return None; // reported as such, with what to write instead
        }
        let (kind, base_name, desc) = match self.classify(base) {
            Ok(c) => c,
            Err(e) => {
                self.error(e);
                return None;
            }
        };
        if matches!(kind, OpKind::Handlers(_)) {
            self.awaits_handlers = true;
        }
        let in_handler = self.handler_depth > 0;
        let base_name = if in_handler {
            format!("OnCancel{base_name}")
        } else {
            base_name
        };
        self.awaits.push(AwaitInfo {
            variant: format_ident!("{}", base_name),
            base_name,
            kind,
            desc,
            in_handler,
            span: base.span(),
        });
        Some(self.awaits.len() - 1)
    }

    /// Gives every suspension point a unique variant name.
    pub fn name_states(&mut self) {
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for a in &mut self.awaits {
            let n = seen.entry(a.base_name.clone()).or_insert(0);
            *n += 1;
            a.variant = if *n == 1 {
                format_ident!("{}", a.base_name)
            } else {
                format_ident!("{}{}", a.base_name, n)
            };
        }
    }

    /// Reports awaits the lowering cannot suspend at: in closures, async blocks or macros.
    fn check_hidden_awaits(&mut self, stmt: &syn::Stmt) {
        let mut v = HiddenAwaits::default();
        v.visit_stmt(stmt);
        for e in v.errors {
            self.error(e);
        }
    }

    fn check_region_jumps(&mut self, stmt: &syn::Stmt) {
        let Some(region) = self.loops_in_region.last() else {
            return;
        };
        let mut v = RegionJumps {
            depth: region.depth,
            labels: region.labels.clone(),
            errors: Vec::new(),
        };
        v.visit_stmt(stmt);
        for e in v.errors {
            self.error(e);
        }
    }
}

/// `snake_case` → `UpperCamelCase`, for generated type and variant names.
pub fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The span of the `.start()` of a started scope (or of `e` itself).
fn start_span(e: &Expr) -> Span {
    match e {
        Expr::MethodCall(m) if m.method == "start" => m.method.span(),
        other => other.span(),
    }
}

/// What awaiting a handle yields: `T` for a type spelled `OpHandle<T>`, and
/// `Result<T, WorkflowError>` for `ScopeHandle<T>`.
fn handle_output(ty: &Type) -> Option<Type> {
    if let Some(ok) = scope_handle_output(ty) {
        return Some(syn::parse_quote!(
            ::core::result::Result<#ok, ::workflow_core::WorkflowError>
        ));
    }
    generic_argument(ty, "OpHandle")
}

/// `T` for a type spelled `ScopeHandle<T>`.
fn scope_handle_output(ty: &Type) -> Option<Type> {
    generic_argument(ty, "ScopeHandle")
}

/// `T` for a type spelled `Name<T>` (with any path before `Name`).
fn generic_argument(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

/// The error for awaiting something that is not a workflow operation, with a pointer to the
/// workflow equivalent where there is one.
fn not_an_operation(base: &Expr) -> syn::Error {
    let text = base.to_token_stream().to_string().replace(' ', "");
    let hint = if text.contains("sleep") || text.contains("interval") || text.contains("timeout") {
        "a tokio timer lives in this process only and would be lost on a restart; use the \
         durable `ctx.sleep(duration)` instead"
    } else if text.contains("spawn") || text.contains("join_next") {
        "tasks and futures of this process are not part of the workflow's state; run the work \
         as an activity: `ctx.activity(my_activity, input)`"
    } else if text.contains("join") || text.contains("select") {
        "futures of this process are not part of the workflow's state; to wait for several \
         workflow operations, start each with `.start()` and await `ctx.join((a, b))` for all \
         of them or `ctx.race((a, b))` for the first, e.g. `let a = ctx.activity(charge, \
         order).start(); let b = ctx.activity(ship, order).start(); let done = \
         ctx.join((a, b)).await?;`"
    } else {
        "only workflow operations can be awaited here: `ctx.activity(..)`, `ctx.sleep(..)` or \
         `ctx.cancelled()`; run other async work inside an activity"
    };
    syn::Error::new_spanned(
        base,
        format!("`.await` on something that is not a workflow operation: {hint}"),
    )
}

/// Whether an expression in tail position clearly produces a value (not `()`).
fn produces_value(e: &Expr) -> bool {
    match e {
        Expr::Try(_) | Expr::Await(_) | Expr::Lit(_) | Expr::Path(_) | Expr::Field(_) => true,
        Expr::Struct(_) | Expr::Index(_) | Expr::Cast(_) | Expr::Reference(_) => true,
        Expr::Tuple(t) => !t.elems.is_empty(),
        Expr::Binary(b) => !matches!(
            b.op,
            syn::BinOp::AddAssign(_)
                | syn::BinOp::SubAssign(_)
                | syn::BinOp::MulAssign(_)
                | syn::BinOp::DivAssign(_)
                | syn::BinOp::RemAssign(_)
                | syn::BinOp::BitXorAssign(_)
                | syn::BinOp::BitAndAssign(_)
                | syn::BinOp::BitOrAssign(_)
                | syn::BinOp::ShlAssign(_)
                | syn::BinOp::ShrAssign(_)
        ),
        Expr::Paren(p) => produces_value(&p.expr),
        _ => false,
    }
}

/// Whether a block's value is `()` or it never produces one: it has no last expression, or
/// the last one diverges (`panic!`, `unreachable!`, `todo!`, `unimplemented!`,
/// `std::process::exit`, `abort`, `panic_any`, a `loop`, `return`, `break`, `continue`), also
/// through blocks, `if`/`else` and `match`. A `loop` left by `break value` counts too: giving
/// it the type `()` still rejects the value, only with rustc's plainer message.
fn ends_without_value(block: &syn::Block) -> bool {
    match block.stmts.last() {
        Some(syn::Stmt::Expr(tail, None)) => diverges(tail),
        Some(syn::Stmt::Macro(m)) if m.semi_token.is_none() => diverging_macro(&m.mac),
        _ => true,
    }
}

fn diverging_macro(mac: &syn::Macro) -> bool {
    mac.path.segments.last().is_some_and(|s| {
        matches!(
            s.ident.to_string().as_str(),
            "panic" | "unreachable" | "todo" | "unimplemented"
        )
    })
}

/// Whether `e` (as the last expression of a block) never produces a value; see
/// [`ends_without_value`].
fn diverges(e: &Expr) -> bool {
    match e {
        Expr::Macro(m) => diverging_macro(&m.mac),
        Expr::Call(c) => match &*c.func {
            Expr::Path(p) => p.path.segments.last().is_some_and(|s| {
                matches!(s.ident.to_string().as_str(), "exit" | "abort" | "panic_any")
            }),
            _ => false,
        },
        Expr::Loop(_) | Expr::Return(_) | Expr::Break(_) | Expr::Continue(_) => true,
        Expr::Block(b) => ends_without_value(&b.block),
        Expr::Unsafe(b) => ends_without_value(&b.block),
        Expr::Paren(p) => diverges(&p.expr),
        Expr::Group(g) => diverges(&g.expr),
        Expr::If(i) => match &i.else_branch {
            Some((_, els)) => ends_without_value(&i.then_branch) && diverges(els),
            None => true, // an `if` without `else` has the value `()`
        },
        Expr::Match(m) => m.arms.iter().all(|a| diverges(&a.body)),
        _ => false,
    }
}

/// Whether evaluating `e` may have side effects the order of awaits must respect.
fn has_work(e: &Expr) -> bool {
    #[derive(Default)]
    struct Calls(bool);
    impl<'ast> Visit<'ast> for Calls {
        fn visit_expr_call(&mut self, _: &'ast syn::ExprCall) {
            self.0 = true;
        }
        fn visit_expr_method_call(&mut self, _: &'ast syn::ExprMethodCall) {
            self.0 = true;
        }
        fn visit_expr_macro(&mut self, _: &'ast syn::ExprMacro) {
            self.0 = true;
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    }
    let mut c = Calls::default();
    c.visit_expr(e);
    c.0
}

#[derive(Default)]
struct HiddenAwaits {
    errors: Vec<syn::Error>,
    depth: usize,
    nested_fn: bool,
}

impl<'ast> Visit<'ast> for HiddenAwaits {
    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        self.depth += 1;
        syn::visit::visit_expr_closure(self, c);
        self.depth -= 1;
    }
    fn visit_expr_async(&mut self, a: &'ast syn::ExprAsync) {
        self.depth += 1;
        syn::visit::visit_expr_async(self, a);
        self.depth -= 1;
    }
    fn visit_item(&mut self, item: &'ast syn::Item) {
        // A nested function is not part of the machine: its awaits could not be suspended.
        if let syn::Item::Fn(f) = item {
            let mut inner = HiddenAwaits {
                errors: Vec::new(),
                depth: 0,
                nested_fn: true,
            };
            inner.visit_block(&f.block);
            self.errors.extend(inner.errors);
        }
    }
    fn visit_expr_await(&mut self, a: &'ast syn::ExprAwait) {
        if self.nested_fn {
            self.errors.push(syn::Error::new(
                a.await_token.span(),
                "`.await` inside a function nested in a workflow is not part of the workflow's \
                 state machine and cannot be suspended; await workflow operations in the \
                 workflow body itself, or move this work into an activity",
            ));
        } else if self.depth > 0 {
            self.errors.push(syn::Error::new(
                a.await_token.span(),
                "`.await` inside a closure or an async block cannot be suspended by the workflow; \
                 await the operation directly in the workflow body and bind it with `let`",
            ));
        }
        syn::visit::visit_expr_await(self, a);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if is_join_or_select(m) {
            return; // reported as such, with what to write instead
        }
        if let Some(span) = tokens_have_await(&m.tokens) {
            self.errors.push(syn::Error::new(
                span,
                "`.await` inside a macro invocation cannot be suspended; \
                 bind the result first: `let value = ...await;` and pass `value`",
            ));
        }
    }
}

/// `return` and `?` inside a cancellation handler: the handler cannot fail (R4.2).
#[derive(Default)]
struct HandlerExits {
    errors: Vec<syn::Error>,
}

impl<'ast> Visit<'ast> for HandlerExits {
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
    fn visit_expr_try(&mut self, t: &'ast syn::ExprTry) {
        self.errors.push(syn::Error::new(
            t.question_token.span(),
            "a cancellation handler cannot fail: `?` would leave it with an error nobody can \
             handle; match on the result instead, e.g. `if let Err(e) = .. { cleanup.log(..) }`",
        ));
        syn::visit::visit_expr_try(self, t);
    }
    fn visit_expr_return(&mut self, r: &'ast syn::ExprReturn) {
        self.errors.push(syn::Error::new_spanned(
            r,
            "a cancellation handler cannot `return` from the workflow; it runs to its end and \
             the workflow then finishes the way it was already finishing",
        ));
    }
}

/// `break` / `continue` that would leave a region guarded by `on_cancel!`.
struct RegionJumps {
    depth: usize,
    labels: Vec<String>,
    errors: Vec<syn::Error>,
}

impl RegionJumps {
    fn check(&mut self, label: &Option<syn::Lifetime>, tokens: &dyn ToTokens) {
        let leaves = match label {
            None => self.depth == 0,
            Some(l) => !self.labels.contains(&l.ident.to_string()),
        };
        if leaves {
            self.errors.push(syn::Error::new_spanned(
                tokens.to_token_stream(),
                "this jump would leave the code guarded by `on_cancel!`; move the loop inside \
                 the guarded code or the `on_cancel!` out of the loop",
            ));
        }
    }
}

impl<'ast> Visit<'ast> for RegionJumps {
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
    fn visit_expr_loop(&mut self, l: &'ast syn::ExprLoop) {
        self.enter(&l.label, |v| v.visit_block(&l.body));
    }
    fn visit_expr_while(&mut self, w: &'ast syn::ExprWhile) {
        self.visit_expr(&w.cond);
        self.enter(&w.label, |v| v.visit_block(&w.body));
    }
    fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        self.enter(&f.label, |v| v.visit_block(&f.body));
    }
    fn visit_expr_block(&mut self, b: &'ast syn::ExprBlock) {
        if let Some(l) = &b.label {
            self.labels.push(l.name.ident.to_string());
            self.visit_block(&b.block);
            self.labels.pop();
        } else {
            self.visit_block(&b.block);
        }
    }
    fn visit_expr_break(&mut self, b: &'ast syn::ExprBreak) {
        self.check(&b.label, b);
        if let Some(e) = &b.expr {
            self.visit_expr(e);
        }
    }
    fn visit_expr_continue(&mut self, c: &'ast syn::ExprContinue) {
        self.check(&c.label, c);
    }
}

impl RegionJumps {
    fn enter(&mut self, label: &Option<syn::Label>, f: impl FnOnce(&mut Self)) {
        self.depth += 1;
        if let Some(l) = label {
            self.labels.push(l.name.ident.to_string());
        }
        f(self);
        if label.is_some() {
            self.labels.pop();
        }
        self.depth -= 1;
    }
}

/// Whether a `for` loop iterates over a range with a start (`a..b`, `a..=b`, `a..`).
fn is_range(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => is_range(&p.expr),
        Expr::Range(r) => r.start.is_some(),
        // `(a..b).into_iter()` is the range itself.
        Expr::MethodCall(m) if m.method == "into_iter" && m.args.is_empty() => {
            is_range(&m.receiver)
        }
        _ => false,
    }
}
