//! Kernel tests of adoption at start: netlink dumps show a table to be the expected one
//! without libnftables, and anything changed by hand is seen and listed the slow way.
//!
//! Each test loads compiled fixtures into a namespace of its own with `nft -f` (as a full
//! sync through libnftables would) and asks the kernel client to list the tables,
//! expecting the compiled ruleset. Kernel tests need root; without it they skip, unless
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

use common::generated::nft_helper;
use common::netns::{NetNs, kernel_tests_enabled};
use kernel::{Kernel, Listed, adopt, batch};
use nftproxy_compiler::compile;
use nftproxy_rules::{Ruleset, diff};

fn kernel_in(ns: &NetNs) -> Kernel {
    let path = nft_helper();
    ns.run_inside(move || Kernel::start(Some(&path)).expect("the helper starts"))
}

/// The tables of `r` that nftproxy's own batch encoder covers, interval sets apart (the
/// others can only be checked by listing them).
fn encodable_tables(r: &Ruleset) -> usize {
    r.tables
        .values()
        .filter(|t| batch::encode(&adopt::creation_without_interval_sets(t), 1, &[r]).is_ok())
        .count()
}

#[test]
fn every_fixture_is_adopted_from_dumps_where_the_encoder_covers_its_tables() {
    if !kernel_tests_enabled(
        "every_fixture_is_adopted_from_dumps_where_the_encoder_covers_its_tables",
    ) {
        return;
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, path) in fixtures::fixtures() {
        let (snapshot, config) = fixtures::load(&name, &path);
        let r = compile(&snapshot, &config).ruleset;
        let ns = NetNs::new("adopt");
        ns.nft_load(&r.to_string(), false)
            .expect("nft loads the fixture");
        let kernel = kernel_in(&ns);
        let (adopted, listed) = kernel.list_expecting(&r).expect("the tables list");
        if adopted != r {
            failures.push(format!(
                "{name}: adopted tables differ from the compiled ones"
            ));
        }
        let encodable = encodable_tables(&r);
        let expected = Listed {
            checked: encodable,
            listed: r.tables.len() - encodable,
        };
        if listed != expected {
            failures.push(format!("{name}: {listed:?}, expected {expected:?}"));
        }
        checked += listed.checked;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked > 0,
        "no table was checked from dumps: nothing was tested"
    );
}

/// A fixture's compiled ruleset, loaded into a new namespace, with a kernel client there.
fn loaded(fixture: &str) -> (Ruleset, NetNs, Kernel) {
    let (name, path) = fixtures::fixtures()
        .into_iter()
        .find(|(name, _)| name == fixture)
        .expect("the fixture exists");
    let (snapshot, config) = fixtures::load(&name, &path);
    let r = compile(&snapshot, &config).ruleset;
    let ns = NetNs::new("adopt");
    ns.nft_load(&r.to_string(), false)
        .expect("nft loads the fixture");
    let kernel = kernel_in(&ns);
    (r, ns, kernel)
}

#[test]
fn changes_made_by_hand_are_seen_and_listed() {
    if !kernel_tests_enabled("changes_made_by_hand_are_seen_and_listed") {
        return;
    }
    let fixture = "nodeport-primary";
    let (r, _, _) = loaded(fixture);
    // A shard table (the encoder covers those) with a chain that has rules.
    let (shard, chain) = r
        .tables
        .values()
        .filter(|t| t.name != "nftproxy")
        .find_map(|t| {
            let chain = t
                .chains
                .values()
                .find(|c| c.base.is_none() && !c.rules.is_empty())?;
            Some((t.id(), chain.name.clone()))
        })
        .expect("a shard with a service chain");
    let table = format!("{} {}", shard.family.keyword(), shard.name);
    let changes = [
        format!("add rule {table} {chain} counter"),
        format!("flush chain {table} {chain}"),
        format!("add chain {table} by-hand"),
        format!("flush map {table} service-ips"),
        format!("add element {table} nodeport-ips {{ 198.51.100.99 }}"),
        format!("add counter {table} by-hand"),
        format!("delete table {table}"),
    ];
    for change in changes {
        seen_listed_and_repaired(fixture, &change);
    }
}

