//! Packet-flow tests of the external paths: NodePorts (on the addresses nodePortAddresses
//! selects), externalIPs and LoadBalancer IPs, with externalTrafficPolicy Cluster and Local,
//! and services without endpoints.
//!
//! Pods: `a` on node-1, `b` on node-2, `x` (a client pod) on node-1; external client `ext`.
//! The local-traffic detector is ClusterCIDR 198.18.0.0/16, so pod traffic is recognised.

mod common;
mod lab;

use common::netns::kernel_tests_enabled;
use lab::{Lab, Member, Proto, at};

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 198.19.0.10
  clusterIPs: [198.19.0.10, "2001:db8:19::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  externalIPs: [192.0.2.10, "2001:db8:2::10"]
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: echo, protocol: UDP, port: 80, targetPort: 8080, nodePort: 30080}
status:
  loadBalancer:
    ingress:
    - {ip: 192.0.2.11}
    - {ip: "2001:db8:2::11"}
    - {ip: 192.0.2.12, ipMode: Proxy}
    - {ip: "2001:db8:2::12", ipMode: Proxy}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v4, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}, {name: echo, protocol: UDP, port: 8080}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v6, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{name: http, protocol: TCP, port: 8080}, {name: echo, protocol: UDP, port: 8080}]
endpoints:
- {addresses: ["2001:db8:18:2::10"], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  clusterIP: 198.19.0.20
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-v4, namespace: default, labels: {kubernetes.io/service-name: local}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: v1
kind: Service
metadata: {name: remote, namespace: default}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  clusterIP: 198.19.0.21
  externalIPs: [192.0.2.21]
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30082}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: remote-v4, namespace: default, labels: {kubernetes.io/service-name: remote}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: v1
kind: Service
metadata: {name: both, namespace: default}
spec:
  type: NodePort
  clusterIP: 198.19.0.22
  externalIPs: [192.0.2.22]
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30083}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: both-v4, namespace: default, labels: {kubernetes.io/service-name: both}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: v1
kind: Service
metadata: {name: internal-local, namespace: default}
spec:
  type: NodePort
  internalTrafficPolicy: Local
  clusterIP: 198.19.0.23
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30084}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: internal-local-v4, namespace: default, labels: {kubernetes.io/service-name: internal-local}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: v1
kind: Service
metadata: {name: all-local, namespace: default}
spec:
  type: NodePort
  internalTrafficPolicy: Local
  externalTrafficPolicy: Local
  clusterIP: 198.19.0.24
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30085}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: all-local-v4, namespace: default, labels: {kubernetes.io/service-name: all-local}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  type: NodePort
  clusterIP: 198.19.0.30
  externalIPs: [192.0.2.30]
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30090}]
"#;

/// The lab with every service loaded on node-1.
fn lab() -> Lab {
    let lab = Lab::builder()
        .pod("a", lab::Node::One, 10)
        .pod("x", lab::Node::One, 20)
        .pod("b", lab::Node::Two, 10)
        .client("ext", 10)
        .build();
    lab.load_cluster(SERVICES, Some(&lab::cluster_cidr_config()));
    lab
}

#[test]
fn external_client_reaches_a_node_port_on_the_primary_address_masqueraded() {
    if !kernel_tests_enabled(
        "external_client_reaches_a_node_port_on_the_primary_address_masqueraded",
    ) {
        return;
    }
    let lab = lab();
    for (proto, to) in [
        (Proto::Tcp, "198.51.100.1:30080"),
        (Proto::Udp, "198.51.100.1:30080"),
        (Proto::Tcp, "[2001:db8:51::1]:30080"),
    ] {
        let to = at(to);
        let probe = lab.probe(Member::Client("ext"), proto, to);
        let masqueraded = lab.masquerade_ip_towards("b", to);
        assert_eq!(probe.reply(), ("b", masqueraded), "{probe}");
    }
}

#[test]
fn node_port_on_an_address_outside_node_port_addresses_is_not_intercepted() {
    if !kernel_tests_enabled(
        "node_port_on_an_address_outside_node_port_addresses_is_not_intercepted",
    ) {
        return;
    }
    let lab = lab();
    lab.add_node1_lan_address("198.51.100.11/24");
    let probe = lab.probe(Member::Client("ext"), Proto::Tcp, at("198.51.100.11:30080"));
    // Nothing listens on node-1 itself: its own stack answers with a reset.
    assert_eq!(probe.outcome, lab::Outcome::Refused, "{probe}");
    let primary = lab.probe(Member::Client("ext"), Proto::Tcp, at("198.51.100.1:30080"));
    assert_eq!(primary.reply().0, "b", "{primary}");
}

#[test]
fn pods_and_the_node_itself_reach_a_node_port() {
    if !kernel_tests_enabled("pods_and_the_node_itself_reach_a_node_port") {
        return;
    }
    let lab = lab();
    let to = at("198.51.100.1:30080");
    for from in [Member::Pod("x"), Member::Node1] {
        for proto in [Proto::Tcp, Proto::Udp] {
            let probe = lab.probe(from, proto, to);
            assert_eq!(probe.reply().0, "b", "{probe}");
        }
    }
}

