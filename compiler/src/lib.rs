//! nftproxy-compiler: turns a cluster snapshot (Services, EndpointSlices, Node, ServiceCIDRs)
//! and a configuration into one nftables ruleset, plus diagnostics. Pure: no I/O, no async.
//!
//! The layout it emits is documented in `docs/ruleset.md`. Kubernetes objects are turned
//! into validated domain types at the boundary; an object that fails validation becomes a
//! [`Diagnostic`] and is skipped, it never fails the ruleset.
//!
//! Pipeline: index the snapshot once (`index`), settle conflicting ClusterIP,
//! external-address and NodePort claims (`conflict`), then per service port and family
//! choose endpoints (`select`) and emit elements and chains (`emit`) into the fixed layout
//! (`layout`, `masquerade`).

pub mod config;
pub mod diagnostic;
pub mod kube_proxy_config;
pub mod manifest;
pub mod snapshot;

mod affinity;
mod cidrs;
mod conflict;
mod emit;
mod endpoints;
mod external;
mod external_chain;
mod family;
mod firewall;
mod health_check;
mod index;
mod layout;
mod masquerade;
mod meta;
mod names;
mod naming;
mod nodeport;
mod protocol;
mod select;
mod service;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod udp;

pub use config::{CompileConfig, DetectLocal};
pub use diagnostic::{Diagnostic, ObjectRef, Severity};
pub use health_check::HealthCheck;
pub use snapshot::ClusterSnapshot;
pub use udp::UdpPort;

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use nftproxy_rules::Ruleset;

use crate::affinity::Affinity;
use crate::cidrs::{NodeDef, ServiceCidrDef};
use crate::emit::{ExternalPort, FirewallPort, Tables};
use crate::family::IpFamily;
use crate::naming::{AffinityNames, ExternalNames, PortNames};
use crate::protocol::Protocol;
use crate::select::ThisNode;
use crate::service::TrafficPolicy;
use crate::udp::UdpTargets;

/// The masquerade bit used when the configured one does not fit a 32-bit mark.
const DEFAULT_MASQUERADE_BIT: u8 = 14;

/// The result of a compile: the ruleset and what was wrong with the input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    pub ruleset: Ruleset,
    /// Sorted by object, then message; no duplicates.
    pub diagnostics: Vec<Diagnostic>,
    /// Services that need a health-check node port (LoadBalancer, externalTrafficPolicy
    /// Local, `healthCheckNodePort` set), sorted by `namespace/name`.
    pub health_checks: Vec<HealthCheck>,
    /// Every UDP service port per family with its destinations and endpoints, for stale
    /// conntrack cleanup; sorted by service, port name, then ClusterIP (IPv4 first).
    pub udp_ports: Vec<UdpPort>,
}

