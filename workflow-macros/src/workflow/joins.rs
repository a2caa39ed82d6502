//! `join!` and `select!` of async Rust inside a workflow: errors that point at `ctx.join` and
//! `ctx.race`.
//!
//! `futures::join!`, `tokio::join!`, `try_join!`, `select!` and `select_biased!` poll futures
//! in place, which a workflow cannot do: its body is compiled into a machine that stops at
//! every operation and is saved between steps, and the operations are not futures. Left to
//! rustc these give errors about the expansion (`await` outside an async function, "is not a
//! future"); here each invocation, anywhere in the body (inside handlers, scopes, parallel
//! branches, compensable blocks and other macros too), is reported at its own span with the
//! workflow way of writing it.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;

/// What an invocation waits for: all of its futures, or the first one.
enum Waits {
    All,
    First,
}

/// The macros this check knows, by the last segment of their path.
fn waits(name: &str) -> Option<Waits> {
    match name {
        "join" | "try_join" => Some(Waits::All),
        "select" | "select_biased" => Some(Waits::First),
        _ => None,
    }
}

/// Whether a macro invocation is one of the macros this check reports (which the other checks
/// then leave alone, so that one mistake gives one error).
pub fn is_join_or_select(mac: &syn::Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|s| waits(&s.ident.to_string()).is_some())
}

/// One error per `join!`/`select!`-like invocation in `body`.
pub fn check(body: &syn::Block) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    scan(body.to_token_stream(), &mut errors);
    errors
}

/// Finds `path::to::name!(..)` in `tokens`, looking into every group (macro arguments are
/// tokens, not syntax, so a token walk also sees the inside of `on_cancel!` and `vec!`).
fn scan(tokens: TokenStream, errors: &mut Vec<syn::Error>) {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tts.len() {
        if let Some((kind, end)) = invocation(&tts, i) {
            let start = path_start(&tts, i);
            let path: String = tts[start..i + 1].iter().map(|t| t.to_string()).collect();
            let spanned: TokenStream = tts[start..=end].iter().cloned().collect();
            errors.push(syn::Error::new_spanned(spanned, message(&path, kind)));
            i = end + 1;
            continue;
        }
        if let TokenTree::Group(g) = &tts[i] {
            scan(g.stream(), errors);
        }
        i += 1;
    }
}

/// `name ! (..)` at `i`, with a known name: its kind and the index of its group.
fn invocation(tts: &[TokenTree], i: usize) -> Option<(Waits, usize)> {
    let TokenTree::Ident(name) = &tts[i] else {
        return None;
    };
    let kind = waits(&name.to_string())?;
    match (tts.get(i + 1), tts.get(i + 2)) {
        (Some(TokenTree::Punct(bang)), Some(TokenTree::Group(g)))
            if bang.as_char() == '!' && g.delimiter() != Delimiter::None =>
        {
            Some((kind, i + 2))
        }
        _ => None,
    }
}

/// The index where the path ending at `i` starts (`tokio` in `tokio::join`, or the leading
/// `::` of `::futures::join`).
fn path_start(tts: &[TokenTree], i: usize) -> usize {
    let colon =
        |t: Option<&TokenTree>| matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == ':');
    let mut start = i;
    while start >= 2 && colon(tts.get(start - 1)) && colon(tts.get(start - 2)) {
        match start.checked_sub(3).map(|j| &tts[j]) {
            Some(TokenTree::Ident(_)) => start -= 3,
            _ => return start - 2, // a leading `::`
        }
    }
    start
}

fn message(path: &str, kind: Waits) -> String {
    let why = format!(
        "`{path}!` cannot wait for workflow operations: they are not futures, and a workflow is \
         a state machine saved between steps, not a future polled in place"
    );
    match kind {
        Waits::All => format!(
            "{why}; start each operation with `.start()` and wait for all of them with \
             `ctx.join`, e.g. `let a = ctx.activity(charge, order).start(); \
             let b = ctx.activity(ship, order).start(); let done = ctx.join((a, b)).await?;`, \
             then `done.get(a)` is `a`'s result"
        ),
        Waits::First => format!(
            "{why}; start each operation with `.start()` and wait for the first to finish with \
             `ctx.race`, e.g. `let a = ctx.activity(charge, order).start(); \
             let t = ctx.sleep(timeout).start(); let first = ctx.race((a, t)).await?;`, \
             then `first.get(a)` is `Some(result)` if `a` won"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(src: &str) -> Vec<String> {
        let body: syn::Block = syn::parse_str(src).expect("the test body parses");
        check(&body).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn join_and_select_macros_are_found_by_the_last_segment_of_their_path() {
        let found = reported(
            "{ let (a, b) = futures::join!(x, y); tokio::select! { _ = a => {} }; \
               ::futures::try_join!(p); select_biased!(q); }",
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].starts_with("`futures::join!`") && found[0].contains("ctx.join"));
        assert!(found[1].starts_with("`tokio::select!`") && found[1].contains("ctx.race"));
        assert!(found[2].starts_with("`::futures::try_join!`"));
        assert!(found[3].starts_with("`select_biased!`") && found[3].contains("ctx.race"));
    }

    #[test]
    fn join_inside_another_macro_is_found() {
        let found = reported("{ on_cancel!(|c| { let _ = tokio::join!(c.a(), c.b()); }); }");
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn names_that_are_not_invocations_are_left_alone() {
        let found = reported(
            "{ let join = 1; let select = join != 2; ctx.join((a, b)); s.select(); \
               macro_rules! join { () => {} } }",
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
