//! The shape of the ruleset: tables, cascades, hairpin, masquerade rules, determinism.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use nftproxy_rules::{Expr, Family, Stmt, Value, Verdict};

use super::web;
use crate::DetectLocal;
use crate::testing::{cluster, config, node, service, service_cidr, slice};

#[test]
fn service_with_one_endpoint_is_a_plain_dnat() {
    let compiled = cluster()
        .service(web())
        .slice(
            slice("ns/web-1", "web")
                .port("http", 8080)
                .ready(&["198.18.1.5"]),
        )
        .compile();
    let (verdict, comment) = compiled.service_ip("198.19.0.10", "TCP", 80).unwrap();
    assert_eq!(comment, "ns/web:http");
    let Verdict::Goto(chain) = verdict else {
        panic!("{verdict:?}")
    };
    assert!(
        chain.starts_with("service-") && chain.ends_with("-ns/web/tcp/http"),
        "{chain}"
    );
    let rules = &compiled.table_of(Family::Ip).chains[&*chain].rules;
    assert_eq!(rules.len(), 1);
    assert!(!rules[0].stmts.list().iter().any(|s| matches!(
        s,
        Stmt::Match {
            left: Expr::NumgenRandom { .. },
            ..
        }
    )));
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080"]
    );
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
}

#[test]
fn several_endpoints_form_a_uniform_cascade_in_address_order() {
    let compiled = cluster()
        .service(web())
        .slice(slice("ns/web-1", "web").port("http", 8080).ready(&[
            "198.18.2.7",
            "198.18.1.5",
            "198.18.1.6",
        ]))
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080", "198.18.1.6:8080", "198.18.2.7:8080"]
    );
    let (Verdict::Goto(chain), _) = compiled.service_ip("198.19.0.10", "TCP", 80).unwrap() else {
        panic!()
    };
    let moduli: Vec<Option<u32>> = compiled.table_of(Family::Ip).chains[&*chain]
        .rules
        .iter()
        .map(|r| {
            r.stmts.list().iter().find_map(|s| match s {
                Stmt::Match {
                    left: Expr::NumgenRandom { modulus },
                    right: Expr::Literal(Value::Int(0)),
                    ..
                } => Some(*modulus),
                _ => None,
            })
        })
        .collect();
    assert_eq!(moduli, [Some(3), Some(2), None]);
}

#[test]
fn dual_stack_service_is_programmed_in_both_tables() {
    let compiled = cluster()
        .service(
            service("ns/web")
                .cluster_ips(&["198.19.0.10", "2001:db8:19::10"])
                .port("http", 80),
        )
        .slice(
            slice("ns/web-v4", "web")
                .port("http", 8080)
                .ready(&["198.18.1.5"]),
        )
        .slice(
            slice("ns/web-v6", "web")
                .ipv6()
                .port("http", 8080)
                .ready(&["2001:db8:18:1::5"]),
        )
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080"]
    );
    assert_eq!(
        compiled.targets("2001:db8:19::10", "TCP", 80),
        ["[2001:db8:18:1::5]:8080"]
    );
}

#[test]
fn both_tables_exist_without_any_service() {
    let compiled = cluster().compile();
    for family in [Family::Ip, Family::Ip6] {
        let table = compiled.table_of(family);
        assert_eq!(table.sets.len(), 11);
        assert!(table.counters.is_empty());
        assert!(table.chains.contains_key("nat-prerouting"));
        assert!(table.chains.contains_key("masquerading"));
    }
}

#[test]
fn endpoints_of_service_chains_are_hairpin_elements() {
    let compiled = cluster()
        .service(web())
        .slice(
            slice("ns/web-1", "web")
                .port("http", 8080)
                .ready(&["198.18.1.5"]),
        )
        .compile();
    let addr = Value::from("198.18.1.5".parse::<std::net::IpAddr>().unwrap());
    assert!(compiled.set_has(Family::Ip, "endpoint-hairpin", vec![addr.clone(), addr]));
    assert_eq!(compiled.set_len(Family::Ip, "endpoint-hairpin"), 1);
}

#[test]
fn input_order_does_not_matter() {
    let base = cluster()
        .service(web())
        .service(service("ns/new").cluster_ip("198.19.0.10").port("http", 80))
        .service(
            service("ns/dns")
                .cluster_ips(&["198.19.0.53", "2001:db8:19::53"])
                .port_proto("dns", 53, "UDP"),
        )
        .slice(
            slice("ns/web-1", "web")
                .port("http", 8080)
                .ready(&["198.18.1.5", "127.0.0.1"]),
        )
        .slice(
            slice("ns/web-2", "web")
                .port("http", 8081)
                .ready(&["198.18.2.5", "198.18.1.5"]),
        )
        .slice(
            slice("ns/dns-1", "dns")
                .port_proto("dns", 5353, "UDP")
                .ready(&["198.18.1.9"]),
        )
        .slice(
            slice("ns/dns-2", "dns")
                .ipv6()
                .port_proto("dns", 5353, "UDP")
                .ready(&["2001:db8:18:1::9"]),
        );
    let expected = base.compile();
    let mut shuffled = base.clone();
    shuffled.0.services.reverse();
    shuffled.0.endpoint_slices.rotate_left(2);
    shuffled.0.endpoint_slices.swap(0, 3);
    let compiled = shuffled.compile();
    assert_eq!(compiled, expected);
    assert_eq!(compiled.ruleset.to_string(), expected.ruleset.to_string());
}

