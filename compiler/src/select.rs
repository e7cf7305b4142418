//! Which endpoints a service port sends new connections to, per family.
//!
//! kube-proxy's rules (`CategorizeEndpoints`): ready endpoints are used; when there are
//! none, serving-and-terminating ones are; not-serving endpoints never are. With
//! `internalTrafficPolicy: Local` only endpoints on this node count, and the ready/terminating
//! fallback is decided among them. A service with no usable endpoint anywhere rejects; one
//! whose only usable endpoints are on other nodes (Local) drops.

use std::net::IpAddr;

use crate::endpoints::{SliceDef, Usability};
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

/// A usable endpoint before the final choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    target: Target,
    usability: Usability,
    /// Sorts local endpoints first among duplicates.
    remote: bool,
}

/// Chooses the endpoints of `port` in `family` from the service's slices.
pub fn select(
    slices: &[SliceDef<'_>],
    port: &ServicePortDef,
    family: IpFamily,
    policy: TrafficPolicy,
    hostname: &str,
) -> PortOutcome {
    let mut candidates = candidates(slices, port, family, hostname);
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
    let targets = candidates
        .iter()
        .filter(|c| c.usability == best)
        .map(|c| c.target)
        .collect();
    PortOutcome::Endpoints(targets)
}

/// Usable endpoints of `family` that the slices map `port` to.
fn candidates(
    slices: &[SliceDef<'_>],
    port: &ServicePortDef,
    family: IpFamily,
    hostname: &str,
) -> Vec<Candidate> {
    let mut out = Vec::new();
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
        }));
    }
    out
}
