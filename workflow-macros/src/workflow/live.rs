//! Liveness: which bindings must be stored in the state at each suspension point.
//!
//! A suspension point sits inside a stack of *frames* (the zipper from the await out to the
//! function body): the blocks around it, the `let`/statement its enclosing control flow feeds,
//! loops (whose next iterations still run), regions guarded by `on_cancel!` (whose handler may
//! still run) and handlers (which still have to finish leaving their region). A binding is live
//! at the point if the code those frames still run reads it before rebinding it.

use super::ir::{Block, Compound, Node, Region, ScopeNode, ScopeSpec, Sink};
use super::names::{may_jump, whole_assignment, BindKind, Binding, FreeVars};
use std::collections::BTreeSet;

/// One level of the zipper from a suspension point out to the function body.
#[derive(Clone, Copy)]
pub enum Frame<'a> {
    /// Inside `block`, at node `pos`.
    Block { block: &'a Block, pos: usize },
    /// The value of the control flow inside goes to this sink.
    Sink(&'a Sink),
    /// A region's value is its block's value.
    RegionTail,
    /// Inside a labelled block.
    Label(&'a syn::Label),
    /// Inside a loop body; later iterations run `body` again.
    Loop {
        label: &'a Option<syn::Label>,
        body: &'a Block,
    },
    /// Inside the code guarded by an `on_cancel!`.
    Region(&'a Region),
    /// Inside a cancellation handler.
    Handler(&'a Region),
    /// Inside the body of a scope.
    Scope(&'a ScopeNode),
}

/// Calls `f` for every suspension point with the frames around it, outermost first.
pub fn walk<'a>(
    block: &'a Block,
    frames: &mut Vec<Frame<'a>>,
    f: &mut dyn FnMut(usize, &[Frame<'a>]),
) {
    for (pos, node) in block.nodes.iter().enumerate() {
        frames.push(Frame::Block { block, pos });
        match node {
            Node::Plain { .. } => {}
            Node::Await { point, .. } => f(*point, frames),
            Node::Compound { c, sink, .. } => {
                frames.push(Frame::Sink(sink));
                match c {
                    Compound::If { then, els, .. } => {
                        walk(then, frames, f);
                        if let Some(els) = els {
                            walk(els, frames, f);
                        }
                    }
                    Compound::Match { arms, .. } => {
                        for arm in arms {
                            walk(&arm.body, frames, f);
                        }
                    }
                    Compound::Loop { label, body } => {
                        frames.push(Frame::Loop { label, body });
                        walk(body, frames, f);
                        frames.pop();
                    }
                    Compound::Block { label, body } => {
                        if let Some(label) = label {
                            frames.push(Frame::Label(label));
                        }
                        walk(body, frames, f);
                        if label.is_some() {
                            frames.pop();
                        }
                    }
                    Compound::Scope(scope) => {
                        frames.push(Frame::Scope(scope));
                        walk(&scope.body, frames, f);
                        frames.pop();
                    }
                }
                frames.pop();
            }
            Node::Region(r) => {
                frames.push(Frame::RegionTail);
                frames.push(Frame::Region(r));
                walk(&r.body, frames, f);
                frames.pop();
                frames.push(Frame::Handler(r));
                walk(&r.handler, frames, f);
                frames.pop();
                frames.pop();
            }
        }
        frames.pop();
    }
}

/// The bindings a node makes once it has run.
pub fn node_binds(node: &Node) -> &[Binding] {
    match node {
        Node::Plain { binds, .. } | Node::Await { binds, .. } | Node::Compound { binds, .. } => {
            binds
        }
        Node::Region(_) => &[],
    }
}

/// What a piece of code does with the variables around it.
#[derive(Default)]
pub struct Uses {
    /// Read before being rebound or overwritten.
    pub reads: BTreeSet<String>,
    /// Overwritten with `x = ..` somewhere.
    pub assigned: BTreeSet<String>,
    /// Overwritten, at the top level of the sequence, before any read and before any jump:
    /// the old value is dead from the start of the code.
    pub kills: BTreeSet<String>,
    /// The sequence has no jump: if it runs, it runs to its end (or suspends).
    pub straight: bool,
    /// The sequence ends with a `return`: what follows it (outside) is not reached.
    pub returns: bool,
}

impl Uses {
    fn merge(&mut self, other: Uses, bound: &BTreeSet<String>) {
        let kills = &self.kills;
        self.reads.extend(
            other
                .reads
                .into_iter()
                .filter(|n| !bound.contains(n) && !kills.contains(n)),
        );
        self.assigned
            .extend(other.assigned.into_iter().filter(|n| !bound.contains(n)));
    }
    fn from_vars(v: FreeVars) -> Uses {
        Uses {
            reads: v.free,
            assigned: v.assigned,
            kills: BTreeSet::new(),
            straight: true,
            returns: false,
        }
    }
}

/// Uses of a whole block.
pub fn block_uses(b: &Block, exits_observed: bool) -> Uses {
    node_uses(
        &b.nodes,
        b.pre.iter().map(Binding::name).collect(),
        exits_observed,
    )
}

/// Uses of a node sequence, given names already bound before it. With `exits_observed` (the
/// code is guarded by a handler that runs when it is left), `?` and `return` count as jumps.
pub fn node_uses(nodes: &[Node], mut bound: BTreeSet<String>, exits_observed: bool) -> Uses {
    let mut uses = Uses::default();
    let mut straight = true; // no jump so far: an overwrite still kills the old value
    for node in nodes {
        match node {
            Node::Plain { stmt, .. } => {
                uses.merge(Uses::from_vars(FreeVars::stmt(stmt)), &bound);
                straight &= !may_jump(stmt, exits_observed);
                if straight {
                    if let Some(name) = whole_assignment(stmt) {
                        if !bound.contains(&name) {
                            uses.kills.insert(name);
                        }
                    }
                }
            }
            Node::Await { op, .. } => uses.merge(Uses::from_vars(FreeVars::expr(op)), &bound),
            Node::Compound { c, .. } => {
                uses.merge(compound_uses(c, exits_observed), &bound);
                straight = false;
            }
            Node::Region(r) => {
                let mut inner = block_uses(&r.body, true);
                let handler = block_uses(&r.handler, exits_observed);
                inner.reads.extend(handler.reads);
                inner.assigned.extend(handler.assigned);
                inner.reads.insert(r.guard.to_string());
                uses.merge(inner, &bound);
                straight = false;
            }
        }
        bound.extend(node_binds(node).iter().map(Binding::name));
    }
    uses.straight = straight;
    uses.returns = matches!(
        nodes.last(),
        Some(Node::Plain {
            stmt: syn::Stmt::Expr(syn::Expr::Return(_), _),
            ..
        })
    );
    uses
}

fn compound_uses(c: &Compound, exits_observed: bool) -> Uses {
    let mut uses = Uses::default();
    let none = BTreeSet::new();
    match c {
        Compound::If { cond, then, els } => {
            uses.merge(Uses::from_vars(FreeVars::expr(cond)), &none);
            uses.merge(block_uses(then, exits_observed), &none);
            if let Some(els) = els {
                uses.merge(block_uses(els, exits_observed), &none);
            }
        }
        Compound::Match { scrutinee, arms } => {
            uses.merge(Uses::from_vars(FreeVars::expr(scrutinee)), &none);
            for arm in arms {
                let pat_names: BTreeSet<String> = arm.body.pre.iter().map(Binding::name).collect();
                if let Some(g) = &arm.guard {
                    uses.merge(Uses::from_vars(FreeVars::expr(g)), &pat_names);
                }
                uses.merge(block_uses(&arm.body, exits_observed), &none);
            }
        }
        Compound::Loop { body, .. } | Compound::Block { body, .. } => {
            uses.merge(block_uses(body, exits_observed), &none)
        }
        Compound::Scope(scope) => {
            let mut reads = BTreeSet::new();
            reads.insert(scope.ctx.to_string());
            reads.extend(scope.compensable_reads.iter().map(|i| i.to_string()));
            uses.merge(
                Uses {
                    reads,
                    ..Uses::default()
                },
                &none,
            );
            if let ScopeSpec::Timeout(d) = &scope.spec {
                uses.merge(Uses::from_vars(FreeVars::expr(d)), &none);
            }
            // Inside an async block, `?` and `return` leave the block: they are exits.
            uses.merge(block_uses(&scope.body, true), &none);
        }
    }
    uses
}

/// What the resumed code needs of a binding visible at a suspension point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Its value is read later: stored in the state and restored.
    Value,
    /// Only overwritten later: declared again, uninitialised, so the assignment compiles.
    Declaration,
}

/// A binding needed at a suspension point, and the frame at which the resumed code re-binds
/// it.
pub struct Live {
    pub binding: Binding,
    pub frame: usize,
    pub need: Need,
    /// A later binding of the same name hides this one at the suspension point, so the code
    /// there cannot name it.
    pub hidden: bool,
}

/// The bindings needed at a suspension point, outermost first.
pub fn live_at(
    frames: &[Frame<'_>],
    exit_binding: &dyn Fn(&Region) -> Binding,
    resume_reads: &dyn Fn(usize) -> BTreeSet<String>,
) -> Vec<Live> {
    let mut reads: BTreeSet<String> = BTreeSet::new();
    let mut assigned: BTreeSet<String> = BTreeSet::new();
    let mut killed: BTreeSet<String> = BTreeSet::new();
    // Names of bindings visible at the point, from the innermost outwards.
    let mut visible: BTreeSet<String> = BTreeSet::new();
    let mut live = Vec::new();
    // Whether every rest emitted so far (inner frames) runs straight to its end: only then
    // do the overwrites of outer rests happen before what the outer frames read.
    let mut straight = true;
    let add = |uses: Uses,
               reads: &mut BTreeSet<String>,
               assigned: &mut BTreeSet<String>,
               killed: &mut BTreeSet<String>,
               straight: &mut bool| {
        reads.extend(uses.reads.into_iter().filter(|n| !killed.contains(n)));
        assigned.extend(uses.assigned);
        if *straight {
            killed.extend(uses.kills);
        }
        *straight &= uses.straight;
    };
    // Set once a rest ends with `return`: the code outside it is not reached from the point,
    // up to the enclosing scope (whose value the `return` gives) or function.
    let mut returned = false;
    for (fi, frame) in frames.iter().enumerate().rev() {
        // Code inside a guarded region is watched by its handler when it leaves.
        let observed = frames[..fi].iter().any(|f| matches!(f, Frame::Region(_)));
        match frame {
            Frame::Block { block, pos } => {
                let node = &block.nodes[*pos];
                if fi + 1 == frames.len() {
                    // What the suspension point itself reads again when resumed (a parallel
                    // block's completion condition).
                    if let Node::Await { point, .. } = node {
                        reads.extend(resume_reads(*point));
                    }
                }
                let after: BTreeSet<String> = node_binds(node).iter().map(Binding::name).collect();
                if !returned {
                    let uses = node_uses(&block.nodes[pos + 1..], after, observed);
                    returned = uses.returns;
                    add(uses, &mut reads, &mut assigned, &mut killed, &mut straight);
                }
                let candidates: Vec<&Binding> = block
                    .pre
                    .iter()
                    .chain(block.nodes[..*pos].iter().flat_map(node_binds))
                    .collect();
                for b in candidates.into_iter().rev() {
                    let name = b.name();
                    let need = if reads.remove(&name) {
                        Some(Need::Value)
                    } else if assigned.remove(&name) {
                        Some(Need::Declaration)
                    } else {
                        None
                    };
                    if let Some(need) = need {
                        if !matches!(b.kind, BindKind::Ambient) {
                            live.push(Live {
                                binding: b.clone(),
                                frame: fi,
                                need,
                                hidden: visible.contains(&name),
                            });
                        }
                    }
                    visible.insert(name);
                }
            }
            Frame::Loop { body, .. } => {
                // Later iterations run after the rest of this one: what it overwrote is dead.
                // (The resumed code rebuilds the loop whatever the rest does.)
                returned = false;
                let uses = block_uses(body, observed);
                add(uses, &mut reads, &mut assigned, &mut killed, &mut false);
                straight = false;
            }
            Frame::Region(r) => {
                // Leaving the region runs the handler, then goes on as the region was left.
                returned = false;
                let uses = block_uses(&r.handler, observed);
                add(uses, &mut reads, &mut assigned, &mut killed, &mut false);
                straight = false;
            }
            Frame::Handler(r) => {
                returned = false;
                live.push(Live {
                    binding: exit_binding(r),
                    frame: fi,
                    need: Need::Value,
                    hidden: false,
                });
            }
            Frame::Scope(scope) => {
                // A `return` in the body gives the scope its value; what follows runs.
                returned = false;
                // A compensable block's handlers copy these when the block completes.
                reads.extend(scope.compensable_reads.iter().map(|i| i.to_string()));
                // The scope's own context: the body's `ctx` comes from it, and leaving the
                // scope closes it.
                let name = scope.inner.to_string();
                live.push(Live {
                    binding: Binding {
                        ident: scope.inner.clone(),
                        mutable: false,
                        kind: BindKind::Context,
                    },
                    frame: fi,
                    need: Need::Value,
                    hidden: false,
                });
                visible.insert(name);
                straight = false;
            }
            Frame::Label(_) => returned = false,
            Frame::Sink(_) | Frame::RegionTail => {}
        }
    }
    live.reverse();
    live
}
