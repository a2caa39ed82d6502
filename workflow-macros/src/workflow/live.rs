//! Liveness: which bindings must be stored in the state at each suspension point.
//!
//! A suspension point sits inside a stack of *frames* (the zipper from the await out to the
//! function body): the blocks around it, the `let`/statement its enclosing control flow feeds,
//! loops (whose next iterations still run), regions guarded by `on_cancel!` (whose handler may
//! still run) and handlers (which still have to finish leaving their region). A binding is live
//! at the point if the code those frames still run reads it before rebinding it.

use super::ir::{Block, Compound, Node, Region, Sink};
use super::names::{BindKind, Binding, FreeVars};
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

/// Free variables of a whole block.
pub fn free_block(b: &Block) -> BTreeSet<String> {
    free_nodes(&b.nodes, b.pre.iter().map(Binding::name).collect())
}

/// Free variables of a node sequence, given names already bound before it.
pub fn free_nodes(nodes: &[Node], mut bound: BTreeSet<String>) -> BTreeSet<String> {
    let mut free = BTreeSet::new();
    let add = |names: BTreeSet<String>, bound: &BTreeSet<String>, free: &mut BTreeSet<String>| {
        free.extend(names.into_iter().filter(|n| !bound.contains(n)));
    };
    for node in nodes {
        match node {
            Node::Plain { stmt, .. } => add(FreeVars::stmt(stmt), &bound, &mut free),
            Node::Await { op, .. } => add(FreeVars::expr(op), &bound, &mut free),
            Node::Compound { c, sink, .. } => {
                let mut names = free_compound(c);
                if let Sink::Let { pat } = sink {
                    // A typed `let` pattern reads nothing; untyped ones neither.
                    let _ = pat;
                }
                names.retain(|n| !bound.contains(n));
                free.extend(names);
            }
            Node::Region(r) => {
                let mut names = free_block(&r.body);
                names.extend(free_block(&r.handler));
                names.insert(r.guard.to_string());
                add(names, &bound, &mut free);
            }
        }
        bound.extend(node_binds(node).iter().map(Binding::name));
    }
    free
}

fn free_compound(c: &Compound) -> BTreeSet<String> {
    match c {
        Compound::If { cond, then, els } => {
            let mut names = FreeVars::expr(cond);
            names.extend(free_block(then));
            if let Some(els) = els {
                names.extend(free_block(els));
            }
            names
        }
        Compound::Match { scrutinee, arms } => {
            let mut names = FreeVars::expr(scrutinee);
            for arm in arms {
                let pat_names: BTreeSet<String> = arm.body.pre.iter().map(Binding::name).collect();
                if let Some(g) = &arm.guard {
                    names.extend(
                        FreeVars::expr(g)
                            .into_iter()
                            .filter(|n| !pat_names.contains(n)),
                    );
                }
                names.extend(free_block(&arm.body));
            }
            names
        }
        Compound::Loop { body, .. } | Compound::Block { body, .. } => free_block(body),
    }
}

/// A binding live at a suspension point, and the frame at which the resumed code re-binds it.
pub struct Live {
    pub binding: Binding,
    pub frame: usize,
}

/// The bindings live at a suspension point, outermost first.
pub fn live_at(frames: &[Frame<'_>], exit_binding: &dyn Fn(&Region) -> Binding) -> Vec<Live> {
    let mut needed: BTreeSet<String> = BTreeSet::new();
    let mut live = Vec::new();
    for (fi, frame) in frames.iter().enumerate().rev() {
        match frame {
            Frame::Block { block, pos } => {
                let node = &block.nodes[*pos];
                let after: BTreeSet<String> = node_binds(node).iter().map(Binding::name).collect();
                needed.extend(free_nodes(&block.nodes[pos + 1..], after));
                let candidates: Vec<&Binding> = block
                    .pre
                    .iter()
                    .chain(block.nodes[..*pos].iter().flat_map(node_binds))
                    .collect();
                for b in candidates.into_iter().rev() {
                    if needed.remove(&b.name()) && !matches!(b.kind, BindKind::Ambient) {
                        live.push(Live {
                            binding: b.clone(),
                            frame: fi,
                        });
                    }
                }
            }
            Frame::Loop { body, .. } => needed.extend(free_block(body)),
            Frame::Region(r) => needed.extend(free_block(&r.handler)),
            Frame::Handler(r) => live.push(Live {
                binding: exit_binding(r),
                frame: fi,
            }),
            Frame::Sink(_) | Frame::RegionTail | Frame::Label(_) => {}
        }
    }
    live.reverse();
    live
}
