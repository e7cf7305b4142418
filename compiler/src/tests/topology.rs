//! Topology-aware routing: EndpointSlice hints (`forZones`, `forNodes`) narrow the
//! cluster-wide endpoints to this node's zone or to this node, as kube-proxy applies them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use nftproxy_rules::{Family, L4Proto, Verdict};

use super::{web, web_slice};
use crate::testing::{
    Cluster, EndpointBuilder, SliceBuilder, cluster, ep, node, service, slice, zoned_node,
};

/// node-1, the node compiled for, in zone-a.
fn in_zone_a() -> Cluster {
    cluster().node(zoned_node("node-1", "zone-a"))
}

/// a (node-1) and c (node-3) hinted for zone-a, b (node-2) for zone-b.
fn zone_hinted() -> SliceBuilder {
    web_slice([
        ep("198.18.1.5").node("node-1").for_zones(&["zone-a"]),
        ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]),
        ep("198.18.3.5").node("node-3").for_zones(&["zone-a"]),
    ])
}

/// An endpoint on `node` hinted for its own node and for `zone`.
fn node_and_zone_hinted(addr: &str, node: &str, zone: &str) -> EndpointBuilder {
    ep(addr).node(node).for_nodes(&[node]).for_zones(&[zone])
}

/// Every endpoint of ns/web's ClusterIP.
fn web_targets(compiled: &crate::Compiled) -> Vec<String> {
    compiled.targets("198.19.0.10", "TCP", 80)
}

/// The chain the external chain of NodePort 30080 sends cluster-wide traffic to.
fn external_cluster_chain(compiled: &crate::Compiled) -> String {
    let verdict = compiled.node_port_in(Family::Ip, "service-nodeports", L4Proto::Tcp, 30080);
    let Some(Verdict::Goto(external)) = verdict else {
        panic!("no external chain: {verdict:?}");
    };
    let rules = compiled.chain_rules(Family::Ip, &external);
    let gotos: Vec<&str> = rules
        .iter()
        .filter_map(|r| r.rsplit_once("goto ").map(|(_, chain)| chain))
        .collect();
    assert!(!gotos.is_empty(), "{rules:?}");
    gotos[0].to_owned()
}

#[test]
fn zone_hints_keep_only_the_endpoints_for_this_nodes_zone() {
    let compiled = in_zone_a().service(web()).slice(zone_hinted()).compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.3.5:8080"]
    );
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
}

#[test]
fn an_endpoint_without_hints_makes_every_endpoint_used() {
    let slice = web_slice([
        ep("198.18.1.5").node("node-1").for_zones(&["zone-a"]),
        ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]),
        ep("198.18.3.5").node("node-3"),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.2.5:8080", "198.18.3.5:8080"]
    );
}

#[test]
fn empty_hints_count_as_missing_hints() {
    let slice = web_slice([
        ep("198.18.1.5").node("node-1").for_zones(&["zone-a"]),
        ep("198.18.2.5").node("node-2").for_zones(&[]),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.2.5:8080"]
    );
}

#[test]
fn hints_for_other_zones_only_make_every_endpoint_used() {
    let slice = web_slice([
        ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]),
        ep("198.18.3.5").node("node-3").for_zones(&["zone-c"]),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.2.5:8080", "198.18.3.5:8080"]
    );
}

#[test]
fn a_node_without_a_zone_label_uses_every_endpoint() {
    let all = ["198.18.1.5:8080", "198.18.2.5:8080", "198.18.3.5:8080"];
    let unlabelled = cluster()
        .node(node("node-1", &[]))
        .service(web())
        .slice(zone_hinted())
        .compile();
    assert_eq!(web_targets(&unlabelled), all);
    let no_node = cluster().service(web()).slice(zone_hinted()).compile();
    assert_eq!(web_targets(&no_node), all);
    let empty_label = cluster()
        .node(zoned_node("node-1", ""))
        .service(web())
        .slice(zone_hinted())
        .compile();
    assert_eq!(web_targets(&empty_label), all);
}

