//! Fluent builders for test fixtures (Services, EndpointSlices, Endpoints, Nodes) and
//! queries over a compiled ruleset, so that tests read as the behaviour they check.
//!
//! `service("ns/web").cluster_ip("198.19.0.10").port("http", 80)` and
//! `slice("ns/web-1", "web").port("http", 8080).endpoint(ep("198.18.1.5").node("node-1"))`.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, EndpointAddress, EndpointPort as LegacyPort, EndpointSubset, Endpoints,
    LoadBalancerIngress, Node, NodeSpec, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use nftproxy_rules::{Family, L4Proto, Stmt, Table, TableId, Value, Verdict};

use crate::{ClusterSnapshot, CompileConfig, Compiled};

/// `"ns/name"` into metadata.
fn meta(ns_name: &str) -> ObjectMeta {
    let (namespace, name) = ns_name.split_once('/').expect("ns/name");
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// A ClusterIP Service; add IPs and ports.
pub fn service(ns_name: &str) -> ServiceBuilder {
    ServiceBuilder(Service {
        metadata: meta(ns_name),
        spec: Some(ServiceSpec::default()),
        status: None,
    })
}

#[derive(Debug, Clone)]
pub struct ServiceBuilder(pub Service);

impl ServiceBuilder {
    fn spec(&mut self) -> &mut ServiceSpec {
        self.0.spec.get_or_insert_with(ServiceSpec::default)
    }

    pub fn cluster_ip(mut self, ip: &str) -> Self {
        self.spec().cluster_ip = Some(ip.to_owned());
        self
    }

    pub fn cluster_ips(mut self, ips: &[&str]) -> Self {
        self.spec().cluster_ips = Some(ips.iter().map(|s| (*s).to_owned()).collect());
        self.spec().cluster_ip = ips.first().map(|s| (*s).to_owned());
        self
    }

    /// A TCP port.
    pub fn port(self, name: &str, port: i32) -> Self {
        self.port_proto(name, port, "TCP")
    }

    pub fn port_proto(mut self, name: &str, port: i32, protocol: &str) -> Self {
        let ports = self.spec().ports.get_or_insert_with(Vec::new);
        ports.push(ServicePort {
            name: (!name.is_empty()).then(|| name.to_owned()),
            port,
            protocol: Some(protocol.to_owned()),
            ..ServicePort::default()
        });
        self
    }

    pub fn internal_local(mut self) -> Self {
        self.spec().internal_traffic_policy = Some("Local".to_owned());
        self
    }

    /// Sets `nodePort` on the last port added.
    pub fn node_port(mut self, node_port: i32) -> Self {
        let ports = self.spec().ports.get_or_insert_with(Vec::new);
        ports.last_mut().expect("a port first").node_port = Some(node_port);
        self
    }

    pub fn external_ips(mut self, ips: &[&str]) -> Self {
        self.spec().external_ips = Some(ips.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    pub fn external_local(mut self) -> Self {
        self.spec().external_traffic_policy = Some("Local".to_owned());
        self
    }

    /// Adds a `status.loadBalancer.ingress` entry.
    pub fn ingress(mut self, ip: &str, ip_mode: Option<&str>) -> Self {
        let status = self.0.status.get_or_insert_with(Default::default);
        let lb = status.load_balancer.get_or_insert_with(Default::default);
        lb.ingress
            .get_or_insert_with(Vec::new)
            .push(LoadBalancerIngress {
                ip: Some(ip.to_owned()),
                ip_mode: ip_mode.map(str::to_owned),
                ..LoadBalancerIngress::default()
            });
        self
    }

    pub fn health_check_node_port(mut self, port: i32) -> Self {
        self.spec().health_check_node_port = Some(port);
        self
    }

    pub fn source_ranges(mut self, ranges: &[&str]) -> Self {
        let ranges = ranges.iter().map(|s| (*s).to_owned()).collect();
        self.spec().load_balancer_source_ranges = Some(ranges);
        self
    }

    /// `spec.sessionAffinity`.
    pub fn session_affinity(mut self, affinity: &str) -> Self {
        self.spec().session_affinity = Some(affinity.to_owned());
        self
    }

    /// `spec.sessionAffinityConfig.clientIP.timeoutSeconds`.
    pub fn affinity_timeout(mut self, seconds: i32) -> Self {
        self.spec().session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(seconds),
            }),
        });
        self
    }

    pub fn type_(mut self, type_: &str) -> Self {
        self.spec().type_ = Some(type_.to_owned());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        let labels = self.0.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// `creationTimestamp` at `seconds` after the epoch.
    pub fn created(mut self, seconds: i64) -> Self {
        let ts = Timestamp::from_second(seconds).expect("timestamp");
        self.0.metadata.creation_timestamp = Some(Time(ts));
        self
    }

    pub fn build(self) -> Service {
        self.0
    }
}

