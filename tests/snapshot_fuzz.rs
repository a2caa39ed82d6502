//! Seeded snapshot fuzzing in CI (issue 11.1; the corpus, the mutations and what counts as a
//! finding are described in `src/fuzz.rs`): no stored state hangs, panics or leaves behind a
//! state that does not read back.
//!
//! `SNAPSHOT_FUZZ_CASES` (default 20,000) and `SNAPSHOT_FUZZ_SEED` (default 11) change the
//! run; every case is reproduced by its number and the seed.

use durable_workflows::fuzz::{self, Finding, Verdict};
use std::sync::mpsc;
use std::time::Duration;

/// A case that has not answered after this long hangs (a case takes well under a
/// millisecond; the budget leaves room for a loaded machine).
const CASE_BUDGET: Duration = Duration::from_secs(20);

const CASES_THREAD: &str = "snapshot-fuzz-cases";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_seed_walks_reach_every_kind_of_state_of_the_corpus() {
    let seeds = fuzz::seeds(11, 8, 14);
    let mut states = std::collections::BTreeSet::new();
    for seed in &seeds {
        if let Some(state) = seed.snapshot["machine"]
            .as_object()
            .and_then(|m| m.keys().next())
        {
            states.insert(format!("{}::{state}", seed.subject.name));
        }
    }
    // The corpus's started scopes (R3.7) are met while their blocks run, kept in the instance.
    assert!(
        seeds
            .iter()
            .any(|s| s.snapshot["instance"]["started_scopes"]
                .as_array()
                .is_some_and(|kept| !kept.is_empty())),
        "no seed holds a running started scope"
    );
    for subject in fuzz::subjects() {
        let parked = states
            .iter()
            .filter(|s| s.starts_with(&format!("{}::", subject.name)))
            .count();
        assert!(
            parked >= 2,
            "`{}` reached only {parked} states: {states:?}",
            subject.name
        );
    }
}

#[test]
fn the_scope_cycle_of_the_issue_is_refused_not_a_hang() {
    let seeds = fuzz::seeds(11, 1, 3);
    let seed = seeds
        .iter()
        .find(|s| {
            s.subject.name == "scoped"
                && s.snapshot["instance"]["scopes"]
                    .as_array()
                    .is_some_and(|a| a.len() > 1)
        })
        .expect("a parked `scoped` snapshot");
    let mut snapshot = seed.snapshot.clone();
    snapshot["instance"]["scopes"][0] = serde_json::json!({"kind": "Cancellable", "parent": 0});
    let cancel = workflow_core::Event::CancelRequested {
        reason: "r".to_string(),
    };
    assert_eq!(
        fuzz::check_case(&seed.subject, &snapshot, vec![cancel]),
        Ok(Verdict::Refused)
    );
}

#[test]
fn mutated_snapshots_never_hang_panic_or_commit_what_does_not_read_back() {
    let cases = env_number("SNAPSHOT_FUZZ_CASES", 20_000);
    let seed = env_number("SNAPSHOT_FUZZ_SEED", 11);
    let seeds = fuzz::seeds(seed, 4, 14);
    assert!(seeds.len() > 50, "only {} seed snapshots", seeds.len());

    let (tx, rx) = mpsc::channel();
    let worker_seeds = seeds.clone();
    // The cases run on their own thread, so that a hang is seen (and reported) here.
    // Panics on that thread are findings, reported through the channel: keep their default
    // message quiet there (and only there).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some(CASES_THREAD) {
            default_hook(info);
        }
    }));
    let spawned = std::thread::Builder::new()
        .name(CASES_THREAD.to_string())
        .spawn(move || {
            for n in 0..cases {
                let (subject, snapshot, events) = fuzz::case(&worker_seeds, seed, n);
                if tx
                    .send((n, fuzz::check_case(&subject, &snapshot, events)))
                    .is_err()
                {
                    return;
                }
            }
        });
    spawned.expect("the cases' thread starts");

    let (mut refused, mut stepped) = (0u64, 0u64);
    let mut findings: Vec<(u64, Finding)> = Vec::new();
    for n in 0..cases {
        match rx.recv_timeout(CASE_BUDGET) {
            Ok((_, Ok(Verdict::Refused))) => refused += 1,
            Ok((_, Ok(Verdict::Stepped))) => stepped += 1,
            Ok((case, Err(finding))) => findings.push((case, finding)),
            Err(_) => {
                let (subject, snapshot, _) = fuzz::case(&seeds, seed, n);
                panic!(
                    "case {n} (seed {seed}) of `{}` did not finish in {CASE_BUDGET:?}: {snapshot}",
                    subject.name
                );
            }
        }
    }
    if let Some((n, finding)) = findings.first() {
        let (subject, snapshot, events) = fuzz::case(&seeds, seed, *n);
        panic!(
            "{} of {cases} cases found something; the first, case {n} (seed {seed}) of `{}`: \
             {finding:?}\nsnapshot: {snapshot}\nevents: {events:?}",
            findings.len(),
            subject.name
        );
    }
    // Both paths are exercised: a fuzz that only ever refuses tests the decoder alone.
    assert!(
        refused > cases / 20 && stepped > cases / 20,
        "refused {refused}, stepped {stepped} of {cases}"
    );
    println!("{cases} cases: {refused} refused with a typed fault, {stepped} stepped");
}
