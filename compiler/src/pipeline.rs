//! The steps of a compile, shared by [`compile`](crate::compile) and the
//! [`IncrementalCompiler`](crate::IncrementalCompiler): the global step (configuration, this
//! node, ServiceCIDRs) and the step of one Service.
//!
//! The global step gives the [`Context`] every Service is compiled in and the [`Tables`]
//! without services. The step of one Service reads only the context, the Service, its
//! conflict losses and its validated slices, and writes only its [`Fragment`] and
//! [`Outputs`]: that is what lets the incremental compiler redo one Service alone.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::affinity::Affinity;
use crate::cidrs::{self, NodeDef, ServiceCidrDef};
use crate::conflict::ServiceLosses;
use crate::diagnostic::{Diagnostic, ObjectRef, Severity};
use crate::emit::{EmitConfig, ExternalPort, FirewallPort, Fragment, Tables};
use crate::endpoints::SliceDef;
use crate::family::IpFamily;
use crate::health_check::{self, HealthCheck};
use crate::naming::{AffinityNames, ExternalNames, PortNames};
use crate::protocol::Protocol;
use crate::select::{self, ThisNode};
use crate::service::{ServiceDef, TrafficPolicy};
use crate::udp::{UdpPort, UdpTargets};
use crate::{ClusterSnapshot, CompileConfig, Compiled, DetectLocal, masquerade, meta, nodeport};

/// The masquerade bit used when the configured one does not fit a 32-bit mark.
const DEFAULT_MASQUERADE_BIT: u8 = 14;

/// What every Service is compiled against: this node and the configuration's effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// This node's name (`CompileConfig::hostname`).
    pub hostname: String,
    /// This node's zone label.
    pub zone: Option<String>,
    /// This node's addresses: the Node's, then the configured extra node IPs.
    pub node_addresses: Vec<IpAddr>,
    pub emit: EmitConfig,
}

impl Context {
    pub fn this_node(&self) -> ThisNode<'_> {
        ThisNode {
            name: &self.hostname,
            zone: self.zone.as_deref(),
        }
    }
}

/// The global step: the context of the Services and the tables without them. Reads only
/// `config`, the Nodes named `config.hostname` and the ServiceCIDRs.
pub fn prepare(
    snapshot: &ClusterSnapshot,
    config: &CompileConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Context, Tables) {
    let mark = masquerade_mark(config, diagnostics);
    let node = this_node(snapshot, config, diagnostics);
    let NodeDef {
        pod_cidrs,
        addresses: node_addresses,
        zone,
    } = node.unwrap_or_default();
    let masquerade = masquerade::rules(config, &pod_cidrs, mark, diagnostics);
    let node_ports = nodeport::resolve(config, &node_addresses, diagnostics);
    let mut node_addresses = node_addresses;
    node_addresses.extend(&config.extra_node_ips);
    let mut tables = Tables::new(mark, masquerade.rules, node_ports);
    let [v4, v6] = service_cidrs(snapshot, diagnostics);
    tables.add_service_cidrs(v4.into_iter().chain(v6));
    let context = Context {
        hostname: config.hostname.clone(),
        zone,
        node_addresses,
        emit: EmitConfig {
            mark,
            local: masquerade.local,
        },
    };
    (context, tables)
}

/// What compiling Services gives besides their fragment of the ruleset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outputs {
    pub diagnostics: Vec<Diagnostic>,
    pub health_checks: Vec<HealthCheck>,
    pub udp_ports: Vec<UdpPort>,
}

impl Outputs {
    /// The compile's result, with the outputs in their documented order.
    pub fn finish(self, ruleset: nftproxy_rules::Ruleset) -> Compiled {
        let Outputs {
            mut diagnostics,
            mut health_checks,
            mut udp_ports,
        } = self;
        diagnostics.sort_by(diagnostic_order);
        diagnostics.dedup();
        health_checks.sort_unstable();
        udp_ports.sort_unstable();
        Compiled {
            ruleset,
            diagnostics,
            health_checks,
            udp_ports,
        }
    }
}