/// Loads `fixture`, makes `change` with nft, and checks that adoption sees it, lists
/// exactly the changed table, and that the next full sync's diff repairs it.
fn seen_listed_and_repaired(fixture: &str, change: &str) {
    let (r, ns, kernel) = loaded(fixture);
    let (_, untouched) = kernel.list_expecting(&r).unwrap();
    ns.exec_ok(&["nft", change]);
    let (adopted, listed) = kernel.list_expecting(&r).unwrap();
    assert_ne!(adopted, r, "{change}: the change is seen");
    assert_eq!(
        adopted,
        kernel.list().unwrap(),
        "{change}: the tables as nft lists them"
    );
    assert_eq!(
        listed.checked,
        untouched.checked - 1,
        "{change}: exactly the changed table is not taken as expected"
    );
    // And the diff that the next full sync applies brings the kernel back.
    let repair = diff(&adopted, &r).unwrap();
    kernel.apply(&repair).unwrap();
    assert_eq!(
        kernel.list_expecting(&r).unwrap().1,
        untouched,
        "{change}: repaired"
    );
    assert_eq!(kernel.list().unwrap(), r, "{change}: repaired");
}

/// The main tables hold the interval sets `service-cidrs`, which the netlink check leaves
/// to a listing of each set: a change there (or anywhere else in a main table) is seen.
#[test]
fn main_tables_are_adopted_from_dumps_and_interval_set_changes_are_seen() {
    if !kernel_tests_enabled("main_tables_are_adopted_from_dumps_and_interval_set_changes_are_seen")
    {
        return;
    }
    let fixture = "service-cidrs";
    let (r, _, kernel) = loaded(fixture);
    let main = r.tables.values().filter(|t| t.name == "nftproxy").count();
    assert!(
        r.tables.values().filter(|t| t.name == "nftproxy").all(|t| {
            t.sets
                .get("service-cidrs")
                .is_some_and(|s| !s.elements.is_empty())
        }),
        "the fixture fills both families' service-cidrs"
    );
    let (adopted, listed) = kernel.list_expecting(&r).unwrap();
    assert_eq!(adopted, r);
    assert_eq!(
        listed,
        Listed {
            checked: r.tables.len(),
            listed: 0
        },
        "every table, the {main} main ones included, is taken from dumps"
    );
    for change in [
        "add element ip nftproxy service-cidrs { 203.0.113.0/28 }",
        "flush set ip6 nftproxy service-cidrs",
        "add element ip nftproxy cluster-ips { 203.0.113.20 }",
    ] {
        seen_listed_and_repaired(fixture, change);
    }
}

#[test]
fn shard_tables_of_a_build_with_more_shards_are_removed() {
    if !kernel_tests_enabled("shard_tables_of_a_build_with_more_shards_are_removed") {
        return;
    }
    // An upgrade from a build with 32 shards: a table past this build's last shard, with
    // a NAT hook and a service chain, as the older build left it.
    let (r, ns, kernel) = loaded("nodeport-primary");
    let old = nftproxy_compiler::shard_table(31);
    assert!(
        nftproxy_compiler::SHARDS <= 31 && !r.tables.values().any(|t| t.name == old),
        "{old} must be outside this build's layout for the test to mean anything"
    );
    let script = format!(
        "table ip {old} {{
            chain nat-prerouting {{ type nat hook prerouting priority -100; policy accept; jump services; }}
            chain services {{ ip daddr 198.19.0.99 tcp dport 80 goto service-old; }}
            chain service-old {{ meta l4proto tcp dnat to 198.18.1.99:8080; }}
        }}"
    );
    ns.nft_load(&script, false)
        .expect("nft loads the old shard");
    let (adopted, _) = kernel.list_expecting(&r).unwrap();
    assert!(
        adopted.tables.values().any(|t| t.name == old),
        "the old shard is seen"
    );
    kernel.apply(&diff(&adopted, &r).unwrap()).unwrap();
    assert_eq!(
        kernel.list().unwrap(),
        r,
        "only this build's tables are left"
    );
    let tables = ns.exec_ok(&["nft", "list", "tables"]);
    assert!(!tables.contains(&old), "{tables}");
}
