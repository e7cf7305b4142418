//! `IncrementalCompiler` gives exactly what `compile` gives, whatever it was given before:
//! on every fixture cluster, object by object, and on random histories of cluster events.
//!
//! Lab addresses only: pods 198.18.0.0/16 and 2001:db8:18::/64, ClusterIPs 198.19.0.0/16 and
//! 2001:db8:19::/64, nodes 198.51.100.0/24 and 2001:db8:51::/64, external 192.0.2.0/24,
//! 203.0.113.0/24 and 2001:db8:e::/64.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::sync::Arc;

use fixtures::{fixtures, load};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, EndpointAddress, EndpointPort as LegacyPort, EndpointSubset, Endpoints,
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeSpec, NodeStatus, Service,
    ServicePort, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use nftproxy_compiler::{
    ClusterSnapshot, CompactSlice, CompileConfig, DetectLocal, IncrementalCompiler, compile,
};
use proptest::prelude::*;

/// Compiles `snapshot` incrementally and from scratch and fails, naming `step`, on any
/// difference (the ruleset first, as a line diff of its nft rendering).
fn check(
    compiler: &mut IncrementalCompiler,
    snapshot: &ClusterSnapshot,
    config: &CompileConfig,
    step: &str,
) {
    let got = compiler.compile(snapshot, config);
    let want = compile(snapshot, config);
    counters_are_named_by_their_maps(&want.ruleset, step);
    if *got == want {
        return;
    }
    let (got_text, want_text) = (got.ruleset.to_string(), want.ruleset.to_string());
    if got_text != want_text {
        panic!(
            "{step}: rulesets differ\n{}",
            line_diff(&want_text, &got_text)
        );
    }
    assert_eq!(got.diagnostics, want.diagnostics, "{step}: diagnostics");
    assert_eq!(
        got.health_checks, want.health_checks,
        "{step}: health checks"
    );
    assert_eq!(got.udp_ports, want.udp_ports, "{step}: UDP ports");
    assert_eq!(
        got.ruleset, want.ruleset,
        "{step}: rulesets (equal renderings)"
    );
    assert_eq!(*got, want, "{step}");
}

/// Every counter object of a table is named by an element of its counter maps, and every
/// element names a declared counter: the counters follow the services exactly.
fn counters_are_named_by_their_maps(ruleset: &nftproxy_rules::Ruleset, step: &str) {
    use nftproxy_compiler::{NODEPORT_COUNTERS, SERVICE_COUNTERS};
    for table in ruleset.tables.values() {
        let named: std::collections::BTreeSet<&str> = [SERVICE_COUNTERS, NODEPORT_COUNTERS]
            .iter()
            .filter_map(|m| table.sets.get(*m))
            .flat_map(|m| m.elements.values())
            .filter_map(|e| match &e.value {
                Some(nftproxy_rules::Value::ObjRef(c)) => Some(&**c),
                _ => None,
            })
            .collect();
        let declared: std::collections::BTreeSet<&str> =
            table.counters.keys().map(String::as_str).collect();
        assert_eq!(named, declared, "{step}: counters of {}", table.id());
    }
}

