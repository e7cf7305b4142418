//! Kernel tests for the rules crate: what we render is what the kernel loads, what the kernel
//! lists parses back to the model, and diff transactions move the kernel exactly.
//!
//! Each test works in its own network namespace (never the host's ruleset) and needs root;
//! without it the tests skip, unless `NFTPROXY_REQUIRE_ROOT_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;

use common::netns::{NetNs, kernel_tests_enabled};
use nftproxy_rules::fixtures::every_construct;
use nftproxy_rules::{
    Chain, Element, Expr, Family, L4Proto, MetaKey, Op, Rule, Ruleset, SetFlag, Stmt, Table,
    TableId, Transaction, Value, Verdict, diff,
};

const SERVICE: &str = "service-ABCDEFGH-default/web/tcp/http";
const NEW_SERVICE: &str = "service-QRSTUVWX-default/api/tcp/grpc";

/// Lists the namespace's ruleset and parses our tables out of it.
fn listed(ns: &NetNs) -> Ruleset {
    let tables = nftproxy_compiler::table_ids();
    Ruleset::from_nft_json(&ns.nft_list_json(), &tables).expect("listing parses")
}

fn load(ns: &NetNs, r: &Ruleset, json: bool) {
    let input = if json {
        r.to_json().to_string()
    } else {
        r.to_string()
    };
    ns.nft_load(&input, json)
        .unwrap_or_else(|e| panic!("nft refused the ruleset: {e}\n{input}"));
}

fn send(ns: &NetNs, tx: &Transaction, json: bool) -> Result<(), String> {
    let input = if json {
        tx.to_json().to_string()
    } else {
        tx.to_string()
    };
    ns.nft_load(&input, json)
}

fn assert_round_trip(json: bool, test: &str) {
    let ns = NetNs::new("h1rt");
    let r = every_construct();
    load(&ns, &r, json);
    let back = listed(&ns);
    assert_eq!(back, r, "listed:\n{back}\nexpected:\n{r}");
    assert!(
        diff(&back, &r).unwrap().is_empty(),
        "{test}: full sync is not a no-op"
    );
}

#[test]
fn every_construct_loaded_as_script_lists_back_equal() {
    if !kernel_tests_enabled("every_construct_loaded_as_script_lists_back_equal") {
        return;
    }
    assert_round_trip(false, "script");
}

#[test]
fn every_construct_loaded_as_json_lists_back_equal() {
    if !kernel_tests_enabled("every_construct_loaded_as_json_lists_back_equal") {
        return;
    }
    assert_round_trip(true, "json");
}

fn ip() -> TableId {
    TableId::new(Family::Ip, "nftproxy")
}

fn ip_table(r: &mut Ruleset) -> &mut Table {
    r.table_mut(&ip()).unwrap()
}

fn dnat_rule(addr: [u8; 4]) -> Rule {
    Rule::new(vec![
        Stmt::eq(
            Expr::Meta(MetaKey::L4proto),
            Expr::Literal(Value::Proto(L4Proto::Tcp)),
        ),
        Stmt::Dnat {
            addr: IpAddr::from(addr),
            port: Some(9090),
        },
    ])
}

/// R1: a new service (chain, map element, hairpin), one endpoint fewer for the old one,
/// a new ClusterIP and a changed element comment.
fn r1(r0: &Ruleset) -> Ruleset {
    let mut r = r0.clone();
    let t = ip_table(&mut r);
    t.insert_chain(Chain::regular(NEW_SERVICE).with_rule(dnat_rule([198, 18, 2, 7])));
    let vip = Value::Ipv4([198, 19, 0, 12].into());
    let map = t.sets.get_mut("service-ips").unwrap();
    map.insert(
        Element::mapping(
            vec![vip.clone(), Value::Proto(L4Proto::Tcp), Value::Port(50051)],
            Value::Verdict(Verdict::Goto(NEW_SERVICE.into())),
        )
        .with_comment("default/api:grpc"),
    );
    map.elements.update_each(|_, e| {
        if e.comment.as_deref() == Some("default/web:http") {
            e.comment = Some("default/web:80".into());
        }
    });
    t.sets
        .get_mut("cluster-ips")
        .unwrap()
        .insert(Element::key(vec![vip]));
    let ep = Value::Ipv4([198, 18, 2, 7].into());
    t.sets
        .get_mut("endpoint-hairpin")
        .unwrap()
        .insert(Element::key(vec![ep.clone(), ep]));
    let mut service = t.chains.get_mut(SERVICE).unwrap();
    service.rules = vec![dnat_rule([198, 18, 1, 2])].into();
    drop(service);
    r
}

/// R2: the old service is gone (chain and every element pointing at it), `cluster-ips`
/// changes declaration (interval), and a base chain moves priority.
fn r2(r1: &Ruleset) -> Ruleset {
    let mut r = r1.clone();
    let t = ip_table(&mut r);
    t.chains.remove(SERVICE);
    for set in t.sets.values_mut() {
        set.elements.retain(
            |_, e| !matches!(&e.value, Some(Value::Verdict(v)) if v.target() == Some(SERVICE)),
        );
    }
    let ips = t.sets.get_mut("cluster-ips").unwrap();
    *ips = ips.clone().with_flag(SetFlag::Interval);
    ips.insert(Element::key(vec![Value::Prefix(Box::new(
        "198.19.1.0/24".parse().unwrap(),
    ))]));
    t.chains
        .get_mut("nat-output")
        .unwrap()
        .base
        .as_mut()
        .unwrap()
        .priority = -99;
    r
}

