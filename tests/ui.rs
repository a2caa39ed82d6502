//! Compile-time checks: every misuse of `#[workflow]`, `#[activity]` and `on_cancel!` gets a
//! spanned error that says how to fix it. One misuse per file, grouped by kind; each
//! `.stderr` is the exact message a user sees. Re-bless with `TRYBUILD=overwrite cargo test
//! --test ui` after a deliberate change, and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    for kind in [
        "handlers",
        "awaits",
        "state",
        "scopes",
        "signatures",
        "arguments",
        "activities",
    ] {
        t.compile_fail(format!("tests/ui/{kind}/*.rs"));
    }
}
