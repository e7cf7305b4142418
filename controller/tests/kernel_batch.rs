//! Kernel tests of the netlink batch encoder: what nft lists after a batch equals the model.
//!
//! Each test works in its own network namespace. Declarations go through libnftables (the
//! `nftproxy-nft` helper), then rules and elements go as batches of nftproxy's own, and
//! the listing is compared with the model: every construct of
//! `rules::fixtures::every_construct()`, and the transactions between every pair of
//! consecutive fixture clusters. Kernel tests need root; without it they skip, unless
//! `NFTPROXY_REQUIRE_ROOT_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[allow(dead_code)]
#[path = "../src/kernel/mod.rs"]
mod kernel;

#[allow(dead_code)]
#[path = "../src/netlink.rs"]
mod netlink;

#[path = "../../compiler/tests/support/fixtures.rs"]
mod fixtures;

use std::net::Ipv4Addr;

use common::generated::nft_helper;
use common::netns::{NetNs, kernel_tests_enabled};
use kernel::batch;
use kernel::direct::DirectError;
use kernel::{Kernel, tables};
use nftproxy_compiler::compile;
use nftproxy_rules::{
    Element, Family, Op, Rule, Ruleset, Stmt, TableId, Transaction, Value, Verdict, diff,
    fixtures::every_construct,
};

/// A kernel (helper and netfilter socket) working inside `ns`.
fn kernel_in(ns: &NetNs) -> Kernel {
    let path = nft_helper();
    ns.run_inside(move || Kernel::start(Some(&path)).expect("the helper starts"))
}

/// The tables of `ruleset` as listed by the kernel through nft, for comparison.
fn listed(kernel: &Kernel) -> Ruleset {
    kernel.list().expect("nft lists the tables")
}

/// Applies `tx` (turning `current` into `desired`) as a batch of our own when the encoder
/// covers it, else through libnftables; returns whether it went as a batch.
fn apply(kernel: &Kernel, tx: &Transaction, current: &Ruleset, desired: &Ruleset) -> bool {
    match kernel.apply_batch(tx, &[desired, current]) {
        Ok(()) => true,
        Err(DirectError::Unsupported(_)) => {
            kernel.apply(tx).expect("libnftables applies the rest");
            false
        }
        Err(e) => panic!("the kernel refused our batch: {e}"),
    }
}

#[test]
fn every_construct_lists_back_as_the_model_after_a_batch() {
    if !kernel_tests_enabled("every_construct_lists_back_as_the_model_after_a_batch") {
        return;
    }
    let ns = NetNs::new("batch-constructs");
    let kernel = kernel_in(&ns);
    let model = every_construct();
    // Declarations (tables, sets, chains) through libnftables; everything else as batches,
    // one operation per batch so that each construct is judged on its own.
    let (declarations, contents): (Vec<Op>, Vec<Op>) = nftproxy_rules::creation_ops(&model)
        .into_iter()
        .partition(|op| matches!(op, Op::AddTable(_) | Op::AddChain { .. }));
    kernel
        .apply(&Transaction { ops: declarations })
        .expect("declarations load");
    let mut unsupported = Vec::new();
    let mut sent = 0;
    for op in contents {
        let tx = Transaction { ops: vec![op] };
        match kernel.apply_batch(&tx, &[&model]) {
            Ok(()) => sent += 1,
            Err(DirectError::Unsupported(why)) => {
                unsupported.push((why.to_string(), tx.ops[0].clone()));
                kernel.apply(&tx).expect("libnftables applies it");
            }
            Err(e) => panic!("refused: {e}\n{:?}", tx.ops[0]),
        }
    }
    // Only anonymous sets and interval sets are left to libnftables.
    for (why, op) in &unsupported {
        let expected = ["anonymous set", "interval sets", "interval or dynamic set"]
            .iter()
            .any(|allowed| why.contains(allowed));
        assert!(expected, "unexpectedly unsupported ({why}): {op:?}");
    }
    assert!(sent >= 20, "only {sent} operations went as batches");
    let listed = listed(&kernel);
    assert_eq!(listed, model, "the kernel's listing differs from the model");
    // A second opinion: nft's own JSON listing parses to the same ruleset.
    let by_nft = Ruleset::from_nft_json(&ns.nft_list_json(), &tables()).unwrap();
    assert_eq!(by_nft, model);
}

/// Every fixture cluster compiled, in name order.
fn fixture_rulesets() -> Vec<(String, Ruleset)> {
    fixtures::fixtures()
        .into_iter()
        .map(|(name, path)| {
            let (snapshot, config) = fixtures::load(&name, &path);
            let ruleset = compile(&snapshot, &config).ruleset;
            (name, ruleset)
        })
        .collect()
}

#[test]
fn transactions_between_fixture_clusters_land_exactly_as_batches() {
    if !kernel_tests_enabled("transactions_between_fixture_clusters_land_exactly_as_batches") {
        return;
    }
    let ns = NetNs::new("batch-fixtures");
    let kernel = kernel_in(&ns);
    let rulesets = fixture_rulesets();
    let mut current = Ruleset::new();
    let mut as_batches = 0;
    for (name, desired) in &rulesets {
        let tx = diff(&current, desired).unwrap();
        if apply(&kernel, &tx, &current, desired) {
            as_batches += 1;
        }
        assert_eq!(&listed(&kernel), desired, "after moving to fixture {name}");
        current = desired.clone();
    }
    // Most moves between clusters need no new set declaration and go as batches.
    assert!(
        as_batches * 2 >= rulesets.len(),
        "only {as_batches} of {} transactions went as batches",
        rulesets.len()
    );
}

