//! Per-service traffic counters as an operator reads them: `nftproxy run --manifests DIR`
//! in node-1, real packets from an external client to a NodePort, and
//! `nftproxy_service_{packets,bytes}_total` on node-1's `/metrics`.
//!
//! Pods: `b` on node-2; external client `ext`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lab;

use std::time::{Duration, Instant};

use common::http::{get, metric};
use common::netns::kernel_tests_enabled;
use common::proxy::Proxy;
use lab::{Lab, Member, Proto, at};

/// `api`: a ClusterIP service nobody sends to (beside the lab's NodePort `web`, whose
/// endpoint is pod `b`).
const API: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  clusterIP: 198.19.0.20
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
"#;

fn series(name: &str, service: &str, protocol: &str, port: &str) -> String {
    format!(
        "{name}{{namespace=\"default\",service=\"{service}\",protocol=\"{protocol}\",port=\"{port}\"}}"
    )
}

#[test]
fn service_traffic_counters_count_the_packets_an_external_client_sends() {
    if !kernel_tests_enabled("service_traffic_counters_count_the_packets_an_external_client_sends")
    {
        return;
    }
    let lab = Lab::builder()
        .pod("b", lab::Node::Two, 10)
        .client("ext", 10)
        .build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.yaml"), lab::BASE).unwrap();
    std::fs::write(dir.path().join("web.yaml"), lab::NODE_PORT_WEB).unwrap();
    std::fs::write(dir.path().join("api.yaml"), API).unwrap();
    let proxy = Proxy::start(lab.node1(), dir.path(), &[]);
    assert!(
        proxy.wait_syncs(1, Duration::from_secs(10))[0].ok,
        "{}",
        proxy.log_text()
    );
    let scrape = || {
        let answer = get(lab.node1(), "127.0.0.1:10249".parse().unwrap(), "/metrics").unwrap();
        assert_eq!(answer.code, 200);
        answer.body
    };
    let before = scrape();
    let udp_packets = series("nftproxy_service_packets_total", "web", "udp", "echo");
    let udp_bytes = series("nftproxy_service_bytes_total", "web", "udp", "echo");
    let tcp_packets = series("nftproxy_service_packets_total", "web", "tcp", "http");
    let idle = series("nftproxy_service_packets_total", "api", "tcp", "http");
    assert_eq!(metric(&before, &udp_packets), Some(0.0), "{before}");
    assert_eq!(metric(&before, &idle), Some(0.0), "{before}");

    let to = at("198.51.100.1:30080");
    for _ in 0..4 {
        let probe = lab.probe(Member::Client("ext"), Proto::Udp, to);
        assert_eq!(probe.reply().0, "b", "{probe}");
    }
    for _ in 0..3 {
        let probe = lab.probe(Member::Client("ext"), Proto::Tcp, to);
        assert_eq!(probe.reply().0, "b", "{probe}");
    }
    // Counters are read at scrape time; the last TCP FIN may still be on its way.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut after = scrape();
    while metric(&after, &tcp_packets).unwrap_or(0.0) < 12.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = scrape();
    }
    // Four datagrams of 6 payload bytes: 4 x (20 IP + 8 UDP + 6) bytes.
    assert_eq!(metric(&after, &udp_packets), Some(4.0), "{after}");
    assert_eq!(metric(&after, &udp_bytes), Some(136.0), "{after}");
    // Each connection sends at least SYN, ACK, request... and FIN, ACK from the client.
    let tcp = metric(&after, &tcp_packets).unwrap();
    assert!(
        tcp >= 12.0,
        "3 connections sent only {tcp} packets:\n{after}"
    );
    assert_eq!(metric(&after, &idle), Some(0.0), "{after}");
}