#[test]
fn external_client_reaches_external_ips_and_load_balancer_ips_but_not_proxy_mode_ones() {
    if !kernel_tests_enabled(
        "external_client_reaches_external_ips_and_load_balancer_ips_but_not_proxy_mode_ones",
    ) {
        return;
    }
    let lab = lab();
    for to in [
        "192.0.2.10:80",
        "192.0.2.11:80",
        "[2001:db8:2::10]:80",
        "[2001:db8:2::11]:80",
    ] {
        let to = at(to);
        for proto in [Proto::Tcp, Proto::Udp] {
            let probe = lab.probe(Member::Client("ext"), proto, to);
            assert_eq!(
                probe.reply(),
                ("b", lab.masquerade_ip_towards("b", to)),
                "{probe}"
            );
        }
    }
    for to in ["192.0.2.12:80", "[2001:db8:2::12]:80"] {
        let proxy_mode = lab.probe(Member::Client("ext"), Proto::Tcp, at(to));
        proxy_mode.assert_timeout();
    }
}

#[test]
fn external_policy_cluster_spreads_over_both_nodes_and_masquerades() {
    if !kernel_tests_enabled("external_policy_cluster_spreads_over_both_nodes_and_masquerades") {
        return;
    }
    let lab = lab();
    for to in ["198.51.100.1:30083", "192.0.2.22:80"] {
        let to = at(to);
        let spread = lab.spread(Member::Client("ext"), Proto::Tcp, to, 24);
        spread.assert_all_answered();
        assert_eq!(spread.pod_names(), ["a", "b"], "{to}");
        let masqueraded: std::collections::BTreeSet<_> = ["a", "b"]
            .map(|pod| lab.masquerade_ip_towards(pod, to))
            .into();
        assert_eq!(
            spread.peers, masqueraded,
            "{to}: the client's source reached a pod"
        );
    }
}

#[test]
fn external_policy_local_uses_only_node_1_endpoints_and_keeps_the_client_source() {
    if !kernel_tests_enabled(
        "external_policy_local_uses_only_node_1_endpoints_and_keeps_the_client_source",
    ) {
        return;
    }
    let lab = lab();
    let to = at("198.51.100.1:30081");
    let spread = lab.spread(Member::Client("ext"), Proto::Tcp, to, 12);
    spread.assert_all_answered();
    assert_eq!(spread.pod_names(), ["a"]);
    assert_eq!(
        spread.peers.into_iter().collect::<Vec<_>>(),
        [lab.client_ip("ext", to)]
    );
    assert_eq!(
        lab.answering(Member::Pod("x"), Proto::Tcp, to, 24),
        ["a", "b"],
        "pods short-circuit to every endpoint"
    );
}

#[test]
fn external_policy_local_without_local_endpoints_drops_clients_but_not_pods_or_the_node() {
    if !kernel_tests_enabled(
        "external_policy_local_without_local_endpoints_drops_clients_but_not_pods_or_the_node",
    ) {
        return;
    }
    let lab = lab();
    for to in ["198.51.100.1:30082", "192.0.2.21:80"] {
        let to = at(to);
        lab.probe(Member::Client("ext"), Proto::Tcp, to)
            .assert_timeout();
        let from_pod = lab.probe(Member::Pod("x"), Proto::Tcp, to);
        assert_eq!(from_pod.reply(), ("b", lab.pod_ip("x", to)), "{from_pod}");
    }
    let from_node = lab.probe(Member::Node1, Proto::Tcp, at("198.51.100.1:30082"));
    assert_eq!(from_node.reply().0, "b", "{from_node}");
}

#[test]
fn service_without_endpoints_refuses_its_node_port_and_external_ip_at_once() {
    if !kernel_tests_enabled(
        "service_without_endpoints_refuses_its_node_port_and_external_ip_at_once",
    ) {
        return;
    }
    let lab = lab();
    for to in ["198.51.100.1:30090", "192.0.2.30:80"] {
        lab.probe(Member::Client("ext"), Proto::Tcp, at(to))
            .assert_refused_quickly();
    }
}

#[test]
fn internal_policy_local_limits_the_cluster_ip_but_not_the_node_port() {
    if !kernel_tests_enabled("internal_policy_local_limits_the_cluster_ip_but_not_the_node_port") {
        return;
    }
    let lab = lab();
    assert_eq!(
        lab.answering(Member::Pod("x"), Proto::Tcp, at("198.19.0.23:80"), 12),
        ["a"],
        "ClusterIP: node-1's endpoint only"
    );
    let node_port = lab.spread(
        Member::Client("ext"),
        Proto::Tcp,
        at("198.51.100.1:30084"),
        24,
    );
    node_port.assert_all_answered();
    assert_eq!(
        node_port.pod_names(),
        ["a", "b"],
        "NodePort: every endpoint"
    );
}

#[test]
fn both_policies_local_without_local_endpoints_drop_all_but_the_pod_short_circuit() {
    if !kernel_tests_enabled(
        "both_policies_local_without_local_endpoints_drop_all_but_the_pod_short_circuit",
    ) {
        return;
    }
    let lab = lab();
    let node_port = at("198.51.100.1:30085");
    lab.probe(Member::Pod("x"), Proto::Tcp, at("198.19.0.24:80"))
        .assert_timeout();
    lab.probe(Member::Client("ext"), Proto::Tcp, node_port)
        .assert_timeout();
    let from_pod = lab.probe(Member::Pod("x"), Proto::Tcp, node_port);
    assert_eq!(
        from_pod.reply(),
        ("b", lab.pod_ip("x", node_port)),
        "{from_pod}"
    );
}