/// The helper and a socket in `ns`, with the `every-service-type` fixture loaded.
fn every_service_type_in(ns: &NetNs) -> (Kernel, Ruleset) {
    let kernel = kernel_in(ns);
    let (_, model) = fixture_rulesets()
        .into_iter()
        .find(|(name, _)| name == "every-service-type")
        .unwrap();
    kernel
        .apply(&diff(&Ruleset::new(), &model).unwrap())
        .unwrap();
    (kernel, model)
}

#[test]
fn a_refused_batch_changes_nothing_and_names_the_operation() {
    if !kernel_tests_enabled("a_refused_batch_changes_nothing_and_names_the_operation") {
        return;
    }
    let ns = NetNs::new("batch-refused");
    let (kernel, model) = every_service_type_in(&ns);
    let table = TableId::new(Family::Ip, nftproxy_compiler::TABLE);
    let element = Element::key([
        Value::Ipv4(Ipv4Addr::new(198, 18, 9, 9)),
        Value::Ipv4(Ipv4Addr::new(198, 18, 9, 9)),
    ]);
    let tx = Transaction {
        ops: vec![
            Op::AddElements {
                table: table.clone(),
                set: "endpoint-hairpin".into(),
                elements: vec![element],
            },
            Op::FlushChain {
                table: table.clone(),
                chain: "reject-chain".into(),
            },
            // Refused: the chain does not exist.
            Op::AddRule {
                table: table.clone(),
                chain: "no-such-chain".into(),
                rule: Rule::new(vec![Stmt::Verdict(Verdict::Accept)]),
            },
        ],
    };
    let err = kernel.apply_batch(&tx, &[&model]).unwrap_err();
    let DirectError::Refused { index, .. } = &err else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(*index, Some(2), "{err}");
    assert!(
        err.to_string()
            .starts_with("operation 2 (add rule to ip nftproxy no-such-chain)"),
        "{err}"
    );
    assert_eq!(
        listed(&kernel),
        model,
        "a refused batch left a change behind"
    );
    // The socket stays usable: the next batch lands.
    let tx = Transaction {
        ops: vec![tx.ops[0].clone()],
    };
    kernel.apply_batch(&tx, &[&model]).unwrap();
    let hairpin = &listed(&kernel).tables[&table].sets["endpoint-hairpin"];
    assert_eq!(
        hairpin.elements.len(),
        model.tables[&table].sets["endpoint-hairpin"].elements.len() + 1
    );
}

#[test]
fn a_batch_of_many_elements_is_split_into_messages_and_lands_whole() {
    if !kernel_tests_enabled("a_batch_of_many_elements_is_split_into_messages_and_lands_whole") {
        return;
    }
    let ns = NetNs::new("batch-large");
    let (kernel, model) = every_service_type_in(&ns);
    let table = TableId::new(Family::Ip, nftproxy_compiler::TABLE);
    // 30 000 elements of `no-endpoint-services`, each a verdict with a comment: several
    // messages.
    let elements: Vec<Element> = (0..30_000u32)
        .map(|i| {
            let ip = Ipv4Addr::new(198, 19, (i >> 8) as u8 | 0x80, i as u8);
            let port = 1000 + (i % 50) as u16;
            Element::mapping(
                [
                    Value::Ipv4(ip),
                    Value::Proto(nftproxy_rules::L4Proto::Tcp),
                    Value::Port(port),
                ],
                Value::Verdict(Verdict::Goto("reject-chain".into())),
            )
            .with_comment(format!("bulk/service-{i}:http"))
        })
        .collect();
    let tx = Transaction {
        ops: vec![Op::AddElements {
            table: table.clone(),
            set: "no-endpoint-services".into(),
            elements: elements.clone(),
        }],
    };
    let batch = batch::encode(&tx, 1, &[&model]).unwrap();
    assert!(
        batch.messages.len() > 10,
        "{} messages",
        batch.messages.len()
    );
    kernel.apply_batch(&tx, &[&model]).unwrap();
    let mut expected = model.clone();
    for element in elements {
        expected
            .tables
            .get_mut(&table)
            .unwrap()
            .sets
            .get_mut("no-endpoint-services")
            .unwrap()
            .insert(element);
    }
    assert_eq!(listed(&kernel), expected);
}

#[test]
fn a_service_removed_and_added_back_with_its_counters_goes_as_batches() {
    if !kernel_tests_enabled("a_service_removed_and_added_back_with_its_counters_goes_as_batches") {
        return;
    }
    let ns = NetNs::new("batch-counters");
    let (kernel, model) = every_service_type_in(&ns);
    let (name, path) = fixtures::fixtures()
        .into_iter()
        .find(|(name, _)| name == "every-service-type")
        .unwrap();
    let (mut snapshot, config) = fixtures::load(&name, &path);
    // The LoadBalancer service has a ClusterIP, LB IPs and NodePorts: every counter map.
    snapshot
        .services
        .retain(|s| s.metadata.name.as_deref() != Some("load-balancer"));
    let without = compile(&snapshot, &config).ruleset;
    let counters = |r: &Ruleset| -> usize { r.tables.values().map(|t| t.counters.len()).sum() };
    assert!(counters(&without) < counters(&model));
    for (from, to, op) in [
        (&model, &without, "delete counter"),
        (&without, &model, "add counter"),
    ] {
        let tx = diff(from, to).unwrap();
        let ops = tx.ops.iter().filter(|o| o.to_string().starts_with(op));
        assert!(ops.count() >= 2, "no {op} in\n{tx}");
        kernel
            .apply_batch(&tx, &[to, from])
            .unwrap_or_else(|e| panic!("{op}: not sent as a batch: {e}\n{tx}"));
        assert_eq!(&listed(&kernel), to, "after the batch with {op}");
    }
}
