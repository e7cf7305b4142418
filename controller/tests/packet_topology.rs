//! Packet-flow tests of topology-aware routing: EndpointSlice hints (`forZones`,
//! `forNodes`) keep ClusterIP and NodePort traffic in node-1's zone or on node-1, and
//! incomplete hints or a missing zone label fall back to every endpoint.
//!
//! Pods: endpoint `a` on node-1, endpoint `b` on node-2, client pod `x` on node-1; external
//! client `ext`. node-1 is in zone-a and node-2 in zone-b unless a test says otherwise.
//! Service `web` is a dual-stack NodePort (TCP and UDP 80 -> 8080, nodePort 30080,
//! externalTrafficPolicy Cluster). Each check makes [`CONNECTIONS`] new connections, so an
//! endpoint that should be excluded but is not answers one of them all but certainly.

mod common;
mod lab;

use std::net::SocketAddr;

use common::netns::kernel_tests_enabled;
use lab::{Lab, Member, Node, Proto, at};

/// New connections per check: each is a new conntrack entry and a new random choice.
const CONNECTIONS: usize = 16;

const ZONE_A: &str = "{forZones: [{name: zone-a}]}";
const ZONE_B: &str = "{forZones: [{name: zone-b}]}";
/// What the EndpointSlice controller writes for PreferSameNode: the node, and its zone.
const NODE_1_IN_ZONE_A: &str = "{forNodes: [{name: node-1}], forZones: [{name: zone-a}]}";
const NODE_2_IN_ZONE_A: &str = "{forNodes: [{name: node-2}], forZones: [{name: zone-a}]}";

/// Node-1 in zone-a, node-2 in zone-b.
const ZONES: [Option<&str>; 2] = [Some("zone-a"), Some("zone-b")];

const CLUSTER_IPS: [&str; 2] = ["198.19.0.10:80", "[2001:db8:19::10]:80"];
const NODE_PORTS: [&str; 2] = ["198.51.100.1:30080", "[2001:db8:51::1]:30080"];

/// One endpoint of `web`: its pod's conditions and hints (`None`: no hints at all).
#[derive(Debug, Clone, Copy)]
struct Ep {
    ready: bool,
    hints: Option<&'static str>,
}

fn ready(hints: &'static str) -> Ep {
    Ep {
        ready: true,
        hints: Some(hints),
    }
}

/// `web` with `trafficDistribution: distribution` and its IPv4 and IPv6 slices, endpoint
/// `a` (pod host 10 on node-1) and `b` (pod host 10 on node-2).
fn web(distribution: &str, a: Ep, b: Ep) -> String {
    let mut out = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: NodePort
  clusterIP: 198.19.0.10
  clusterIPs: [198.19.0.10, "2001:db8:19::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  trafficDistribution: {distribution}
  ports:
  - {{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}}
  - {{name: echo, protocol: UDP, port: 80, targetPort: 8080, nodePort: 30080}}
"#
    );
    for (family, suffix, a_ip, b_ip) in [
        ("IPv4", "v4", "198.18.1.10", "198.18.2.10"),
        (
            "IPv6",
            "v6",
            "\"2001:db8:18:1::10\"",
            "\"2001:db8:18:2::10\"",
        ),
    ] {
        out.push_str(&format!(
            r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-{suffix}, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: {family}
ports: [{{name: http, protocol: TCP, port: 8080}}, {{name: echo, protocol: UDP, port: 8080}}]
endpoints:
{}{}"#,
            endpoint(a_ip, Node::One, a),
            endpoint(b_ip, Node::Two, b),
        ));
    }
    out
}

fn endpoint(ip: &str, node: Node, ep: Ep) -> String {
    let conditions = if ep.ready {
        "{ready: true}"
    } else {
        "{ready: false, serving: false, terminating: false}"
    };
    let mut out = format!(
        "- addresses: [{ip}]\n  conditions: {conditions}\n  nodeName: {}\n",
        node.name()
    );
    if let Some(hints) = ep.hints {
        out.push_str(&format!("  hints: {hints}\n"));
    }
    out
}

/// Endpoint pods `a` (node-1) and `b` (node-2), client pod `x` (node-1), client `ext`.
fn lab() -> Lab {
    Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::Two, 10)
        .pod("x", Node::One, 20)
        .client("ext", 10)
        .build()
}