/// The order of `Compiled::diagnostics`: by object, then message, then severity.
pub fn diagnostic_order(a: &Diagnostic, b: &Diagnostic) -> std::cmp::Ordering {
    (&a.object, &a.message, a.severity).cmp(&(&b.object, &b.message, b.severity))
}

/// The step of one Service: its chains, sets and elements into `fragment`, its warnings
/// (including the conflicts it lost), health check and UDP ports into `out`. `slices` are
/// its validated slices (see `index::validate_slices`, whose diagnostics the caller keeps).
pub fn service(
    ctx: &Context,
    service: &ServiceDef,
    losses: &ServiceLosses,
    slices: &[SliceDef<'_>],
    fragment: &mut Fragment,
    out: &mut Outputs,
) {
    let this_node = ctx.this_node();
    out.diagnostics.extend(losses.warnings.iter().cloned());
    service_warnings(service, &mut out.diagnostics);
    out.health_checks
        .extend(health_check::health_check(service, slices, &ctx.hostname));
    for (_, ip) in service.cluster_ips() {
        fragment.add_cluster_ip(ip);
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
            .filter(|_| !losses.lost_node_port(port_index));
        let kept = |ips: Vec<IpAddr>| -> Vec<IpAddr> {
            let won = |ip: &IpAddr| !losses.lost_external_ip(port_index, *ip);
            ips.into_iter().filter(won).collect()
        };
        let external = (node_port.is_some() || !service.external.ips.is_empty())
            .then(|| ExternalNames::new(&service.id, port));
        for (family, ip) in service.cluster_ips() {
            if losses.contains(port_index, family) {
                continue;
            }
            let policy = service.internal_policy;
            let outcome = select::select(slices, port, family, policy, this_node);
            let all_endpoints = policy == TrafficPolicy::Cluster
                && matches!(outcome, select::PortOutcome::Endpoints(_));
            let udp = port.protocol == Protocol::Udp;
            let mut udp_targets = UdpTargets::default();
            let mut udp_external = Vec::new();
            if udp {
                udp_targets.add(&outcome);
            }
            fragment.add_port(ip, port, &names, outcome, affinity);
            let counted = (port.protocol.l4(), port.port);
            if external.is_none() {
                fragment.add_counters(&names.counter, counted, &[ip], None);
            }
            if let Some(external) = &external {
                let firewall = FirewallPort {
                    port,
                    lb_ips: kept(service.external.lb_ips_of(family)),
                    ranges: service.external.source_ranges(),
                    chain: &external.firewall,
                    comment: &names.comment,
                    node_addresses: &ctx.node_addresses,
                };
                fragment.add_firewall(family, &firewall);
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
                let ips: Vec<IpAddr> = std::iter::once(ip).chain(ext.ips.iter().copied()).collect();
                fragment.add_counters(&names.counter, counted, &ips, ext.node_port);
                let select = |policy| select::select(slices, port, family, policy, this_node);
                let (cluster, local) =
                    (select(TrafficPolicy::Cluster), select(TrafficPolicy::Local));
                if udp {
                    udp_targets.add(&cluster);
                    udp_targets.add(&local);
                    udp_external.clone_from(&ext.ips);
                }
                fragment.add_external(&ctx.emit, family, &ext, cluster, local);
            }
            if udp {
                let finished = udp_targets.finish(service, port, ip, &udp_external, node_port);
                out.udp_ports.push(finished);
            }
        }
    }
}

/// A warning per `loadBalancerSourceRanges` entry that was normalised or ignored, and per
/// session affinity setting that was replaced.
pub fn service_warnings(service: &ServiceDef, diagnostics: &mut Vec<Diagnostic>) {
    let id = &service.id;
    let notes = service.external.source_ranges().notes.iter().cloned();
    let notes = notes.chain(service.affinity.notes.iter().cloned());
    for message in notes.chain(family_mismatches(service)) {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            object: ObjectRef::new("Service", Some(&id.namespace), &*id.name),
            message,
        });
    }
}

/// A message per externalIP or LB IP of a family the Service has no ClusterIP of: like
/// kube-proxy, nothing is programmed for it. Allocates nothing for a Service without such IPs.
fn family_mismatches(service: &ServiceDef) -> impl Iterator<Item = String> + '_ {
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