/// Lines only `want` has (`-`) and lines only `got` has (`+`).
fn line_diff(want: &str, got: &str) -> String {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for line in want.lines() {
        *counts.entry(line).or_default() -= 1;
    }
    for line in got.lines() {
        *counts.entry(line).or_default() += 1;
    }
    let mut out = String::new();
    for (line, count) in counts {
        let sign = if count < 0 { '-' } else { '+' };
        for _ in 0..count.abs() {
            out.push(sign);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Fixtures

#[test]
fn fixtures_compile_incrementally_as_from_scratch() {
    for (name, path) in fixtures() {
        let (snapshot, config) = load(&name, &path);
        let mut compiler = IncrementalCompiler::new();
        check(&mut compiler, &snapshot, &config, &name);
        // Again: nothing changed.
        check(
            &mut compiler,
            &snapshot,
            &config,
            &format!("{name} (again)"),
        );
    }
}

/// Each object of a list removed, one at a time, each time followed by the full list.
fn without_each<T>(list: &[Arc<T>], mut step: impl FnMut(Vec<Arc<T>>, String), kind: &str) {
    for i in 0..list.len() {
        let mut fewer = list.to_vec();
        fewer.remove(i);
        step(fewer, format!("without {kind} #{i}"));
        step(list.to_vec(), format!("{kind} #{i} back"));
    }
}

#[test]
fn fixtures_compile_incrementally_object_by_object() {
    for (name, path) in fixtures() {
        let (full, config) = load(&name, &path);
        let mut compiler = IncrementalCompiler::new();
        check(
            &mut compiler,
            &ClusterSnapshot::default(),
            &config,
            &format!("{name}: empty"),
        );
        check(&mut compiler, &full, &config, &format!("{name}: full"));
        let mut run = |snapshot: ClusterSnapshot, what: String| {
            check(
                &mut compiler,
                &snapshot,
                &config,
                &format!("{name}: {what}"),
            );
        };
        without_each(
            &full.services,
            |services, what| {
                run(
                    ClusterSnapshot {
                        services,
                        ..full.clone()
                    },
                    what,
                )
            },
            "Service",
        );
        without_each(
            &full.endpoint_slices,
            |endpoint_slices, what| {
                run(
                    ClusterSnapshot {
                        endpoint_slices,
                        ..full.clone()
                    },
                    what,
                )
            },
            "EndpointSlice",
        );
        without_each(
            &full.endpoints,
            |endpoints, what| {
                run(
                    ClusterSnapshot {
                        endpoints,
                        ..full.clone()
                    },
                    what,
                )
            },
            "Endpoints",
        );
        without_each(
            &full.nodes,
            |nodes, what| {
                run(
                    ClusterSnapshot {
                        nodes,
                        ..full.clone()
                    },
                    what,
                )
            },
            "Node",
        );
        without_each(
            &full.service_cidrs,
            |service_cidrs, what| {
                run(
                    ClusterSnapshot {
                        service_cidrs,
                        ..full.clone()
                    },
                    what,
                )
            },
            "ServiceCIDR",
        );
        // The same objects in new `Arc`s and in reverse order: nothing changed.
        let mut copied = deep_copy(&full);
        copied.services.reverse();
        copied.endpoint_slices.reverse();
        run(copied, "copied, reversed".to_owned());
        run(ClusterSnapshot::default(), "empty again".to_owned());
    }
}

fn deep_copy(snapshot: &ClusterSnapshot) -> ClusterSnapshot {
    fn copy<T: Clone>(list: &[Arc<T>]) -> Vec<Arc<T>> {
        list.iter().map(|o| Arc::new((**o).clone())).collect()
    }
    ClusterSnapshot {
        services: copy(&snapshot.services),
        endpoint_slices: copy(&snapshot.endpoint_slices),
        endpoints: copy(&snapshot.endpoints),
        nodes: copy(&snapshot.nodes),
        service_cidrs: copy(&snapshot.service_cidrs),
    }
}

// ---------------------------------------------------------------------------------------
// Random histories
//
// A cluster is a few slots per kind of object, each empty or holding an object generated
// from a small model. Pools are small on purpose: Services share ClusterIPs, externalIPs
// and NodePorts (conflicts), endpoints share addresses (shared hairpin elements), slices
// and Services share names (ambiguity, slices changing owner).

const SERVICE_SLOTS: usize = 6;
const SLICE_SLOTS: usize = 8;
const ENDPOINTS_SLOTS: usize = 2;
const NODE_SLOTS: usize = 2;

const PORT_NAMES: [&str; 3] = ["http", "dns", ""];
const PORTS: [i32; 3] = [80, 53, 8080];

#[derive(Debug, Clone)]
struct SvcModel {
    /// `svc-N`: the slot's number, or (rarely, for ambiguous Services) this one.
    name: Option<u8>,
    /// 0 ClusterIP, 1 NodePort, 2 LoadBalancer, 3 headless, 4 ExternalName.
    kind: u8,
    v4: Option<u8>,
    v6: Option<u8>,
    /// (UDP, nodePort) per port; port `i` is named `PORT_NAMES[i]` and numbered
    /// `PORTS[(i + port_shift) % 3]`.
    ports: Vec<(bool, Option<u8>)>,
    port_shift: u8,
    /// A single port is unnamed (several unnamed ports make the Service invalid).
    unnamed: bool,
    external_ips: Vec<u8>,
    /// (address, ipMode Proxy)
    ingress: Vec<(u8, bool)>,
    source_ranges: Vec<u8>,
    external_local: bool,
    internal_local: bool,
    health_check_node_port: bool,
    /// `ClientIP`, with an optional timeout (some out of range).
    affinity: Option<Option<u8>>,
    created: Option<u8>,
    /// Labelled for another proxy.
    foreign: bool,
}

#[derive(Debug, Clone)]
struct EpModel {
    addr: u8,
    /// 0 no conditions, 1 ready, 2 serving+terminating, 3 not serving, 4 not ready.
    conditions: u8,
    /// 0 none, 1 node-1, 2 node-2.
    node: u8,
    /// 0 none, 1 zone-a, 2 zone-b.
    zone_hint: u8,
    /// 0 none, 1 node-1, 2 node-2.
    node_hint: u8,
}

#[derive(Debug, Clone)]
struct SliceModel {
    name: u8,
    /// The Service it belongs to; `None`: unlabelled.
    service: Option<u8>,
    v6: bool,
    /// (name, target port, UDP)
    ports: Vec<(u8, u8, bool)>,
    endpoints: Vec<EpModel>,
}

#[derive(Debug, Clone)]
struct EndpointsModel {
    service: u8,
    ports: Vec<(u8, u8)>,
    ready: Vec<u8>,
    not_ready: Vec<u8>,
}

#[derive(Debug, Clone)]
struct NodeModel {
    /// 0 node-1, 1 node-2.
    name: u8,
    /// 0 none, 1 zone-a, 2 zone-b.
    zone: u8,
    addresses: Vec<u8>,
    v6: bool,
    pod_cidr: bool,
}

#[derive(Debug, Clone)]
struct ConfigModel {
    /// 0 node-1, 1 node-2.
    hostname: u8,
    /// 0 none, 1 ClusterCIDR, 2 NodeCIDR, 3 bridge, 4 interface prefix.
    detect_local: u8,
    masquerade_all: bool,
    bad_bit: bool,
    /// 0 unset, 1 primary, 2 node CIDR, 3 everything, 4 IPv6 only.
    node_port_addresses: u8,
    extra_node_ip: bool,
}

#[derive(Debug, Clone)]
enum Event {
    Service(usize, Option<SvcModel>),
    Slice(usize, Option<SliceModel>),
    Endpoints(usize, Option<EndpointsModel>),
    Node(usize, Option<NodeModel>),
    Config(ConfigModel),
    ServiceCidr(bool),
    /// Replace an object by an equal one in a new `Arc`.
    Copy(usize),
    /// Rotate the snapshot's lists (a store's order is arbitrary).
    Rotate(usize),
    /// Change a Node in a way the compiler does not read (an annotation).
    Heartbeat(usize),
}

fn svc_model() -> impl Strategy<Value = SvcModel> {
    let port = (
        prop::bool::weighted(0.2),
        prop::option::weighted(0.5, 0..3u8),
    );
    (
        (
            prop::option::weighted(0.1, 0..SERVICE_SLOTS as u8),
            prop_oneof![6 => 0..3u8, 1 => 3..5u8],
            prop::option::weighted(0.9, 0..3u8),
            prop::option::weighted(0.3, 0..2u8),
        ),
        (
            prop::collection::vec(port, 1..3),
            0..3u8,
            prop::bool::weighted(0.2),
        ),
        (
            prop::collection::vec(0..3u8, 0..2),
            prop::collection::vec((0..3u8, prop::bool::weighted(0.2)), 0..2),
            prop::collection::vec(0..4u8, 0..2),
        ),
        (any::<bool>(), prop::bool::weighted(0.3), any::<bool>()),
        (
            prop::option::weighted(0.3, prop::option::of(0..3u8)),
            prop::option::weighted(0.7, 0..3u8),
            prop::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (name, kind, v4, v6),
                (ports, port_shift, unnamed),
                (external_ips, ingress, source_ranges),
                (external_local, internal_local, health_check_node_port),
                (affinity, created, foreign),
            )| SvcModel {
                name,
                kind,
                v4,
                v6,
                ports,
                port_shift,
                unnamed,
                external_ips,
                ingress,
                source_ranges,
                external_local,
                internal_local,
                health_check_node_port,
                affinity,
                created,
                foreign,
            },
        )
}

fn ep_model() -> impl Strategy<Value = EpModel> {
    (
        0..7u8,
        0..5u8,
        0..3u8,
        prop_oneof![3 => Just(0u8), 1 => 1..3u8],
        prop_oneof![3 => Just(0u8), 1 => 1..3u8],
    )
        .prop_map(|(addr, conditions, node, zone_hint, node_hint)| EpModel {
            addr,
            conditions,
            node,
            zone_hint,
            node_hint,
        })
}

fn slice_model() -> impl Strategy<Value = SliceModel> {
    // Mostly the name of a Service's first port, so that most slices serve a port.
    let slice_port_name = prop_oneof![6 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8)];
    (
        0..4u8,
        prop::option::weighted(0.9, 0..SERVICE_SLOTS as u8),
        prop::bool::weighted(0.25),
        prop::collection::vec((slice_port_name, 0..3u8, prop::bool::weighted(0.2)), 1..3),
        prop::collection::vec(ep_model(), 0..5),
    )
        .prop_map(|(name, service, v6, ports, endpoints)| SliceModel {
            name,
            service,
            v6,
            ports,
            endpoints,
        })
}

fn endpoints_model() -> impl Strategy<Value = EndpointsModel> {
    (
        0..SERVICE_SLOTS as u8,
        prop::collection::vec((0..3u8, 0..3u8), 0..3),
        prop::collection::vec(0..7u8, 0..3),
        prop::collection::vec(0..7u8, 0..2),
    )
        .prop_map(|(service, ports, ready, not_ready)| EndpointsModel {
            service,
            ports,
            ready,
            not_ready,
        })
}

fn node_model() -> impl Strategy<Value = NodeModel> {
    (
        prop::bool::weighted(0.8),
        0..3u8,
        prop::collection::vec(0..3u8, 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(first, zone, addresses, v6, pod_cidr)| NodeModel {
            name: u8::from(!first),
            zone,
            addresses,
            v6,
            pod_cidr,
        })
}

fn config_model() -> impl Strategy<Value = ConfigModel> {
    (
        prop::bool::weighted(0.85),
        0..5u8,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
        0..5u8,
        any::<bool>(),
    )
        .prop_map(
            |(first, detect_local, masquerade_all, bad_bit, node_port_addresses, extra_node_ip)| {
                ConfigModel {
                    hostname: u8::from(!first),
                    detect_local,
                    masquerade_all,
                    bad_bit,
                    node_port_addresses,
                    extra_node_ip,
                }
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        5 => (0..SERVICE_SLOTS, prop::option::weighted(0.8, svc_model())).prop_map(|(i, s)| Event::Service(i, s)),
        6 => (0..SLICE_SLOTS, prop::option::weighted(0.8, slice_model())).prop_map(|(i, s)| Event::Slice(i, s)),
        1 => (0..ENDPOINTS_SLOTS, prop::option::weighted(0.7, endpoints_model())).prop_map(|(i, e)| Event::Endpoints(i, e)),
        1 => (0..NODE_SLOTS, prop::option::weighted(0.9, node_model())).prop_map(|(i, n)| Event::Node(i, n)),
        1 => config_model().prop_map(Event::Config),
        1 => any::<bool>().prop_map(Event::ServiceCidr),
        1 => (0..SERVICE_SLOTS + SLICE_SLOTS).prop_map(Event::Copy),
        1 => (1..5usize).prop_map(Event::Rotate),
        1 => (0..NODE_SLOTS).prop_map(Event::Heartbeat),
    ]
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("ns".to_owned()),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

fn pod_ip(k: u8, v6: bool) -> String {
    match (k, v6) {
        (6, false) => "127.0.0.1".to_owned(),
        (6, true) => "fe80::1".to_owned(),
        (k, false) => format!("198.18.0.{}", k + 1),
        (k, true) => format!("2001:db8:18::{}", k + 1),
    }
}

fn node_name(k: u8) -> Option<String> {
    (k > 0).then(|| format!("node-{k}"))
}

fn zone_name(k: u8) -> Option<String> {
    match k {
        1 => Some("zone-a".to_owned()),
        2 => Some("zone-b".to_owned()),
        _ => None,
    }
}

fn build_service(slot: usize, m: &SvcModel) -> Service {
    let name = m.name.map_or(slot, usize::from);
    let mut metadata = meta(&format!("svc-{name}"));
    if m.foreign {
        metadata.labels = Some(BTreeMap::from([(
            "service.kubernetes.io/service-proxy-name".to_owned(),
            "other".to_owned(),
        )]));
    }
    metadata.creation_timestamp = m
        .created
        .map(|c| Time(Timestamp::from_second(1_700_000_000 + i64::from(c)).unwrap()));
    let mut ips: Vec<String> = Vec::new();
    ips.extend(m.v4.map(|k| format!("198.19.0.{}", k + 1)));
    ips.extend(m.v6.map(|k| format!("2001:db8:19::{}", k + 1)));
    let type_ = [
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
        "ClusterIP",
        "ExternalName",
    ][usize::from(m.kind)];
    if m.kind == 3 {
        ips = vec!["None".to_owned()];
    }
    let external = ["192.0.2.1", "192.0.2.2", "2001:db8:e::1"];
    let ingress = ["203.0.113.1", "203.0.113.2", "2001:db8:e::2"];
    let ranges = [
        "203.0.113.0/24",
        "198.51.100.0/24",
        "2001:db8::/32",
        "not-a-cidr",
    ];
    let node_port_kind = matches!(m.kind, 1 | 2);
    let spec = ServiceSpec {
        type_: Some(type_.to_owned()),
        cluster_ip: ips.first().cloned(),
        cluster_ips: (!ips.is_empty()).then_some(ips),
        ports: Some(
            m.ports
                .iter()
                .enumerate()
                .map(|(i, &(udp, node_port))| ServicePort {
                    name: Some(PORT_NAMES[i].to_owned())
                        .filter(|_| !(m.unnamed && m.ports.len() == 1)),
                    port: PORTS[(i + usize::from(m.port_shift)) % PORTS.len()],
                    protocol: Some(if udp { "UDP" } else { "TCP" }.to_owned()),
                    node_port: node_port
                        .filter(|_| node_port_kind)
                        .map(|n| 30000 + i32::from(n)),
                    ..ServicePort::default()
                })
                .collect(),
        ),
        external_ips: (!m.external_ips.is_empty()).then(|| {
            m.external_ips
                .iter()
                .map(|&k| external[usize::from(k)].to_owned())
                .collect()
        }),
        load_balancer_source_ranges: (!m.source_ranges.is_empty()).then(|| {
            m.source_ranges
                .iter()
                .map(|&k| ranges[usize::from(k)].to_owned())
                .collect()
        }),
        external_traffic_policy: m.external_local.then(|| "Local".to_owned()),
        internal_traffic_policy: m.internal_local.then(|| "Local".to_owned()),
        health_check_node_port: (m.health_check_node_port && m.kind == 2 && m.external_local)
            .then_some(32000 + i32::try_from(name).unwrap()),
        session_affinity: m.affinity.map(|_| "ClientIP".to_owned()),
        session_affinity_config: m.affinity.flatten().map(|t| SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some([60, 0, 100_000][usize::from(t)]),
            }),
        }),
        ..ServiceSpec::default()
    };
    let status = (!m.ingress.is_empty()).then(|| ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(
                m.ingress
                    .iter()
                    .map(|&(k, proxy)| LoadBalancerIngress {
                        ip: Some(ingress[usize::from(k)].to_owned()),
                        ip_mode: proxy.then(|| "Proxy".to_owned()),
                        ..LoadBalancerIngress::default()
                    })
                    .collect(),
            ),
        }),
        ..ServiceStatus::default()
    });
    Service {
        metadata,
        spec: Some(spec),
        status,
    }
}

