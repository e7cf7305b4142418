//! The UDP service ports of a compile, as stale-conntrack cleanup needs them.
//!
//! UDP has no connection end, so a conntrack entry that DNATs a client's flow to an endpoint
//! outlives the endpoint; the controller compares the UDP ports of two successive syncs and
//! deletes the entries that now lead nowhere (kube-proxy's behaviour). The compiler records,
//! per UDP service port and family, where traffic arrives (ClusterIP, externalIPs and LB IPs,
//! NodePort) and every endpoint its rules DNAT to. Only UDP ports are recorded, so the cost
//! for a TCP-only cluster is nil.

use std::net::{IpAddr, SocketAddr};

use crate::select::{PortOutcome, Target};
use crate::service::{ServiceDef, ServicePortDef};

/// One UDP service port in one family (the ClusterIP's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UdpPort {
    /// `namespace/name` of the Service.
    pub service: String,
    /// The port's name (empty when unnamed).
    pub port_name: String,
    /// ClusterIP and service port.
    pub cluster_ip: SocketAddr,
    /// externalIPs and load-balancer IPs with the service port; sorted, deduplicated.
    pub external: Vec<SocketAddr>,
    /// The NodePort (on every node-port address), if any.
    pub node_port: Option<u16>,
    /// Every endpoint some rule of this port DNATs to (ClusterIP, cluster-wide and local
    /// external paths together); sorted, deduplicated; empty when the port rejects or drops.
    pub endpoints: Vec<SocketAddr>,
}

impl UdpPort {
    /// Whether this is an IPv6 port.
    pub fn is_ipv6(&self) -> bool {
        self.cluster_ip.is_ipv6()
    }
}

/// Collects one UDP port's endpoints while its outcomes are emitted.
#[derive(Debug, Default)]
pub(crate) struct UdpTargets(Vec<SocketAddr>);

impl UdpTargets {
    /// Adds the endpoints `outcome` DNATs to.
    pub(crate) fn add(&mut self, outcome: &PortOutcome) {
        if let PortOutcome::Endpoints(targets) = outcome {
            let addr = |t: &Target| SocketAddr::new(t.addr, t.port);
            self.0.extend(targets.iter().map(addr));
        }
    }

    /// The finished record.
    pub(crate) fn finish(
        self,
        service: &ServiceDef,
        port: &ServicePortDef,
        cluster_ip: IpAddr,
        external: &[IpAddr],
        node_port: Option<u16>,
    ) -> UdpPort {
        let mut endpoints = self.0;
        endpoints.sort_unstable();
        endpoints.dedup();
        let mut external: Vec<SocketAddr> = external
            .iter()
            .map(|ip| SocketAddr::new(*ip, port.port))
            .collect();
        external.sort_unstable();
        external.dedup();
        UdpPort {
            service: service.id.to_string(),
            port_name: port.name.clone(),
            cluster_ip: SocketAddr::new(cluster_ip, port.port),
            external,
            node_port,
            endpoints,
        }
    }
}
