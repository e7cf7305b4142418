//! Packet-flow tests of stale UDP conntrack cleanup: a UDP flow that keeps one source port
//! follows its service to a new endpoint when the old one leaves, after a scale to zero and
//! back, and when the service had no endpoints at first.
//!
//! The first two fail without the cleanup (the flow stays on `a`). The last one passes
//! without it too: a datagram rejected before DNAT does leave an entry (the ICMP error
//! confirms it), but its NAT was never set up and it saw no reply, so the kernel still runs
//! the DNAT rules for the flow's next datagram. It guards that the "stale service" cleanup
//! keeps that transition working; the deletion of un-DNATed entries itself is proven by the
//! kernel test `conntrack.rs`.
//!
//! `nftproxy run --manifests DIR` runs inside node-1's namespace. Pods: `a` on node-1 and
//! `b` on node-2 (both keep serving whatever the manifests say, which is exactly the stale
//! case), client pod `x` on node-1 sending from a fixed port with a connected UDP socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lab;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::netns::kernel_tests_enabled;
use common::proxy::Proxy;
use lab::{Lab, Member, at};

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: default}
spec:
  clusterIP: 198.19.0.30
  ports: [{name: dns, protocol: UDP, port: 53, targetPort: 8080}]
"#;

const VIP: &str = "198.19.0.30:53";

/// The EndpointSlice of `default/dns` with the pod IPs `endpoints` (none: an empty slice).
fn slice(endpoints: &[&str]) -> String {
    let list: Vec<String> = endpoints
        .iter()
        .map(|ip| format!("- {{addresses: [{ip}], conditions: {{ready: true}}}}"))
        .collect();
    let endpoints = if list.is_empty() {
        "endpoints: []".to_owned()
    } else {
        format!("endpoints:\n{}", list.join("\n"))
    };
    format!(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: dns-1, namespace: default, labels: {{kubernetes.io/service-name: dns}}}}
addressType: IPv4
ports: [{{name: dns, protocol: UDP, port: 8080}}]
{endpoints}
"#
    )
}

struct Setup {
    lab: Lab,
    dir: tempfile::TempDir,
    scratch: tempfile::TempDir,
    proxy: Proxy,
}

impl Setup {
    /// The lab and `nftproxy run` with `default/dns` served by `endpoints`.
    fn start(endpoints: &[&str]) -> Setup {
        let lab = Lab::builder()
            .pod("a", lab::Node::One, 10)
            .pod("b", lab::Node::Two, 10)
            .pod("x", lab::Node::One, 20)
            .build();
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.yaml"), lab::BASE).unwrap();
        std::fs::write(dir.path().join("dns.yaml"), SERVICE).unwrap();
        std::fs::write(dir.path().join("slice.yaml"), slice(endpoints)).unwrap();
        let config = scratch.path().join("config.yaml");
        let text = lab::kube_proxy_config(
            "detectLocalMode: ClusterCIDR\nclusterCIDR: 198.18.0.0/16\nnftables: {minSyncPeriod: 0s}\n",
        );
        std::fs::write(&config, text).unwrap();
        let proxy = Proxy::start(
            lab.node1(),
            dir.path(),
            &["--config", config.to_str().unwrap()],
        );
        let first = proxy.wait_syncs(1, Duration::from_secs(10));
        assert!(first[0].ok, "{}", proxy.log_text());
        Setup {
            lab,
            dir,
            scratch,
            proxy,
        }
    }

    /// Replaces the slice (atomically, by rename) and waits for the sync that applies it.
    fn set_endpoints(&self, endpoints: &[&str]) {
        let before = self.proxy.syncs().len();
        let staged = self.scratch.path().join("slice.yaml");
        std::fs::write(&staged, slice(endpoints)).unwrap();
        std::fs::rename(&staged, self.dir.path().join("slice.yaml")).unwrap();
        let syncs = self.proxy.wait_syncs(before + 1, Duration::from_secs(10));
        assert!(syncs.iter().all(|s| s.ok), "{}", self.proxy.log_text());
    }

