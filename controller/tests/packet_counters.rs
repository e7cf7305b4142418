//! Packet-flow test of the per-service-port traffic counters: real datagrams to a
//! ClusterIP grow that port's counter object by exactly what was sent, read back with
//! a `CounterReader` (one netlink dump, as `/metrics` reads them), and no other service's counter moves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lab;

#[allow(dead_code)]
#[path = "../src/kernel/mod.rs"]
mod kernel;

#[allow(dead_code)]
#[path = "../src/netlink.rs"]
mod netlink;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::generated::nft_helper;
use common::netns::kernel_tests_enabled;
use kernel::Kernel;
use kernel::counters::CounterReader;
use lab::{Lab, Member, Node};
use nftproxy_rules::Family;

/// `web` (dual-stack, UDP 53 and TCP 80 -> 8080 on pod `a`), `idle` (UDP 53 -> 8080 on pod
/// `b`) and `edge` (UDP 53 -> 8080 on pod `a`, also NodePort 30053 and externalIP
/// 192.0.2.72).
const CLUSTER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 198.19.0.70
  clusterIPs: [198.19.0.70, "2001:db8:19::70"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  selector: {app: web}
  ports:
  - {name: dns, protocol: UDP, port: 53, targetPort: 8080}
  - {name: http, protocol: TCP, port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: idle, namespace: default}
spec:
  clusterIP: 198.19.0.71
  clusterIPs: [198.19.0.71]
  selector: {app: idle}
  ports: [{name: dns, protocol: UDP, port: 53, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: edge, namespace: default}
spec:
  type: NodePort
  clusterIP: 198.19.0.72
  clusterIPs: [198.19.0.72]
  externalIPs: [192.0.2.72]
  selector: {app: edge}
  ports: [{name: dns, protocol: UDP, port: 53, targetPort: 8080, nodePort: 30053}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: edge-1, namespace: default, labels: {kubernetes.io/service-name: edge}}
addressType: IPv4
ports: [{name: dns, protocol: UDP, port: 8080}]
endpoints: [{addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: dns, protocol: UDP, port: 8080}, {name: http, protocol: TCP, port: 8080}]
endpoints: [{addresses: [198.18.1.10], conditions: {ready: true}, nodeName: node-1}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: idle-1, namespace: default, labels: {kubernetes.io/service-name: idle}}
addressType: IPv4
ports: [{name: dns, protocol: UDP, port: 8080}]
endpoints: [{addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}]
"#;

/// Datagrams sent, and their UDP payload size.
const DATAGRAMS: u64 = 40;
const PAYLOAD: usize = 100;
/// What the counter adds per IPv4 datagram: the IP packet (20 + 8 + payload bytes).
const IPV4_PACKET: u64 = 20 + 8 + PAYLOAD as u64;

/// (family, namespace/service/protocol/port) -> (packets, bytes).
type Counts = BTreeMap<(Family, String), (u64, u64)>;

/// nftproxy's counters, by the labels their names stand for.
fn read(reader: &CounterReader) -> Counts {
    reader
        .read()
        .expect("the counters dump")
        .into_iter()
        .map(|c| {
            let l = c.labels().expect("every counter is named by nftproxy");
            let key = format!("{}/{}/{}/{}", l.namespace, l.service, l.protocol, l.port);
            assert_eq!(c.table, "nftproxy", "{c:?}");
            ((c.family, key), (c.packets, c.bytes))
        })
        .collect()
}

/// The lab (pods `a`, `b`, `x`, client `ext`) with `CLUSTER` loaded into node-1, and a
/// counter reader in node-1.
fn lab_and_reader() -> (Lab, CounterReader) {
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::Two, 10)
        .pod("x", Node::One, 20)
        .client("ext", 10)
        .build();
    lab.load_cluster(CLUSTER, None);
    let reader = lab
        .node1()
        .run_inside(|| CounterReader::open().expect("a netfilter socket"));
    (lab, reader)
}

/// Sends `DATAGRAMS` UDP datagrams of `PAYLOAD` bytes from `from` to each of `targets`.
fn send(lab: &Lab, from: Member<'static>, targets: &'static [&'static str]) {
    lab.ns(from).run_inside(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for to in targets {
            for _ in 0..DATAGRAMS {
                socket.send_to(&[7u8; PAYLOAD], to).unwrap();
            }
        }
    });
}

/// The counters once `key` has counted `packets` more than in `before` (the datagrams
/// cross veth pairs: the receiving side may count them a moment later), or after 2 s.
fn read_until(
    reader: &CounterReader,
    before: &Counts,
    key: &(Family, String),
    packets: u64,
) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut after = read(reader);
    while after[key].0 < before[key].0 + packets && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        after = read(reader);
    }
    after
}

