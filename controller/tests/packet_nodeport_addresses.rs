//! Packet-flow tests of `nodePortAddresses`: NodePorts answer on exactly the node addresses
//! the setting selects (a CIDR list, or every local address but loopback) and nowhere else.
//!
//! node-1 gets a second LAN address, `198.51.100.11` / `2001:db8:51::11`, that its Node
//! object does not list (as an address added to an interface would be); the compiler learns
//! it through `--node-ip`. The endpoint `b` is on node-2; the external client is `ext`.

mod common;
mod lab;

use common::netns::kernel_tests_enabled;
use lab::{Lab, Member, Outcome, Proto, at};

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIPs: [198.19.0.10, "2001:db8:19::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: echo, protocol: UDP, port: 80, targetPort: 8080, nodePort: 30080}
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
"#;

const SECOND_V4: &str = "198.51.100.11";
const SECOND_V6: &str = "2001:db8:51::11";

/// The lab with node-1's second address and the service compiled with `nodePortAddresses`
/// set to `addresses` (a YAML flow list).
fn lab(addresses: &str) -> Lab {
    let lab = Lab::builder()
        .pod("x", lab::Node::One, 20)
        .pod("b", lab::Node::Two, 10)
        .client("ext", 10)
        .build();
    lab.add_node1_lan_address(&format!("{SECOND_V4}/24"));
    lab.add_node1_lan_address(&format!("{SECOND_V6}/64"));
    let config = lab::kube_proxy_config(&format!(
        "detectLocalMode: ClusterCIDR\nclusterCIDR: 198.18.0.0/16\nnodePortAddresses: {addresses}\n"
    ));
    lab.load_cluster_with_node_ips(SERVICE, Some(&config), &[SECOND_V4, SECOND_V6]);
    lab
}

/// Asserts that `to` is a NodePort answered by `b` for TCP and UDP from the client.
fn assert_intercepted(lab: &Lab, to: &str) {
    for proto in [Proto::Tcp, Proto::Udp] {
        let probe = lab.probe(Member::Client("ext"), proto, at(to));
        assert_eq!(probe.reply().0, "b", "{to}: {probe}");
    }
}

/// Asserts that `to` reaches node-1's own stack, where nothing listens: a TCP reset.
fn assert_not_intercepted(lab: &Lab, from: Member<'_>, to: &str) {
    let probe = lab.probe(from, Proto::Tcp, at(to));
    assert_eq!(probe.outcome, Outcome::Refused, "{to}: {probe}");
}

#[test]
fn node_port_addresses_cidrs_select_every_node_address_inside_them() {
    if !kernel_tests_enabled("node_port_addresses_cidrs_select_every_node_address_inside_them") {
        return;
    }
    let lab = lab(r#"["198.51.100.0/24", "2001:db8:51::/64"]"#);
    for to in [
        "198.51.100.1:30080",
        "198.51.100.11:30080",
        "[2001:db8:51::1]:30080",
        "[2001:db8:51::11]:30080",
    ] {
        assert_intercepted(&lab, to);
    }
}

#[test]
fn node_port_addresses_cidrs_leave_the_primary_address_alone_when_it_is_outside() {
    if !kernel_tests_enabled(
        "node_port_addresses_cidrs_leave_the_primary_address_alone_when_it_is_outside",
    ) {
        return;
    }
    let lab = lab(r#"["198.51.100.11/32", "2001:db8:51::11/128"]"#);
    assert_intercepted(&lab, "198.51.100.11:30080");
    assert_intercepted(&lab, "[2001:db8:51::11]:30080");
    assert_not_intercepted(&lab, Member::Client("ext"), "198.51.100.1:30080");
    assert_not_intercepted(&lab, Member::Client("ext"), "[2001:db8:51::1]:30080");
}

#[test]
fn node_port_addresses_all_intercept_every_local_address_but_loopback() {
    if !kernel_tests_enabled("node_port_addresses_all_intercept_every_local_address_but_loopback") {
        return;
    }
    // The compiler is not told about the second address: `fib daddr type local` finds it.
    let lab = Lab::builder()
        .pod("x", lab::Node::One, 20)
        .pod("b", lab::Node::Two, 10)
        .client("ext", 10)
        .build();
    lab.add_node1_lan_address(&format!("{SECOND_V4}/24"));
    lab.add_node1_lan_address(&format!("{SECOND_V6}/64"));
    let config = lab::kube_proxy_config(
        "detectLocalMode: ClusterCIDR\nclusterCIDR: 198.18.0.0/16\nnodePortAddresses: [0.0.0.0/0, \"::/0\"]\n",
    );
    lab.load_cluster(SERVICE, Some(&config));
    for to in [
        "198.51.100.1:30080",
        "198.51.100.11:30080",
        "[2001:db8:51::1]:30080",
        "[2001:db8:51::11]:30080",
    ] {
        assert_intercepted(&lab, to);
    }
    let from_pod = lab.probe(Member::Pod("x"), Proto::Tcp, at("198.51.100.11:30080"));
    assert_eq!(from_pod.reply().0, "b", "{from_pod}");
    assert_not_intercepted(&lab, Member::Node1, "127.0.0.1:30080");
    assert_not_intercepted(&lab, Member::Node1, "[::1]:30080");
    let from_node = lab.probe(Member::Node1, Proto::Tcp, at("198.51.100.11:30080"));
    assert_eq!(from_node.reply().0, "b", "{from_node}");
}
