//! Packet-flow tests of `sessionAffinity: ClientIP`: a client keeps its endpoint over TCP and
//! UDP in both families, through the ClusterIP and a NodePort; other clients make their own
//! choice; an idle client's entry expires after `timeoutSeconds`; a full affinity set still
//! lets new clients through.
//!
//! Endpoint pods `a` (node-1), `b` and `c` (node-2); client pods `x` and `y` (node-1);
//! external client `ext`. With three endpoints, 20 connections of one client landing on one
//! endpoint by chance has probability 3^-19. The NodePort test loads the ruleset as JSON
//! (what the controller sends), the others as an nft script.

mod common;
mod lab;

use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::netns::kernel_tests_enabled;
use lab::{Format, Lab, Member, Node, Proto, at};
use serde_json::Value as Json;

/// Three endpoints per family on 8080 (TCP and UDP), for service `name`.
fn slices(name: &str) -> String {
    format!(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-v4, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}, {{name: echo, protocol: UDP, port: 8080}}]
endpoints:
- {{addresses: [198.18.1.10], conditions: {{ready: true}}, nodeName: node-1}}
- {{addresses: [198.18.2.10], conditions: {{ready: true}}, nodeName: node-2}}
- {{addresses: [198.18.2.11], conditions: {{ready: true}}, nodeName: node-2}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-v6, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv6
ports: [{{name: http, protocol: TCP, port: 8080}}, {{name: echo, protocol: UDP, port: 8080}}]
endpoints:
- {{addresses: ["2001:db8:18:1::10"], conditions: {{ready: true}}, nodeName: node-1}}
- {{addresses: ["2001:db8:18:2::10"], conditions: {{ready: true}}, nodeName: node-2}}
- {{addresses: ["2001:db8:18:2::11"], conditions: {{ready: true}}, nodeName: node-2}}
---
"#
    )
}

/// A dual-stack NodePort service `name` (TCP and UDP 80 -> 8080 on `node_port`) with
/// `affinity` spec lines.
fn service(name: &str, last_octet: u8, node_port: u16, affinity: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  type: NodePort
  clusterIP: 198.19.0.{last_octet}
  clusterIPs: [198.19.0.{last_octet}, "2001:db8:19::{last_octet}"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
{affinity}
  ports:
  - {{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: {node_port}}}
  - {{name: echo, protocol: UDP, port: 80, targetPort: 8080, nodePort: {node_port}}}
---
"#
    )
}

/// `sticky` (ClientIP, default timeout) at .10 / 30080, `plain` (no affinity) at .11 /
/// 30081, `short` (ClientIP, timeoutSeconds 2) at .12 / 30082, all on pods a, b, c.
fn cluster() -> String {
    [
        service("sticky", 10, 30080, "  sessionAffinity: ClientIP"),
        slices("sticky"),
        service("plain", 11, 30081, ""),
        slices("plain"),
        service(
            "short",
            12,
            30082,
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}",
        ),
        slices("short"),
    ]
    .concat()
}

/// The lab with [`cluster`] loaded into node-1 as an nft script.
fn lab() -> Lab {
    lab_loaded_as(Format::Nft)
}

/// The lab with [`cluster`] loaded into node-1 in `format` (JSON is what the controller
/// sends).
fn lab_loaded_as(format: Format) -> Lab {
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::Two, 10)
        .pod("c", Node::Two, 11)
        .pod("x", Node::One, 20)
        .pod("y", Node::One, 21)
        .client("ext", 10)
        .build();
    lab.load_cluster_as(&cluster(), Some(&lab::cluster_cidr_config()), format);
    lab
}

/// The pod that answered all `n` connections from `from` to `to`; panics if any failed or
/// more than one pod answered.
fn sticky_pod(lab: &Lab, from: Member<'_>, proto: Proto, to: SocketAddr, n: usize) -> String {
    let spread = lab.spread(from, proto, to, n);
    spread.assert_all_answered();
    assert_eq!(
        spread.pods.len(),
        1,
        "{from:?} {proto:?} to {to}: not sticky, answered by {:?}",
        spread.pod_names()
    );
    spread.pod_names()[0].to_owned()
}

