//! Packet-flow tests of the terminating fallback on external paths: ready endpoints first;
//! with none, serving+terminating ones; for `externalTrafficPolicy: Local` the choice is
//! made among node-1's endpoints alone; not-serving endpoints never answer.
//!
//! Pods `a` and `a2` on node-1, `b` and `b2` on node-2, client pod `x` on node-1, external
//! client `ext`.

mod common;
mod lab;

use common::netns::kernel_tests_enabled;
use lab::{Lab, Member, Proto, at};

const SERVICES: &str = r#"
# Cluster policy, nothing ready: the serving+terminating a and b, never the not-serving a2.
apiVersion: v1
kind: Service
metadata: {name: draining, namespace: default}
spec:
  type: NodePort
  clusterIP: 198.19.0.50
  externalIPs: [192.0.2.50]
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30050}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: draining-v4, namespace: default, labels: {kubernetes.io/service-name: draining}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-1}
- {addresses: [198.18.1.11], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-2}
---
# Local policy: node-1 has only a terminating endpoint (a) while node-2 has a ready one
# (b): external clients get a, pods short-circuit to the cluster-wide choice, b.
apiVersion: v1
kind: Service
metadata: {name: local-draining, namespace: default}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  clusterIP: 198.19.0.51
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30051}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-draining-v4, namespace: default, labels: {kubernetes.io/service-name: local-draining}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
# Local policy: a ready local endpoint (a2) wins over a terminating local one (a).
apiVersion: v1
kind: Service
metadata: {name: local-mixed, namespace: default}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  clusterIP: 198.19.0.52
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30052}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-mixed-v4, namespace: default, labels: {kubernetes.io/service-name: local-mixed}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: false, serving: true, terminating: true}, nodeName: node-1}
- {addresses: [198.18.1.11], conditions: {ready: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
---
# Local policy: node-1's only endpoint is not serving: external clients are dropped,
# pods still reach the ready remote b.
apiVersion: v1
kind: Service
metadata: {name: local-dead, namespace: default}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  clusterIP: 198.19.0.53
  ports: [{protocol: TCP, port: 80, targetPort: 8080, nodePort: 30053}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-dead-v4, namespace: default, labels: {kubernetes.io/service-name: local-dead}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: false, serving: false, terminating: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
"#;

fn lab() -> Lab {
    let lab = Lab::builder()
        .pod("a", lab::Node::One, 10)
        .pod("a2", lab::Node::One, 11)
        .pod("x", lab::Node::One, 20)
        .pod("b", lab::Node::Two, 10)
        .client("ext", 10)
        .build();
    lab.load_cluster(SERVICES, Some(&lab::cluster_cidr_config()));
    lab
}

#[test]
fn external_policy_cluster_falls_back_to_serving_terminating_endpoints() {
    if !kernel_tests_enabled("external_policy_cluster_falls_back_to_serving_terminating_endpoints")
    {
        return;
    }
    let lab = lab();
    for to in ["198.51.100.1:30050", "192.0.2.50:80"] {
        assert_eq!(
            lab.answering(Member::Client("ext"), Proto::Tcp, at(to), 24),
            ["a", "b"],
            "{to}"
        );
    }
}

#[test]
fn external_policy_local_falls_back_among_local_endpoints_only() {
    if !kernel_tests_enabled("external_policy_local_falls_back_among_local_endpoints_only") {
        return;
    }
    let lab = lab();
    let to = at("198.51.100.1:30051");
    let external = lab.spread(Member::Client("ext"), Proto::Tcp, to, 12);
    external.assert_all_answered();
    assert_eq!(
        external.pod_names(),
        ["a"],
        "the local terminating endpoint"
    );
    assert_eq!(
        external.peers.into_iter().collect::<Vec<_>>(),
        [lab.client_ip("ext", to)],
        "the client's source is kept"
    );
    assert_eq!(
        lab.answering(Member::Pod("x"), Proto::Tcp, to, 12),
        ["b"],
        "pods use the ready endpoints"
    );
}

#[test]
fn external_policy_local_prefers_a_ready_local_endpoint_to_a_terminating_one() {
    if !kernel_tests_enabled(
        "external_policy_local_prefers_a_ready_local_endpoint_to_a_terminating_one",
    ) {
        return;
    }
    let lab = lab();
    assert_eq!(
        lab.answering(
            Member::Client("ext"),
            Proto::Tcp,
            at("198.51.100.1:30052"),
            12,
        ),
        ["a2"]
    );
}

#[test]
fn external_policy_local_never_uses_a_not_serving_local_endpoint() {
    if !kernel_tests_enabled("external_policy_local_never_uses_a_not_serving_local_endpoint") {
        return;
    }
    let lab = lab();
    let to = at("198.51.100.1:30053");
    lab.probe(Member::Client("ext"), Proto::Tcp, to)
        .assert_timeout();
    let from_pod = lab.probe(Member::Pod("x"), Proto::Tcp, to);
    assert_eq!(from_pod.reply().0, "b", "{from_pod}");
}
