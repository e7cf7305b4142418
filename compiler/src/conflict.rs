//! Services that claim the same dispatch key: the older one wins.
//!
//! Keys are `(ClusterIP, protocol, port)`, `(externalIP or LB IP, protocol, port)` (all in
//! one space, as they share the `service-ips` map) and `(protocol, NodePort)`. The API
//! server never allocates one ClusterIP or NodePort twice, but manifests compiled offline
//! (and a cluster mid-restore) can, and externalIPs are not allocated at all. A verdict-map
//! key can only hold one verdict, so the claim of the older Service (`creationTimestamp`,
//! then `namespace/name`) is kept and the newer Service's claim is dropped with a warning
//! naming both. A Service without a timestamp counts as the newest. Sharing an address on
//! different ports is fine, and a Service never conflicts with itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::diagnostic::{Diagnostic, ObjectRef, Severity};
use crate::family::IpFamily;
use crate::protocol::Protocol;
use crate::service::{ServiceDef, ServicePortDef};

/// The claims of one Service that lost a conflict, indexed by port (the index in
/// `ServiceDef::ports`), and the warnings naming the older Service that won each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceLosses {
    cluster_ips: BTreeSet<(usize, IpFamily)>,
    external_ips: BTreeSet<(usize, IpAddr)>,
    node_ports: BTreeSet<usize>,
    /// One warning per lost claim, on the losing Service.
    pub warnings: Vec<Diagnostic>,
}

/// The losses of a Service that lost nothing.
pub static NO_LOSSES: ServiceLosses = ServiceLosses {
    cluster_ips: BTreeSet::new(),
    external_ips: BTreeSet::new(),
    node_ports: BTreeSet::new(),
    warnings: Vec::new(),
};

impl ServiceLosses {
    /// Whether the ClusterIP of this port in `family` lost (the port is skipped).
    pub fn contains(&self, port: usize, family: IpFamily) -> bool {
        !self.cluster_ips.is_empty() && self.cluster_ips.contains(&(port, family))
    }

    /// Whether this port's claim of the externalIP or LB IP `ip` lost.
    pub fn lost_external_ip(&self, port: usize, ip: IpAddr) -> bool {
        !self.external_ips.is_empty() && self.external_ips.contains(&(port, ip))
    }

    /// Whether this port's NodePort lost.
    pub fn lost_node_port(&self, port: usize) -> bool {
        !self.node_ports.is_empty() && self.node_ports.contains(&port)
    }
}

/// The Services that lost a claim, by their index in the slice given to [`resolve`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Losers(BTreeMap<usize, ServiceLosses>);

impl Losers {
    /// The losses of the Service at `index` (none for most).
    pub fn of(&self, index: usize) -> &ServiceLosses {
        self.0.get(&index).unwrap_or(&NO_LOSSES)
    }

    /// The Services that lost something, with their losses.
    pub fn into_losses(self) -> impl Iterator<Item = (usize, ServiceLosses)> {
        self.0.into_iter()
    }

    fn entry(&mut self, index: usize) -> &mut ServiceLosses {
        self.0.entry(index).or_default()
    }
}

/// A dispatch key a Service may claim: `(address, protocol, port)` (ClusterIPs, externalIPs
/// and LB IPs share this space) or `(protocol, NodePort)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Claim {
    Address(IpAddr, Protocol, u16),
    NodePort(Protocol, u16),
}