fn build_slice(m: &SliceModel) -> CompactSlice {
    let mut metadata = meta(&format!("slice-{}", m.name));
    metadata.labels = m
        .service
        .map(|s| BTreeMap::from([("kubernetes.io/service-name".to_owned(), format!("svc-{s}"))]));
    let condition = |k: u8| {
        let (ready, serving, terminating) = match k {
            1 => (Some(true), Some(true), Some(false)),
            2 => (Some(false), Some(true), Some(true)),
            3 => (Some(false), Some(false), Some(true)),
            4 => (Some(false), Some(false), Some(false)),
            _ => return None,
        };
        Some(EndpointConditions {
            ready,
            serving,
            terminating,
        })
    };
    EndpointSlice {
        metadata,
        address_type: if m.v6 { "IPv6" } else { "IPv4" }.to_owned(),
        ports: Some(
            m.ports
                .iter()
                .map(|&(name, port, udp)| EndpointPort {
                    name: Some(PORT_NAMES[usize::from(name)].to_owned()),
                    port: Some(9000 + i32::from(port)),
                    protocol: Some(if udp { "UDP" } else { "TCP" }.to_owned()),
                    app_protocol: None,
                })
                .collect(),
        ),
        endpoints: m
            .endpoints
            .iter()
            .map(|e| Endpoint {
                addresses: vec![pod_ip(e.addr, m.v6)],
                conditions: condition(e.conditions),
                node_name: node_name(e.node),
                hints: (e.zone_hint > 0 || e.node_hint > 0).then(|| EndpointHints {
                    for_zones: zone_name(e.zone_hint).map(|name| vec![ForZone { name }]),
                    for_nodes: node_name(e.node_hint).map(|name| vec![ForNode { name }]),
                }),
                ..Endpoint::default()
            })
            .collect(),
    }
    .into()
}

