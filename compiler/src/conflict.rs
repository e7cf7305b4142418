//! Services that claim the same (ClusterIP, protocol, port): the older one wins.
//!
//! The API server never allocates one ClusterIP twice, but manifests compiled offline (and
//! a cluster mid-restore) can. A verdict-map key can only hold one verdict, so the claim of
//! the older Service (`creationTimestamp`, then `namespace/name`) is kept and the newer
//! Service's port is dropped with a warning naming both. A Service without a timestamp
//! counts as the newest. Sharing a ClusterIP on different ports is fine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::diagnostic::{Diagnostic, ObjectRef, Severity};
use crate::family::IpFamily;
use crate::protocol::Protocol;
use crate::service::ServiceDef;

/// Service ports that lost a conflict: (service index, port index, family).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Losers(BTreeSet<(usize, usize, IpFamily)>);

impl Losers {
    pub fn contains(&self, service: usize, port: usize, family: IpFamily) -> bool {
        !self.0.is_empty() && self.0.contains(&(service, port, family))
    }
}

/// Finds the losing service ports; `services` is indexed as the compiler iterates it.
pub fn resolve(services: &[ServiceDef], diagnostics: &mut Vec<Diagnostic>) -> Losers {
    let mut order: Vec<usize> = (0..services.len()).collect();
    // Oldest first: with a timestamp before without, then earlier, then by identity.
    order.sort_by_key(|&i| {
        let s = &services[i];
        (s.created.is_none(), s.created, &s.id)
    });
    let mut claims: BTreeMap<(IpAddr, Protocol, u16), usize> = BTreeMap::new();
    let mut losers = Losers::default();
    for index in order {
        let service = &services[index];
        for (port_index, port) in service.ports.iter().enumerate() {
            for (family, ip) in service.cluster_ips() {
                let key = (ip, port.protocol, port.port);
                let Some(&winner) = claims.get(&key) else {
                    claims.insert(key, index);
                    continue;
                };
                losers.0.insert((index, port_index, family));
                let winner = &services[winner].id;
                diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    object: ObjectRef::new("Service", Some(&service.id.namespace), service.id.name.as_str()),
                    message: format!(
                        "{ip} {protocol} port {number} is already used by the older Service {winner}; port {label} ignored",
                        protocol = port.protocol,
                        number = port.port,
                        label = port.label(),
                    ),
                });
            }
        }
    }
    losers
}
