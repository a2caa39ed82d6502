//! Procedural macros for `workflow-core`: `#[workflow]`, `#[activity]` and `on_cancel!`.
//! Use them through `workflow_core` (which re-exports them); the generated code refers to
//! `::workflow_core`.

use proc_macro::TokenStream;

mod activity;
mod args;
mod signature;
#[cfg(test)]
mod snapshots;
mod workflow;

/// Compiles an `async fn(ctx: WorkflowContext, input: I) -> Result<O, E>` into a resumable,
/// serializable state machine.
///
/// `#[workflow] async fn checkout(..)` becomes a unit struct `checkout` implementing
/// `Workflow` (register it with the engine, start it with the client) and an enum
/// `CheckoutState` with one variant per `.await`, each holding the locals still needed there.
/// `#[workflow(name = "...")]` sets the registered name (default: the function's name).
///
/// What a workflow can await:
/// - `ctx.activity(my_activity, input)`, with builder options (`.heartbeat_timeout(..)`,
///   `.start_to_close_timeout(..)`, `.retry(..)`, `.cancellation(..)`);
/// - `ctx.sleep(duration)`, a durable timer; `ctx.cancelled()`, the scope's cancel signal;
/// - `ctx.child(child_workflow, id, input)`, a child workflow, and
///   `ctx.cancel_external(id, reason)`;
/// - a handle returned by `.start()` on any of those (the operation runs meanwhile), and
///   `ctx.race((a, b, ..))` / `ctx.join((a, b, ..))` over handles (the workflow's
///   `select!` and `join!`: those macros of `futures` and `tokio` are compile errors here);
/// - `ctx.parallel(|progress| condition, [async { .. }, ..])`: each branch is compiled into
///   its own nested machine with its own scope and its own copies of the outer locals it
///   uses; once the condition holds after a branch ends, the others are cancelled;
/// - compensable blocks: `ctx.compensable(async { .. }).compensate(async { .. })
///   .confirm(async { .. })`, whose handlers run when the workflow closes (compensations in
///   reverse order if it failed or was cancelled, confirmations if it completed), or
///   earlier when the workflow awaits `ctx.compensate()` / `ctx.confirm()` (each runs the
///   handlers of every completed block not yet compensated or confirmed; compensating after
///   a confirmation is an error);
/// - scopes: `ctx.cancellable(async { .. })`, `ctx.non_cancellable(async { .. })`,
///   `ctx.with_timeout(duration, async { .. })`; inside the block `ctx` is the scope's
///   context, `?` and `return` leave the block (its value is a `Result`), and
///   `ctx.cancel_scope()` cancels it. `let h: ScopeHandle<T> = ctx.cancellable(async { .. })
///   .start();` starts a scope without awaiting it: its block is compiled into a machine of its
///   own, kept in the workflow's state while it runs beside the code; `h` is awaited, raced or
///   joined later, and `h.cancel(ctx)` cancels the scope.
///
/// `on_cancel!(|cleanup| { .. })` guards the rest of its block: when that code is left
/// (normally, by `return` or by `?`) while its scope is cancelled, or when an error leaves a
/// cancellable scope, the handler runs first with a fresh disconnected context, then the code
/// is left as it was being left. A handler cannot fail: no `?`, no `return`, no value. It
/// may end by diverging (`panic!`, `todo!`, `exit`, ..): a panic there is reported like a
/// panic anywhere in workflow code, and the step is not committed.
///
/// Locals kept across an await are stored, so they need a type the macro can name (an
/// annotation, a parameter, an operation's result, or a pattern matched against one of
/// those) that is `Serialize + DeserializeOwned`. Misuses are compile errors that say what
/// to write instead.
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = match syn::parse::<args::Args>(args) {
        Ok(a) => a,
        Err(e) => return e.into_compile_error().into(),
    };
    match syn::parse::<syn::ItemFn>(input) {
        Ok(f) => workflow::expand(args, f).into(),
        Err(e) => syn::Error::new(
            e.span(),
            "`#[workflow]` goes on an `async fn(ctx: WorkflowContext, input: Input) -> Result<Output, Error>`",
        )
        .into_compile_error()
        .into(),
    }
}

/// Turns an `async fn(ctx: ActivityContext, input: I) -> Result<O, ActivityError>` into a
/// named, typed activity (a unit struct of the same name implementing `Activity`).
#[proc_macro_attribute]
pub fn activity(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = match syn::parse::<args::Args>(args) {
        Ok(a) => a,
        Err(e) => return e.into_compile_error().into(),
    };
    match syn::parse::<syn::ItemFn>(input) {
        Ok(f) => activity::expand(args, f).into(),
        Err(e) => syn::Error::new(
            e.span(),
            "`#[activity]` goes on an `async fn(ctx: ActivityContext, input: Input) -> Result<Output, ActivityError>`",
        )
        .into_compile_error()
        .into(),
    }
}

/// `on_cancel!(|cleanup| { .. })`: a cancellation handler for the rest of the enclosing block
/// of a `#[workflow]`. `#[workflow]` compiles it; reaching this expansion means it was used
/// somewhere else.
#[proc_macro]
pub fn on_cancel(input: TokenStream) -> TokenStream {
    let span = proc_macro2::TokenStream::from(input)
        .into_iter()
        .next()
        .map(|t| t.span())
        .unwrap_or_else(proc_macro2::Span::call_site);
    syn::Error::new(
        span,
        "`on_cancel!` can only be used as a statement in the body of a `#[workflow]` async fn \
         (not in a closure, a nested function, or outside a workflow)",
    )
    .into_compile_error()
    .into()
}
