//! Which of this node's addresses accept NodePort traffic (`nodePortAddresses`).
//!
//! kube-proxy's rules, per family:
//! - `primary` (the default): the node's primary address of the family (its first
//!   InternalIP, else its first ExternalIP), plus the configured extra node IPs. A family
//!   without such an address gets no NodePort address (kube-proxy would fall back to
//!   loopback, which NodePorts never use).
//! - a list of CIDRs: the node's addresses inside the CIDRs of the family; a zero-length
//!   CIDR (`0.0.0.0/0`, `::/0`) or a list with no CIDR of the family means every local
//!   address (`fib daddr type local`), except loopback.
//!
//! The compiler is pure, so "the node's addresses" are the Node's `status.addresses` plus
//! the configured extra node IPs, not the interfaces of the machine.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::CompileConfig;
use crate::diagnostic::{Diagnostic, ObjectRef, Severity};
use crate::family::IpFamily;

/// The `nodePortAddresses` keyword for the node's primary addresses.
pub const PRIMARY: &str = "primary";

/// The NodePort addresses of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePortAddrs {
    /// Every local address but loopback (`fib daddr type local`).
    AllLocal,
    /// These addresses (sorted, deduplicated, possibly empty).
    Listed(Vec<IpAddr>),
}

/// The NodePort addresses per family ([`IpFamily::index`]). `node_addresses` are the
/// Node's addresses in kube-proxy's preference order (see `NodeDef`).
pub fn resolve(
    config: &CompileConfig,
    node_addresses: &[IpAddr],
    diagnostics: &mut Vec<Diagnostic>,
) -> [NodePortAddrs; 2] {
    let entries = &config.node_port_addresses;
    if config.node_ports_on_primary_addresses() {
        return IpFamily::ALL.map(|family| {
            let first = node_addresses.iter().find(|ip| IpFamily::of(ip) == family);
            listed(first.into_iter().chain(&config.extra_node_ips), family)
        });
    }
    let cidrs = parse_cidrs(entries, diagnostics);
    IpFamily::ALL.map(|family| {
        let mine: Vec<&IpNet> = cidrs
            .iter()
            .filter(|n| IpFamily::of_net(n) == family)
            .collect();
        if mine.is_empty() || mine.iter().any(|n| n.prefix_len() == 0) {
            return NodePortAddrs::AllLocal;
        }
        let all = node_addresses.iter().chain(&config.extra_node_ips);
        listed(
            all.filter(|ip| mine.iter().any(|n| n.contains(*ip))),
            family,
        )
    })
}

fn listed<'a>(ips: impl Iterator<Item = &'a IpAddr>, family: IpFamily) -> NodePortAddrs {
    let mut out: Vec<IpAddr> = ips
        .copied()
        .filter(|ip| IpFamily::of(ip) == family && !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    out.sort_unstable();
    out.dedup();
    NodePortAddrs::Listed(out)
}

fn parse_cidrs(entries: &[String], diagnostics: &mut Vec<Diagnostic>) -> Vec<IpNet> {
    let mut out = Vec::new();
    for entry in entries.iter().filter(|e| *e != PRIMARY) {
        match entry.parse::<IpNet>() {
            Ok(net) => out.push(net.trunc()),
            Err(_) => diagnostics.push(Diagnostic {
                severity: Severity::Error,
                object: ObjectRef::new("KubeProxyConfiguration", None, "config"),
                message: format!("nodePortAddresses entry {entry:?} is not a CIDR; ignored"),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(values: &[&str]) -> Vec<IpAddr> {
        values.iter().map(|v| v.parse().unwrap()).collect()
    }

    fn config(entries: &[&str], extra: &[&str]) -> CompileConfig {
        CompileConfig {
            node_port_addresses: entries.iter().map(|e| (*e).to_owned()).collect(),
            extra_node_ips: ips(extra),
            ..CompileConfig::default()
        }
    }

    const NODE: &[&str] = &[
        "198.51.100.1",
        "198.51.100.9",
        "2001:db8:51::1",
        "192.0.2.50",
    ];

    #[test]
    fn primary_is_the_first_address_of_each_family_plus_extra_node_ips() {
        let got = resolve(&config(&[], &["198.51.100.7"]), &ips(NODE), &mut vec![]);
        assert_eq!(
            got,
            [
                NodePortAddrs::Listed(ips(&["198.51.100.1", "198.51.100.7"])),
                NodePortAddrs::Listed(ips(&["2001:db8:51::1"])),
            ]
        );
    }

    #[test]
    fn primary_without_an_address_of_a_family_opens_nothing_in_it() {
        let got = resolve(
            &config(&["primary"], &[]),
            &ips(&["198.51.100.1"]),
            &mut vec![],
        );
        assert_eq!(got[1], NodePortAddrs::Listed(vec![]));
    }

    #[test]
    fn cidrs_select_the_node_addresses_inside_them() {
        let got = resolve(
            &config(&["192.0.2.0/24", "2001:db8:51::/64"], &[]),
            &ips(NODE),
            &mut vec![],
        );
        assert_eq!(got[0], NodePortAddrs::Listed(ips(&["192.0.2.50"])));
        assert_eq!(got[1], NodePortAddrs::Listed(ips(&["2001:db8:51::1"])));
    }

    #[test]
    fn zero_length_cidr_or_no_cidr_of_a_family_means_every_local_address() {
        let got = resolve(&config(&["0.0.0.0/0"], &[]), &ips(NODE), &mut vec![]);
        assert_eq!(got, [NodePortAddrs::AllLocal, NodePortAddrs::AllLocal]);
    }

    #[test]
    fn loopback_is_never_a_node_port_address() {
        let got = resolve(
            &config(&["127.0.0.0/8", "198.51.100.0/24"], &["127.0.0.1"]),
            &ips(NODE),
            &mut vec![],
        );
        assert_eq!(
            got[0],
            NodePortAddrs::Listed(ips(&["198.51.100.1", "198.51.100.9"]))
        );
    }
}
