//! Packet-flow tests of `nftproxy run` restarts: a client making back-to-back connections to
//! a ClusterIP through a restart sees no failure, and an established TCP connection
//! survives both a restart and a ruleset update.
//!
//! `nftproxy run --manifests DIR` runs inside node-1's namespace. Pods: `a` on node-1 and
//! `b` on node-2 (endpoints, also serving an echo port), client pod `x` on node-1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lab;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::netns::kernel_tests_enabled;
use common::proxy::Proxy;
use lab::{Lab, Member, Proto, at};

/// The echo port the pods serve besides the lab's answering server.
const ECHO_PORT: u16 = 9000;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 198.19.0.10
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080}
  - {name: echo, protocol: TCP, port: 90, targetPort: 9000}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}, {name: echo, protocol: TCP, port: 9000}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
"#;

const OTHER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: other, namespace: default}
spec:
  clusterIP: 198.19.0.20
  ports: [{protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: other-1, namespace: default, labels: {kubernetes.io/service-name: other}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
"#;

/// The lab, a manifest directory with [`lab::BASE`] and [`SERVICES`], and the config file.
fn setup() -> (Lab, tempfile::TempDir, tempfile::TempDir) {
    let lab = Lab::builder()
        .pod("a", lab::Node::One, 10)
        .pod("b", lab::Node::Two, 10)
        .pod("x", lab::Node::One, 20)
        .build();
    for pod in ["a", "b"] {
        serve_echo(&lab, pod);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.yaml"), lab::BASE).unwrap();
    std::fs::write(dir.path().join("web.yaml"), SERVICES).unwrap();
    let config = tempfile::tempdir().unwrap();
    let text = lab::kube_proxy_config(
        "detectLocalMode: ClusterCIDR\nclusterCIDR: 198.18.0.0/16\nnftables: {minSyncPeriod: 0s}\n",
    );
    std::fs::write(config.path().join("config.yaml"), text).unwrap();
    (lab, dir, config)
}

fn start(lab: &Lab, dir: &Path, config: &Path) -> Proxy {
    let config = config.join("config.yaml");
    let proxy = Proxy::start(lab.node1(), dir, &["--config", config.to_str().unwrap()]);
    let first = proxy.wait_syncs(1, Duration::from_secs(10));
    assert!(first[0].ok, "{}", proxy.log_text());
    proxy
}

/// A thread in `pod` echoing every line back on [`ECHO_PORT`], for as long as the test runs.
fn serve_echo(lab: &Lab, pod: &str) {
    let listener = lab
        .ns(Member::Pod(pod))
        .run_inside(|| TcpListener::bind(("0.0.0.0", ECHO_PORT)).unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if writer.write_all(format!("{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn back_to_back_connections_see_no_failure_through_a_restart() {
    if !kernel_tests_enabled("back_to_back_connections_see_no_failure_through_a_restart") {
        return;
    }
    let (lab, dir, config) = setup();
    let first = start(&lab, dir.path(), config.path());
    let stop = AtomicBool::new(false);
    let to = at("198.19.0.10:80");
    let (probes, failures) = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let (mut probes, mut failures) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let probe = lab.probe(Member::Pod("x"), Proto::Tcp, to);
                probes += 1;
                if !matches!(probe.outcome, lab::Outcome::Reply { .. }) {
                    failures.push(probe.to_string());
                }
            }
            (probes, failures)
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(first.stop(), "SIGTERM ends the first instance cleanly");
        std::thread::sleep(Duration::from_millis(300));
        let second = start(&lab, dir.path(), config.path());
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let result = client.join().unwrap();
        let adoption = second.syncs();
        assert_eq!(adoption[0].operations, 0, "{}", second.log_text());
        result
    });
    assert!(probes >= 20, "only {probes} connections were made");
    assert!(
        failures.is_empty(),
        "{} of {probes} failed: {failures:#?}",
        failures.len()
    );
}

#[test]
fn an_established_connection_survives_a_restart_and_a_ruleset_update() {
    if !kernel_tests_enabled("an_established_connection_survives_a_restart_and_a_ruleset_update") {
        return;
    }
    let (lab, dir, config) = setup();
    let first = start(&lab, dir.path(), config.path());
    let vip: SocketAddr = at("198.19.0.10:90");
    let stream = lab.ns(Member::Pod("x")).run_inside(move || {
        TcpStream::connect_timeout(&vip, Duration::from_secs(2)).expect("connect to the VIP")
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut exchange = |text: &str| {
        writer.write_all(format!("{text}\n").as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).expect("echo through the VIP");
        assert_eq!(line.trim_end(), text);
    };
    exchange("before");
    assert!(first.stop());
    let second = start(&lab, dir.path(), config.path());
    exchange("after the restart");
    std::fs::write(dir.path().join("other.yaml"), OTHER).unwrap();
    let syncs = second.wait_syncs(2, Duration::from_secs(10));
    assert!(syncs[1].ok && syncs[1].operations > 0, "{syncs:?}");
    exchange("after an update");
    let other = lab.probe(Member::Pod("x"), Proto::Tcp, at("198.19.0.20:80"));
    assert_eq!(other.reply().0, "b", "the update is live: {other}");
}