fn build_endpoints(m: &EndpointsModel) -> Endpoints {
    let address = |k: &u8| EndpointAddress {
        ip: pod_ip(*k, false),
        node_name: Some("node-1".to_owned()),
        ..EndpointAddress::default()
    };
    Endpoints {
        metadata: meta(&format!("svc-{}", m.service)),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(m.ready.iter().map(address).collect()),
            not_ready_addresses: Some(m.not_ready.iter().map(address).collect()),
            ports: Some(
                m.ports
                    .iter()
                    .map(|&(name, port)| LegacyPort {
                        name: Some(PORT_NAMES[usize::from(name)].to_owned())
                            .filter(|n| !n.is_empty()),
                        port: 9000 + i32::from(port),
                        ..LegacyPort::default()
                    })
                    .collect(),
            ),
        }]),
    }
}

fn build_node(m: &NodeModel) -> Node {
    let mut addresses: Vec<NodeAddress> = m
        .addresses
        .iter()
        .map(|&k| NodeAddress {
            type_: if k == 2 { "ExternalIP" } else { "InternalIP" }.to_owned(),
            address: format!("198.51.100.{}", k + 1),
        })
        .collect();
    if m.v6 {
        addresses.push(NodeAddress {
            type_: "InternalIP".to_owned(),
            address: "2001:db8:51::1".to_owned(),
        });
    }
    Node {
        metadata: ObjectMeta {
            name: node_name(m.name + 1),
            labels: zone_name(m.zone)
                .map(|z| BTreeMap::from([("topology.kubernetes.io/zone".to_owned(), z)])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidrs: m
                .pod_cidr
                .then(|| vec!["198.18.0.0/24".to_owned(), "2001:db8:18::/64".to_owned()]),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(addresses),
            ..NodeStatus::default()
        }),
    }
}