/// Asserts that `key` grew by `packets` IPv4 datagrams and nothing else moved.
fn assert_only_grown(before: &Counts, after: &Counts, key: &(Family, String), packets: u64) {
    let ((p0, b0), (p1, b1)) = (before[key], after[key]);
    assert_eq!(p1 - p0, packets, "packets of {key:?}: {after:?}");
    assert_eq!(
        b1 - b0,
        packets * IPV4_PACKET,
        "bytes of {key:?}: {after:?}"
    );
    for (other, counts) in after {
        if other != key {
            assert_eq!(Some(counts), before.get(other), "{other:?} moved");
        }
    }
}

#[test]
fn datagrams_to_a_cluster_ip_grow_only_that_ports_counter() {
    if !kernel_tests_enabled("datagrams_to_a_cluster_ip_grow_only_that_ports_counter") {
        return;
    }
    let (lab, reader) = lab_and_reader();
    let before = read(&reader);
    let expected_keys = [
        (Family::Ip, "default/edge/udp/dns"),
        (Family::Ip, "default/idle/udp/dns"),
        (Family::Ip, "default/web/tcp/http"),
        (Family::Ip, "default/web/udp/dns"),
        (Family::Ip6, "default/web/tcp/http"),
        (Family::Ip6, "default/web/udp/dns"),
    ];
    let keys: Vec<(Family, &str)> = before.keys().map(|(f, k)| (*f, k.as_str())).collect();
    assert_eq!(keys, expected_keys);
    send(&lab, Member::Pod("x"), &["198.19.0.70:53"]);
    let web = (Family::Ip, "default/web/udp/dns".to_owned());
    let after = read_until(&reader, &before, &web, DATAGRAMS);
    assert_only_grown(&before, &after, &web, DATAGRAMS);
}

#[test]
fn node_port_and_external_ip_traffic_is_counted_for_its_port() {
    if !kernel_tests_enabled("node_port_and_external_ip_traffic_is_counted_for_its_port") {
        return;
    }
    let (lab, reader) = lab_and_reader();
    let before = read(&reader);
    send(
        &lab,
        Member::Client("ext"),
        &["198.51.100.1:30053", "192.0.2.72:53"],
    );
    let edge = (Family::Ip, "default/edge/udp/dns".to_owned());
    let after = read_until(&reader, &before, &edge, 2 * DATAGRAMS);
    assert_only_grown(&before, &after, &edge, 2 * DATAGRAMS);
}

/// Measurement, not a timed assertion: how long one counters dump takes with
/// 10,000 counter objects (and their `service-counters` elements) in the kernel.
/// `cargo test -p nftproxy --test packet_counters -- --ignored --nocapture` (root).
#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn reading_ten_thousand_counters_takes_one_dump() {
    if !kernel_tests_enabled("reading_ten_thousand_counters_takes_one_dump") {
        return;
    }
    use nftproxy_rules::{DataType, Element, L4Proto, Ruleset, Set, Table, Value, diff};
    let ns = common::netns::NetNs::new("counters-10k");
    let path = nft_helper();
    let (kernel, reader) = ns.run_inside(move || {
        let kernel = Kernel::start(Some(&path)).expect("the helper starts");
        (kernel, CounterReader::open().expect("a netfilter socket"))
    });
    let mut table = Table::new(Family::Ip, "nftproxy");
    let key = vec![
        DataType::Ipv4Addr,
        DataType::InetProto,
        DataType::InetService,
    ];
    let mut map = Set::map("service-counters", key, DataType::Counter);
    for i in 0..10_000u32 {
        let name = format!("counter-AAAAAAAA-bench/svc-{i}/tcp/http");
        let ip = std::net::Ipv4Addr::new(198, 19, (i / 250) as u8, (i % 250 + 1) as u8);
        map.insert(Element::mapping(
            [Value::Ipv4(ip), Value::Proto(L4Proto::Tcp), Value::Port(80)],
            Value::ObjRef(name.clone().into()),
        ));
        table.insert_counter(name);
    }
    table.insert_set(map);
    let mut ruleset = Ruleset::new();
    ruleset.insert_table(table);
    kernel
        .apply(&diff(&Ruleset::new(), &ruleset).unwrap())
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let counters = reader.read().unwrap();
        times.push(start.elapsed());
        assert_eq!(counters.len(), 10_000);
    }
    times.sort();
    println!(
        "one counters dump with 10k counter objects: median {:?}, min {:?}, max {:?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
