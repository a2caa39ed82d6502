//! Names: which identifiers a pattern binds, which free variables a piece of code reads, and
//! what type the macro can name for a binding.
//!
//! Liveness is computed on names. A name read by the code that runs after a suspension point
//! and bound before it is live there and must be stored in the state. The analysis is
//! conservative: a name read inside a macro invocation counts as read, so storing a variable
//! the code does not need is possible, dropping one it needs is not.

use proc_macro2::{TokenStream, TokenTree};
use std::collections::BTreeSet;
use syn::visit::Visit;
use syn::{Expr, Pat, Type};

/// What the state must hold for a binding.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // a handful per function, built once at compile time
pub enum BindKind {
    /// An ordinary value; the type, if the macro can name it.
    Value(Option<Type>),
    /// A `WorkflowContext`: stored as its scope id and re-attached on resume.
    Context,
    /// The workflow's `ctx` parameter: re-created on every resume, never stored.
    Ambient,
}

/// A local variable binding.
#[derive(Clone)]
pub struct Binding {
    pub ident: syn::Ident,
    pub mutable: bool,
    pub kind: BindKind,
}

impl Binding {
    pub fn name(&self) -> String {
        self.ident.to_string()
    }
}

/// The identifiers a pattern binds, with their `mut`-ness, in source order.
pub fn pat_idents(pat: &Pat, out: &mut Vec<(syn::Ident, bool)>) {
    match pat {
        Pat::Ident(p) => {
            out.push((p.ident.clone(), p.mutability.is_some()));
            if let Some((_, sub)) = &p.subpat {
                pat_idents(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| pat_idents(&f.pat, out)),
        Pat::Slice(s) => s.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::Or(o) => {
            if let Some(first) = o.cases.first() {
                pat_idents(first, out);
            }
        }
        Pat::Paren(p) => pat_idents(&p.pat, out),
        Pat::Reference(r) => pat_idents(&r.pat, out),
        Pat::Type(t) => pat_idents(&t.pat, out),
        _ => {}
    }
}

/// Bindings of `pat` when the whole value has type `ty` (if known). Tuple patterns against
/// tuple types are split element by element; anything else gives the sub-bindings no type.
pub fn pat_bindings(pat: &Pat, ty: Option<&Type>, out: &mut Vec<Binding>) {
    match (pat, ty) {
        (Pat::Ident(p), _) if p.subpat.is_none() => out.push(Binding {
            ident: p.ident.clone(),
            mutable: p.mutability.is_some(),
            kind: BindKind::Value(ty.cloned()),
        }),
        (Pat::Type(t), _) => pat_bindings(&t.pat, Some(&t.ty), out),
        (Pat::Paren(p), _) => pat_bindings(&p.pat, ty, out),
        (Pat::TupleStruct(t), Some(ty)) if t.elems.len() == 1 && t.qself.is_none() => {
            // `Some(x)` against `Option<T>`, `Ok(x)` against `Result<T, E>`.
            let variant = t.path.segments.last().map(|s| s.ident.to_string());
            let inner = match variant.as_deref() {
                Some("Some") => generic_arg(ty, "Option", 0),
                Some("Ok") => generic_arg(ty, "Result", 0),
                Some("Err") => generic_arg(ty, "Result", 1),
                _ => None,
            };
            pat_bindings(&t.elems[0], inner.as_ref(), out);
        }
        (Pat::Tuple(t), Some(Type::Tuple(tt))) if t.elems.len() == tt.elems.len() => {
            for (p, ty) in t.elems.iter().zip(tt.elems.iter()) {
                pat_bindings(p, Some(ty), out);
            }
        }
        _ => {
            let mut ids = Vec::new();
            pat_idents(pat, &mut ids);
            out.extend(ids.into_iter().map(|(ident, mutable)| Binding {
                ident,
                mutable,
                kind: BindKind::Value(None),
            }));
        }
    }
}

/// Identifiers read by a token stream of a macro invocation: every identifier token, and
/// every `{name}` / `{name:..}` inside string literals (inline format arguments).
pub fn tokens_reads(tokens: &TokenStream, out: &mut BTreeSet<String>) {
    for tt in tokens.clone() {
        match tt {
            TokenTree::Ident(i) => {
                out.insert(i.to_string());
            }
            TokenTree::Group(g) => tokens_reads(&g.stream(), out),
            TokenTree::Literal(l) => {
                let text = l.to_string();
                if text.starts_with('"') || text.starts_with('r') {
                    format_args_reads(&text, out);
                }
            }
            TokenTree::Punct(_) => {}
        }
    }
}

fn format_args_reads(text: &str, out: &mut BTreeSet<String>) {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '{' {
            continue;
        }
        if matches!(chars.peek(), Some((_, '{'))) {
            chars.next();
            continue;
        }
        let rest = &text[i + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            out.insert(name);
        }
    }
}

/// Free variables read by a piece of code, respecting the bindings it makes itself (`let`,
/// closure parameters, match arms, `if let`, `for`). Nested items are skipped: they cannot see
/// locals.
#[derive(Default)]
pub struct FreeVars {
    scopes: Vec<BTreeSet<String>>,
    /// Names read before being bound.
    pub free: BTreeSet<String>,
    /// Names of outer variables assigned with `x = ..` (which is not a read of `x`).
    pub assigned: BTreeSet<String>,
}

impl FreeVars {
    fn bound(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s.contains(name))
    }
    fn bind_pat(&mut self, pat: &Pat) {
        let mut ids = Vec::new();
        pat_idents(pat, &mut ids);
        if let Some(top) = self.scopes.last_mut() {
            top.extend(ids.into_iter().map(|(i, _)| i.to_string()));
        }
    }
    fn read(&mut self, name: String) {
        if !self.bound(&name) {
            self.free.insert(name);
        }
    }
    fn with_scope(&mut self, f: impl FnOnce(&mut Self)) {
        self.scopes.push(BTreeSet::new());
        f(self);
        self.scopes.pop();
    }
    pub fn stmt(stmt: &syn::Stmt) -> FreeVars {
        let mut v = FreeVars::default();
        v.scopes.push(BTreeSet::new());
        v.visit_stmt(stmt);
        v
    }
    pub fn expr(expr: &Expr) -> FreeVars {
        let mut v = FreeVars::default();
        v.scopes.push(BTreeSet::new());
        v.visit_expr(expr);
        v
    }
}

