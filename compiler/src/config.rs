//! Compile-time configuration: the parts of a KubeProxyConfiguration the ruleset depends on.

use std::net::IpAddr;

use ipnet::IpNet;

/// How traffic from local pods is told apart from everything else (kube-proxy's
/// `detectLocalMode`). Traffic to a ClusterIP that is not local is masqueraded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DetectLocal {
    /// No detector: ClusterIP traffic is not masqueraded (unless `masquerade_all`).
    #[default]
    None,
    /// Sources inside these CIDRs (any family mix) are local.
    ClusterCidr(Vec<IpNet>),
    /// Sources inside this node's `spec.podCIDRs` are local.
    NodeCidr,
    /// Packets arriving on this bridge are local.
    BridgeInterface(String),
    /// Packets arriving on interfaces whose name starts with this prefix are local.
    InterfaceNamePrefix(String),
}

/// Everything besides the cluster's objects that shapes the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileConfig {
    /// This node's name: endpoints with this `nodeName` are local.
    pub hostname: String,
    /// Node addresses in addition to the Node object's `status.addresses`.
    pub extra_node_ips: Vec<IpAddr>,
    pub detect_local: DetectLocal,
    /// `nftables.masqueradeAll`.
    pub masquerade_all: bool,
    /// `nftables.masqueradeBit` (0..=31): the mark bit used to request masquerading.
    pub masquerade_bit: u8,
    /// `nodePortAddresses` as configured (CIDRs or `primary`); empty means `primary`.
    pub node_port_addresses: Vec<String>,
}

impl CompileConfig {
    /// Whether `nodePortAddresses` means the node's primary addresses (empty, or nothing
    /// but `primary`) rather than CIDRs to match the node's addresses against.
    pub fn node_ports_on_primary_addresses(&self) -> bool {
        self.node_port_addresses
            .iter()
            .all(|e| e == crate::nodeport::PRIMARY)
    }
}

impl Default for CompileConfig {
    fn default() -> Self {
        Self {
            hostname: String::new(),
            extra_node_ips: Vec::new(),
            detect_local: DetectLocal::None,
            masquerade_all: false,
            masquerade_bit: 14,
            node_port_addresses: Vec::new(),
        }
    }
}
