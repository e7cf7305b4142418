//! A built lab's members, their addresses, and loading rulesets into node-1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::cluster::{self, Compiled, Format};
use super::plan::{self, Node};
use super::{Attach, Lab, LabBuilder, Member};
use crate::common::netns::NetNs;

/// Put before a script: removes nftproxy's tables (main and shards) if present (adding
/// first makes the delete safe when they are absent), in the same transaction that loads
/// the new ones.
fn replace_tables() -> String {
    nftproxy_compiler::table_ids()
        .iter()
        .map(|id| format!("add table {id}\ndelete table {id}\n"))
        .collect()
}

impl Lab {
    /// An empty description: add pods and clients, then build.
    pub fn builder() -> LabBuilder {
        LabBuilder {
            pods: Vec::new(),
            clients: Vec::new(),
            attach: Attach::Routed,
        }
    }

    /// The namespace of a member; panics on an unknown pod or client name.
    pub fn ns(&self, member: Member<'_>) -> &NetNs {
        match member {
            Member::Node1 => &self.node1,
            Member::Node2 => &self.node2,
            Member::Pod(name) => &self.pod(name).ns,
            Member::Client(name) => &self.client(name).ns,
        }
    }

    /// node-1, the node under test.
    pub fn node1(&self) -> &NetNs {
        &self.node1
    }

    pub fn node2(&self) -> &NetNs {
        &self.node2
    }

    /// The LAN namespace (a bridge joining nodes and clients).
    pub fn lan(&self) -> &NetNs {
        &self.lan
    }

    /// Names of every namespace of the lab.
    pub fn namespace_names(&self) -> Vec<String> {
        let fixed = [&self.lan, &self.node1, &self.node2];
        let pods = self.pods.values().map(|p| &p.ns);
        let clients = self.clients.values().map(|c| &c.ns);
        fixed
            .into_iter()
            .chain(pods)
            .chain(clients)
            .map(|ns| ns.name().to_owned())
            .collect()
    }

    /// How node-1's pods are attached.
    pub fn attach(&self) -> Attach {
        self.attach
    }

    /// The node a pod lives on.
    pub fn node_of(&self, pod: &str) -> Node {
        self.pod(pod).node
    }

    pub fn pod_ipv4(&self, pod: &str) -> Ipv4Addr {
        let p = self.pod(pod);
        plan::pod_ipv4(p.node, p.host)
    }

    pub fn pod_ipv6(&self, pod: &str) -> Ipv6Addr {
        let p = self.pod(pod);
        plan::pod_ipv6(p.node, p.host)
    }

    pub fn client_ipv4(&self, client: &str) -> Ipv4Addr {
        plan::client_ipv4(self.client(client).host)
    }

    pub fn client_ipv6(&self, client: &str) -> Ipv6Addr {
        plan::client_ipv6(self.client(client).host)
    }

    /// The IPv4 source node-1 masquerades to when sending to `pod`: its LAN address for
    /// routed pods and pods on node-2, the bridge address for bridged pods.
    pub fn masquerade_ipv4_towards(&self, pod: &str) -> Ipv4Addr {
        match (self.node_of(pod), self.attach) {
            (Node::One, Attach::Bridge) => plan::pod_ipv4(Node::One, 1),
            _ => Node::One.ipv4(),
        }
    }

    /// The IPv6 counterpart of [`Lab::masquerade_ipv4_towards`].
    pub fn masquerade_ipv6_towards(&self, pod: &str) -> Ipv6Addr {
        match (self.node_of(pod), self.attach) {
            (Node::One, Attach::Bridge) => plan::pod_ipv6(Node::One, 1),
            _ => Node::One.ipv6(),
        }
    }

    /// The pod's address in the family of `like`.
    pub fn pod_ip(&self, pod: &str, like: SocketAddr) -> IpAddr {
        match like {
            SocketAddr::V4(_) => self.pod_ipv4(pod).into(),
            SocketAddr::V6(_) => self.pod_ipv6(pod).into(),
        }
    }

    /// The client's address in the family of `like`.
    pub fn client_ip(&self, client: &str, like: SocketAddr) -> IpAddr {
        match like {
            SocketAddr::V4(_) => self.client_ipv4(client).into(),
            SocketAddr::V6(_) => self.client_ipv6(client).into(),
        }
    }

    /// node-1's masquerade address towards `pod` in the family of `like`.
    pub fn masquerade_ip_towards(&self, pod: &str, like: SocketAddr) -> IpAddr {
        match like {
            SocketAddr::V4(_) => self.masquerade_ipv4_towards(pod).into(),
            SocketAddr::V6(_) => self.masquerade_ipv6_towards(pod).into(),
        }
    }

    /// Adds `cidr` (an address with its prefix, e.g. `198.51.100.11/24`) to node-1's LAN
    /// interface, for a second node address on the LAN.
    pub fn add_node1_lan_address(&self, cidr: &str) {
        super::topology::ip_batch(&self.node1, &[format!("addr add {cidr} dev lan0 nodad")]);
    }

    /// Loads an nft script into node-1 in place of whatever nftproxy tables it holds (one
    /// transaction, so a test can reload a changed cluster); panics with nft's error.
    pub fn load_ruleset(&self, script: &str) {
        let script = format!("{}{script}", replace_tables());
        if let Err(e) = self.node1.nft_load(&script, false) {
            panic!("nft -f rejected the ruleset: {e}\n--- ruleset ---\n{script}");
        }
    }

    /// Loads nft JSON into node-1; panics with nft's error.
    pub fn load_json(&self, json: &str) {
        if let Err(e) = self.node1.nft_load(json, true) {
            panic!("nft -j -f rejected the ruleset: {e}\n--- ruleset ---\n{json}");
        }
    }

    /// Compiles [`cluster::BASE`] plus `manifests` as node-1 and loads the nft script.
    pub fn load_cluster(&self, manifests: &str, config: Option<&str>) -> Compiled {
        self.load_cluster_as(manifests, config, Format::Nft)
    }

    /// Like [`Lab::load_cluster`], asking the CLI for `format` and loading that.
    pub fn load_cluster_as(
        &self,
        manifests: &str,
        config: Option<&str>,
        format: Format,
    ) -> Compiled {
        let compiled = cluster::compile(manifests, config, format);
        match format {
            Format::Nft => self.load_ruleset(&compiled.output),
            Format::Json => self.load_json(&compiled.output),
        }
        compiled
    }

    /// Like [`Lab::load_cluster`], telling the compiler node-1 also has `node_ips`.
    pub fn load_cluster_with_node_ips(
        &self,
        manifests: &str,
        config: Option<&str>,
        node_ips: &[&str],
    ) -> Compiled {
        let compiled = cluster::compile_with_node_ips(manifests, config, Format::Nft, node_ips);
        self.load_ruleset(&compiled.output);
        compiled
    }

    fn pod(&self, name: &str) -> &super::Pod {
        self.pods
            .get(name)
            .unwrap_or_else(|| panic!("the lab has no pod {name:?}"))
    }

    fn client(&self, name: &str) -> &super::ClientNs {
        self.clients
            .get(name)
            .unwrap_or_else(|| panic!("the lab has no client {name:?}"))
    }
}
