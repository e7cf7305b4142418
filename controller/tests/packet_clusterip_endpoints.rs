//! Packet-flow tests of which endpoints a ClusterIP uses, and what happens when it has
//! none: REJECT for services without endpoints and unknown ports, DROP for unallocated
//! addresses and for `internalTrafficPolicy: Local` without local endpoints.

mod common;
mod lab;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::netns::kernel_tests_enabled;
use lab::{Lab, Member, Node, Proto, at};

/// A single-stack IPv4 service `name` at `vip`, TCP `port` -> 8080, with `extra` spec lines.
fn service(name: &str, vip: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  clusterIP: {vip}
  clusterIPs: [{vip}]
  selector: {{app: {name}}}
  ports: [{{protocol: TCP, port: 80, targetPort: 8080}}]
{extra}
---
"#
    )
}

/// An IPv4 EndpointSlice for service `name`, port 8080, with endpoint lines `endpoints`.
fn slice(name: &str, service: &str, endpoints: &str) -> String {
    format!(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}
addressType: IPv4
ports: [{{protocol: TCP, port: 8080}}]
endpoints:
{endpoints}
---
"#
    )
}

fn ready(ip: &str, node: &str) -> String {
    format!("- {{addresses: [{ip}], conditions: {{ready: true}}, nodeName: {node}}}\n")
}

/// Endpoint pods `a` (node-1) and `b` (node-2), client pod `x` (node-1), client `ext`.
fn two_pod_lab() -> Lab {
    Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::Two, 10)
        .pod("x", Node::One, 20)
        .client("ext", 10)
        .build()
}

#[test]
fn service_without_endpoints_rejects_tcp_and_udp_at_once() {
    if !kernel_tests_enabled("service_without_endpoints_rejects_tcp_and_udp_at_once") {
        return;
    }
    let lab = two_pod_lab();
    lab.load_cluster(
        r#"
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  clusterIP: 198.19.0.30
  clusterIPs: [198.19.0.30, "2001:db8:19::30"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  selector: {app: nothing}
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080}
  - {name: echo, protocol: UDP, port: 80, targetPort: 8080}
"#,
        None,
    );
    let mut probes = Vec::new();
    for from in [Member::Pod("x"), Member::Node1, Member::Client("ext")] {
        for proto in [Proto::Tcp, Proto::Udp] {
            probes.push((from, proto, at("198.19.0.30:80")));
            probes.push((from, proto, at("[2001:db8:19::30]:80")));
        }
    }
    for probe in lab.probe_all(&probes) {
        probe.assert_refused_quickly();
    }
}

#[test]
fn unknown_port_on_a_cluster_ip_is_rejected() {
    if !kernel_tests_enabled("unknown_port_on_a_cluster_ip_is_rejected") {
        return;
    }
    let lab = two_pod_lab();
    let web = service("web", "198.19.0.31", "");
    lab.load_cluster(
        &(web + &slice("web-1", "web", &ready("198.18.1.10", "node-1"))),
        None,
    );
    let answered = lab.probe(Member::Pod("x"), Proto::Tcp, at("198.19.0.31:80"));
    assert_eq!(answered.reply().0, "a", "{answered}");
    let mut probes = Vec::new();
    for from in [Member::Pod("x"), Member::Node1] {
        probes.push((from, Proto::Tcp, at("198.19.0.31:81")));
        probes.push((from, Proto::Udp, at("198.19.0.31:80")));
    }
    for probe in lab.probe_all(&probes) {
        probe.assert_refused_quickly();
    }
}

#[test]
fn unallocated_address_in_the_service_cidr_is_dropped() {
    if !kernel_tests_enabled("unallocated_address_in_the_service_cidr_is_dropped") {
        return;
    }
    let lab = two_pod_lab();
    let web = service("web", "198.19.0.31", "");
    lab.load_cluster(
        &(web + &slice("web-1", "web", &ready("198.18.1.10", "node-1"))),
        None,
    );
    let mut probes = Vec::new();
    for from in [Member::Pod("x"), Member::Node1, Member::Client("ext")] {
        for proto in [Proto::Tcp, Proto::Udp] {
            probes.push((from, proto, at("198.19.0.99:80")));
            probes.push((from, proto, at("[2001:db8:19::99]:80")));
        }
    }
    for probe in lab.probe_all(&probes) {
        probe.assert_dropped();
    }
}