/// (table, name) of node-1's affinity sets (every table) that hold `client` right now.
fn sets_holding(lab: &Lab, client: IpAddr) -> Vec<(String, String)> {
    let listing = lab.node1().nft_list_json();
    let objects = listing["nftables"].as_array().cloned().unwrap_or_default();
    let mut found = Vec::new();
    for set in objects.iter().filter_map(|o| o.get("set")) {
        let name = set["name"].as_str().unwrap_or_default();
        let table = set["table"].as_str().unwrap_or_default();
        let elements = set["elem"].as_array().cloned().unwrap_or_default();
        let holds = elements.iter().any(|e| element_addr(e) == Some(client));
        if name.starts_with("affinity-") && holds {
            found.push((table.to_owned(), name.to_owned()));
        }
    }
    found
}

/// The address of a listed set element (`{"elem": {"val": ADDR, "expires": …}}` or `ADDR`).
fn element_addr(element: &Json) -> Option<IpAddr> {
    let value = element.get("elem").map_or(element, |e| &e["val"]);
    value.as_str()?.parse().ok()
}

#[test]
fn a_pod_client_keeps_its_endpoint_for_20_connections_over_tcp_and_udp_in_both_families() {
    if !kernel_tests_enabled(
        "a_pod_client_keeps_its_endpoint_for_20_connections_over_tcp_and_udp_in_both_families",
    ) {
        return;
    }
    let lab = lab();
    for proto in [Proto::Tcp, Proto::Udp] {
        for vip in ["198.19.0.10:80", "[2001:db8:19::10]:80"] {
            sticky_pod(&lab, Member::Pod("x"), proto, at(vip), 20);
        }
        // The control: without affinity the same client spreads over the endpoints.
        for vip in ["198.19.0.11:80", "[2001:db8:19::11]:80"] {
            let spread = lab.spread(Member::Pod("x"), proto, at(vip), 20);
            spread.assert_all_answered();
            assert!(
                spread.pods.len() > 1,
                "{proto:?} {vip}: plain did not spread"
            );
        }
    }
    let x = IpAddr::from(lab.pod_ipv4("x"));
    let holding = sets_holding(&lab, x);
    assert_eq!(
        holding.len(),
        2,
        "x is in one set per sticky port: {holding:?}"
    );
}

#[test]
fn each_client_keeps_its_own_endpoint_and_new_clients_are_spread() {
    if !kernel_tests_enabled("each_client_keeps_its_own_endpoint_and_new_clients_are_spread") {
        return;
    }
    let lab = lab();
    let vip = at("198.19.0.10:80");
    let x_pod = sticky_pod(&lab, Member::Pod("x"), Proto::Tcp, vip, 20);
    let node_pod = sticky_pod(&lab, Member::Node1, Proto::Tcp, vip, 10);
    // y is made a new client again (its entry deleted) until it lands away from x's
    // endpoint: a new client's choice is random, and x's affinity is not disturbed.
    let y = IpAddr::from(lab.pod_ipv4("y"));
    let mut y_pod = sticky_pod(&lab, Member::Pod("y"), Proto::Tcp, vip, 10);
    let mut rounds = 0;
    while y_pod == x_pod {
        rounds += 1;
        assert!(rounds <= 25, "y always lands on x's endpoint {x_pod}");
        let holding = sets_holding(&lab, y);
        assert_eq!(holding.len(), 1, "{holding:?}");
        let element = format!("{{ {y} }}");
        let (table, set) = &holding[0];
        let args = ["nft", "delete", "element", "ip", table, set, &element];
        lab.node1().exec_ok(&args);
        y_pod = sticky_pod(&lab, Member::Pod("y"), Proto::Tcp, vip, 5);
    }
    assert_eq!(
        sticky_pod(&lab, Member::Pod("x"), Proto::Tcp, vip, 10),
        x_pod
    );
    assert_eq!(
        sticky_pod(&lab, Member::Node1, Proto::Tcp, vip, 5),
        node_pod
    );
}

#[test]
fn an_external_client_keeps_its_endpoint_through_a_node_port() {
    if !kernel_tests_enabled("an_external_client_keeps_its_endpoint_through_a_node_port") {
        return;
    }
    let lab = lab_loaded_as(Format::Json);
    let ext = Member::Client("ext");
    for (proto, to) in [
        (Proto::Tcp, "198.51.100.1:30080"),
        (Proto::Udp, "198.51.100.1:30080"),
        (Proto::Tcp, "[2001:db8:51::1]:30080"),
    ] {
        sticky_pod(&lab, ext, proto, at(to), 20);
    }
    let control = lab.spread(ext, Proto::Tcp, at("198.51.100.1:30081"), 20);
    control.assert_all_answered();
    assert!(control.pods.len() > 1, "plain NodePort did not spread");
    let recorded = sets_holding(&lab, IpAddr::from(lab.client_ipv4("ext")));
    assert_eq!(
        recorded.len(),
        2,
        "the client, not the masquerade address: {recorded:?}"
    );
}