fn build_config(m: &ConfigModel) -> CompileConfig {
    let detect_local = match m.detect_local {
        1 => DetectLocal::ClusterCidr(vec![
            "198.18.0.0/16".parse().unwrap(),
            "2001:db8:18::/48".parse().unwrap(),
        ]),
        2 => DetectLocal::NodeCidr,
        3 => DetectLocal::BridgeInterface("cbr0".to_owned()),
        4 => DetectLocal::InterfaceNamePrefix("veth".to_owned()),
        _ => DetectLocal::None,
    };
    let node_port_addresses = match m.node_port_addresses {
        1 => vec!["primary".to_owned()],
        2 => vec!["198.51.100.0/24".to_owned()],
        3 => vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()],
        4 => vec!["2001:db8:51::/64".to_owned()],
        _ => Vec::new(),
    };
    CompileConfig {
        hostname: node_name(m.hostname + 1).unwrap(),
        extra_node_ips: if m.extra_node_ip {
            vec!["198.51.100.9".parse().unwrap()]
        } else {
            Vec::new()
        },
        detect_local,
        masquerade_all: m.masquerade_all,
        masquerade_bit: if m.bad_bit { 40 } else { 14 },
        node_port_addresses,
    }
}

fn service_cidr() -> ServiceCIDR {
    ServiceCIDR {
        metadata: ObjectMeta {
            name: Some("kubernetes".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceCIDRSpec {
            cidrs: Some(vec![
                "198.19.0.0/16".to_owned(),
                "2001:db8:19::/64".to_owned(),
            ]),
        }),
        status: None,
    }
}

/// The cluster: slots of objects (kept as the same `Arc`s while unchanged).
#[derive(Debug, Default)]
struct Cluster {
    services: Vec<Option<Arc<Service>>>,
    slices: Vec<Option<Arc<CompactSlice>>>,
    endpoints: Vec<Option<Arc<Endpoints>>>,
    nodes: Vec<Option<Arc<Node>>>,
    service_cidr: Option<Arc<ServiceCIDR>>,
    rotation: usize,
}

impl Cluster {
    fn apply(&mut self, event: &Event, config: &mut CompileConfig) {
        fn set<T>(slots: &mut [Option<Arc<T>>], i: usize, object: Option<T>) {
            slots[i] = object.map(Arc::new);
        }
        match event {
            Event::Service(i, m) => set(
                &mut self.services,
                *i,
                m.as_ref().map(|m| build_service(*i, m)),
            ),
            Event::Slice(i, m) => set(&mut self.slices, *i, m.as_ref().map(build_slice)),
            Event::Endpoints(i, m) => set(&mut self.endpoints, *i, m.as_ref().map(build_endpoints)),
            Event::Node(i, m) => set(&mut self.nodes, *i, m.as_ref().map(build_node)),
            Event::Config(m) => *config = build_config(m),
            Event::ServiceCidr(on) => self.service_cidr = on.then(|| Arc::new(service_cidr())),
            Event::Copy(i) => {
                if let Some(slot) = self.services.get_mut(*i) {
                    *slot = slot.as_deref().cloned().map(Arc::new);
                } else if let Some(slot) = self.slices.get_mut(*i - SERVICE_SLOTS) {
                    *slot = slot.as_deref().cloned().map(Arc::new);
                }
            }
            Event::Rotate(by) => self.rotation += by,
            Event::Heartbeat(i) => {
                if let Some(node) = &mut self.nodes[*i] {
                    let node = Arc::make_mut(node);
                    let annotations = node.metadata.annotations.get_or_insert_default();
                    let beats = annotations.entry("beats".to_owned()).or_default();
                    beats.push('.');
                }
            }
        }
    }

    fn snapshot(&self) -> ClusterSnapshot {
        fn list<T>(slots: &[Option<Arc<T>>], rotation: usize) -> Vec<Arc<T>> {
            let mut out: Vec<Arc<T>> = slots.iter().flatten().cloned().collect();
            if !out.is_empty() {
                let by = rotation % out.len();
                out.rotate_left(by);
            }
            out
        }
        ClusterSnapshot {
            services: list(&self.services, self.rotation),
            endpoint_slices: list(&self.slices, self.rotation),
            endpoints: list(&self.endpoints, self.rotation),
            nodes: list(&self.nodes, self.rotation),
            service_cidrs: self.service_cidr.iter().cloned().collect(),
        }
    }
}

/// The cluster a history starts from: Services, slices, this node and the configuration.
type Initial = (
    Vec<Option<SvcModel>>,
    Vec<Option<SliceModel>>,
    Option<NodeModel>,
    ConfigModel,
);

fn initial() -> impl Strategy<Value = Initial> {
    (
        prop::collection::vec(prop::option::weighted(0.8, svc_model()), SERVICE_SLOTS),
        prop::collection::vec(prop::option::weighted(0.7, slice_model()), SLICE_SLOTS),
        prop::option::weighted(0.9, node_model()),
        config_model(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// After every event of a random history, the incremental result equals `compile`'s.
    #[test]
    fn random_histories_compile_incrementally_as_from_scratch(
        (services, slices, node, config) in initial(),
        events in prop::collection::vec(event(), 1..40),
    ) {
        let mut cluster = Cluster {
            services: services.iter().enumerate().map(|(i, m)| m.as_ref().map(|m| Arc::new(build_service(i, m)))).collect(),
            slices: slices.iter().map(|m| m.as_ref().map(|m| Arc::new(build_slice(m)))).collect(),
            endpoints: vec![None; ENDPOINTS_SLOTS],
            nodes: vec![node.as_ref().map(|m| Arc::new(build_node(m))), None],
            ..Cluster::default()
        };
        let mut config = build_config(&config);
        let mut compiler = IncrementalCompiler::new();
        check(&mut compiler, &cluster.snapshot(), &config, "initial");
        for (i, event) in events.iter().enumerate() {
            cluster.apply(event, &mut config);
            check(&mut compiler, &cluster.snapshot(), &config, &format!("event {i}: {event:?}"));
        }
    }
}
