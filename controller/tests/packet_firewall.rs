//! Packet-flow tests of `loadBalancerSourceRanges`: new connections to a LoadBalancer IP
//! from sources outside the ranges are dropped before DNAT; the NodePort of the same
//! Service is not filtered.
//!
//! Pods: `x` (a client pod) on node-1, `b` (the endpoint) on node-2. External clients:
//! `ok` (203.0.113.10 / 2001:db8:113::10, inside 203.0.113.0/25 and 2001:db8:113::/121)
//! and `blocked` (203.0.113.200 / 2001:db8:113::200, outside them). `fw-node` also lists
//! the LAN, which contains node-1's address, so node-1 itself may use its LB IP.

mod common;
mod lab;

use common::netns::kernel_tests_enabled;
use lab::{Lab, Member, Proto, at};

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: fw, namespace: default}
spec:
  type: LoadBalancer
  clusterIPs: [198.19.0.40, "2001:db8:19::40"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  loadBalancerSourceRanges: [203.0.113.0/25, "2001:db8:113::/121"]
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: echo, protocol: UDP, port: 80, targetPort: 8080, nodePort: 30080}
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.40}, {ip: "2001:db8:2::40"}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: fw-v4, namespace: default, labels: {kubernetes.io/service-name: fw}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}, {name: echo, protocol: UDP, port: 8080}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: fw-v6, namespace: default, labels: {kubernetes.io/service-name: fw}}
addressType: IPv6
ports: [{name: http, protocol: TCP, port: 8080}, {name: echo, protocol: UDP, port: 8080}]
endpoints:
- {addresses: ["2001:db8:18:2::10"], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: v1
kind: Service
metadata: {name: fw-node, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 198.19.0.41
  loadBalancerSourceRanges: [203.0.113.0/25, 198.51.100.0/24]
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30081}]
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.41}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: fw-node-v4, namespace: default, labels: {kubernetes.io/service-name: fw-node}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
"#;

/// The lab with the service loaded on node-1.
fn lab() -> Lab {
    let lab = Lab::builder()
        .pod("x", lab::Node::One, 20)
        .pod("b", lab::Node::Two, 10)
        .client("ok", 10)
        .client("blocked", 200)
        .build();
    lab.load_cluster(SERVICES, Some(&lab::cluster_cidr_config()));
    lab
}

#[test]
fn load_balancer_ip_answers_a_client_inside_the_source_ranges() {
    if !kernel_tests_enabled("load_balancer_ip_answers_a_client_inside_the_source_ranges") {
        return;
    }
    let lab = lab();
    for to in ["192.0.2.40:80", "[2001:db8:2::40]:80"] {
        for proto in [Proto::Tcp, Proto::Udp] {
            let probe = lab.probe(Member::Client("ok"), proto, at(to));
            assert_eq!(probe.reply().0, "b", "{probe}");
        }
    }
}

#[test]
fn load_balancer_ip_drops_a_client_outside_the_source_ranges() {
    if !kernel_tests_enabled("load_balancer_ip_drops_a_client_outside_the_source_ranges") {
        return;
    }
    let lab = lab();
    for to in ["192.0.2.40:80", "[2001:db8:2::40]:80", "192.0.2.41:80"] {
        for proto in [Proto::Tcp, Proto::Udp] {
            lab.probe(Member::Client("blocked"), proto, at(to))
                .assert_timeout();
        }
    }
}

#[test]
fn node_port_of_the_same_service_is_not_filtered_by_source_ranges() {
    if !kernel_tests_enabled("node_port_of_the_same_service_is_not_filtered_by_source_ranges") {
        return;
    }
    let lab = lab();
    let probe = lab.probe(
        Member::Client("blocked"),
        Proto::Tcp,
        at("198.51.100.1:30080"),
    );
    assert_eq!(probe.reply().0, "b", "{probe}");
}

#[test]
fn pod_reaching_the_load_balancer_ip_is_filtered_by_its_own_source() {
    if !kernel_tests_enabled("pod_reaching_the_load_balancer_ip_is_filtered_by_its_own_source") {
        return;
    }
    let lab = lab();
    lab.probe(Member::Pod("x"), Proto::Tcp, at("192.0.2.40:80"))
        .assert_timeout();
    let cluster_ip = lab.probe(Member::Pod("x"), Proto::Tcp, at("198.19.0.40:80"));
    assert_eq!(cluster_ip.reply().0, "b", "{cluster_ip}");
}

#[test]
fn node_reaches_a_load_balancer_ip_only_when_a_range_contains_its_address() {
    if !kernel_tests_enabled(
        "node_reaches_a_load_balancer_ip_only_when_a_range_contains_its_address",
    ) {
        return;
    }
    let lab = lab();
    lab.probe(Member::Node1, Proto::Tcp, at("192.0.2.40:80"))
        .assert_timeout();
    let allowed = lab.probe(Member::Node1, Proto::Tcp, at("192.0.2.41:80"));
    assert_eq!(allowed.reply().0, "b", "{allowed}");
    let client = lab.probe(Member::Client("ok"), Proto::Tcp, at("192.0.2.41:80"));
    assert_eq!(client.reply().0, "b", "{client}");
}
