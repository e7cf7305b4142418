//! Services as the compiler sees them: validated identity, ClusterIPs per family, ports.
//!
//! `ServiceDef::try_from(&Service)` is the boundary: it refuses anything the API server
//! would refuse and that could reach the ruleset (names, IPs, ports, protocols). Services
//! nftproxy must leave alone (headless, ExternalName, another proxy's) are recognised by
//! [`is_proxied`] before validation, so they produce neither rules nor diagnostics.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::jiff::Timestamp;
use thiserror::Error;

use crate::affinity::SessionAffinity;
use crate::external::{self, ExternalDef, ExternalError};
use crate::family::IpFamily;
use crate::meta::{self, IdentityError};
use crate::names::{self, NameError};
use crate::protocol::{Protocol, ProtocolError};

/// Services with this label are handled by the proxy it names, never by nftproxy.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";

/// Validated `namespace/name` of a Service.
///
/// Shared strings: the incremental compiler keys several indexes by it, and a clone is then
/// two reference counts rather than two allocations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ServiceId {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `internalTrafficPolicy` or `externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// One validated Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortDef {
    /// The port name; empty when unnamed (only allowed for a single-port Service).
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

impl ServicePortDef {
    /// How the port appears in chain names and comments: its name, or its number.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            self.port.to_string()
        } else {
            self.name.clone()
        }
    }
}

/// A validated Service that nftproxy proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    pub id: ServiceId,
    /// `metadata.creationTimestamp`; decides which of two conflicting Services wins.
    pub created: Option<Timestamp>,
    /// ClusterIP per family, indexed by [`IpFamily::index`].
    pub cluster_ips: [Option<IpAddr>; 2],
    pub ports: Vec<ServicePortDef>,
    pub internal_policy: TrafficPolicy,
    /// NodePorts, externalIPs, LoadBalancer IPs and `externalTrafficPolicy`.
    pub external: ExternalDef,
    /// `sessionAffinity` and its timeout.
    pub affinity: SessionAffinity,
}

impl ServiceDef {
    /// The ClusterIPs with their families, IPv4 first.
    pub fn cluster_ips(&self) -> impl Iterator<Item = (IpFamily, IpAddr)> + '_ {
        IpFamily::ALL
            .into_iter()
            .filter_map(|family| self.cluster_ips[family.index()].map(|ip| (family, ip)))
    }
}

/// Why a Service was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    External(#[from] ExternalError),
    #[error("spec is missing")]
    MissingSpec,
    #[error("spec.type {0:?} is not ClusterIP, NodePort, LoadBalancer or ExternalName")]
    Type(String),
    #[error("no clusterIP is allocated; skipped")]
    MissingClusterIp,
    #[error("spec.clusterIPs entry {0:?} is not an IP address")]
    ClusterIp(String),
    #[error(
        "spec.clusterIPs entry {text:?} is an IPv4-mapped IPv6 address, which the API server refuses; write {ipv4}"
    )]
    MappedClusterIp {
        text: String,
        ipv4: std::net::Ipv4Addr,
    },
    #[error("spec.clusterIPs has more than one {0} address")]
    ClusterIpFamily(IpFamily),
    #[error("spec.internalTrafficPolicy {0:?} is not Cluster or Local")]
    InternalTrafficPolicy(String),
    #[error("spec.ports is empty")]
    NoPorts,
    #[error("spec.ports[{index}].port {port} is out of range 1-65535")]
    Port { index: usize, port: i32 },
    #[error("spec.ports[{index}]: {source}")]
    Protocol { index: usize, source: ProtocolError },
    #[error("spec.ports[{index}].name {name:?} is invalid: {source}")]
    PortName {
        index: usize,
        name: String,
        source: NameError,
    },
    #[error("spec.ports[{index}].name is required when a Service has several ports")]
    MissingPortName { index: usize },
    #[error("spec.ports[{index}] repeats port name {name:?}")]
    DuplicatePortName { index: usize, name: String },
    #[error("spec.ports[{index}] repeats {protocol} port {port}")]
    DuplicatePort {
        index: usize,
        protocol: Protocol,
        port: u16,
    },
}

