//! The external side of a Service: NodePorts, externalIPs, LoadBalancer ingress IPs and
//! `externalTrafficPolicy`, validated at the boundary like the rest of the Service.
//!
//! As in kube-proxy, NodePorts exist only for `NodePort` and `LoadBalancer` Services (a
//! LoadBalancer with `allocateLoadBalancerNodePorts: false` simply has none set), ingress
//! IPs only for `LoadBalancer` Services, and ingress entries with `ipMode: Proxy` are left
//! to the load balancer (traffic reaches the node addressed to the node, not to the VIP).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use thiserror::Error;

use crate::family::IpFamily;
use crate::firewall::SourceRanges;
use crate::service::TrafficPolicy;

/// Why the external part of a Service was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExternalError {
    #[error("spec.externalTrafficPolicy {0:?} is not Cluster or Local")]
    Policy(String),
    #[error("spec.ports[{index}].nodePort {port} is out of range 1-65535")]
    NodePort { index: usize, port: i32 },
    #[error("spec.healthCheckNodePort {0} is out of range 1-65535")]
    HealthCheckNodePort(i32),
    #[error("spec.externalIPs entry {0:?} is not a usable IP address")]
    ExternalIp(String),
    #[error("status.loadBalancer.ingress entry {0:?} is not a usable IP address")]
    IngressIp(String),
}

/// The validated external side of a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalDef {
    /// NodePort per `spec.ports` entry (same index); `None` when the port has none.
    pub node_ports: Box<[Option<u16>]>,
    /// `spec.externalIPs`, then the ingress IPs, sorted and deduplicated.
    pub ips: Box<[IpAddr]>,
    /// The ingress IPs alone (LoadBalancer Services), sorted and deduplicated.
    pub lb_ips: Box<[IpAddr]>,
    /// `spec.loadBalancerSourceRanges` (LoadBalancer Services only), read through
    /// [`ExternalDef::source_ranges`]; `None` when empty: an 80-byte value that nearly
    /// every Service leaves empty.
    source_ranges: Option<Box<SourceRanges>>,
    pub policy: TrafficPolicy,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with externalTrafficPolicy Local.
    pub health_check_node_port: Option<u16>,
}

/// No source ranges.
static NO_SOURCE_RANGES: SourceRanges = SourceRanges {
    listed: false,
    nets: [Vec::new(), Vec::new()],
    notes: Vec::new(),
};

impl ExternalDef {
    /// `spec.loadBalancerSourceRanges`, validated.
    pub fn source_ranges(&self) -> &SourceRanges {
        self.source_ranges.as_deref().unwrap_or(&NO_SOURCE_RANGES)
    }

    /// The externalIPs and LB IPs of `family`.
    pub fn ips_of(&self, family: IpFamily) -> Vec<IpAddr> {
        let of_family = self.ips.iter().filter(|ip| IpFamily::of(ip) == family);
        of_family.copied().collect()
    }

    /// The LB IPs of `family`.
    pub fn lb_ips_of(&self, family: IpFamily) -> Vec<IpAddr> {
        let of_family = self.lb_ips.iter().filter(|ip| IpFamily::of(ip) == family);
        of_family.copied().collect()
    }
}

/// Reads the external side of `service` (whose spec has been checked to exist).
pub fn external(service: &Service) -> Result<ExternalDef, ExternalError> {
    let Some(spec) = service.spec.as_ref() else {
        return Ok(ExternalDef::default());
    };
    let policy = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => return Err(ExternalError::Policy(other.to_owned())),
    };
    let type_ = spec.type_.as_deref();
    let has_node_ports = matches!(type_, Some("NodePort" | "LoadBalancer"));
    let mut node_ports = Vec::new();
    for (index, port) in spec.ports.iter().flatten().enumerate() {
        let node_port = match port.node_port {
            Some(n) if has_node_ports && n != 0 => {
                Some(u16::try_from(n).map_err(|_| ExternalError::NodePort { index, port: n })?)
            }
            _ => None,
        };
        node_ports.push(node_port);
    }
    let mut ips = Vec::new();
    for text in spec.external_ips.iter().flatten() {
        ips.push(usable_ip(text).ok_or_else(|| ExternalError::ExternalIp(text.clone()))?);
    }
    let mut lb_ips = Vec::new();
    let mut source_ranges = SourceRanges::default();
    if type_ == Some("LoadBalancer") {
        let raw = spec
            .load_balancer_source_ranges
            .as_deref()
            .unwrap_or_default();
        source_ranges = SourceRanges::parse(raw);
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for entry in ingress.into_iter().flatten() {
            let (Some(text), false) = (&entry.ip, entry.ip_mode.as_deref() == Some("Proxy")) else {
                continue;
            };
            lb_ips.push(usable_ip(text).ok_or_else(|| ExternalError::IngressIp(text.clone()))?);
        }
    }
    ips.extend(&lb_ips);
    ips.sort_unstable();
    ips.dedup();
    lb_ips.sort_unstable();
    lb_ips.dedup();
    let health_check_node_port = match spec.health_check_node_port {
        Some(n) if type_ == Some("LoadBalancer") && policy == TrafficPolicy::Local && n != 0 => {
            Some(u16::try_from(n).map_err(|_| ExternalError::HealthCheckNodePort(n))?)
        }
        _ => None,
    };
    let source_ranges = (source_ranges != SourceRanges::default()).then(|| Box::new(source_ranges));
    Ok(ExternalDef {
        node_ports: node_ports.into(),
        ips: ips.into(),
        lb_ips: lb_ips.into(),
        source_ranges,
        policy,
        health_check_node_port,
    })
}

fn usable_ip(text: &str) -> Option<IpAddr> {
    let ip: IpAddr = text.parse().ok()?;
    let unusable = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || crate::family::ipv4_mapped(&ip).is_some();
    (!unusable).then_some(ip)
}