/// Compiles `cluster` with node zones `zones` and loads it into node-1 (replacing what ran
/// before); panics on any diagnostic, so a typo cannot silently drop an endpoint.
fn load(lab: &Lab, zones: [Option<&str>; 2], cluster: &str) {
    let compiled = lab.load_zoned_cluster(zones, cluster, Some(&lab::cluster_cidr_config()));
    assert_eq!(compiled.stderr, "", "diagnostics");
}

/// The pods that answered [`CONNECTIONS`] new connections from `from` to `to`; panics if
/// any connection got no answer.
fn answering(lab: &Lab, from: Member<'_>, proto: Proto, to: SocketAddr) -> Vec<String> {
    lab.answering(from, proto, to, CONNECTIONS)
}

/// Asserts that pod `x` (TCP and UDP, to both ClusterIPs) and client `ext` (TCP, to both
/// NodePorts) reach exactly `expected`.
fn assert_pods_and_clients_reach(lab: &Lab, expected: &[&str]) {
    for to in CLUSTER_IPS.map(at) {
        for proto in [Proto::Tcp, Proto::Udp] {
            let pods = answering(lab, Member::Pod("x"), proto, to);
            assert_eq!(pods, expected, "pod x, {proto:?} to {to}");
        }
    }
    for to in NODE_PORTS.map(at) {
        let pods = answering(lab, Member::Client("ext"), Proto::Tcp, to);
        assert_eq!(pods, expected, "client ext to NodePort {to}");
    }
}

#[test]
fn topology_with_zone_hints_keeps_pod_and_external_traffic_in_the_nodes_zone() {
    if !kernel_tests_enabled(
        "topology_with_zone_hints_keeps_pod_and_external_traffic_in_the_nodes_zone",
    ) {
        return;
    }
    let lab = lab();
    let cluster = web("PreferClose", ready(ZONE_A), ready(ZONE_B));
    load(&lab, ZONES, &cluster);
    assert_pods_and_clients_reach(&lab, &["a"]);
}

#[test]
fn an_endpoint_missing_its_hint_makes_both_endpoints_answer() {
    if !kernel_tests_enabled("an_endpoint_missing_its_hint_makes_both_endpoints_answer") {
        return;
    }
    let lab = lab();
    let unhinted = Ep {
        ready: true,
        hints: None,
    };
    let cluster = web("PreferClose", ready(ZONE_A), unhinted);
    load(&lab, ZONES, &cluster);
    assert_pods_and_clients_reach(&lab, &["a", "b"]);
}

#[test]
fn zone_hints_are_ignored_when_the_node_has_no_zone_label() {
    if !kernel_tests_enabled("zone_hints_are_ignored_when_the_node_has_no_zone_label") {
        return;
    }
    let lab = lab();
    let cluster = web("PreferClose", ready(ZONE_A), ready(ZONE_B));
    load(&lab, [None, Some("zone-b")], &cluster);
    assert_pods_and_clients_reach(&lab, &["a", "b"]);
}

#[test]
fn same_node_hints_keep_traffic_on_the_node_even_within_one_zone() {
    if !kernel_tests_enabled("same_node_hints_keep_traffic_on_the_node_even_within_one_zone") {
        return;
    }
    let lab = lab();
    // Both endpoints are hinted for zone-a, so zone hints alone would use both: only the
    // forNodes hints keep traffic on node-1.
    let cluster = web(
        "PreferSameNode",
        ready(NODE_1_IN_ZONE_A),
        ready(NODE_2_IN_ZONE_A),
    );
    load(&lab, [Some("zone-a"), Some("zone-a")], &cluster);
    assert_pods_and_clients_reach(&lab, &["a"]);
}

#[test]
fn when_the_hinted_endpoint_stops_being_ready_traffic_falls_back_to_the_other_zone() {
    if !kernel_tests_enabled(
        "when_the_hinted_endpoint_stops_being_ready_traffic_falls_back_to_the_other_zone",
    ) {
        return;
    }
    let lab = lab();
    let before = web("PreferClose", ready(ZONE_A), ready(ZONE_B));
    load(&lab, ZONES, &before);
    assert_pods_and_clients_reach(&lab, &["a"]);

    let a_not_ready = Ep {
        ready: false,
        hints: Some(ZONE_A),
    };
    let after = web("PreferClose", a_not_ready, ready(ZONE_B));
    load(&lab, ZONES, &after);
    assert_pods_and_clients_reach(&lab, &["b"]);
}
