//! Packet-flow tests of ClusterIP dispatch: load balancing over endpoints, port mapping,
//! named target ports, both address families and both output formats of the CLI.
//!
//! Each test compiles a small cluster with the real `nftproxy compile`, loads it into the
//! lab's node-1 and asserts with real traffic which pod answered.

mod common;
mod lab;

use common::netns::kernel_tests_enabled;
use lab::{Format, Lab, Member, Node, Proto, at};

/// Connections per spread: P(one of 3 endpoints never chosen) ≈ 3·(2/3)^30 ≈ 1.5e-5.
const SPREAD: usize = 30;

/// `web`: dual-stack, TCP 80 and UDP 80 -> 8080, endpoints `a`, `b` on node-1 and `c` on
/// node-2.
const WEB_THREE_ENDPOINTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 198.19.0.10
  clusterIPs: [198.19.0.10, "2001:db8:19::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  selector: {app: web}
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080}
  - {name: echo, protocol: UDP, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-v4
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, protocol: TCP, port: 8080}
- {name: echo, protocol: UDP, port: 8080}
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
- {addresses: [198.18.1.11], conditions: {ready: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-v6
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv6
ports:
- {name: http, protocol: TCP, port: 8080}
- {name: echo, protocol: UDP, port: 8080}
endpoints:
- {addresses: ["2001:db8:18:1::10"], conditions: {ready: true}, nodeName: node-1}
- {addresses: ["2001:db8:18:1::11"], conditions: {ready: true}, nodeName: node-1}
- {addresses: ["2001:db8:18:2::10"], conditions: {ready: true}, nodeName: node-2}
"#;

/// Endpoints `a`, `b` (node-1), `c` (node-2) and a client pod `x` on node-1.
fn three_endpoint_lab() -> Lab {
    Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::One, 11)
        .pod("c", Node::Two, 10)
        .pod("x", Node::One, 20)
        .build()
}

/// Asserts that `SPREAD` probes from pod `x` reach all of `a`, `b`, `c`, unmasqueraded.
fn assert_spread_over_three(lab: &Lab, proto: Proto, vip: &str) {
    let spread = lab.spread(Member::Pod("x"), proto, at(vip), SPREAD);
    spread.assert_all_answered();
    assert_eq!(spread.pod_names(), ["a", "b", "c"], "{proto:?} to {vip}");
    let x = lab.pod_ip("x", at(vip));
    assert_eq!(spread.peers.iter().copied().collect::<Vec<_>>(), [x]);
}

#[test]
fn cluster_ip_spreads_tcp_and_udp_over_all_three_endpoints() {
    if !kernel_tests_enabled("cluster_ip_spreads_tcp_and_udp_over_all_three_endpoints") {
        return;
    }
    let lab = three_endpoint_lab();
    lab.load_cluster(WEB_THREE_ENDPOINTS, None);
    assert_spread_over_three(&lab, Proto::Tcp, "198.19.0.10:80");
    assert_spread_over_three(&lab, Proto::Udp, "198.19.0.10:80");
}

#[test]
fn dual_stack_cluster_ip_spreads_ipv6_traffic_over_all_three_endpoints() {
    if !kernel_tests_enabled("dual_stack_cluster_ip_spreads_ipv6_traffic_over_all_three_endpoints")
    {
        return;
    }
    let lab = three_endpoint_lab();
    lab.load_cluster(WEB_THREE_ENDPOINTS, None);
    assert_spread_over_three(&lab, Proto::Tcp, "[2001:db8:19::10]:80");
    assert_spread_over_three(&lab, Proto::Udp, "[2001:db8:19::10]:80");
}

#[test]
fn json_output_loads_and_spreads_traffic_like_the_script() {
    if !kernel_tests_enabled("json_output_loads_and_spreads_traffic_like_the_script") {
        return;
    }
    let lab = three_endpoint_lab();
    let compiled = lab.load_cluster_as(WEB_THREE_ENDPOINTS, None, Format::Json);
    assert!(compiled.output.trim_start().starts_with('{'), "not JSON");
    assert_spread_over_three(&lab, Proto::Tcp, "198.19.0.10:80");
    assert_spread_over_three(&lab, Proto::Udp, "[2001:db8:19::10]:80");
}

#[test]
fn single_endpoint_is_a_plain_dnat_to_the_target_port() {
    if !kernel_tests_enabled("single_endpoint_is_a_plain_dnat_to_the_target_port") {
        return;
    }
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("x", Node::One, 20)
        .client("ext", 10)
        .build();
    let compiled = lab.load_cluster(
        r#"
apiVersion: v1
kind: Service
metadata: {name: one, namespace: default}
spec:
  clusterIP: 198.19.0.11
  clusterIPs: [198.19.0.11]
  selector: {app: one}
  ports: [{protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: one-abcde, namespace: default, labels: {kubernetes.io/service-name: one}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
"#,
        None,
    );
    assert!(
        !compiled.output.contains("numgen"),
        "one endpoint needs no random choice:\n{}",
        compiled.output
    );
    for from in [Member::Pod("x"), Member::Node1, Member::Client("ext")] {
        let probe = lab.probe(from, Proto::Tcp, at("198.19.0.11:80"));
        assert_eq!(probe.reply().0, "a", "{probe}");
    }
    let other_port = lab.probe(Member::Pod("x"), Proto::Tcp, at("198.19.0.11:8080"));
    other_port.assert_refused_quickly();
}

#[test]
fn named_target_port_resolves_to_each_endpoint_slices_own_port() {
    if !kernel_tests_enabled("named_target_port_resolves_to_each_endpoint_slices_own_port") {
        return;
    }
    let lab = Lab::builder()
        .pod_serving("old", Node::One, 10, &[8080])
        .pod_serving("new", Node::Two, 10, &[9090])
        .pod("x", Node::One, 20)
        .build();
    lab.load_cluster(
        r#"
apiVersion: v1
kind: Service
metadata: {name: rollout, namespace: default}
spec:
  clusterIP: 198.19.0.12
  clusterIPs: [198.19.0.12]
  selector: {app: rollout}
  ports: [{name: web, protocol: TCP, port: 80, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: rollout-old, namespace: default, labels: {kubernetes.io/service-name: rollout}}
addressType: IPv4
ports: [{name: web, protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: rollout-new, namespace: default, labels: {kubernetes.io/service-name: rollout}}
addressType: IPv4
ports: [{name: web, protocol: TCP, port: 9090}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
"#,
        None,
    );
    assert_eq!(
        lab.answering(Member::Pod("x"), Proto::Tcp, at("198.19.0.12:80"), 20),
        ["new", "old"]
    );
}
