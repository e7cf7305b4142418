//! The packet-flow lab: two nodes, their pods, a LAN and external clients, each a network
//! namespace made for one test and deleted with it.
//!
//! node-1 is the node under test: the ruleset is loaded there and it forwards for its pods,
//! for traffic from the LAN and for its own sockets. node-2 is a plain router for its own
//! pods. Every pod runs a server that answers `<pod-name> <peer-ip>`, so a probe tells
//! which endpoint answered and which source address it saw (masqueraded or not); probes
//! tell REJECT (refused at once) from DROP (timeout). See [`topology`] for the wiring and
//! [`plan`] for the addresses.
//!
//! ```ignore
//! let lab = Lab::builder().pod("a", Node::One, 10).client("ext", 10).build();
//! lab.load_cluster(SERVICES_YAML, None);
//! let (pod, peer) = lab.probe(Member::Client("ext"), Proto::Tcp, at("198.19.0.10:80")).reply();
//! ```
// Each test file uses a different part of the lab.
#![allow(dead_code, unused_imports)]

mod access;
mod addresses;
mod client;
pub mod cluster;
pub mod plan;
pub mod sctp;
mod server;
mod sys;
pub mod topology;
mod traffic;
pub mod zones;

use std::collections::BTreeMap;

pub use client::{Outcome, Probe, Proto, REJECT_WITHIN, Spread, TIMEOUT};
pub use cluster::{
    BASE, Compiled, Format, NODE_PORT_WEB, cluster_cidr_config, compile, kube_proxy_config,
};
pub use plan::{Node, at, ip};
pub use sys::sctp_sockets_supported;
pub use topology::{Attach, BRIDGED_PREFIX, POD_BRIDGE, ROUTED_PREFIX};

use crate::common::netns::NetNs;
use server::Server;
use topology::Role;

/// Ports a pod serves (TCP and UDP) unless the test says otherwise.
pub const DEFAULT_PORTS: &[u16] = &[8080];

/// Where a probe starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member<'a> {
    /// node-1's own sockets (output hook).
    Node1,
    /// node-2's own sockets.
    Node2,
    Pod(&'a str),
    Client(&'a str),
}

#[derive(Debug, Clone)]
struct PodSpec {
    name: String,
    node: Node,
    host: u8,
    ports: Vec<u16>,
}

/// Describes a lab; [`LabBuilder::build`] makes it.
#[derive(Debug, Clone)]
pub struct LabBuilder {
    pods: Vec<PodSpec>,
    clients: Vec<(String, u8)>,
    attach: Attach,
}

impl LabBuilder {
    /// A pod `name` on `node` at `198.18.N.host` / `2001:db8:18:N::host`, serving
    /// [`DEFAULT_PORTS`].
    pub fn pod(self, name: &str, node: Node, host: u8) -> Self {
        self.pod_serving(name, node, host, DEFAULT_PORTS)
    }

    /// Like [`LabBuilder::pod`], serving `ports` (each on TCP and UDP).
    pub fn pod_serving(mut self, name: &str, node: Node, host: u8, ports: &[u16]) -> Self {
        assert!(
            host >= 2,
            "pod host numbers start at 2 (.1 is the node's bridge)"
        );
        assert!(
            !self.pods.iter().any(|p| p.name == name),
            "two pods named {name}"
        );
        assert!(
            !self.pods.iter().any(|p| p.node == node && p.host == host),
            "two pods at host {host} on {}",
            node.name()
        );
        self.pods.push(PodSpec {
            name: name.to_owned(),
            node,
            host,
            ports: ports.to_vec(),
        });
        self
    }

    /// An external client `name` at `203.0.113.host` / `2001:db8:113::host` on the LAN.
    pub fn client(mut self, name: &str, host: u8) -> Self {
        assert!(
            !self.clients.iter().any(|(n, h)| n == name || *h == host),
            "duplicate client {name} / host {host}"
        );
        self.clients.push((name.to_owned(), host));
        self
    }

    /// Attaches node-1's pods to bridge [`POD_BRIDGE`] instead of routed veths.
    pub fn bridged_pods(mut self) -> Self {
        self.attach = Attach::Bridge;
        self
    }

    /// Creates the namespaces, links and servers. Everything made so far is deleted if a
    /// step fails (the partly built values are dropped while unwinding).
    pub fn build(self) -> Lab {
        let lan = new_ns("lan", Role::Lan);
        let node1 = new_ns("node1", Role::Node);
        let node2 = new_ns("node2", Role::Node);
        let mut clients = BTreeMap::new();
        for (name, host) in &self.clients {
            let ns = new_ns("client", Role::Client);
            clients.insert(name.clone(), ClientNs { ns, host: *host });
        }
        let client_refs: Vec<_> = clients.values().map(|c| (&c.ns, c.host)).collect();
        topology::ip_batch(
            &lan,
            &topology::lan_commands([&node1, &node2], &client_refs),
        );
        for client in clients.values() {
            topology::ip_batch(&client.ns, &topology::client_commands(client.host));
        }
        let pod_ns: Vec<NetNs> = self.pods.iter().map(|_| new_ns("pod", Role::Pod)).collect();
        self.wire_node(&node1, Node::One, &pod_ns);
        self.wire_node(&node2, Node::Two, &pod_ns);
        let mut pods = BTreeMap::new();
        for (spec, ns) in self.pods.iter().zip(pod_ns) {
            let attach = self.attach_of(spec.node);
            topology::ip_batch(&ns, &topology::pod_commands(spec.node, spec.host, attach));
            let server = Server::start(&ns, &spec.name, &spec.ports);
            let pod = Pod {
                server,
                ns,
                node: spec.node,
                host: spec.host,
            };
            pods.insert(spec.name.clone(), pod);
        }
        Lab {
            pods,
            clients,
            node1,
            node2,
            lan,
            attach: self.attach,
        }
    }

    fn attach_of(&self, node: Node) -> Attach {
        match node {
            Node::One => self.attach,
            Node::Two => Attach::Routed,
        }
    }

    /// One batch per node: its LAN side, then a link per pod living on it.
    fn wire_node(&self, ns: &NetNs, node: Node, pod_ns: &[NetNs]) {
        let attach = self.attach_of(node);
        let mut cmds = topology::node_commands(node);
        if attach == Attach::Bridge {
            cmds.extend(topology::bridge_commands());
        }
        for (spec, pod) in self.pods.iter().zip(pod_ns) {
            if spec.node == node {
                cmds.extend(topology::pod_link_commands(pod, node, spec.host, attach));
            }
        }
        topology::ip_batch(ns, &cmds);
    }
}

fn new_ns(tag: &str, role: Role) -> NetNs {
    let ns = NetNs::new(tag);
    topology::configure_kernel(&ns, role);
    ns
}

#[derive(Debug)]
struct Pod {
    // Declared first: the server thread stops before its namespace is deleted.
    server: Server,
    ns: NetNs,
    node: Node,
    host: u8,
}

#[derive(Debug)]
struct ClientNs {
    ns: NetNs,
    host: u8,
}

/// A running lab; dropping it stops the servers and deletes every namespace.
#[derive(Debug)]
pub struct Lab {
    pods: BTreeMap<String, Pod>,
    clients: BTreeMap<String, ClientNs>,
    node1: NetNs,
    node2: NetNs,
    lan: NetNs,
    attach: Attach,
}