    /// A UDP socket in pod `x` bound to `port` and connected to the VIP.
    fn client(&self, port: u16) -> UdpSocket {
        let vip: SocketAddr = at(VIP);
        self.lab.ns(Member::Pod("x")).run_inside(move || {
            let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
            socket.connect(vip).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            socket
        })
    }
}

/// One datagram and its answer: the answering pod's name, or the error.
fn exchange(socket: &UdpSocket) -> Outcome {
    socket.send(b"ping").map_err(|e| e.kind())?;
    let mut buf = [0u8; 512];
    let len = socket.recv(&mut buf).map_err(|e| e.kind())?;
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

type Outcome = Result<String, io::ErrorKind>;

/// Sends from the same socket (one source port) until `want` answers or 5 s pass; returns
/// every outcome seen.
fn send_until(socket: &UdpSocket, want: &str) -> Vec<Outcome> {
    send_until_outcome(socket, &Ok(want.to_owned()))
}

/// Like [`send_until`], until the outcome is `want`.
fn send_until_outcome(socket: &UdpSocket, want: &Outcome) -> Vec<Outcome> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let outcome = exchange(socket);
        let done = outcome == *want;
        seen.push(outcome);
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

fn answered_by(seen: &[Outcome], pod: &str) -> bool {
    seen.last().is_some_and(|o| o.as_deref() == Ok(pod))
}

#[test]
fn a_udp_flow_whose_endpoint_goes_away_moves_to_the_new_endpoint() {
    if !kernel_tests_enabled("a_udp_flow_whose_endpoint_goes_away_moves_to_the_new_endpoint") {
        return;
    }
    let setup = Setup::start(&["198.18.1.10"]);
    let socket = setup.client(40000);
    assert_eq!(exchange(&socket), Ok("a".to_owned()));
    setup.set_endpoints(&["198.18.2.10"]);
    // Without the cleanup, a's conntrack entry (refreshed by every datagram) would keep
    // this flow on a for as long as the client sends.
    let seen = send_until(&socket, "b");
    assert!(
        answered_by(&seen, "b"),
        "{seen:?}\n{}",
        setup.proxy.log_text()
    );
    let messages = setup.proxy.messages();
    assert!(
        messages
            .iter()
            .any(|m| m == "stale UDP conntrack entries deleted"),
        "{messages:?}"
    );
}

#[test]
fn a_udp_flow_follows_a_service_scaled_to_zero_and_back() {
    if !kernel_tests_enabled("a_udp_flow_follows_a_service_scaled_to_zero_and_back") {
        return;
    }
    let setup = Setup::start(&["198.18.1.10"]);
    let socket = setup.client(40001);
    assert_eq!(exchange(&socket), Ok("a".to_owned()));
    setup.set_endpoints(&[]);
    let seen = send_until_outcome(&socket, &Err(io::ErrorKind::ConnectionRefused));
    assert_eq!(
        seen.last(),
        Some(&Err(io::ErrorKind::ConnectionRefused)),
        "with no endpoints the flow is rejected, not left on a: {seen:?}"
    );
    setup.set_endpoints(&["198.18.2.10"]);
    let seen = send_until(&socket, "b");
    assert!(
        answered_by(&seen, "b"),
        "{seen:?}\n{}",
        setup.proxy.log_text()
    );
}

#[test]
fn a_udp_flow_rejected_while_a_service_had_no_endpoints_reaches_its_first_endpoint() {
    if !kernel_tests_enabled(
        "a_udp_flow_rejected_while_a_service_had_no_endpoints_reaches_its_first_endpoint",
    ) {
        return;
    }
    let setup = Setup::start(&[]);
    let socket = setup.client(40002);
    assert_eq!(exchange(&socket), Err(io::ErrorKind::ConnectionRefused));
    // The ICMP error confirmed an un-DNATed entry for this source port.
    setup.set_endpoints(&["198.18.2.10"]);
    let seen = send_until(&socket, "b");
    assert!(
        answered_by(&seen, "b"),
        "{seen:?}\n{}",
        setup.proxy.log_text()
    );
}
