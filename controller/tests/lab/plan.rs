//! The lab's address plan: every address a lab member has or talks to, in one place.
//!
//! Only documentation and benchmarking ranges are used (RFC 5737, RFC 2544, RFC 3849), so
//! nothing in a lab can ever be confused with a real network. IPv6 prefixes mirror the IPv4
//! ones: `2001:db8:18` for pods (198.18), `2001:db8:19` for ClusterIPs (198.19),
//! `2001:db8:51` for nodes (198.51.100), `2001:db8:113` for clients (203.0.113) and
//! `2001:db8:2` for externalIPs / LoadBalancer IPs (192.0.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Pods of all nodes.
pub const POD_CIDR_V4: &str = "198.18.0.0/16";
/// The ClusterIP range (the cluster's ServiceCIDR).
pub const SERVICE_CIDR_V4: &str = "198.19.0.0/16";
pub const SERVICE_CIDR_V6: &str = "2001:db8:19::/108";
/// externalIPs and LoadBalancer ingress IPs.
pub const EXTERNAL_CIDR_V4: &str = "192.0.2.0/24";
pub const EXTERNAL_CIDR_V6: &str = "2001:db8:2::/64";
/// The LAN joining nodes and external clients (clients also have an address of their own).
pub const NODE_CIDR_V4: &str = "198.51.100.0/24";
pub const NODE_CIDR_V6: &str = "2001:db8:51::/64";
pub const CLIENT_CIDR_V4: &str = "203.0.113.0/24";
pub const CLIENT_CIDR_V6: &str = "2001:db8:113::/64";

/// One of the lab's two nodes. Only node-1 runs a ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    One,
    Two,
}

impl Node {
    /// 1 or 2: the node's octet in every per-node address.
    pub fn number(self) -> u8 {
        match self {
            Node::One => 1,
            Node::Two => 2,
        }
    }

    /// The Kubernetes node name (`node-1`, `node-2`), as used in `nodeName`.
    pub fn name(self) -> &'static str {
        match self {
            Node::One => "node-1",
            Node::Two => "node-2",
        }
    }

    /// `198.51.100.N`, on the LAN.
    pub fn ipv4(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, self.number())
    }

    /// `2001:db8:51::N`, on the LAN.
    pub fn ipv6(self) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, u16::from(self.number()))
    }

    /// The node's pod CIDR, `198.18.N.0/24`.
    pub fn pod_cidr_v4(self) -> String {
        format!("198.18.{}.0/24", self.number())
    }

    /// The node's pod CIDR, `2001:db8:18:N::/64`.
    pub fn pod_cidr_v6(self) -> String {
        format!("2001:db8:18:{}::/64", self.number())
    }

    /// The other node.
    pub fn other(self) -> Node {
        match self {
            Node::One => Node::Two,
            Node::Two => Node::One,
        }
    }
}

/// `host` written in decimal, read as a hex IPv6 group, so `198.18.1.10` pairs with
/// `2001:db8:18:1::10`: a test's YAML reads the same in both families.
fn group(host: u8) -> u16 {
    u16::from_str_radix(&host.to_string(), 16).unwrap_or_else(|e| panic!("{host}: {e}"))
}

/// Pod `host` on `node`: `198.18.N.host`.
pub fn pod_ipv4(node: Node, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, node.number(), host)
}

/// Pod `host` on `node`: `2001:db8:18:N::host`.
pub fn pod_ipv6(node: Node, host: u8) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x18,
        u16::from(node.number()),
        0,
        0,
        0,
        group(host),
    )
}

/// External client `host`: `203.0.113.host`.
pub fn client_ipv4(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, host)
}

/// External client `host`: `2001:db8:113::host`.
pub fn client_ipv6(host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, group(host))
}

/// Parses `"198.19.0.10:80"` or `"[2001:db8:19::10]:80"`; panics on anything else.
pub fn at(addr: &str) -> SocketAddr {
    addr.parse()
        .unwrap_or_else(|e| panic!("{addr:?} is not an address:port: {e}"))
}

/// Parses an IP address; panics on anything else.
pub fn ip(addr: &str) -> IpAddr {
    addr.parse()
        .unwrap_or_else(|e| panic!("{addr:?} is not an IP address: {e}"))
}