impl<'ast> Visit<'ast> for FreeVars {
    fn visit_item(&mut self, _: &'ast syn::Item) {}
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if p.qself.is_none() && p.path.leading_colon.is_none() && p.path.segments.len() == 1 {
            self.read(p.path.segments[0].ident.to_string());
        }
        // Generic arguments may name types only; nothing to read.
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let mut reads = BTreeSet::new();
        tokens_reads(&m.tokens, &mut reads);
        for r in reads {
            self.read(r);
        }
    }
    fn visit_block(&mut self, b: &'ast syn::Block) {
        self.with_scope(|v| {
            for s in &b.stmts {
                v.visit_stmt(s);
            }
        });
    }
    fn visit_local(&mut self, l: &'ast syn::Local) {
        if let Some(init) = &l.init {
            self.visit_expr(&init.expr);
            if let Some((_, diverge)) = &init.diverge {
                self.visit_expr(diverge);
            }
        }
        self.bind_pat(&l.pat);
    }
    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        self.with_scope(|v| {
            for p in &c.inputs {
                v.bind_pat(p);
            }
            v.visit_expr(&c.body);
        });
    }
    fn visit_arm(&mut self, a: &'ast syn::Arm) {
        self.with_scope(|v| {
            v.bind_pat(&a.pat);
            if let Some((_, g)) = &a.guard {
                v.visit_expr(g);
            }
            v.visit_expr(&a.body);
        });
    }
    fn visit_expr_if(&mut self, i: &'ast syn::ExprIf) {
        // `if let` bindings are visible in the then-branch only.
        self.with_scope(|v| {
            v.visit_expr(&i.cond);
            v.visit_block(&i.then_branch);
        });
        if let Some((_, e)) = &i.else_branch {
            self.visit_expr(e);
        }
    }
    fn visit_expr_let(&mut self, l: &'ast syn::ExprLet) {
        self.visit_expr(&l.expr);
        self.bind_pat(&l.pat);
    }
    fn visit_expr_while(&mut self, w: &'ast syn::ExprWhile) {
        self.with_scope(|v| {
            v.visit_expr(&w.cond);
            v.visit_block(&w.body);
        });
    }
    fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        self.with_scope(|v| {
            v.bind_pat(&f.pat);
            v.visit_block(&f.body);
        });
    }
    fn visit_expr_struct(&mut self, s: &'ast syn::ExprStruct) {
        for f in &s.fields {
            self.visit_expr(&f.expr);
        }
        if let Some(rest) = &s.rest {
            self.visit_expr(rest);
        }
    }
    fn visit_expr_field(&mut self, f: &'ast syn::ExprField) {
        self.visit_expr(&f.base);
    }
    fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
        self.visit_expr(&a.right);
        match assigned_var(&a.left) {
            Some(name) if !self.bound(&name) => {
                self.assigned.insert(name);
            }
            Some(_) => {}
            None => self.visit_expr(&a.left),
        }
    }
    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        self.visit_expr(&m.receiver);
        for a in &m.args {
            self.visit_expr(a);
        }
    }
}

