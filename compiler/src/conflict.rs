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

/// Claims that lost a conflict. Indexes are (service index, port index).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Losers {
    cluster_ips: BTreeSet<(usize, usize, IpFamily)>,
    external_ips: BTreeSet<(usize, usize, IpAddr)>,
    node_ports: BTreeSet<(usize, usize)>,
}

impl Losers {
    /// Whether the ClusterIP of this service port in `family` lost (the port is skipped).
    pub fn contains(&self, service: usize, port: usize, family: IpFamily) -> bool {
        !self.cluster_ips.is_empty() && self.cluster_ips.contains(&(service, port, family))
    }

    /// Whether this service port's claim of the externalIP or LB IP `ip` lost.
    pub fn lost_external_ip(&self, service: usize, port: usize, ip: IpAddr) -> bool {
        !self.external_ips.is_empty() && self.external_ips.contains(&(service, port, ip))
    }

    /// Whether this service port's NodePort lost.
    pub fn lost_node_port(&self, service: usize, port: usize) -> bool {
        !self.node_ports.is_empty() && self.node_ports.contains(&(service, port))
    }
}

/// Who holds each key so far.
#[derive(Debug, Default)]
struct Claims {
    addresses: BTreeMap<(IpAddr, Protocol, u16), usize>,
    node_ports: BTreeMap<(Protocol, u16), usize>,
}

/// Finds the losing claims; `services` is indexed as the compiler iterates it.
pub fn resolve(services: &[ServiceDef], diagnostics: &mut Vec<Diagnostic>) -> Losers {
    let mut order: Vec<usize> = (0..services.len()).collect();
    // Oldest first: with a timestamp before without, then earlier, then by identity.
    order.sort_by_key(|&i| {
        let s = &services[i];
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
            diagnostics,
        };
        for (port_index, port) in services[index].ports.iter().enumerate() {
            ctx.claim_port(port_index, port);
        }
    }
    losers
}

/// One service's claims being settled.
struct Context<'a> {
    services: &'a [ServiceDef],
    index: usize,
    claims: &'a mut Claims,
    losers: &'a mut Losers,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Context<'_> {
    fn claim_port(&mut self, port_index: usize, port: &ServicePortDef) {
        let service = &self.services[self.index];
        let mut emitted = false;
        for (family, ip) in service.cluster_ips() {
            if let Some(winner) = self.claim_address(ip, port) {
                self.losers
                    .cluster_ips
                    .insert((self.index, port_index, family));
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
                    self.losers
                        .external_ips
                        .insert((self.index, port_index, ext));
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
        self.losers.node_ports.insert((self.index, port_index));
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
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            object: ObjectRef::new("Service", Some(&id.namespace), id.name.as_str()),
            message,
        });
    }
}
