//! Session affinity ClientIP: per-endpoint timeout sets, sticky rules, updating cascades.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use nftproxy_rules::{DataType, Family, SetFlag, Verdict, validate_ruleset};

use super::web;
use crate::Compiled;
use crate::naming::AffinityNames;
use crate::protocol::Protocol;
use crate::service::{ServiceId, ServicePortDef};
use crate::testing::{ServiceBuilder, SliceBuilder, cluster, ep, slice};

/// Three ready endpoints of `ns/web` on `http` 8080: 198.18.1.5 (node-1), .2.5 and .2.6
/// (node-2).
fn three_endpoints() -> SliceBuilder {
    slice("ns/web-1", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.1.5").node("node-1"))
        .endpoint(ep("198.18.2.5").node("node-2"))
        .endpoint(ep("198.18.2.6").node("node-2"))
}

fn sticky_web() -> ServiceBuilder {
    web().session_affinity("ClientIP")
}

/// The affinity set name of `ns/web`'s `http` port for `addr:8080`.
fn set_of(addr: &str) -> String {
    let id = ServiceId {
        namespace: "ns".into(),
        name: "web".into(),
    };
    let port = ServicePortDef {
        name: "http".into(),
        port: 80,
        protocol: Protocol::Tcp,
    };
    AffinityNames::new(&id, &port).set(addr.parse().unwrap(), 8080)
}

fn service_chain(compiled: &Compiled, vip: &str) -> String {
    match compiled.service_ip(vip, "TCP", 80) {
        Some((Verdict::Goto(chain), _)) => chain.to_string(),
        other => panic!("no service chain for {vip}: {other:?}"),
    }
}

/// The names of the affinity sets of `family`'s table.
fn affinity_sets(compiled: &Compiled, family: Family) -> Vec<String> {
    let table = compiled.table_of(family);
    let sets = table.sets.keys();
    sets.filter(|name| name.starts_with("affinity-"))
        .cloned()
        .collect()
}

#[test]
fn a_client_ip_service_chain_is_sticky_rules_then_an_updating_then_a_plain_cascade() {
    let compiled = cluster()
        .service(sticky_web())
        .slice(three_endpoints())
        .compile();
    let chain = service_chain(&compiled, "198.19.0.10");
    let (a, b, c) = (
        set_of("198.18.1.5"),
        set_of("198.18.2.5"),
        set_of("198.18.2.6"),
    );
    assert_eq!(
        compiled.chain_rules(Family::Ip, &chain),
        [
            format!(
                "ip saddr @{a} meta l4proto tcp update @{a} {{ ip saddr }} dnat to 198.18.1.5:8080"
            ),
            format!(
                "ip saddr @{b} meta l4proto tcp update @{b} {{ ip saddr }} dnat to 198.18.2.5:8080"
            ),
            format!(
                "ip saddr @{c} meta l4proto tcp update @{c} {{ ip saddr }} dnat to 198.18.2.6:8080"
            ),
            format!(
                "numgen random mod 3 == 0 meta l4proto tcp update @{a} {{ ip saddr }} dnat to 198.18.1.5:8080"
            ),
            format!(
                "numgen random mod 2 == 0 meta l4proto tcp update @{b} {{ ip saddr }} dnat to 198.18.2.5:8080"
            ),
            format!("meta l4proto tcp update @{c} {{ ip saddr }} dnat to 198.18.2.6:8080"),
            "numgen random mod 3 == 0 meta l4proto tcp dnat to 198.18.1.5:8080".to_owned(),
            "numgen random mod 2 == 0 meta l4proto tcp dnat to 198.18.2.5:8080".to_owned(),
            "meta l4proto tcp dnat to 198.18.2.6:8080".to_owned(),
        ]
    );
    validate_ruleset(&compiled.ruleset).expect("every referenced set exists");
}

#[test]
fn each_endpoint_gets_an_empty_timeout_set_with_the_default_three_hours() {
    let compiled = cluster()
        .service(sticky_web())
        .slice(three_endpoints())
        .compile();
    let mut expected = vec![
        set_of("198.18.1.5"),
        set_of("198.18.2.5"),
        set_of("198.18.2.6"),
    ];
    expected.sort();
    assert_eq!(affinity_sets(&compiled, Family::Ip), expected);
    for name in &expected {
        let set = &compiled.table_of(Family::Ip).sets[name];
        assert_eq!(set.key, [DataType::Ipv4Addr], "{name}");
        assert_eq!(set.flags, [SetFlag::Timeout], "{name}");
        assert_eq!(set.timeout_secs, Some(10800), "{name}");
        assert!(set.value.is_none() && set.elements.is_empty(), "{name}");
    }
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
}

#[test]
fn timeout_seconds_becomes_the_set_timeout() {
    let compiled = cluster()
        .service(sticky_web().affinity_timeout(2))
        .slice(three_endpoints())
        .compile();
    let table = compiled.table_of(Family::Ip);
    let timeouts: Vec<_> = affinity_sets(&compiled, Family::Ip)
        .iter()
        .map(|name| table.sets[name].timeout_secs)
        .collect();
    assert_eq!(timeouts, [Some(2); 3]);
}

#[test]
fn services_without_client_ip_affinity_get_exactly_the_plain_cascade() {
    let plain = cluster().service(web()).slice(three_endpoints()).compile();
    let none = cluster()
        .service(web().session_affinity("None").affinity_timeout(60))
        .slice(three_endpoints())
        .compile();
    assert_eq!(none, plain);
    let chain = service_chain(&plain, "198.19.0.10");
    assert_eq!(plain.chain_rules(Family::Ip, &chain).len(), 3);
    assert!(affinity_sets(&plain, Family::Ip).is_empty());
}

#[test]
fn an_unknown_affinity_is_reported_and_treated_as_none() {
    let plain = cluster().service(web()).slice(three_endpoints()).compile();
    let unknown = cluster()
        .service(web().session_affinity("Cookie"))
        .slice(three_endpoints())
        .compile();
    assert_eq!(unknown.ruleset, plain.ruleset);
    assert_eq!(
        unknown.messages(),
        [
            "warning: Service ns/web: spec.sessionAffinity \"Cookie\" is not None or ClientIP; treated as None"
        ]
    );
}

#[test]
fn an_out_of_range_timeout_is_reported_naming_the_service_and_replaced_by_the_default() {
    let compiled = cluster()
        .service(sticky_web().affinity_timeout(86401))
        .slice(three_endpoints())
        .compile();
    assert_eq!(
        compiled.messages(),
        [
            "warning: Service ns/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds 86401 is out of range 1-86400; using 10800"
        ]
    );
    let table = compiled.table_of(Family::Ip);
    assert_eq!(table.sets[&set_of("198.18.1.5")].timeout_secs, Some(10800));
}

#[test]
fn a_single_endpoint_still_records_its_clients() {
    let compiled = cluster()
        .service(sticky_web())
        .slice(
            slice("ns/web-1", "web")
                .port("http", 8080)
                .ready(&["198.18.1.5"]),
        )
        .compile();
    let chain = service_chain(&compiled, "198.19.0.10");
    let a = set_of("198.18.1.5");
    assert_eq!(
        compiled.chain_rules(Family::Ip, &chain),
        [
            format!(
                "ip saddr @{a} meta l4proto tcp update @{a} {{ ip saddr }} dnat to 198.18.1.5:8080"
            ),
            format!("meta l4proto tcp update @{a} {{ ip saddr }} dnat to 198.18.1.5:8080"),
            "meta l4proto tcp dnat to 198.18.1.5:8080".to_owned(),
        ]
    );
}

#[test]
fn ipv6_endpoints_get_ipv6_sets_and_ip6_saddr_rules_in_the_ip6_table() {
    let compiled = cluster()
        .service(sticky_web().cluster_ips(&["198.19.0.10", "2001:db8:19::10"]))
        .slice(three_endpoints())
        .slice(
            slice("ns/web-2", "web")
                .ipv6()
                .port("http", 8080)
                .ready(&["2001:db8:18:1::5", "2001:db8:18:2::5"]),
        )
        .compile();
    let v6_sets = affinity_sets(&compiled, Family::Ip6);
    assert_eq!(v6_sets.len(), 2, "{v6_sets:?}");
    for name in &v6_sets {
        assert!(!name.contains(':'), "{name}");
        let set = &compiled.table_of(Family::Ip6).sets[name];
        assert_eq!(set.key, [DataType::Ipv6Addr]);
    }
    assert_eq!(affinity_sets(&compiled, Family::Ip).len(), 3);
    let chain = service_chain(&compiled, "2001:db8:19::10");
    let rules = compiled.chain_rules(Family::Ip6, &chain);
    let first = set_of("2001:db8:18:1::5");
    assert_eq!(
        rules[0],
        format!(
            "ip6 saddr @{first} meta l4proto tcp update @{first} {{ ip6 saddr }} dnat to [2001:db8:18:1::5]:8080"
        )
    );
    validate_ruleset(&compiled.ruleset).expect("every referenced set exists");
}

#[test]
fn the_local_chain_of_external_traffic_policy_local_shares_the_sets_of_its_endpoints() {
    let svc = sticky_web()
        .type_("NodePort")
        .node_port(30080)
        .external_local();
    let compiled = cluster().service(svc).slice(three_endpoints()).compile();
    let table = compiled.table_of(Family::Ip);
    let local = table
        .chains
        .keys()
        .find(|name| name.starts_with("local-"))
        .expect("a local chain")
        .clone();
    let a = set_of("198.18.1.5");
    assert_eq!(
        compiled.chain_rules(Family::Ip, &local),
        [
            format!(
                "ip saddr @{a} meta l4proto tcp update @{a} {{ ip saddr }} dnat to 198.18.1.5:8080"
            ),
            format!("meta l4proto tcp update @{a} {{ ip saddr }} dnat to 198.18.1.5:8080"),
            "meta l4proto tcp dnat to 198.18.1.5:8080".to_owned(),
        ]
    );
    assert_eq!(affinity_sets(&compiled, Family::Ip).len(), 3);
    validate_ruleset(&compiled.ruleset).expect("every referenced set exists");
}

#[test]
fn the_cluster_chain_of_an_internal_local_service_is_sticky_too() {
    let svc = sticky_web()
        .internal_local()
        .type_("NodePort")
        .node_port(30080);
    let compiled = cluster().service(svc).slice(three_endpoints()).compile();
    let table = compiled.table_of(Family::Ip);
    let cluster_chain = table
        .chains
        .keys()
        .find(|name| name.starts_with("cluster-"))
        .expect("a cluster chain")
        .clone();
    let rules = compiled.chain_rules(Family::Ip, &cluster_chain);
    assert_eq!(rules.len(), 9, "{rules:#?}");
    let c = set_of("198.18.2.6");
    assert_eq!(
        rules[2],
        format!(
            "ip saddr @{c} meta l4proto tcp update @{c} {{ ip saddr }} dnat to 198.18.2.6:8080"
        )
    );
    // The service chain holds only node-1's endpoint, with the same set.
    let service = service_chain(&compiled, "198.19.0.10");
    assert_eq!(compiled.chain_rules(Family::Ip, &service).len(), 3);
    assert_eq!(affinity_sets(&compiled, Family::Ip).len(), 3);
}

#[test]
fn each_port_of_a_service_has_its_own_sets() {
    let svc = sticky_web().port("admin", 81);
    let endpoints = slice("ns/web-1", "web")
        .port("http", 8080)
        .port("admin", 8080)
        .ready(&["198.18.1.5"]);
    let compiled = cluster().service(svc).slice(endpoints).compile();
    let sets = affinity_sets(&compiled, Family::Ip);
    assert_eq!(sets.len(), 2, "{sets:?}");
    assert!(sets.iter().any(|s| s.contains("/tcp/http__")), "{sets:?}");
    assert!(sets.iter().any(|s| s.contains("/tcp/admin__")), "{sets:?}");
}
