//! Kernel tests of session affinity sets: a changed `timeoutSeconds` reaches the kernel in
//! one diff transaction, and the clients the kernel recorded are runtime state that syncs
//! leave alone.
//!
//! Each test works in its own network namespace and needs root; without it the tests skip,
//! unless `NFTPROXY_REQUIRE_ROOT_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::netns::{NetNs, kernel_tests_enabled};
use nftproxy_compiler::{ClusterSnapshot, CompileConfig, compile, manifest};
use nftproxy_rules::{Family, Op, Ruleset, Set, TableId, Transaction, diff};

/// A dual-stack ClientIP service with two endpoints per family and `timeoutSeconds`
/// `timeout`, next to a service without affinity.
fn cluster(timeout: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: sticky, namespace: default}}
spec:
  clusterIP: 198.19.0.50
  clusterIPs: [198.19.0.50, "2001:db8:19::50"]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {timeout}}}}}
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: sticky-v4, namespace: default, labels: {{kubernetes.io/service-name: sticky}}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- {{addresses: [198.18.1.50], conditions: {{ready: true}}}}
- {{addresses: [198.18.2.50], conditions: {{ready: true}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: sticky-v6, namespace: default, labels: {{kubernetes.io/service-name: sticky}}}}
addressType: IPv6
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- {{addresses: ["2001:db8:18:1::50"], conditions: {{ready: true}}}}
- {{addresses: ["2001:db8:18:2::50"], conditions: {{ready: true}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: plain, namespace: default}}
spec:
  clusterIP: 198.19.0.51
  ports: [{{protocol: TCP, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: plain-v4, namespace: default, labels: {{kubernetes.io/service-name: plain}}}}
addressType: IPv4
ports: [{{protocol: TCP, port: 8080}}]
endpoints:
- {{addresses: [198.18.1.51], conditions: {{ready: true}}}}
"#
    )
}

fn compiled(yaml: &str) -> Ruleset {
    let mut snapshot = ClusterSnapshot::default();
    for decoded in manifest::decode(yaml).expect("manifests decode") {
        assert!(snapshot.push(decoded.object).is_none(), "unexpected kind");
    }
    let config = CompileConfig {
        hostname: "node-1".to_owned(),
        ..CompileConfig::default()
    };
    let out = compile(&snapshot, &config);
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    out.ruleset
}

fn tables() -> Vec<TableId> {
    nftproxy_compiler::table_ids()
}

fn listed(ns: &NetNs) -> Ruleset {
    Ruleset::from_nft_json(&ns.nft_list_json(), &tables()).expect("listing parses")
}

fn send(ns: &NetNs, tx: &Transaction, json: bool) {
    let input = if json {
        tx.to_json().to_string()
    } else {
        tx.to_string()
    };
    ns.nft_load(&input, json)
        .unwrap_or_else(|e| panic!("kernel refused:\n{e}\n{tx}"));
}

/// The affinity sets of `family`'s table.
fn affinity_sets(r: &Ruleset, family: Family) -> Vec<&Set> {
    let tables = r.tables.values().filter(|t| t.family == family);
    let sets = tables.flat_map(|t| t.sets.values());
    let mut sets: Vec<&Set> = sets.filter(|s| s.name.starts_with("affinity-")).collect();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    sets
}

/// The name of the table of `r` that holds set `name` in `family`.
fn table_of_set(r: &Ruleset, family: Family, name: &str) -> String {
    let mut tables = r.tables.values().filter(|t| t.family == family);
    tables
        .find(|t| t.sets.contains_key(name))
        .map(|t| t.name.clone())
        .expect("a table holds the set")
}

/// Records `client` in `set` as the packet path would (an element that expires), and
/// returns what `nft list set` shows.
fn record_client(ns: &NetNs, family: &str, table: &str, set: &str, client: &str) -> String {
    ns.exec_ok(&[
        "nft",
        "add",
        "element",
        family,
        table,
        set,
        &format!("{{ {client} }}"),
    ]);
    ns.exec_ok(&["nft", "list", "set", family, table, set])
}

fn timeout_change_applies(json: bool) {
    let ns = NetNs::new("h1afft");
    let (old, new) = (compiled(&cluster(10800)), compiled(&cluster(60)));
    send(&ns, &diff(&Ruleset::new(), &old).unwrap(), json);
    let v4_set = affinity_sets(&old, Family::Ip)[0].name.clone();
    let v4_table = table_of_set(&old, Family::Ip, &v4_set);
    let shown = record_client(&ns, "ip", &v4_table, &v4_set, "203.0.113.7");
    assert!(
        shown.contains("203.0.113.7") && shown.contains("expires"),
        "{shown}"
    );
    assert_eq!(
        listed(&ns),
        old,
        "recorded clients must not show in the model"
    );

    let tx = diff(&old, &new).unwrap();
    assert_eq!(tx.apply_to(&old).as_ref(), Ok(&new), "simulation:\n{tx}");
    assert_only_sticky_objects_change(&tx);
    send(&ns, &tx, json);
    let back = listed(&ns);
    assert_eq!(back, new, "after:\n{tx}\nlisted:\n{back}");
    for family in [Family::Ip, Family::Ip6] {
        let sets = affinity_sets(&back, family);
        assert_eq!(sets.len(), 2, "{family}");
        assert!(sets.iter().all(|s| s.timeout_secs == Some(60)), "{sets:?}");
    }
    let full = diff(&back, &new).unwrap();
    assert!(full.is_empty(), "full sync after the change: {full}");
    let shown = ns.exec_ok(&["nft", "list", "set", "ip", &v4_table, &v4_set]);
    assert!(
        !shown.contains("203.0.113.7"),
        "the recreated set kept an element: {shown}"
    );
}

/// The timeout change recreates the four affinity sets and refills the two sticky service
/// chains that use them; nothing else is touched.
fn assert_only_sticky_objects_change(tx: &Transaction) {
    let (mut deleted, mut added, mut flushed) = (0, 0, 0);
    for op in &tx.ops {
        match op {
            Op::DeleteSet { set, .. } if set.starts_with("affinity-") => deleted += 1,
            Op::AddSet { set, .. } if set.name.starts_with("affinity-") => added += 1,
            Op::FlushChain { chain, .. } if chain.contains("/sticky/") => flushed += 1,
            Op::AddRule { chain, .. } if chain.contains("/sticky/") => {}
            other => panic!("unexpected op {other:?} in:\n{tx}"),
        }
    }
    assert_eq!((deleted, added, flushed), (4, 4, 2), "{tx}");
}

#[test]
fn a_changed_affinity_timeout_sent_as_script_leaves_exactly_the_new_ruleset() {
    if !kernel_tests_enabled(
        "a_changed_affinity_timeout_sent_as_script_leaves_exactly_the_new_ruleset",
    ) {
        return;
    }
    timeout_change_applies(false);
}

#[test]
fn a_changed_affinity_timeout_sent_as_json_leaves_exactly_the_new_ruleset() {
    if !kernel_tests_enabled(
        "a_changed_affinity_timeout_sent_as_json_leaves_exactly_the_new_ruleset",
    ) {
        return;
    }
    timeout_change_applies(true);
}

#[test]
fn recorded_clients_survive_full_syncs_and_unrelated_changes() {
    if !kernel_tests_enabled("recorded_clients_survive_full_syncs_and_unrelated_changes") {
        return;
    }
    let ns = NetNs::new("h1affkeep");
    let r = compiled(&cluster(10800));
    send(&ns, &diff(&Ruleset::new(), &r).unwrap(), true);
    let v6_set = affinity_sets(&r, Family::Ip6)[1].name.clone();
    let v6_table = table_of_set(&r, Family::Ip6, &v6_set);
    record_client(&ns, "ip6", &v6_table, &v6_set, "2001:db8:113::7");

    let full = diff(&listed(&ns), &r).unwrap();
    assert!(full.is_empty(), "a full sync would touch: {full}");
    // An unrelated service goes away: an incremental sync, sent for real.
    let mut without_plain = cluster(10800);
    let cut = without_plain.find("---\napiVersion: v1\nkind: Service\nmetadata: {name: plain");
    without_plain.truncate(cut.expect("the plain service"));
    let smaller = compiled(&without_plain);
    let tx = diff(&r, &smaller).unwrap();
    assert!(!tx.is_empty());
    send(&ns, &tx, true);
    assert_eq!(listed(&ns), smaller);
    let shown = ns.exec_ok(&["nft", "list", "set", "ip6", &v6_table, &v6_set]);
    assert!(shown.contains("2001:db8:113::7"), "{shown}");
}
