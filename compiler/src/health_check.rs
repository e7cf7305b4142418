//! Services that need a health-check node port: `type: LoadBalancer` with
//! `externalTrafficPolicy: Local` and `spec.healthCheckNodePort` set. The compiler only
//! records them, with this node's number of local ready endpoints, for whatever serves the
//! port (the load balancer sends traffic only to nodes that report at least one).
//!
//! The count is kube-proxy's: distinct addresses of ready endpoints on this node, over the
//! Service's slices that map at least one of its ports (terminating endpoints do not count,
//! even when the fallback uses them).

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::endpoints::{SliceDef, Usability};
use crate::service::ServiceDef;

/// One Service's health-check node port and what it should report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    /// `spec.healthCheckNodePort`.
    pub node_port: u16,
    /// Ready endpoints on this node.
    pub local_endpoints: usize,
}

/// The health check of `service`, if it needs one.
pub fn health_check(
    service: &ServiceDef,
    slices: &[SliceDef<'_>],
    hostname: &str,
) -> Option<HealthCheck> {
    let node_port = service.external.health_check_node_port?;
    Some(HealthCheck {
        namespace: service.id.namespace.to_string(),
        name: service.id.name.to_string(),
        node_port,
        local_endpoints: local_ready(service, slices, hostname),
    })
}

/// Distinct ready endpoint addresses on `hostname` in slices serving one of the ports.
fn local_ready(service: &ServiceDef, slices: &[SliceDef<'_>], hostname: &str) -> usize {
    let serves_a_port = |slice: &&SliceDef<'_>| {
        slice.ports.iter().any(|p| {
            service
                .ports
                .iter()
                .any(|s| s.name == p.name && s.protocol == p.protocol)
        })
    };
    let addresses: BTreeSet<IpAddr> = slices
        .iter()
        .filter(serves_a_port)
        .flat_map(|slice| &slice.endpoints)
        .filter(|e| e.usability == Usability::Ready && e.node == Some(hostname))
        .map(|e| e.addr)
        .collect();
    addresses.len()
}
