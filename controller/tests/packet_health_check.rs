//! Health-check node ports, asked by an external client over the lab's LAN as a cloud load
//! balancer would: `nftproxy run --manifests DIR` in node-1 opens one listener per Local
//! LoadBalancer Service on its `healthCheckNodePort`, answers 200 while node-1 has a ready
//! endpoint of the Service and 503 when it has none, and closes it when the Service goes.
//!
//! Pods: `a` on node-1, `b` on node-2; external client `ext`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lab;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::{Answer, get};
use common::netns::kernel_tests_enabled;
use common::proxy::Proxy;
use lab::{Lab, Member};

/// `web`: a LoadBalancer with externalTrafficPolicy Local and healthCheckNodePort 32100,
/// with these endpoints (address, node).
fn web(endpoints: &[(&str, &str)]) -> String {
    let endpoints: String = endpoints
        .iter()
        .map(|(a, n)| {
            format!("- {{addresses: [{a}], conditions: {{ready: true}}, nodeName: {n}}}\n")
        })
        .collect();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: LoadBalancer
  clusterIP: 198.19.0.10
  externalTrafficPolicy: Local
  healthCheckNodePort: 32100
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}}]
status:
  loadBalancer:
    ingress: [{{ip: 192.0.2.11}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-v4, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
{endpoints}"#
    )
}

const CHECK: &str = "198.51.100.1:32100";

/// Asks node-1's health-check port from `ext` until `check` holds (10 s at most).
fn wait_answer(
    lab: &Lab,
    proxy: &Proxy,
    what: &str,
    check: impl Fn(&Result<Answer, String>) -> bool,
) -> Result<Answer, String> {
    let to: SocketAddr = CHECK.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(lab.ns(Member::Client("ext")), to, "/");
        if check(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last answer {answer:?}\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_health_check_node_port_follows_the_local_endpoints_and_the_service() {
    if !kernel_tests_enabled(
        "the_health_check_node_port_follows_the_local_endpoints_and_the_service",
    ) {
        return;
    }
    let lab = Lab::builder()
        .pod("a", lab::Node::One, 10)
        .pod("b", lab::Node::Two, 10)
        .client("ext", 10)
        .build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.yaml"), lab::BASE).unwrap();
    let web_file = dir.path().join("web.yaml");
    std::fs::write(
        &web_file,
        web(&[("198.18.1.10", "node-1"), ("198.18.2.10", "node-2")]),
    )
    .unwrap();
    let proxy = Proxy::start(lab.node1(), dir.path(), &[]);
    assert!(
        proxy.wait_syncs(1, Duration::from_secs(10))[0].ok,
        "{}",
        proxy.log_text()
    );

    let healthy = wait_answer(&lab, &proxy, "200 with a local endpoint", |a| {
        a.as_ref().is_ok_and(|a| a.code == 200)
    })
    .unwrap();
    let body = healthy.json();
    assert_eq!(body["service"]["namespace"], "default");
    assert_eq!(body["service"]["name"], "web");
    assert_eq!(body["localEndpoints"], 1);
    assert_eq!(body["serviceProxyHealthy"], true);
    assert_eq!(
        healthy.header("x-load-balancing-endpoint-weight"),
        Some("1")
    );

    std::fs::write(&web_file, web(&[("198.18.2.10", "node-2")])).unwrap();
    let drained = wait_answer(&lab, &proxy, "503 without a local endpoint", |a| {
        a.as_ref().is_ok_and(|a| a.code == 503)
    })
    .unwrap();
    assert_eq!(drained.json()["localEndpoints"], 0);
    assert_eq!(
        drained.header("x-load-balancing-endpoint-weight"),
        Some("0")
    );

    std::fs::write(
        &web_file,
        web(&[("198.18.1.10", "node-1"), ("198.18.1.11", "node-1")]),
    )
    .unwrap();
    let two = wait_answer(&lab, &proxy, "200 with two local endpoints", |a| {
        a.as_ref().is_ok_and(|a| a.code == 200)
    })
    .unwrap();
    assert_eq!(two.json()["localEndpoints"], 2);

    std::fs::remove_file(&web_file).unwrap();
    // A probe that was accepted just before the listener closed is reset; the port is
    // closed once new connections are refused.
    let closed = wait_answer(&lab, &proxy, "the port closed with the Service", |a| {
        a.as_ref().is_err_and(|e| e.contains("refused"))
    });
    let error = closed.unwrap_err();
    assert!(error.contains("refused"), "{error}");
}
