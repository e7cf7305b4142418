//! Tests of `follow`: patching a ruleset with what a transaction touched gives its target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../compiler/tests/support/fixtures.rs"]
mod fixtures;

use super::*;
use nftproxy_compiler::compile;

/// Every fixture cluster compiled, with an empty ruleset first and last.
fn rulesets() -> Vec<Ruleset> {
    let mut all = vec![Ruleset::new()];
    for (name, path) in fixtures::fixtures() {
        let (snapshot, config) = fixtures::load(&name, &path);
        all.push(compile(&snapshot, &config).ruleset);
    }
    all.push(Ruleset::new());
    all
}

#[test]
fn following_a_diff_gives_its_target_for_every_pair_of_fixtures() {
    let all = rulesets();
    for (i, from) in all.iter().enumerate() {
        // Each to the next, and each to one far away.
        for to in [all.get(i + 1), all.get((i * 7 + 3) % all.len())]
            .into_iter()
            .flatten()
        {
            let transaction = diff(from, to).unwrap();
            let mut held = from.clone();
            follow(&mut held, &transaction, to);
            assert!(held == *to, "following fixture {i}'s diff missed a change");
        }
    }
}

#[test]
fn following_a_diff_copies_only_what_it_touched() {
    let all = rulesets();
    let is_elements = |op: &Op| matches!(op, Op::AddElements { .. } | Op::DeleteElements { .. });
    let (from, to, mut transaction) = all
        .windows(2)
        .map(|pair| (&pair[0], &pair[1], diff(&pair[0], &pair[1]).unwrap()))
        .find(|(_, _, tx)| tx.ops.iter().any(is_elements))
        .expect("some move between fixtures changes elements");
    // Without one of its element ops, the follower must miss exactly that change: proof
    // that it copies what the ops name, not the whole target.
    let last = transaction.ops.iter().rposition(is_elements).unwrap();
    transaction.ops.remove(last);
    let mut held = from.clone();
    follow(&mut held, &transaction, to);
    assert!(held != *to);
}