#[test]
fn after_timeout_seconds_idle_the_entry_expires_and_clients_choose_afresh() {
    if !kernel_tests_enabled(
        "after_timeout_seconds_idle_the_entry_expires_and_clients_choose_afresh",
    ) {
        return;
    }
    let lab = lab();
    let vip = at("198.19.0.12:80");
    let x = IpAddr::from(lab.pod_ipv4("x"));
    // Connecting every 700 ms for 3.5 s keeps the 2 s entry alive: each new connection
    // restarts its timer.
    let start = Instant::now();
    let first = sticky_pod(&lab, Member::Pod("x"), Proto::Tcp, vip, 1);
    while start.elapsed() < Duration::from_millis(3500) {
        thread::sleep(Duration::from_millis(700));
        assert_eq!(
            sticky_pod(&lab, Member::Pod("x"), Proto::Tcp, vip, 1),
            first
        );
    }
    assert_eq!(sets_holding(&lab, x).len(), 1);
    // Idle for 3 s: the entry is gone.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sets_holding(&lab, x),
        Vec::<(String, String)>::new(),
        "entry outlived its timeout"
    );
    // And the next connections are new choices: over rounds of idling, some client of
    // four moves to another endpoint (all staying put in 3 rounds: 3^-12).
    let clients = [
        (Member::Pod("x"), at("198.19.0.12:80")),
        (Member::Pod("y"), at("198.19.0.12:80")),
        (Member::Node1, at("198.19.0.12:80")),
        (Member::Client("ext"), at("198.51.100.1:30082")),
    ];
    let probes: Vec<_> = clients.iter().map(|&(m, to)| (m, Proto::Tcp, to)).collect();
    let answers = |lab: &Lab| -> Vec<String> {
        let probes = lab.probe_all(&probes);
        probes.iter().map(|p| p.reply().0.to_owned()).collect()
    };
    let before = answers(&lab);
    let mut moved = false;
    for _ in 0..3 {
        thread::sleep(Duration::from_secs(3));
        if answers(&lab) != before {
            moved = true;
            break;
        }
    }
    assert!(moved, "no client moved after its entry expired: {before:?}");
}

#[test]
fn a_full_affinity_set_still_lets_new_clients_reach_an_endpoint() {
    if !kernel_tests_enabled("a_full_affinity_set_still_lets_new_clients_reach_an_endpoint") {
        return;
    }
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("x", Node::One, 20)
        .pod("y", Node::One, 21)
        .build();
    let one_endpoint = r#"
apiVersion: v1
kind: Service
metadata: {name: full, namespace: default}
spec:
  clusterIP: 198.19.0.13
  sessionAffinity: ClientIP
  ports: [{protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: full-v4, namespace: default, labels: {kubernetes.io/service-name: full}}
addressType: IPv4
ports: [{protocol: TCP, port: 8080}]
endpoints:
- {addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}
"#;
    let compiled = lab::compile(one_endpoint, None, Format::Nft);
    // Room for one client only.
    let script = compiled
        .output
        .replace("\t\tflags timeout\n", "\t\tsize 1\n\t\tflags timeout\n");
    assert_ne!(script, compiled.output, "no affinity set to shrink");
    lab.load_ruleset(&script);
    let vip = at("198.19.0.13:80");
    assert_eq!(sticky_pod(&lab, Member::Pod("x"), Proto::Tcp, vip, 3), "a");
    assert_eq!(sticky_pod(&lab, Member::Pod("y"), Proto::Tcp, vip, 3), "a");
    assert_eq!(sets_holding(&lab, IpAddr::from(lab.pod_ipv4("x"))).len(), 1);
    let y = sets_holding(&lab, IpAddr::from(lab.pod_ipv4("y")));
    assert!(
        y.is_empty(),
        "y was recorded although the set was full: {y:?}"
    );
}
