//! Address ranges from the cluster: ServiceCIDR prefixes and this node's pod CIDRs (with
//! the rest of what the compiler reads from its Node: addresses and zone).
//!
//! ServiceCIDRs may overlap (a cluster migrating to a new range keeps both for a while),
//! but an nft interval set refuses overlapping elements, so nested prefixes are folded
//! into the prefix that contains them.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use thiserror::Error;

use crate::family::IpFamily;
use crate::names::{self, NameError};

/// The Node label naming the node's zone, matched against `hints.forZones`.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Why a ServiceCIDR or a Node's pod CIDRs were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CidrError {
    #[error("metadata.name is missing")]
    MissingName,
    #[error("metadata.name {name:?} is invalid: {source}")]
    Name { name: String, source: NameError },
    #[error("{field} entry {value:?} is not a CIDR")]
    Parse { field: &'static str, value: String },
    #[error("{field} entry {value:?} has host bits set")]
    HostBits { field: &'static str, value: String },
}

/// The prefixes of one ServiceCIDR object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCidrDef(pub Vec<IpNet>);

impl TryFrom<&ServiceCIDR> for ServiceCidrDef {
    type Error = CidrError;

    fn try_from(object: &ServiceCIDR) -> Result<Self, Self::Error> {
        checked_name(object.metadata.name.as_deref())?;
        let cidrs = object.spec.as_ref().and_then(|s| s.cidrs.as_deref());
        parse_all("spec.cidrs", cidrs.unwrap_or_default()).map(ServiceCidrDef)
    }
}

/// What the compiler needs of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDef {
    /// `spec.podCIDRs` (or `spec.podCIDR`).
    pub pod_cidrs: Vec<IpNet>,
    /// `status.addresses` of type InternalIP, then those of type ExternalIP, each in
    /// listed order (kube-proxy's order for choosing the node's primary IPs); entries that
    /// are not IP addresses are ignored.
    pub addresses: Vec<IpAddr>,
    /// The [`ZONE_LABEL`] label; `None` when missing or empty.
    pub zone: Option<String>,
}

impl TryFrom<&Node> for NodeDef {
    type Error = CidrError;

    fn try_from(node: &Node) -> Result<Self, Self::Error> {
        checked_name(node.metadata.name.as_deref())?;
        let spec = node.spec.as_ref();
        let pod_cidrs = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
            Some(cidrs) if !cidrs.is_empty() => parse_all("spec.podCIDRs", cidrs)?,
            _ => {
                let single = spec.and_then(|s| s.pod_cidr.as_ref());
                parse_all(
                    "spec.podCIDR",
                    single.map(std::slice::from_ref).unwrap_or_default(),
                )?
            }
        };
        let labels = node.metadata.labels.as_ref();
        let zone = labels
            .and_then(|l| l.get(ZONE_LABEL))
            .filter(|z| !z.is_empty());
        Ok(NodeDef {
            pod_cidrs,
            addresses: node_addresses(node),
            zone: zone.cloned(),
        })
    }
}

fn node_addresses(node: &Node) -> Vec<IpAddr> {
    let listed = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default();
    let of_type = |wanted: &'static str| {
        listed
            .iter()
            .filter(move |a| a.type_ == wanted)
            .filter_map(|a| a.address.parse::<IpAddr>().ok())
    };
    of_type("InternalIP").chain(of_type("ExternalIP")).collect()
}

fn checked_name(name: Option<&str>) -> Result<(), CidrError> {
    let name = name.ok_or(CidrError::MissingName)?;
    names::dns1123_subdomain(name).map_err(|source| CidrError::Name {
        name: name.to_owned(),
        source,
    })
}

fn parse_all(field: &'static str, values: &[String]) -> Result<Vec<IpNet>, CidrError> {
    values
        .iter()
        .map(|value| {
            let net: IpNet = value.parse().map_err(|_| CidrError::Parse {
                field,
                value: value.clone(),
            })?;
            if net.trunc() != net {
                return Err(CidrError::HostBits {
                    field,
                    value: value.clone(),
                });
            }
            Ok(net)
        })
        .collect()
}

/// The prefixes per family ([`IpFamily::index`]), sorted, with nested prefixes removed.
pub fn fold_nested(prefixes: impl IntoIterator<Item = IpNet>) -> [Vec<IpNet>; 2] {
    let mut all: Vec<IpNet> = prefixes.into_iter().collect();
    // Shorter prefixes of the same network first, so a container precedes what it contains.
    all.sort_by_key(|net| (net.network(), net.prefix_len()));
    let mut out: [Vec<IpNet>; 2] = [Vec::new(), Vec::new()];
    for net in all {
        let kept = &mut out[IpFamily::of_net(&net).index()];
        if kept.last().is_some_and(|last| last.contains(&net)) {
            continue;
        }
        kept.push(net);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(values: &[&str]) -> Vec<IpNet> {
        values.iter().filter_map(|v| v.parse().ok()).collect()
    }

    #[test]
    fn nested_service_cidrs_fold_into_their_container() {
        let folded = fold_nested(nets(&[
            "198.19.1.0/24",
            "198.19.0.0/16",
            "2001:db8:19::/108",
        ]));
        assert_eq!(folded[0], nets(&["198.19.0.0/16"]));
        assert_eq!(folded[1], nets(&["2001:db8:19::/108"]));
    }

    #[test]
    fn disjoint_service_cidrs_are_all_kept_in_order() {
        let folded = fold_nested(nets(&["198.19.128.0/17", "198.19.0.0/17"]));
        assert_eq!(folded[0], nets(&["198.19.0.0/17", "198.19.128.0/17"]));
    }

    #[test]
    fn cidrs_with_host_bits_are_refused() {
        let err = parse_all("spec.cidrs", &["198.19.0.1/16".to_owned()]);
        assert!(matches!(err, Err(CidrError::HostBits { .. })));
    }
}