#[test]
fn serving_terminating_endpoints_are_used_only_when_none_is_ready() {
    if !kernel_tests_enabled("serving_terminating_endpoints_are_used_only_when_none_is_ready") {
        return;
    }
    let lab = Lab::builder()
        .pod("ready", Node::One, 10)
        .pod("draining", Node::One, 11)
        .pod("stopped", Node::Two, 10)
        .pod("x", Node::One, 20)
        .build();
    let draining = "- {addresses: [198.18.1.11], nodeName: node-1, \
                    conditions: {ready: false, serving: true, terminating: true}}\n";
    let stopped = "- {addresses: [198.18.2.10], nodeName: node-2, \
                   conditions: {ready: false, serving: false, terminating: true}}\n";
    let cluster = [
        service("fallback", "198.19.0.32", ""),
        slice("fallback-1", "fallback", &format!("{draining}{stopped}")),
        service("mixed", "198.19.0.33", ""),
        slice(
            "mixed-1",
            "mixed",
            &format!("{}{draining}{stopped}", ready("198.18.1.10", "node-1")),
        ),
    ]
    .concat();
    lab.load_cluster(&cluster, None);
    for (vip, only) in [("198.19.0.32:80", "draining"), ("198.19.0.33:80", "ready")] {
        assert_eq!(
            lab.answering(Member::Pod("x"), Proto::Tcp, at(vip), 20),
            [only],
            "{vip}"
        );
    }
}

#[test]
fn internal_traffic_policy_local_uses_only_endpoints_on_this_node() {
    if !kernel_tests_enabled("internal_traffic_policy_local_uses_only_endpoints_on_this_node") {
        return;
    }
    let lab = two_pod_lab();
    let endpoints = ready("198.18.1.10", "node-1") + &ready("198.18.2.10", "node-2");
    let cluster = service("local", "198.19.0.34", "  internalTrafficPolicy: Local")
        + &slice("local-1", "local", &endpoints);
    lab.load_cluster(&cluster, None);
    for from in [Member::Pod("x"), Member::Node1] {
        assert_eq!(
            lab.answering(from, Proto::Tcp, at("198.19.0.34:80"), 20),
            ["a"]
        );
    }
}

#[test]
fn internal_traffic_policy_local_without_local_endpoints_drops() {
    if !kernel_tests_enabled("internal_traffic_policy_local_without_local_endpoints_drops") {
        return;
    }
    let lab = two_pod_lab();
    let cluster = service("remote", "198.19.0.35", "  internalTrafficPolicy: Local")
        + &slice("remote-1", "remote", &ready("198.18.2.10", "node-2"));
    lab.load_cluster(&cluster, None);
    let probes = [
        (Member::Pod("x"), Proto::Tcp, at("198.19.0.35:80")),
        (Member::Node1, Proto::Tcp, at("198.19.0.35:80")),
    ];
    for probe in lab.probe_all(&probes) {
        probe.assert_dropped();
    }
}