/// Compiles a cluster snapshot into the node's ruleset. Deterministic: the same input gives
/// an equal ruleset (and so byte-identical renderings), whatever the order of the input.
pub fn compile(snapshot: &ClusterSnapshot, config: &CompileConfig) -> Compiled {
    let mut diagnostics = Vec::new();
    let mark = masquerade_mark(config, &mut diagnostics);
    let node = this_node(snapshot, config, &mut diagnostics);
    let NodeDef {
        pod_cidrs,
        addresses: node_addresses,
        zone,
    } = node.unwrap_or_default();
    let this_node = ThisNode {
        name: &config.hostname,
        zone: zone.as_deref(),
    };
    let masquerade = masquerade::rules(config, &pod_cidrs, mark, &mut diagnostics);
    let node_ports = nodeport::resolve(config, &node_addresses, &mut diagnostics);
    let mut node_addresses = node_addresses;
    node_addresses.extend(&config.extra_node_ips);
    let mut tables = Tables::new(mark, masquerade, node_ports);
    let [v4, v6] = service_cidrs(snapshot, &mut diagnostics);
    tables.add_service_cidrs(v4.into_iter().chain(v6));

    let inputs = index::Inputs::build(snapshot, &mut diagnostics);
    let losers = conflict::resolve(&inputs.services, &mut diagnostics);
    let mut health_checks = Vec::new();
    let mut udp_ports = Vec::new();
    for (service_index, service) in inputs.services.iter().enumerate() {
        let slices = inputs.slices_for(&service.id, &mut diagnostics);
        service_warnings(service, &mut diagnostics);
        health_checks.extend(health_check::health_check(
            service,
            &slices,
            &config.hostname,
        ));
        for (_, ip) in service.cluster_ips() {
            tables.add_cluster_ip(ip);
        }
        for (port_index, port) in service.ports.iter().enumerate() {
            let names = PortNames::new(&service.id, port);
            let affinity_names = service
                .affinity
                .client_ip
                .map(|timeout| (AffinityNames::new(&service.id, port), timeout));
            let affinity = affinity_names.as_ref().map(|(names, timeout)| Affinity {
                names,
                timeout_secs: *timeout,
            });
            let node_port = service
                .external
                .node_ports
                .get(port_index)
                .copied()
                .flatten()
                .filter(|_| !losers.lost_node_port(service_index, port_index));
            let kept = |ips: Vec<IpAddr>| -> Vec<IpAddr> {
                let won = |ip: &IpAddr| !losers.lost_external_ip(service_index, port_index, *ip);
                ips.into_iter().filter(won).collect()
            };
            let external = (node_port.is_some() || !service.external.ips.is_empty())
                .then(|| ExternalNames::new(&service.id, port));
            for (family, ip) in service.cluster_ips() {
                if losers.contains(service_index, port_index, family) {
                    continue;
                }
                let policy = service.internal_policy;
                let outcome = select::select(&slices, port, family, policy, this_node);
                let all_endpoints = policy == TrafficPolicy::Cluster
                    && matches!(outcome, select::PortOutcome::Endpoints(_));
                let udp = port.protocol == Protocol::Udp;
                let mut udp_targets = UdpTargets::default();
                let mut udp_external = Vec::new();
                if udp {
                    udp_targets.add(&outcome);
                }
                tables.add_port(ip, port, &names, outcome, affinity);
                if let Some(external) = &external {
                    let firewall = FirewallPort {
                        port,
                        lb_ips: kept(service.external.lb_ips_of(family)),
                        ranges: &service.external.source_ranges,
                        chain: &external.firewall,
                        comment: &names.comment,
                        node_addresses: &node_addresses,
                    };
                    tables.add_firewall(family, &firewall);
                    let ext = ExternalPort {
                        port,
                        node_port,
                        ips: kept(service.external.ips_of(family)),
                        names: external,
                        comment: &names.comment,
                        service_chain: all_endpoints.then_some(names.chain.as_str()),
                        policy: service.external.policy,
                        affinity,
                    };
                    let select = |policy| select::select(&slices, port, family, policy, this_node);
                    let (cluster, local) =
                        (select(TrafficPolicy::Cluster), select(TrafficPolicy::Local));
                    if udp {
                        udp_targets.add(&cluster);
                        udp_targets.add(&local);
                        udp_external.clone_from(&ext.ips);
                    }
                    tables.add_external(family, &ext, cluster, local);
                }
                if udp {
                    let finished = udp_targets.finish(service, port, ip, &udp_external, node_port);
                    udp_ports.push(finished);
                }
            }
        }
    }
    diagnostics.sort_by(|a, b| {
        (&a.object, &a.message, a.severity).cmp(&(&b.object, &b.message, b.severity))
    });
    diagnostics.dedup();
    health_checks.sort_unstable();
    udp_ports.sort_unstable();
    Compiled {
        ruleset: tables.finish(),
        diagnostics,
        health_checks,
        udp_ports,
    }
}

