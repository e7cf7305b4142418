//! The UDP service port the conntrack tests (unit and kernel) clean up after.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use nftproxy_compiler::UdpPort;

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `ns/dns` port `dns` on 198.19.0.10:53, externalIP 192.0.2.1, NodePort 30053.
pub fn dns(endpoints: &[&str]) -> UdpPort {
    UdpPort {
        service: "ns/dns".into(),
        port_name: "dns".into(),
        cluster_ip: sa("198.19.0.10:53"),
        external: vec![sa("192.0.2.1:53")],
        node_port: Some(30053),
        endpoints: endpoints.iter().map(|e| sa(e)).collect(),
    }
}

/// The IPv6 half of a dual-stack `ns/dns`, without external paths.
pub fn dns6(endpoints: &[&str]) -> UdpPort {
    UdpPort {
        cluster_ip: sa("[2001:db8::10]:53"),
        external: Vec::new(),
        node_port: None,
        ..dns(endpoints)
    }
}
