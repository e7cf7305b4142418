//! Per-service-port traffic counters: counter objects, the maps that name them, the rules.
//!
//! Every service port gets a named counter object `counter-HASH-NAMESPACE/NAME/PROTO/PORT`
//! in the main table of each family it has a ClusterIP of (the hash is the one of the
//! port's `service-…` chain). `service-counters` maps every `VIP . proto . port` the port
//! claims (ClusterIP, externalIPs, LB IPs; with or without endpoints) to it, and
//! `nodeport-counters` maps `proto . nodePort`. Two rules at the top of the pre-DNAT filter
//! chains count every packet (not only new connections) before DNAT rewrites the
//! destination: one map lookup per packet, whatever the number of services. Only the
//! client-to-service direction is counted, and only on this node.
//!
//! The controller reads the counts with one netlink dump of the counter objects and turns
//! the names back into labels with [`parse_counter_name`].

use std::net::IpAddr;

use nftproxy_rules::{
    Counter, DataType, DigestMap, Element, ElementKey, Expr, MetaKey, PayloadField, Rule, Set,
    Stmt, Table, Value,
};

use crate::emit::{Fragment, NodePortKey, VipKey, node_port_key, vip_key};
use crate::family::IpFamily;
use crate::naming;

pub const SERVICE_COUNTERS: &str = "service-counters";
pub const NODEPORT_COUNTERS: &str = "nodeport-counters";

/// The prefix of every counter object's name.
pub const COUNTER_PREFIX: &str = "counter-";

/// A counter-map element before it becomes one: the key and the counter it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterRef<K> {
    pub key: K,
    pub counter: String,
}

/// The labels of one counter object, from its name (see [`parse_counter_name`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterLabels {
    pub namespace: String,
    pub service: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The port's name, or its number when the port is unnamed (as in the chain names).
    pub port: String,
}

/// The labels of a counter object named by nftproxy (`counter-HASH-NS/NAME/PROTO/PORT`);
/// `None` for any other name, including one whose hash does not match its identity.
pub fn parse_counter_name(name: &str) -> Option<CounterLabels> {
    let rest = name.strip_prefix(COUNTER_PREFIX)?;
    let identity = rest.get(9..).filter(|_| rest.get(8..9) == Some("-"))?;
    let mut parts = identity.split('/');
    let (namespace, service, protocol, port) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || naming::counter_name(identity) != name {
        return None;
    }
    Some(CounterLabels {
        namespace: namespace.to_owned(),
        service: service.to_owned(),
        protocol: protocol.to_owned(),
        port: port.to_owned(),
    })
}

/// The empty `service-counters` and `nodeport-counters` maps of `family`'s main table.
pub fn maps(family: IpFamily) -> [Set; 2] {
    let service_key = vec![
        family.addr_type(),
        DataType::InetProto,
        DataType::InetService,
    ];
    let nodeport_key = vec![DataType::InetProto, DataType::InetService];
    [
        Set::map(SERVICE_COUNTERS, service_key, DataType::Counter),
        Set::map(NODEPORT_COUNTERS, nodeport_key, DataType::Counter),
    ]
}

/// The counting rules, first in the pre-DNAT chains: `counter name ip daddr . meta l4proto
/// . th dport map @service-counters`, then the NodePort address condition of the dispatch
/// (`nodeport`) followed by `counter name meta l4proto . th dport map @nodeport-counters`.
pub fn rules(family: IpFamily, mut nodeport: Vec<Stmt>) -> [Rule; 2] {
    let service = Stmt::CounterMap {
        key: Expr::concat(vec![
            Expr::Payload(family.daddr()),
            Expr::Meta(MetaKey::L4proto),
            Expr::Payload(PayloadField::ThDport),
        ]),
        map: SERVICE_COUNTERS.to_owned(),
    };
    nodeport.push(Stmt::CounterMap {
        key: Expr::concat(vec![
            Expr::Meta(MetaKey::L4proto),
            Expr::Payload(PayloadField::ThDport),
        ]),
        map: NODEPORT_COUNTERS.to_owned(),
    });
    [Rule::new(vec![service]), Rule::new(nodeport)]
}

