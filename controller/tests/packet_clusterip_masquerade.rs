//! Packet-flow tests of ClusterIP masquerading: hairpin, `masqueradeAll`, and each
//! local-traffic detector (`detectLocalMode`) telling pod traffic from other traffic.
//!
//! The service `web` has one endpoint, pod `b` on node-2, so masqueraded traffic leaves
//! node-1 on its LAN interface and `b` sees `198.51.100.1` / `2001:db8:51::1`, while
//! unmasqueraded pod traffic keeps the pod's own address.

mod common;
mod lab;

use std::net::SocketAddr;

use common::netns::kernel_tests_enabled;
use lab::{Lab, Member, Node, Proto, at};

/// `web`: dual-stack, TCP and UDP 80 -> 8080, one endpoint `b` on node-2.
const WEB_ON_NODE2: &str = r#"
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

const VIP4: &str = "198.19.0.10:80";
const VIP6: &str = "[2001:db8:19::10]:80";

/// Pod `x` on node-1 (the client pod), endpoint `b` on node-2, external client `ext`.
fn lab(bridged: bool) -> Lab {
    let builder = Lab::builder();
    let builder = if bridged {
        builder.bridged_pods()
    } else {
        builder
    };
    builder
        .pod("x", Node::One, 20)
        .pod("b", Node::Two, 10)
        .client("ext", 10)
        .build()
}

/// Asserts the source `b` sees for traffic from pod `x`, from `ext` and from node-1,
/// over TCP and UDP to `vip`.
fn assert_sources(lab: &Lab, vip: &str, pod_masqueraded: bool, ext_masqueraded: bool) {
    let vip: SocketAddr = at(vip);
    let node = lab.masquerade_ip_towards("b", vip);
    let expect_x = if pod_masqueraded {
        node
    } else {
        lab.pod_ip("x", vip)
    };
    let expect_ext = if ext_masqueraded {
        node
    } else {
        lab.client_ip("ext", vip)
    };
    for proto in [Proto::Tcp, Proto::Udp] {
        let from_pod = lab.probe(Member::Pod("x"), proto, vip);
        assert_eq!(from_pod.reply(), ("b", expect_x), "{from_pod}");
        let from_ext = lab.probe(Member::Client("ext"), proto, vip);
        assert_eq!(from_ext.reply(), ("b", expect_ext), "{from_ext}");
        let from_node = lab.probe(Member::Node1, proto, vip);
        assert_eq!(from_node.reply(), ("b", node), "{from_node}");
    }
}

#[test]
fn endpoint_reaching_itself_through_its_cluster_ip_is_masqueraded() {
    if !kernel_tests_enabled("endpoint_reaching_itself_through_its_cluster_ip_is_masqueraded") {
        return;
    }
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("x", Node::One, 20)
        .build();
    lab.load_cluster(
        r#"
apiVersion: v1
kind: Service
metadata: {name: self, namespace: default}
spec:
  clusterIP: 198.19.0.13
  clusterIPs: [198.19.0.13, "2001:db8:19::13"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  selector: {app: self}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: self-v4, namespace: default, labels: {kubernetes.io/service-name: self}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: self-v6, namespace: default, labels: {kubernetes.io/service-name: self}}
addressType: IPv6
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- {addresses: ["2001:db8:18:1::10"], conditions: {ready: true}, nodeName: node-1}
"#,
        None,
    );
    for vip in [at("198.19.0.13:80"), at("[2001:db8:19::13]:80")] {
        let hairpin = lab.probe(Member::Pod("a"), Proto::Tcp, vip);
        let node = lab.masquerade_ip_towards("a", vip);
        assert_eq!(hairpin.reply(), ("a", node), "{hairpin}");
        let other = lab.probe(Member::Pod("x"), Proto::Tcp, vip);
        assert_eq!(other.reply(), ("a", lab.pod_ip("x", vip)), "{other}");
    }
}

#[test]
fn cluster_cidr_detector_masquerades_only_traffic_from_outside_the_pod_network() {
    if !kernel_tests_enabled(
        "cluster_cidr_detector_masquerades_only_traffic_from_outside_the_pod_network",
    ) {
        return;
    }
    let lab = lab(false);
    let config = lab::kube_proxy_config(
        "clusterCIDR: 198.18.0.0/16,2001:db8:18::/48\ndetectLocalMode: ClusterCIDR\n",
    );
    lab.load_cluster(WEB_ON_NODE2, Some(&config));
    assert_sources(&lab, VIP4, false, true);
    assert_sources(&lab, VIP6, false, true);
}

#[test]
fn masquerade_all_masquerades_traffic_from_pods_too() {
    if !kernel_tests_enabled("masquerade_all_masquerades_traffic_from_pods_too") {
        return;
    }
    let lab = lab(false);
    lab.load_cluster(
        WEB_ON_NODE2,
        Some(&lab::kube_proxy_config("nftables: {masqueradeAll: true}\n")),
    );
    assert_sources(&lab, VIP4, true, true);
    assert_sources(&lab, VIP6, true, true);
}

#[test]
fn interface_name_prefix_detector_masquerades_only_traffic_not_from_pod_interfaces() {
    if !kernel_tests_enabled(
        "interface_name_prefix_detector_masquerades_only_traffic_not_from_pod_interfaces",
    ) {
        return;
    }
    let lab = lab(false);
    let config = lab::kube_proxy_config(&format!(
        "detectLocalMode: InterfaceNamePrefix\ndetectLocal: {{interfaceNamePrefix: {}}}\n",
        lab::ROUTED_PREFIX
    ));
    lab.load_cluster(WEB_ON_NODE2, Some(&config));
    assert_sources(&lab, VIP4, false, true);
    assert_sources(&lab, VIP6, false, true);
}

#[test]
fn bridge_interface_detector_masquerades_only_traffic_not_from_the_pod_bridge() {
    if !kernel_tests_enabled(
        "bridge_interface_detector_masquerades_only_traffic_not_from_the_pod_bridge",
    ) {
        return;
    }
    let lab = lab(true);
    let config = lab::kube_proxy_config(&format!(
        "detectLocalMode: BridgeInterface\ndetectLocal: {{bridgeInterface: {}}}\n",
        lab::POD_BRIDGE
    ));
    lab.load_cluster(WEB_ON_NODE2, Some(&config));
    assert_sources(&lab, VIP4, false, true);
    assert_sources(&lab, VIP6, false, true);
}

#[test]
fn node_cidr_detector_masquerades_only_traffic_from_outside_the_nodes_pod_range() {
    if !kernel_tests_enabled(
        "node_cidr_detector_masquerades_only_traffic_from_outside_the_nodes_pod_range",
    ) {
        return;
    }
    let lab = lab(false);
    lab.load_cluster(
        WEB_ON_NODE2,
        Some(&lab::kube_proxy_config("detectLocalMode: NodeCIDR\n")),
    );
    assert_sources(&lab, VIP4, false, true);
    assert_sources(&lab, VIP6, false, true);
}