#[test]
fn selectorless_services_work_through_hand_written_slices_and_legacy_endpoints() {
    if !kernel_tests_enabled(
        "selectorless_services_work_through_hand_written_slices_and_legacy_endpoints",
    ) {
        return;
    }
    let lab = two_pod_lab();
    lab.load_cluster(
        r#"
apiVersion: v1
kind: Service
metadata: {name: by-slice, namespace: default}
spec:
  clusterIP: 198.19.0.36
  clusterIPs: [198.19.0.36]
  ports: [{protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: by-slice-manual
  namespace: default
  labels: {kubernetes.io/service-name: by-slice, endpointslice.kubernetes.io/managed-by: ops-team}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: by-endpoints, namespace: default}
spec:
  clusterIP: 198.19.0.37
  clusterIPs: [198.19.0.37]
  ports: [{protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: by-endpoints, namespace: default}
subsets:
- addresses: [{ip: 198.18.1.10, nodeName: node-1}]
  ports: [{protocol: TCP, port: 8080}]
"#,
        None,
    );
    let by_slice = lab.probe(Member::Pod("x"), Proto::Tcp, at("198.19.0.36:80"));
    assert_eq!(by_slice.reply().0, "b", "{by_slice}");
    let by_endpoints = lab.probe(Member::Pod("x"), Proto::Tcp, at("198.19.0.37:80"));
    assert_eq!(by_endpoints.reply().0, "a", "{by_endpoints}");
}

#[test]
fn invalid_endpoint_address_is_skipped_with_a_diagnostic() {
    if !kernel_tests_enabled("invalid_endpoint_address_is_skipped_with_a_diagnostic") {
        return;
    }
    let lab = two_pod_lab();
    let endpoints = ready("127.0.0.1", "node-1") + &ready("198.18.1.10", "node-1");
    let cluster = service("web", "198.19.0.38", "") + &slice("web-bad", "web", &endpoints);
    let compiled = lab.load_cluster(&cluster, None);
    assert!(
        compiled.stderr.contains("127.0.0.1") && compiled.stderr.contains("default/web-bad"),
        "stderr should name the slice and the address:\n{}",
        compiled.stderr
    );
    let spread = lab.spread(Member::Pod("x"), Proto::Tcp, at("198.19.0.38:80"), 10);
    spread.assert_all_answered();
    assert_eq!(spread.pod_names(), ["a"]);
}

#[test]
fn older_service_wins_a_cluster_ip_conflict_and_both_are_named() {
    if !kernel_tests_enabled("older_service_wins_a_cluster_ip_conflict_and_both_are_named") {
        return;
    }
    let lab = two_pod_lab();
    let old = service("old", "198.19.0.39", "").replace(
        "namespace: default}",
        "namespace: default, creationTimestamp: \"2024-01-01T00:00:00Z\"}",
    );
    let new = service("new", "198.19.0.39", "").replace(
        "namespace: default}",
        "namespace: default, creationTimestamp: \"2025-01-01T00:00:00Z\"}",
    );
    // The newer service is listed first: file order must not decide.
    let cluster = [
        new,
        slice("new-1", "new", &ready("198.18.2.10", "node-2")),
        old,
        slice("old-1", "old", &ready("198.18.1.10", "node-1")),
    ]
    .concat();
    let compiled = lab.load_cluster(&cluster, None);
    assert!(
        compiled.stderr.contains("default/old") && compiled.stderr.contains("default/new"),
        "stderr should name both services:\n{}",
        compiled.stderr
    );
    assert_eq!(
        lab.answering(Member::Pod("x"), Proto::Tcp, at("198.19.0.39:80"), 10),
        ["a"]
    );
}

#[test]
fn sctp_cluster_ip_ruleset_loads_and_dnats_an_sctp_init() {
    if !kernel_tests_enabled("sctp_cluster_ip_ruleset_loads_and_dnats_an_sctp_init") {
        return;
    }
    let lab = two_pod_lab();
    let cluster = service("diameter", "198.19.0.40", "").replace(
        "protocol: TCP, port: 80, targetPort: 8080",
        "protocol: SCTP, port: 3868, targetPort: 3869",
    ) + &slice("diameter-1", "diameter", &ready("198.18.1.10", "node-1"))
        .replace("protocol: TCP, port: 8080", "protocol: SCTP, port: 3869");
    let compiled = lab.load_cluster(&cluster, None);
    assert!(
        compiled.output.contains("sctp . 3868") && compiled.output.contains("198.18.1.10:3869"),
        "no SCTP service in:\n{}",
        compiled.output
    );
    // The kernel accepted the rules; now real SCTP packets, sent and captured raw.
    let vip = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 40), 3868);
    let seen = lab.sctp_init(Member::Pod("x"), vip, "a");
    let x = SocketAddrV4::new(lab.pod_ipv4("x"), lab::sctp::SOURCE_PORT);
    let a = SocketAddrV4::new(lab.pod_ipv4("a"), 3869);
    assert_eq!(
        seen,
        Some(lab::sctp::Seen { src: x, dst: a }),
        "INIT to {vip}"
    );
    if !lab::sctp_sockets_supported() {
        eprintln!(
            "sctp_cluster_ip_ruleset_loads_and_dnats_an_sctp_init: no SCTP association tested: \
             this kernel cannot open SCTP sockets (CONFIG_IP_SCTP off); a raw INIT was DNATed"
        );
    }
}