/// R3: the IPv6 table is dropped, a map disappears with the rule that used it, and the
/// new service gets a second endpoint.
fn r3(r2: &Ruleset) -> Ruleset {
    let mut r = r2.clone();
    r.tables.remove(&TableId::new(Family::Ip6, "nftproxy"));
    let t = ip_table(&mut r);
    t.sets.remove("service-nodeports");
    let mut services = t.chains.get_mut("services").unwrap();
    services
        .rules
        .retain(|rule| !rule.to_string().contains("@service-nodeports"));
    drop(services);
    let mut chain = t.chains.get_mut(NEW_SERVICE).unwrap();
    let mut first = dnat_rule([198, 18, 2, 8]);
    let mut stmts = first.stmts.into_vec();
    stmts.insert(
        0,
        Stmt::eq(
            Expr::NumgenRandom { modulus: 2 },
            Expr::Literal(Value::Int(0)),
        ),
    );
    first.stmts = stmts.into();
    chain.rules.insert(0, first);
    drop(chain);
    r
}

fn run_sequence(json: bool) {
    let ns = NetNs::new("h1seq");
    let r0 = every_construct();
    let r1 = r1(&r0);
    let r2 = r2(&r1);
    let r3 = r3(&r2);
    let steps = [Ruleset::new(), r0, r1, r2, r3.clone(), Ruleset::new(), r3];
    for pair in steps.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let tx = diff(old, new).unwrap();
        assert_eq!(
            tx.apply_to(old).as_ref(),
            Ok(new),
            "simulation disagrees:\n{tx}"
        );
        send(&ns, &tx, json).unwrap_or_else(|e| panic!("kernel refused:\n{e}\n{tx}"));
        let back = listed(&ns);
        assert_eq!(&back, new, "after:\n{tx}\nlisted:\n{back}");
        let full = diff(&back, new).unwrap();
        assert!(full.is_empty(), "full sync after {tx} is not empty: {full}");
    }
}

#[test]
fn diff_transactions_sent_as_script_leave_exactly_the_desired_ruleset() {
    if !kernel_tests_enabled("diff_transactions_sent_as_script_leave_exactly_the_desired_ruleset") {
        return;
    }
    run_sequence(false);
}

#[test]
fn diff_transactions_sent_as_json_leave_exactly_the_desired_ruleset() {
    if !kernel_tests_enabled("diff_transactions_sent_as_json_leave_exactly_the_desired_ruleset") {
        return;
    }
    run_sequence(true);
}

#[test]
fn a_refused_transaction_leaves_the_kernel_unchanged() {
    if !kernel_tests_enabled("a_refused_transaction_leaves_the_kernel_unchanged") {
        return;
    }
    let ns = NetNs::new("h1refuse");
    let r0 = every_construct();
    load(&ns, &r0, true);
    let mut tx = diff(&r0, &r1(&r0)).unwrap();
    tx.push(Op::DeleteElements {
        table: ip(),
        set: "cluster-ips".into(),
        elements: vec![Element::key(vec![Value::Ipv4([10, 9, 9, 9].into())])],
    });
    assert!(tx.apply_to(&r0).is_err(), "the simulation accepts it");
    for json in [false, true] {
        let refused = send(&ns, &tx, json);
        assert!(
            refused.is_err(),
            "kernel accepted a delete of a missing element"
        );
        assert_eq!(listed(&ns), r0, "a refused transaction changed the kernel");
    }
}

#[test]
fn hostile_comments_and_interface_names_cannot_change_the_script() {
    if !kernel_tests_enabled("hostile_comments_and_interface_names_cannot_change_the_script") {
        return;
    }
    let ns = NetNs::new("h1hostile");
    ns.nft_load("table inet bystander {\n\tchain c {\n\t}\n}\n", false)
        .unwrap();
    let mut r = Ruleset::new();
    let mut t = Table::new(Family::Ip, "nftproxy");
    let evil = "x\"; }\ndelete table inet bystander\ntable ip nftproxy { chain y { \"";
    t.insert_chain(
        Chain::regular("c").with_rule(
            Rule::new(vec![
                Stmt::ne(
                    Expr::Meta(MetaKey::Iifname),
                    Expr::Literal(Value::ifname("e\" x*;", true)),
                ),
                Stmt::Verdict(Verdict::Accept),
            ])
            .with_comment(evil),
        ),
    );
    r.insert_table(t);
    for json in [false, true] {
        load(&ns, &r, json);
        let tables = ns.exec_ok(&["nft", "list", "tables"]);
        assert!(tables.contains("bystander"), "{tables}");
        let back = listed(&ns);
        let rule = &back.tables[&ip()].chains["c"].rules[0];
        assert!(!rule.comment.as_deref().unwrap_or("").contains('"'));
        assert_eq!(back.tables[&ip()].chains.len(), 1);
        ns.nft_load("delete table ip nftproxy", false).unwrap();
    }
}