#[test]
fn an_empty_zone_name_in_hints_matches_nothing() {
    // Complete hints, but the only name this unlabelled node could match is "".
    let slice = web_slice([
        ep("198.18.1.5").node("node-1").for_zones(&[""]),
        ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]),
    ]);
    let compiled = cluster()
        .node(node("node-1", &[]))
        .service(web())
        .slice(slice)
        .compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.2.5:8080"]
    );
}

#[test]
fn node_hints_are_preferred_over_zone_hints() {
    let slice = web_slice([
        node_and_zone_hinted("198.18.1.5", "node-1", "zone-a"),
        node_and_zone_hinted("198.18.2.5", "node-2", "zone-b"),
        node_and_zone_hinted("198.18.3.5", "node-3", "zone-a"),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(web_targets(&compiled), ["198.18.1.5:8080"]);
}

#[test]
fn node_hints_that_do_not_name_this_node_fall_back_to_zone_hints() {
    let slice = web_slice([
        node_and_zone_hinted("198.18.2.5", "node-2", "zone-b"),
        node_and_zone_hinted("198.18.3.5", "node-3", "zone-a"),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(web_targets(&compiled), ["198.18.3.5:8080"]);
}

#[test]
fn incomplete_node_hints_fall_back_to_zone_hints() {
    let slice = web_slice([
        node_and_zone_hinted("198.18.1.5", "node-1", "zone-a"),
        ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]),
        ep("198.18.3.5").node("node-3").for_zones(&["zone-a"]),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.3.5:8080"]
    );
}

#[test]
fn node_hints_follow_the_hint_not_the_node_name() {
    // PreferSameNode hints name node-1 for an endpoint that runs on node-2 (hints are
    // the controller's decision; the proxy follows them).
    let slice = web_slice([
        ep("198.18.1.5").node("node-1").for_nodes(&["node-3"]),
        ep("198.18.2.5").node("node-2").for_nodes(&["node-1"]),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(web_targets(&compiled), ["198.18.2.5:8080"]);
}

#[test]
fn endpoints_that_are_not_ready_do_not_count_in_the_decision() {
    let slice = web_slice([
        ep("198.18.1.5").node("node-1").for_zones(&["zone-a"]),
        ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]),
        // Without hints, but neither is ready: zone hints stay complete.
        ep("198.18.3.5").node("node-3").not_ready(),
        ep("198.18.3.6").node("node-3").terminating(),
        // Hinted for zone-a, but not ready: not used.
        ep("198.18.3.7")
            .node("node-3")
            .for_zones(&["zone-a"])
            .not_ready(),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(web_targets(&compiled), ["198.18.1.5:8080"]);
}

#[test]
fn a_not_ready_endpoint_hinted_for_this_zone_does_not_enable_zone_mode() {
    let slice = web_slice([
        // Serving while terminating, so a candidate, but not ready.
        ep("198.18.1.5")
            .node("node-1")
            .for_zones(&["zone-a"])
            .terminating(),
        ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]),
        ep("198.18.3.5").node("node-3").for_zones(&["zone-c"]),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.2.5:8080", "198.18.3.5:8080"]
    );
}

#[test]
fn the_terminating_fallback_ignores_topology() {
    let slice = web_slice([
        ep("198.18.1.5")
            .node("node-1")
            .for_zones(&["zone-a"])
            .terminating(),
        ep("198.18.2.5")
            .node("node-2")
            .for_zones(&["zone-b"])
            .terminating(),
    ]);
    let compiled = in_zone_a().service(web()).slice(slice).compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.2.5:8080"]
    );
}

/// On node-1 (zone-a): one local endpoint hinted away to zone-b, one local endpoint for
/// zone-a, and a remote one for zone-b.
fn local_endpoints_hinted_both_ways() -> SliceBuilder {
    web_slice([
        ep("198.18.1.5").node("node-1").for_zones(&["zone-b"]),
        ep("198.18.1.6").node("node-1").for_zones(&["zone-a"]),
        ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]),
    ])
}

#[test]
fn internal_policy_local_ignores_hints() {
    let compiled = in_zone_a()
        .service(web().internal_local())
        .slice(local_endpoints_hinted_both_ways())
        .compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.1.6:8080"]
    );
}