/// Every key `service` may claim, sorted and deduplicated; whether it does depends on the
/// older Services (a port whose ClusterIP lost claims nothing else). Services that share
/// no key cannot conflict, so [`resolve`] over only the Services that share keys with
/// others gives them the same losses as over all Services, and the rest lose nothing.
pub fn claims(service: &ServiceDef) -> Vec<Claim> {
    let mut out = Vec::new();
    for (port_index, port) in service.ports.iter().enumerate() {
        let key = |ip| Claim::Address(ip, port.protocol, port.port);
        for (family, ip) in service.cluster_ips() {
            out.push(key(ip));
            out.extend(service.external.ips_of(family).into_iter().map(key));
        }
        let node_port = service.external.node_ports.get(port_index).copied();
        if let Some(node_port) = node_port.flatten() {
            out.push(Claim::NodePort(port.protocol, node_port));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Who holds each key so far.
#[derive(Debug, Default)]
struct Claims {
    addresses: BTreeMap<(IpAddr, Protocol, u16), usize>,
    node_ports: BTreeMap<(Protocol, u16), usize>,
}

/// Finds the losing claims among `services` (which must have distinct identities); the
/// result is indexed as `services` is. Input order does not matter.
pub fn resolve(services: &[&ServiceDef]) -> Losers {
    let mut order: Vec<usize> = (0..services.len()).collect();
    // Oldest first: with a timestamp before without, then earlier, then by identity.
    order.sort_by_key(|&i| {
        let s = services[i];
        (s.created.is_none(), s.created, &s.id)
    });
    let mut claims = Claims::default();
    let mut losers = Losers::default();
    for index in order {
        let mut ctx = Context {
            services,
            index,
            claims: &mut claims,
            losers: &mut losers,
        };
        for (port_index, port) in services[index].ports.iter().enumerate() {
            ctx.claim_port(port_index, port);
        }
    }
    losers
}

/// One service's claims being settled.
struct Context<'a> {
    services: &'a [&'a ServiceDef],
    index: usize,
    claims: &'a mut Claims,
    losers: &'a mut Losers,
}

impl Context<'_> {
    fn claim_port(&mut self, port_index: usize, port: &ServicePortDef) {
        let service = self.services[self.index];
        let mut emitted = false;
        for (family, ip) in service.cluster_ips() {
            if let Some(winner) = self.claim_address(ip, port) {
                let losses = self.losers.entry(self.index);
                losses.cluster_ips.insert((port_index, family));
                self.warn(format!(
                    "{ip} {protocol} port {number} is already used by the older Service {winner}; port {label} ignored",
                    protocol = port.protocol,
                    number = port.port,
                    label = port.label(),
                ));
                continue;
            }
            emitted = true;
            for ext in service.external.ips_of(family) {
                if let Some(winner) = self.claim_address(ext, port) {
                    let losses = self.losers.entry(self.index);
                    losses.external_ips.insert((port_index, ext));
                    self.warn(format!(
                        "external address {ext} {protocol} port {number} is already used by the older Service {winner}; ignored for port {label}",
                        protocol = port.protocol,
                        number = port.port,
                        label = port.label(),
                    ));
                }
            }
        }
        let node_port = service
            .external
            .node_ports
            .get(port_index)
            .copied()
            .flatten();
        if let (true, Some(node_port)) = (emitted, node_port) {
            self.claim_node_port(port_index, port, node_port);
        }
    }

    fn claim_node_port(&mut self, port_index: usize, port: &ServicePortDef, node_port: u16) {
        let key = (port.protocol, node_port);
        let holder = *self.claims.node_ports.entry(key).or_insert(self.index);
        if holder == self.index {
            return;
        }
        self.losers.entry(self.index).node_ports.insert(port_index);
        let winner = &self.services[holder].id;
        self.warn(format!(
            "{protocol} NodePort {node_port} is already used by the older Service {winner}; ignored for port {label}",
            protocol = port.protocol,
            label = port.label(),
        ));
    }

    /// Claims `(ip, protocol, port)`; the older holder's identity when it is taken.
    fn claim_address(&mut self, ip: IpAddr, port: &ServicePortDef) -> Option<String> {
        let key = (ip, port.protocol, port.port);
        let holder = *self.claims.addresses.entry(key).or_insert(self.index);
        (holder != self.index).then(|| self.services[holder].id.to_string())
    }

    fn warn(&mut self, message: String) {
        let id = &self.services[self.index].id;
        self.losers.entry(self.index).warnings.push(Diagnostic {
            severity: Severity::Warning,
            object: ObjectRef::new("Service", Some(&id.namespace), &*id.name),
            message,
        });
    }
}