/// An IPv4 EndpointSlice of `service`; add ports and endpoints.
pub fn slice(ns_name: &str, service: &str) -> SliceBuilder {
    let mut metadata = meta(ns_name);
    metadata.labels = Some(BTreeMap::from([(
        crate::index::SERVICE_NAME_LABEL.to_owned(),
        service.to_owned(),
    )]));
    SliceBuilder(EndpointSlice {
        address_type: "IPv4".to_owned(),
        endpoints: Vec::new(),
        metadata,
        ports: None,
    })
}

#[derive(Debug, Clone)]
pub struct SliceBuilder(pub EndpointSlice);

impl SliceBuilder {
    pub fn address_type(mut self, address_type: &str) -> Self {
        self.0.address_type = address_type.to_owned();
        self
    }

    pub fn ipv6(self) -> Self {
        self.address_type("IPv6")
    }

    /// A TCP port.
    pub fn port(self, name: &str, port: i32) -> Self {
        self.port_proto(name, port, "TCP")
    }

    pub fn port_proto(mut self, name: &str, port: i32, protocol: &str) -> Self {
        self.0
            .ports
            .get_or_insert_with(Vec::new)
            .push(EndpointPort {
                name: Some(name.to_owned()),
                port: Some(port),
                protocol: Some(protocol.to_owned()),
                app_protocol: None,
            });
        self
    }

    pub fn endpoint(mut self, endpoint: EndpointBuilder) -> Self {
        self.0.endpoints.push(endpoint.0);
        self
    }

    /// Ready endpoints with these addresses, on no node.
    pub fn ready(self, addresses: &[&str]) -> Self {
        addresses.iter().fold(self, |s, a| s.endpoint(ep(a)))
    }

    pub fn build(self) -> EndpointSlice {
        self.0
    }
}

/// An endpoint with no conditions (that is: ready).
pub fn ep(address: &str) -> EndpointBuilder {
    EndpointBuilder(Endpoint {
        addresses: vec![address.to_owned()],
        ..Endpoint::default()
    })
}

#[derive(Debug, Clone)]
pub struct EndpointBuilder(pub Endpoint);

impl EndpointBuilder {
    pub fn node(mut self, node: &str) -> Self {
        self.0.node_name = Some(node.to_owned());
        self
    }

    pub fn conditions(
        mut self,
        ready: Option<bool>,
        serving: Option<bool>,
        terminating: Option<bool>,
    ) -> Self {
        self.0.conditions = Some(EndpointConditions {
            ready,
            serving,
            terminating,
        });
        self
    }

    /// Terminating but still serving (the fallback kind).
    pub fn terminating(self) -> Self {
        self.conditions(Some(false), Some(true), Some(true))
    }

    /// Terminating and no longer serving (never used).
    pub fn not_serving(self) -> Self {
        self.conditions(Some(false), Some(false), Some(true))
    }

    pub fn not_ready(self) -> Self {
        self.conditions(Some(false), Some(false), Some(false))
    }

    /// `hints.forZones` with these zone names.
    pub fn for_zones(mut self, zones: &[&str]) -> Self {
        let hints = self.0.hints.get_or_insert_with(EndpointHints::default);
        let zones = zones.iter().map(|z| ForZone {
            name: (*z).to_owned(),
        });
        hints.for_zones = Some(zones.collect());
        self
    }

    /// `hints.forNodes` with these node names.
    pub fn for_nodes(mut self, nodes: &[&str]) -> Self {
        let hints = self.0.hints.get_or_insert_with(EndpointHints::default);
        let nodes = nodes.iter().map(|n| ForNode {
            name: (*n).to_owned(),
        });
        hints.for_nodes = Some(nodes.collect());
        self
    }
}