#[test]
fn external_policy_local_ignores_hints_but_its_short_circuit_uses_them() {
    let svc = web().type_("NodePort").node_port(30080).external_local();
    let compiled = in_zone_a()
        .service(svc)
        .slice(local_endpoints_hinted_both_ways())
        .compile();
    let verdict = compiled.node_port_in(Family::Ip, "service-nodeports", L4Proto::Tcp, 30080);
    let Some(Verdict::Goto(external)) = verdict else {
        panic!("no external chain: {verdict:?}");
    };
    let rules = compiled.chain_rules(Family::Ip, &external);
    let local = rules
        .last()
        .and_then(|r| r.strip_prefix("goto "))
        .expect("goto local chain");
    assert!(local.starts_with("local-"), "{local}");
    assert_eq!(
        compiled.chain_targets(Family::Ip, local),
        ["198.18.1.5:8080", "198.18.1.6:8080"]
    );
    // Pods and the node itself short-circuit to the cluster-wide set: zone-a only.
    let short_circuit = external_cluster_chain(&compiled);
    assert_eq!(
        compiled.chain_targets(Family::Ip, &short_circuit),
        ["198.18.1.6:8080"]
    );
}

#[test]
fn external_cluster_traffic_uses_the_topology_filtered_set() {
    let node_port = web().type_("NodePort").node_port(30080);
    for svc in [node_port.clone(), node_port.internal_local()] {
        let compiled = in_zone_a().service(svc).slice(zone_hinted()).compile();
        let chain = external_cluster_chain(&compiled);
        assert_eq!(
            compiled.chain_targets(Family::Ip, &chain),
            ["198.18.1.5:8080", "198.18.3.5:8080"],
            "{chain}"
        );
    }
}

#[test]
fn each_family_decides_on_its_own_endpoints() {
    let svc = service("ns/web")
        .cluster_ips(&["198.19.0.10", "2001:db8:19::10"])
        .port("http", 80);
    let v6 = slice("ns/web-v6", "web")
        .ipv6()
        .port("http", 8080)
        .endpoint(ep("2001:db8:18:1::5").node("node-1").for_zones(&["zone-a"]))
        .endpoint(ep("2001:db8:18:2::5").node("node-2"));
    let compiled = in_zone_a()
        .service(svc)
        .slice(zone_hinted())
        .slice(v6)
        .compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.3.5:8080"]
    );
    assert_eq!(
        compiled.targets("2001:db8:19::10", "TCP", 80),
        ["[2001:db8:18:1::5]:8080", "[2001:db8:18:2::5]:8080"]
    );
}

#[test]
fn each_port_decides_on_its_own_endpoints() {
    let svc = web().port("grpc", 81);
    let grpc = slice("ns/web-grpc", "web")
        .port("grpc", 9090)
        .endpoint(ep("198.18.1.9").node("node-1").for_zones(&["zone-a"]))
        .endpoint(ep("198.18.2.9").node("node-2"));
    let compiled = in_zone_a()
        .service(svc)
        .slice(zone_hinted())
        .slice(grpc)
        .compile();
    assert_eq!(
        web_targets(&compiled),
        ["198.18.1.5:8080", "198.18.3.5:8080"]
    );
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 81),
        ["198.18.1.9:9090", "198.18.2.9:9090"]
    );
}

#[test]
fn duplicate_endpoints_with_different_hints_compile_the_same_in_any_order() {
    let first = slice("ns/web-1", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.2.5").node("node-2").for_zones(&["zone-a"]))
        .endpoint(ep("198.18.1.5").node("node-1").for_zones(&["zone-a"]));
    let second = slice("ns/web-2", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.2.5").node("node-2").for_zones(&["zone-b"]));
    let forward = in_zone_a()
        .service(web())
        .slice(first.clone())
        .slice(second.clone())
        .compile();
    let backward = in_zone_a()
        .service(web())
        .slice(second)
        .slice(first)
        .compile();
    assert_eq!(forward, backward);
    // The copy kept is the one whose hints sort first (forZones [zone-a]).
    assert_eq!(
        web_targets(&forward),
        ["198.18.1.5:8080", "198.18.2.5:8080"]
    );
}