impl Fragment {
    /// Counts the traffic of one service port in one family: its counter object and the
    /// `service-counters` elements of `ips` (ClusterIP, externalIPs, LB IPs), the
    /// `nodeport-counters` element of `node_port`.
    pub fn add_counters(
        &mut self,
        counter: &str,
        key: (nftproxy_rules::L4Proto, u16),
        ips: &[IpAddr],
        node_port: Option<u16>,
    ) {
        let Some(first) = ips.first() else {
            return;
        };
        let part = &mut self.parts[IpFamily::of(first).index()];
        part.counters.push(counter.to_owned());
        let (proto, port) = key;
        for ip in ips {
            part.service_counters.push(CounterRef {
                key: (*ip, proto, port),
                counter: counter.to_owned(),
            });
        }
        if let Some(node_port) = node_port {
            part.nodeport_counters.push(CounterRef {
                key: (proto, node_port),
                counter: counter.to_owned(),
            });
        }
    }
}

/// Sorts `refs` by key and keeps the first of equal keys (as the dispatch maps do).
pub fn first_of_each_key<K: Ord + Copy>(refs: &mut Vec<CounterRef<K>>) {
    refs.sort_by_key(|r| r.key);
    refs.dedup_by_key(|r| r.key);
}

/// The element `KEY : "COUNTER"`.
pub fn element(key: ElementKey, counter: String) -> Element {
    Element::mapping(key, Value::ObjRef(counter.into()))
}

/// Fills the main table's counter objects and maps (declared by the skeleton).
pub fn fill(
    table: &mut Table,
    mut counters: Vec<String>,
    mut service: Vec<CounterRef<VipKey>>,
    mut nodeport: Vec<CounterRef<NodePortKey>>,
) {
    // One name per port and family, in no order: the sharded map sorts while it builds.
    table.counters = DigestMap::from_entries(
        counters
            .drain(..)
            .map(|name| (name.clone(), Counter { name })),
    );
    first_of_each_key(&mut service);
    if let Some(map) = table.sets.get_mut(SERVICE_COUNTERS) {
        map.elements = service
            .into_iter()
            .map(|r| (vip_key(r.key), element(vip_key(r.key), r.counter)))
            .collect();
    }
    first_of_each_key(&mut nodeport);
    if let Some(map) = table.sets.get_mut(NODEPORT_COUNTERS) {
        map.elements = nodeport
            .into_iter()
            .map(|r| {
                let key = node_port_key(r.key);
                (key.clone(), element(key, r.counter))
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;
    use crate::service::{ServiceId, ServicePortDef};

    fn names(name: &str, port: u16) -> naming::PortNames {
        let id = ServiceId {
            namespace: "ns".into(),
            name: "web".into(),
        };
        let port = ServicePortDef {
            name: name.into(),
            port,
            protocol: Protocol::Tcp,
        };
        naming::PortNames::new(&id, &port)
    }

    #[test]
    fn a_counter_shares_the_hash_of_its_service_chain() {
        let n = names("http", 80);
        assert_eq!(
            n.counter,
            n.chain.replacen("service-", COUNTER_PREFIX, 1),
            "{n:?}"
        );
    }

    #[test]
    fn counter_names_parse_back_into_their_labels() {
        let labels = parse_counter_name(&names("http", 80).counter).unwrap();
        assert_eq!(
            labels,
            CounterLabels {
                namespace: "ns".into(),
                service: "web".into(),
                protocol: "tcp".into(),
                port: "http".into(),
            }
        );
        let unnamed = parse_counter_name(&names("", 8080).counter).unwrap();
        assert_eq!(unnamed.port, "8080");
    }

    #[test]
    fn foreign_or_forged_names_are_not_counters() {
        let good = names("http", 80).counter;
        let forged = good.replace("/web/", "/other/");
        for name in [
            forged.as_str(),
            "counter-ABCDEFGH-ns/web/tcp/http",
            "counter-x",
            "service-ABCDEFGH-ns/web/tcp/http",
            &good[..good.len() - 1],
            &format!("{good}/extra"),
        ] {
            assert_eq!(parse_counter_name(name), None, "{name}");
        }
    }
}