/// A legacy Endpoints object with one subset.
pub fn legacy(
    ns_name: &str,
    ports: &[(&str, i32)],
    ready: &[&str],
    not_ready: &[&str],
) -> Endpoints {
    let address = |ip: &&str| EndpointAddress {
        ip: (*ip).to_owned(),
        ..EndpointAddress::default()
    };
    Endpoints {
        metadata: meta(ns_name),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(ready.iter().map(address).collect()),
            not_ready_addresses: Some(not_ready.iter().map(address).collect()),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| LegacyPort {
                        name: (!name.is_empty()).then(|| (*name).to_owned()),
                        port: *port,
                        ..LegacyPort::default()
                    })
                    .collect(),
            ),
        }]),
    }
}

/// A Node with pod CIDRs.
pub fn node(name: &str, pod_cidrs: &[&str]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidrs: Some(pod_cidrs.iter().map(|s| (*s).to_owned()).collect()),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

/// A Node without pod CIDRs, labelled `topology.kubernetes.io/zone: zone`.
pub fn zoned_node(name: &str, zone: &str) -> Node {
    let mut node = node(name, &[]);
    node.metadata.labels = Some(BTreeMap::from([(
        crate::cidrs::ZONE_LABEL.to_owned(),
        zone.to_owned(),
    )]));
    node
}

pub fn service_cidr(name: &str, cidrs: &[&str]) -> ServiceCIDR {
    ServiceCIDR {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceCIDRSpec {
            cidrs: Some(cidrs.iter().map(|s| (*s).to_owned()).collect()),
        }),
        status: None,
    }
}

/// A snapshot under construction.
#[derive(Debug, Clone, Default)]
pub struct Cluster(pub ClusterSnapshot);

pub fn cluster() -> Cluster {
    Cluster::default()
}

impl Cluster {
    pub fn service(mut self, service: ServiceBuilder) -> Self {
        self.0.services.push(Arc::new(service.build()));
        self
    }

    pub fn slice(mut self, slice: SliceBuilder) -> Self {
        self.0.endpoint_slices.push(Arc::new(slice.build().into()));
        self
    }

    pub fn endpoints(mut self, endpoints: Endpoints) -> Self {
        self.0.endpoints.push(Arc::new(endpoints));
        self
    }

    pub fn node(mut self, node: Node) -> Self {
        self.0.nodes.push(Arc::new(node));
        self
    }

    pub fn service_cidr(mut self, cidr: ServiceCIDR) -> Self {
        self.0.service_cidrs.push(Arc::new(cidr));
        self
    }

    /// Compiles as node `node-1` with the default configuration.
    pub fn compile(&self) -> Compiled {
        crate::compile(&self.0, &config())
    }
}

/// The default configuration, as node `node-1`.
pub fn config() -> CompileConfig {
    CompileConfig {
        hostname: "node-1".to_owned(),
        ..CompileConfig::default()
    }
}

/// Queries over a compiled ruleset.
impl Compiled {
    /// `family`'s tables seen as one: the main table with the shards' service chains,
    /// affinity sets and dispatch elements merged in (the layout's own chains and sets of
    /// the shards, which repeat the main table's names, are left out).
    pub fn table_of(&self, family: Family) -> Table {
        let mut merged = self
            .ruleset
            .table(&TableId::new(family, crate::layout::TABLE))
            .expect("table")
            .clone();
        let ip_family = match family {
            Family::Ip6 => crate::family::IpFamily::V6,
            _ => crate::family::IpFamily::V4,
        };
        let sets = crate::layout::Sets::new(ip_family);
        merged.insert_set(sets.service_ips);
        merged.insert_set(sets.service_nodeports);
        for k in 0..crate::layout::SHARDS {
            let id = TableId::new(family, crate::layout::shard_table(k));
            let Some(shard) = self.ruleset.table(&id) else {
                continue;
            };
            for chain in shard.chains.values() {
                if !merged.chains.contains_key(&chain.name) {
                    merged.insert_chain(chain.clone());
                }
            }
            for set in shard.sets.values() {
                match merged.sets.get_mut(&set.name) {
                    Some(_) if set.name == crate::layout::NODEPORT_IPS => {}
                    Some(existing) => {
                        for element in set.elements.values() {
                            existing.insert(element.clone());
                        }
                    }
                    None => merged.insert_set(set.clone()),
                }
            }
        }
        merged
    }