/// Whether nftproxy programs this Service at all (silently skipped otherwise).
pub fn is_proxied(service: &Service) -> bool {
    let foreign = service
        .metadata
        .labels
        .as_ref()
        .is_some_and(|labels| labels.contains_key(SERVICE_PROXY_NAME_LABEL));
    let Some(spec) = service.spec.as_ref() else {
        return !foreign;
    };
    let external_name = spec.type_.as_deref() == Some("ExternalName");
    let first_ip = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .or(spec.cluster_ip.as_ref());
    let headless = first_ip.is_some_and(|ip| ip == "None");
    !(foreign || external_name || headless)
}

impl TryFrom<&Service> for ServiceDef {
    type Error = ServiceError;

    fn try_from(service: &Service) -> Result<Self, Self::Error> {
        let (namespace, name) = meta::identity(&service.metadata, names::dns1035_label)?;
        let spec = service.spec.as_ref().ok_or(ServiceError::MissingSpec)?;
        match spec.type_.as_deref() {
            None | Some("ClusterIP" | "NodePort" | "LoadBalancer") => {}
            Some(other) => return Err(ServiceError::Type(other.to_owned())),
        }
        let internal_policy = match spec.internal_traffic_policy.as_deref() {
            None | Some("Cluster") => TrafficPolicy::Cluster,
            Some("Local") => TrafficPolicy::Local,
            Some(other) => return Err(ServiceError::InternalTrafficPolicy(other.to_owned())),
        };
        Ok(ServiceDef {
            id: ServiceId::new(namespace, name),
            created: service.metadata.creation_timestamp.as_ref().map(|t| t.0),
            cluster_ips: cluster_ips(spec)?,
            ports: ports(spec.ports.as_deref().unwrap_or_default())?,
            internal_policy,
            external: external::external(service)?,
            affinity: SessionAffinity::parse(spec),
        })
    }
}

/// `spec.clusterIPs` (or `spec.clusterIP`), at most one per family.
fn cluster_ips(spec: &ServiceSpec) -> Result<[Option<IpAddr>; 2], ServiceError> {
    let listed: Vec<&String> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.iter().collect(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip],
        _ => return Err(ServiceError::MissingClusterIp),
    };
    let mut by_family = [None, None];
    for text in listed {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| ServiceError::ClusterIp(text.clone()))?;
        if let Some(ipv4) = crate::family::ipv4_mapped(&ip) {
            return Err(ServiceError::MappedClusterIp {
                text: text.clone(),
                ipv4,
            });
        }
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
            return Err(ServiceError::ClusterIp(text.clone()));
        }
        let family = IpFamily::of(&ip);
        if by_family[family.index()].replace(ip).is_some() {
            return Err(ServiceError::ClusterIpFamily(family));
        }
    }
    Ok(by_family)
}

/// `spec.ports`: validated one by one, then checked for duplicates.
fn ports(raw: &[ServicePort]) -> Result<Vec<ServicePortDef>, ServiceError> {
    if raw.is_empty() {
        return Err(ServiceError::NoPorts);
    }
    let mut ports: Vec<ServicePortDef> = Vec::with_capacity(raw.len());
    for (index, port) in raw.iter().enumerate() {
        let def = service_port(index, port, raw.len())?;
        if let Some(dup) = ports
            .iter()
            .find(|p| !def.name.is_empty() && p.name == def.name)
        {
            return Err(ServiceError::DuplicatePortName {
                index,
                name: dup.name.clone(),
            });
        }
        if ports
            .iter()
            .any(|p| p.port == def.port && p.protocol == def.protocol)
        {
            return Err(ServiceError::DuplicatePort {
                index,
                protocol: def.protocol,
                port: def.port,
            });
        }
        ports.push(def);
    }
    Ok(ports)
}

fn service_port(
    index: usize,
    port: &ServicePort,
    count: usize,
) -> Result<ServicePortDef, ServiceError> {
    let number = u16::try_from(port.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(ServiceError::Port {
            index,
            port: port.port,
        })?;
    let protocol = Protocol::parse(port.protocol.as_deref())
        .map_err(|source| ServiceError::Protocol { index, source })?;
    let name = port.name.clone().unwrap_or_default();
    if name.is_empty() {
        if count > 1 {
            return Err(ServiceError::MissingPortName { index });
        }
    } else {
        names::iana_svc_name(&name).map_err(|source| ServiceError::PortName {
            index,
            name: name.clone(),
            source,
        })?;
    }
    Ok(ServicePortDef {
        name,
        port: number,
        protocol,
    })
}