/// A warning per `loadBalancerSourceRanges` entry that was normalised or ignored, and per
/// session affinity setting that was replaced.
fn service_warnings(service: &service::ServiceDef, diagnostics: &mut Vec<Diagnostic>) {
    let id = &service.id;
    let notes = service.external.source_ranges.notes.iter().cloned();
    let notes = notes.chain(service.affinity.notes.iter().cloned());
    for message in notes.chain(family_mismatches(service)) {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            object: ObjectRef::new("Service", Some(&id.namespace), id.name.as_str()),
            message,
        });
    }
}

/// A message per externalIP or LB IP of a family the Service has no ClusterIP of: like
/// kube-proxy, nothing is programmed for it. Allocates nothing for a Service without such IPs.
fn family_mismatches(service: &service::ServiceDef) -> impl Iterator<Item = String> + '_ {
    let external = &service.external;
    external
        .ips
        .iter()
        .filter(|ip| service.cluster_ips[IpFamily::of(ip).index()].is_none())
        .map(|ip| {
            let family = IpFamily::of(ip);
            let what = if external.lb_ips.contains(ip) {
                "load balancer ingress IP"
            } else {
                "externalIP"
            };
            format!("{what} {ip} is {family} but the Service has no {family} ClusterIP; ignored")
        })
}

/// `1 << masqueradeBit`, or the default bit with an error when it does not fit.
fn masquerade_mark(config: &CompileConfig, diagnostics: &mut Vec<Diagnostic>) -> u32 {
    let bit = if config.masquerade_bit < 32 {
        config.masquerade_bit
    } else {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            object: ObjectRef::new("KubeProxyConfiguration", None, "config"),
            message: format!(
                "nftables.masqueradeBit {} is not in 0-31; using {DEFAULT_MASQUERADE_BIT}",
                config.masquerade_bit
            ),
        });
        DEFAULT_MASQUERADE_BIT
    };
    1u32 << bit
}

/// This node (the Node named `config.hostname`), if present, unique and valid.
fn this_node(
    snapshot: &ClusterSnapshot,
    config: &CompileConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<NodeDef> {
    let object = ObjectRef::new("Node", None, meta::printable(&config.hostname));
    let mut matching = snapshot
        .nodes
        .iter()
        .map(Arc::as_ref)
        .filter(|n| n.metadata.name.as_deref() == Some(config.hostname.as_str()));
    let first: Option<&Node> = matching.next();
    let result = match first {
        Some(node) if matching.all(|other| other == node) => {
            NodeDef::try_from(node).map_err(|err| format!("{err}; ignored"))
        }
        Some(_) => Err("is defined more than once with different contents; ignored".to_owned()),
        None => Err("not found".to_owned()),
    };
    match result {
        Ok(node) => Some(node),
        Err(message) => {
            let needed = config.detect_local == DetectLocal::NodeCidr && !config.masquerade_all;
            if needed || first.is_some() {
                let message = if needed {
                    format!(
                        "{message}; detectLocalMode NodeCIDR has no pod CIDR, so ClusterIP traffic is not masqueraded"
                    )
                } else {
                    message
                };
                diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    object,
                    message,
                });
            }
            None
        }
    }
}

/// Every valid ServiceCIDR prefix, per family, nested prefixes folded.
fn service_cidrs(
    snapshot: &ClusterSnapshot,
    diagnostics: &mut Vec<Diagnostic>,
) -> [Vec<ipnet::IpNet>; 2] {
    let mut prefixes = Vec::new();
    for object in &snapshot.service_cidrs {
        match ServiceCidrDef::try_from(object.as_ref()) {
            Ok(def) => prefixes.extend(def.0),
            Err(err) => diagnostics.push(Diagnostic {
                severity: Severity::Error,
                object: meta::object_ref("ServiceCIDR", &object.metadata, false),
                message: format!("{err}; skipped"),
            }),
        }
    }
    cidrs::fold_nested(prefixes)
}
