//! Which endpoints a service port sends new connections to, per family.
//!
//! kube-proxy's rules (`CategorizeEndpoints`): ready endpoints are used; when there are
//! none, serving-and-terminating ones are; not-serving endpoints never are. With
//! `internalTrafficPolicy: Local` only endpoints on this node count, and the ready/terminating
//! fallback is decided among them. A service with no usable endpoint anywhere rejects; one
//! whose only usable endpoints are on other nodes (Local) drops.
//!
//! Topology (kube-proxy's `topologyModeFromHints`) narrows the cluster-wide set only. The
//! EndpointSlice controller turns `trafficDistribution` into hints and the proxy acts on
//! the hints alone, deciding per port and family among the *ready* endpoints: when every
//! one has `forNodes` hints and one names this node, the endpoints naming this node are
//! used; otherwise, when every one has `forZones` hints and one names this node's zone,
//! the endpoints naming that zone are used; otherwise all of them. Incomplete hints thus
//! fall back to every endpoint. The serving-and-terminating fallback and the Local sets
//! ignore hints.

use std::net::IpAddr;

use crate::endpoints::{Hints, SliceDef, Usability};
use crate::family::IpFamily;
use crate::service::{ServicePortDef, TrafficPolicy};

/// An endpoint of a service port: where `dnat` sends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub addr: IpAddr,
    pub port: u16,
}

/// What a service port does with new connections in one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortOutcome {
    /// DNAT to one of these (sorted, deduplicated, never empty).
    Endpoints(Vec<Target>),
    /// No usable endpoint anywhere: reject.
    Reject,
    /// `internalTrafficPolicy: Local` and no usable endpoint on this node: drop.
    Drop,
}

/// This node, as endpoint selection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThisNode<'a> {
    /// Endpoints with this `nodeName` are local; `forNodes` hints name it.
    pub name: &'a str,
    /// The node's `topology.kubernetes.io/zone` label, which `forZones` hints name.
    pub zone: Option<&'a str>,
}

/// A usable endpoint before the final choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate<'a> {
    target: Target,
    usability: Usability,
    /// Sorts local endpoints first among duplicates.
    remote: bool,
    hints: Option<Hints<'a>>,
}

/// Which ready endpoints the cluster-wide set keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// Every one.
    All,
    /// Those whose `forNodes` names this node.
    SameNode,
    /// Those whose `forZones` names this node's zone.
    SameZone,
}

/// Chooses the endpoints of `port` in `family` from the service's slices.
pub fn select(
    slices: &[SliceDef<'_>],
    port: &ServicePortDef,
    family: IpFamily,
    policy: TrafficPolicy,
    node: ThisNode<'_>,
) -> PortOutcome {
    let mut candidates = candidates(slices, port, family, node.name);
    if candidates.is_empty() {
        return PortOutcome::Reject;
    }
    // Sorting makes the outcome independent of input order; among duplicates of one
    // address and port the most usable (then local) copy comes first and is kept.
    candidates.sort_unstable();
    candidates.dedup_by_key(|c| c.target);
    if policy == TrafficPolicy::Local {
        candidates.retain(|c| !c.remote);
    }
    let Some(best) = candidates.iter().map(|c| c.usability).min() else {
        return PortOutcome::Drop;
    };
    let topology = if policy == TrafficPolicy::Cluster && best == Usability::Ready {
        topology(&candidates, node)
    } else {
        Topology::All
    };
    let targets = candidates
        .iter()
        .filter(|c| c.usability == best && topology.keeps(c.hints, node))
        .map(|c| c.target)
        .collect();
    PortOutcome::Endpoints(targets)
}

/// The topology the hints of the ready `candidates` allow. Stops at the first ready
/// endpoint without hints, so services without hints pay for one look.
fn topology(candidates: &[Candidate<'_>], node: ThisNode<'_>) -> Topology {
    let zone = node.zone.unwrap_or_default();
    let (mut every_node, mut every_zone) = (true, true);
    let (mut names_node, mut names_zone) = (false, false);
    let ready = candidates
        .iter()
        .filter(|c| c.usability == Usability::Ready);
    for candidate in ready {
        let Some(hints) = candidate.hints else {
            return Topology::All;
        };
        if hints.has_nodes() {
            names_node |= hints.for_node(node.name);
        } else {
            every_node = false;
        }
        if hints.has_zones() {
            names_zone |= hints.for_zone(zone);
        } else {
            every_zone = false;
        }
        if !every_node && !every_zone {
            return Topology::All;
        }
    }
    if every_node && names_node {
        Topology::SameNode
    } else if every_zone && names_zone {
        Topology::SameZone
    } else {
        Topology::All
    }
}

impl Topology {
    /// Whether an endpoint with these hints stays in the set.
    fn keeps(self, hints: Option<Hints<'_>>, node: ThisNode<'_>) -> bool {
        match self {
            Topology::All => true,
            Topology::SameNode => hints.is_some_and(|h| h.for_node(node.name)),
            Topology::SameZone => hints.is_some_and(|h| h.for_zone(node.zone.unwrap_or_default())),
        }
    }
}

/// Usable endpoints of `family` that the slices map `port` to.
fn candidates<'a>(
    slices: &[SliceDef<'a>],
    port: &ServicePortDef,
    family: IpFamily,
    hostname: &str,
) -> Vec<Candidate<'a>> {
    // At most every endpoint (often exactly): one allocation instead of a few regrowths.
    let mut out = Vec::with_capacity(slices.iter().map(|s| s.endpoints.len()).sum());
    for slice in slices {
        let Some(slice_port) = slice
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
        else {
            continue;
        };
        let usable = slice
            .endpoints
            .iter()
            .filter(|e| e.usability != Usability::Unusable && IpFamily::of(&e.addr) == family);
        out.extend(usable.map(|e| Candidate {
            target: Target {
                addr: e.addr,
                port: slice_port.port,
            },
            usability: e.usability,
            remote: e.node != Some(hostname),
            hints: e.hints,
        }));
    }
    out
}