    fn table_for(&self, vip: &str) -> (Table, IpAddr) {
        let ip: IpAddr = vip.parse().expect("ip");
        let family = if ip.is_ipv4() {
            Family::Ip
        } else {
            Family::Ip6
        };
        (self.table_of(family), ip)
    }

    fn lookup(&self, map: &str, vip: &str, proto: &str, port: u16) -> Option<(Verdict, String)> {
        let (table, ip) = self.table_for(vip);
        let proto = crate::protocol::Protocol::parse(Some(proto))
            .expect("protocol")
            .l4();
        let key = vec![Value::from(ip), Value::Proto(proto), Value::Port(port)];
        let element = table.sets[map]
            .elements
            .get(&nftproxy_rules::ElementKey::from(key))?;
        match &element.value {
            Some(Value::Verdict(v)) => Some((
                v.clone(),
                element.comment.as_deref().unwrap_or_default().to_owned(),
            )),
            other => panic!("not a verdict: {other:?}"),
        }
    }

    /// The `service-ips` verdict of `vip . proto . port`, with its comment.
    pub fn service_ip(&self, vip: &str, proto: &str, port: u16) -> Option<(Verdict, String)> {
        self.lookup("service-ips", vip, proto, port)
    }

    /// The `no-endpoint-services` verdict of `vip . proto . port`, with its comment.
    pub fn no_endpoint(&self, vip: &str, proto: &str, port: u16) -> Option<(Verdict, String)> {
        self.lookup("no-endpoint-services", vip, proto, port)
    }

    /// The `dnat` targets (`addr:port`, `[addr]:port`) of the chain `vip . proto . port`
    /// dispatches to, in rule order; empty when it has none.
    pub fn targets(&self, vip: &str, proto: &str, port: u16) -> Vec<String> {
        let Some((Verdict::Goto(chain), _)) = self.service_ip(vip, proto, port) else {
            return Vec::new();
        };
        let (table, _) = self.table_for(vip);
        self.chain_targets(table.family, &chain)
    }

    /// The `dnat` targets of chain `name` in `family`'s table, in rule order.
    pub fn chain_targets(&self, family: Family, name: &str) -> Vec<String> {
        self.table_of(family).chains[name]
            .rules
            .iter()
            .flat_map(|r| r.stmts.list().to_vec())
            .filter_map(|s| match s {
                Stmt::Dnat {
                    addr: IpAddr::V4(a),
                    port: Some(p),
                } => Some(format!("{a}:{p}")),
                Stmt::Dnat {
                    addr: IpAddr::V6(a),
                    port: Some(p),
                } => Some(format!("[{a}]:{p}")),
                _ => None,
            })
            .collect()
    }

    /// The verdict of `proto . port` in the node-port map `map` of `family`'s table.
    pub fn node_port_in(
        &self,
        family: Family,
        map: &str,
        proto: L4Proto,
        port: u16,
    ) -> Option<Verdict> {
        let key = vec![Value::Proto(proto), Value::Port(port)];
        let table = self.table_of(family);
        let element = table.sets[map]
            .elements
            .get(&nftproxy_rules::ElementKey::from(key))?;
        match &element.value {
            Some(Value::Verdict(v)) => Some(v.clone()),
            other => panic!("not a verdict: {other:?}"),
        }
    }

    /// The rules of chain `name` in `family`'s table, rendered.
    pub fn chain_rules(&self, family: Family, name: &str) -> Vec<String> {
        let chain = &self.table_of(family).chains[name];
        chain.rules.iter().map(ToString::to_string).collect()
    }

    /// The keys of a set, rendered with `Debug`, for compact assertions.
    pub fn set_len(&self, family: Family, set: &str) -> usize {
        self.table_of(family).sets[set].elements.len()
    }

    /// Whether the set holds the element with this (single-value) key.
    pub fn set_has(&self, family: Family, set: &str, key: Vec<Value>) -> bool {
        self.table_of(family).sets[set]
            .elements
            .contains_key(&nftproxy_rules::ElementKey::from(key))
    }

    /// The diagnostics, one line each.
    pub fn messages(&self) -> Vec<String> {
        self.diagnostics.iter().map(ToString::to_string).collect()
    }

    /// The number of `service-…` chains in both tables.
    pub fn service_chains(&self) -> usize {
        self.ruleset
            .tables
            .values()
            .flat_map(|t| t.chains.keys())
            .filter(|name| name.starts_with("service-") && *name != "service-endpoints-check")
            .count()
    }
}