/// `x` for the place expression `x` (a plain variable), `None` for fields, indexes, derefs.
pub fn assigned_var(e: &Expr) -> Option<String> {
    match e {
        Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            Some(p.path.segments[0].ident.to_string())
        }
        Expr::Paren(p) => assigned_var(&p.expr),
        _ => None,
    }
}

/// `x` for a statement `x = ..;` that replaces a whole variable.
pub fn whole_assignment(stmt: &syn::Stmt) -> Option<String> {
    match stmt {
        syn::Stmt::Expr(Expr::Assign(a), Some(_)) => assigned_var(&a.left),
        _ => None,
    }
}

/// Whether a statement may `break` or `continue`, and with `exits_too`, leave through `?` or
/// `return` (outside closures and items).
pub fn may_jump(stmt: &syn::Stmt, exits_too: bool) -> bool {
    struct Jumps {
        exits_too: bool,
        found: bool,
    }
    impl<'ast> Visit<'ast> for Jumps {
        fn visit_expr_break(&mut self, _: &'ast syn::ExprBreak) {
            self.found = true;
        }
        fn visit_expr_continue(&mut self, _: &'ast syn::ExprContinue) {
            self.found = true;
        }
        fn visit_expr_try(&mut self, t: &'ast syn::ExprTry) {
            self.found |= self.exits_too;
            syn::visit::visit_expr_try(self, t);
        }
        fn visit_expr_return(&mut self, r: &'ast syn::ExprReturn) {
            self.found |= self.exits_too;
            syn::visit::visit_expr_return(self, r);
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    let mut j = Jumps {
        exits_too,
        found: false,
    };
    j.visit_stmt(stmt);
    j.found
}

/// Whether an expression contains `.await` outside closures, async blocks and nested items.
pub fn expr_has_await(e: &Expr) -> bool {
    let mut f = AwaitFinder::default();
    f.visit_expr(e);
    f.found
}

#[derive(Default)]
struct AwaitFinder {
    found: bool,
}

impl<'ast> Visit<'ast> for AwaitFinder {
    fn visit_expr_await(&mut self, _: &'ast syn::ExprAwait) {
        self.found = true;
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
    fn visit_stmt_macro(&mut self, m: &'ast syn::StmtMacro) {
        if is_on_cancel(&m.mac) {
            self.found = true;
        }
    }
}

/// Whether a macro invocation is `on_cancel!` (by its last path segment).
pub fn is_on_cancel(mac: &syn::Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|s| s.ident == "on_cancel")
}

/// Whether macro tokens contain `. await`.
pub fn tokens_have_await(tokens: &TokenStream) -> Option<proc_macro2::Span> {
    let mut prev_dot = false;
    for tt in tokens.clone() {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == '.' => {
                prev_dot = true;
                continue;
            }
            TokenTree::Ident(i) if prev_dot && i == "await" => return Some(i.span()),
            TokenTree::Group(g) => {
                if let Some(s) = tokens_have_await(&g.stream()) {
                    return Some(s);
                }
            }
            _ => {}
        }
        prev_dot = false;
    }
    None
}

/// A type the macro can name for the value of `expr`, given the types of the bindings in
/// scope (`lookup`). Covers the common shapes: a variable, `?`, `unwrap`/`expect`, `clone`,
/// casts, struct literals, suffixed literals, `to_string`/`format!`.
pub fn infer_type(expr: &Expr, lookup: &dyn Fn(&str) -> Option<BindKind>) -> Option<Type> {
    match expr {
        Expr::Paren(p) => infer_type(&p.expr, lookup),
        Expr::Group(g) => infer_type(&g.expr, lookup),
        Expr::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            match lookup(&p.path.segments[0].ident.to_string())? {
                BindKind::Value(ty) => ty,
                _ => None,
            }
        }
        Expr::Try(t) => result_ok_type(&infer_type(&t.expr, lookup)?),
        Expr::MethodCall(m) => {
            let method = m.method.to_string();
            match method.as_str() {
                "unwrap" | "expect" | "unwrap_or" | "unwrap_or_default" | "unwrap_or_else" => {
                    let inner = infer_type(&m.receiver, lookup)?;
                    result_ok_type(&inner).or_else(|| generic_arg(&inner, "Option", 0))
                }
                "clone" => infer_type(&m.receiver, lookup),
                "pop" => {
                    let inner = generic_arg(&infer_type(&m.receiver, lookup)?, "Vec", 0)?;
                    Some(syn::parse_quote!(::core::option::Option<#inner>))
                }
                "to_string" | "to_owned" if matches!(&*m.receiver, Expr::Lit(_)) => {
                    Some(syn::parse_quote!(::std::string::String))
                }
                "to_string" => Some(syn::parse_quote!(::std::string::String)),
                "cancel_reason" => Some(syn::parse_quote!(
                    ::core::option::Option<::std::string::String>
                )),
                "len" | "count" => Some(syn::parse_quote!(usize)),
                // By the API guidelines, `is_*` and `has_*` methods answer a yes/no question.
                name if name.starts_with("is_") || name.starts_with("has_") => {
                    Some(syn::parse_quote!(bool))
                }
                _ => None,
            }
        }
        Expr::Cast(c) => Some((*c.ty).clone()),
        Expr::Struct(s) if s.qself.is_none() => {
            let path = &s.path;
            Some(syn::parse_quote!(#path))
        }
        Expr::Lit(l) => match &l.lit {
            syn::Lit::Int(i) if !i.suffix().is_empty() => syn::parse_str(i.suffix()).ok(),
            syn::Lit::Float(f) if !f.suffix().is_empty() => syn::parse_str(f.suffix()).ok(),
            syn::Lit::Bool(_) => Some(syn::parse_quote!(bool)),
            syn::Lit::Char(_) => Some(syn::parse_quote!(char)),
            _ => None,
        },
        Expr::Macro(m) if m.mac.path.is_ident("format") => {
            Some(syn::parse_quote!(::std::string::String))
        }
        Expr::Tuple(t) => {
            let elems: Option<Vec<Type>> = t.elems.iter().map(|e| infer_type(e, lookup)).collect();
            let elems = elems?;
            Some(syn::parse_quote!((#(#elems,)*)))
        }
        _ => None,
    }
}

/// `T` for a type spelled `Result<T, E>` (any path ending in `Result`).
pub fn result_ok_type(ty: &Type) -> Option<Type> {
    generic_arg(ty, "Result", 0)
}

fn generic_arg(ty: &Type, last: &str, index: usize) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != last {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    args.args
        .iter()
        .filter_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        })
        .nth(index)
}