fn masquerade_rule(compiled: &crate::Compiled, family: Family) -> Option<String> {
    // The main table's `services` holds the masquerade rule or nothing: the dispatch is
    // in the shards.
    let services = &compiled.table_of(family).chains["services"];
    services.rules.first().map(ToString::to_string)
}

fn compile_with(config: crate::CompileConfig) -> crate::Compiled {
    let cluster = cluster()
        .service(web())
        .node(node("node-1", &["198.18.1.0/24", "2001:db8:18:1::/64"]));
    crate::compile(&cluster.0, &config)
}

#[test]
fn without_a_detector_cluster_ip_traffic_is_not_marked() {
    let compiled = compile_with(config());
    assert_eq!(masquerade_rule(&compiled, Family::Ip), None);
    assert_eq!(masquerade_rule(&compiled, Family::Ip6), None);
}

#[test]
fn masquerade_all_wins_over_a_detector() {
    let compiled = compile_with(crate::CompileConfig {
        masquerade_all: true,
        detect_local: DetectLocal::NodeCidr,
        ..config()
    });
    assert_eq!(
        masquerade_rule(&compiled, Family::Ip).as_deref(),
        Some("ip daddr @cluster-ips meta mark set meta mark | 0x4000")
    );
}

#[test]
fn cluster_cidr_detector_marks_only_families_it_has_a_cidr_for() {
    let compiled = compile_with(crate::CompileConfig {
        detect_local: DetectLocal::ClusterCidr(vec!["198.18.0.0/16".parse().unwrap()]),
        masquerade_bit: 0,
        ..config()
    });
    assert_eq!(
        masquerade_rule(&compiled, Family::Ip).as_deref(),
        Some("ip daddr @cluster-ips ip saddr != 198.18.0.0/16 meta mark set meta mark | 0x1")
    );
    assert_eq!(masquerade_rule(&compiled, Family::Ip6), None);
}

#[test]
fn node_cidr_detector_uses_the_pod_cidr_of_each_family() {
    let compiled = compile_with(crate::CompileConfig {
        detect_local: DetectLocal::NodeCidr,
        ..config()
    });
    let v6 = masquerade_rule(&compiled, Family::Ip6).unwrap();
    assert!(v6.contains("ip6 saddr != 2001:db8:18:1::/64"), "{v6}");
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
}

#[test]
fn node_cidr_detector_without_the_node_warns_and_marks_nothing() {
    let compiled = compile_with(crate::CompileConfig {
        hostname: "node-9".into(),
        detect_local: DetectLocal::NodeCidr,
        ..config()
    });
    assert_eq!(masquerade_rule(&compiled, Family::Ip), None);
    assert_eq!(compiled.diagnostics.len(), 1);
    assert!(compiled.messages()[0].starts_with("warning: Node node-9: not found;"));
}

#[test]
fn interface_detector_with_a_name_nft_would_misread_is_an_error() {
    let compiled = compile_with(crate::CompileConfig {
        detect_local: DetectLocal::BridgeInterface("br\" accept".into()),
        ..config()
    });
    assert_eq!(masquerade_rule(&compiled, Family::Ip), None);
    assert!(
        compiled.messages()[0]
            .starts_with("error: KubeProxyConfiguration config: detectLocal.bridgeInterface")
    );
}

#[test]
fn masquerade_bit_beyond_31_falls_back_to_bit_14() {
    let compiled = compile_with(crate::CompileConfig {
        masquerade_all: true,
        masquerade_bit: 32,
        ..config()
    });
    let rule = masquerade_rule(&compiled, Family::Ip).unwrap();
    assert!(rule.ends_with("| 0x4000"), "{rule}");
    assert_eq!(compiled.diagnostics.len(), 1);
}

#[test]
fn service_cidrs_fill_the_interval_sets_of_their_family() {
    let compiled = cluster()
        .service_cidr(service_cidr("a", &["198.19.0.0/16", "2001:db8:19::/108"]))
        .service_cidr(service_cidr("b", &["198.19.7.0/24"]))
        .compile();
    assert_eq!(compiled.set_len(Family::Ip, "service-cidrs"), 1);
    assert_eq!(compiled.set_len(Family::Ip6, "service-cidrs"), 1);
}
