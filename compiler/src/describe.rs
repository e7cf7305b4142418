//! What the compiler makes of each Service, in words an operator reads: its addresses, its
//! ports and, per port and family, the endpoints it sends new connections to.
//!
//! [`describe`] runs the same steps as [`compile`](crate::compile) (validation, conflicts,
//! endpoint selection) without emitting a ruleset, so `/debug/services` shows exactly the
//! choices behind the rules. It is computed on demand, not on every sync.

use std::net::IpAddr;

use serde::Serialize;

use crate::diagnostic::Diagnostic;
use crate::family::IpFamily;
use crate::index::Inputs;
use crate::pipeline::{self, Context};
use crate::select::{self, PortOutcome};
use crate::service::{ServiceDef, TrafficPolicy};
use crate::{ClusterSnapshot, CompileConfig, conflict};

/// Every handled Service, and what could not be attributed to one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Description {
    /// Sorted by `namespace/name`.
    pub services: Vec<ServiceDescription>,
    /// Diagnostics of objects that are not a handled Service's (rejected Services, orphan
    /// slices, the Node, the configuration), one line each.
    pub other_diagnostics: Vec<String>,
    /// Service ports whose Local traffic policy finds no usable endpoint on this node.
    pub no_local_endpoints: NoLocalEndpoints,
}

/// kube-proxy's `sync_proxy_rules_no_local_endpoints_total`, by traffic policy: service
/// ports (per family) with a Local policy and no usable local endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NoLocalEndpoints {
    /// `internalTrafficPolicy: Local`: ClusterIP traffic is dropped.
    pub internal: usize,
    /// `externalTrafficPolicy: Local` on an externally reachable port: outside traffic is
    /// dropped.
    pub external: usize,
}

/// One Service as this node proxies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDescription {
    pub namespace: String,
    pub name: String,
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs` and LoadBalancer ingress IPs.
    pub external_ips: Vec<IpAddr>,
    /// The LoadBalancer ingress IPs alone.
    pub load_balancer_ips: Vec<IpAddr>,
    pub internal_traffic_policy: &'static str,
    pub external_traffic_policy: &'static str,
    /// `ClientIP` affinity timeout in seconds; `None` without affinity.
    pub session_affinity_seconds: Option<u32>,
    pub health_check_node_port: Option<u16>,
    pub ports: Vec<PortDescription>,
    /// Diagnostics about this Service and its endpoint objects, one line each.
    pub diagnostics: Vec<String>,
}

/// One service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortDescription {
    /// The port name; empty when unnamed.
    pub name: String,
    pub protocol: String,
    pub port: u16,
    /// `None` also when another Service won the NodePort.
    pub node_port: Option<u16>,
    pub families: Vec<FamilyDescription>,
}

/// One service port in one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyDescription {
    pub family: String,
    pub cluster_ip: IpAddr,
    /// `false` when another Service owns this ClusterIP and port: nothing is programmed.
    pub programmed: bool,
    /// What ClusterIP traffic gets: `dnat`, `reject` (no endpoint) or `drop` (Local, none
    /// on this node).
    pub verdict: &'static str,
    /// Where ClusterIP connections go (`addr:port`), after traffic policy and topology.
    pub endpoints: Vec<String>,
    /// Usable endpoints on this node (ready ones, else serving and terminating ones).
    pub local_endpoints: Vec<String>,
    /// What NodePort, externalIP and LB IP traffic gets; `None` when not reachable from
    /// outside.
    pub external_verdict: Option<&'static str>,
    /// Where NodePort, externalIP and LB IP connections go; `None` when not reachable
    /// from outside.
    pub external_endpoints: Option<Vec<String>>,
}

/// Describes every Service of `snapshot` as compiling it with `config` would treat it.
pub fn describe(snapshot: &ClusterSnapshot, config: &CompileConfig) -> Description {
    let mut other = Vec::new();
    let (context, _) = pipeline::prepare(snapshot, config, &mut other);
    let inputs = Inputs::build(snapshot, &mut other);
    let services: Vec<&ServiceDef> = inputs.services.iter().collect();
    let losers = conflict::resolve(&services);
    let mut description = Description::default();
    for (index, service) in inputs.services.iter().enumerate() {
        let mut diagnostics = Vec::new();
        let slices = inputs.slices_for(&service.id, &mut diagnostics);
        let losses = losers.of(index);
        diagnostics.extend(losses.warnings.iter().cloned());
        pipeline::service_warnings(service, &mut diagnostics);
        let described = describe_service(&context, service, losses, &slices, diagnostics);
        count_no_local(&described, &mut description.no_local_endpoints);
        description.services.push(described);
    }
    description.other_diagnostics = lines(other);
    description
}

fn describe_service(
    ctx: &Context,
    service: &ServiceDef,
    losses: &conflict::ServiceLosses,
    slices: &[crate::endpoints::SliceDef<'_>],
    diagnostics: Vec<Diagnostic>,
) -> ServiceDescription {
    let this_node = ctx.this_node();
    let external = &service.external;
    let ports = service.ports.iter().enumerate().map(|(index, port)| {
        let node_port = external.node_ports.get(index).copied().flatten();
        let node_port = node_port.filter(|_| !losses.lost_node_port(index));
        let reachable = node_port.is_some() || !external.ips.is_empty();
        let families = service.cluster_ips().map(|(family, cluster_ip)| {
            let select = |policy| select::select(slices, port, family, policy, this_node);
            let internal = select(service.internal_policy);
            let local = select(TrafficPolicy::Local);
            let outside = reachable.then(|| match external.policy {
                TrafficPolicy::Local => local.clone(),
                TrafficPolicy::Cluster => select(TrafficPolicy::Cluster),
            });
            FamilyDescription {
                family: family_name(family).to_owned(),
                cluster_ip,
                programmed: !losses.contains(index, family),
                verdict: verdict(&internal),
                endpoints: targets(&internal),
                local_endpoints: targets(&local),
                external_verdict: outside.as_ref().map(verdict),
                external_endpoints: outside.as_ref().map(targets),
            }
        });
        PortDescription {
            name: port.name.clone(),
            protocol: port.protocol.keyword().to_owned(),
            port: port.port,
            node_port,
            families: families.collect(),
        }
    });
    ServiceDescription {
        namespace: service.id.namespace.to_string(),
        name: service.id.name.to_string(),
        cluster_ips: service.cluster_ips().map(|(_, ip)| ip).collect(),
        external_ips: external.ips.to_vec(),
        load_balancer_ips: external.lb_ips.to_vec(),
        internal_traffic_policy: policy_name(service.internal_policy),
        external_traffic_policy: policy_name(external.policy),
        session_affinity_seconds: service.affinity.client_ip,
        health_check_node_port: external.health_check_node_port,
        ports: ports.collect(),
        diagnostics: lines(diagnostics),
    }
}

/// Adds the described Service's ports that drop traffic for want of a local endpoint to
/// `counts` (as kube-proxy, only when some other node has one: else they reject).
fn count_no_local(service: &ServiceDescription, counts: &mut NoLocalEndpoints) {
    let families = service.ports.iter().flat_map(|p| &p.families);
    for family in families.filter(|f| f.programmed) {
        if service.internal_traffic_policy == "Local" && family.verdict == "drop" {
            counts.internal += 1;
        }
        let external_local = service.external_traffic_policy == "Local";
        if external_local && family.external_verdict == Some("drop") {
            counts.external += 1;
        }
    }
}

fn targets(outcome: &PortOutcome) -> Vec<String> {
    match outcome {
        PortOutcome::Endpoints(targets) => targets
            .iter()
            .map(|t| std::net::SocketAddr::new(t.addr, t.port).to_string())
            .collect(),
        PortOutcome::Reject | PortOutcome::Drop => Vec::new(),
    }
}

fn verdict(outcome: &PortOutcome) -> &'static str {
    match outcome {
        PortOutcome::Endpoints(_) => "dnat",
        PortOutcome::Reject => "reject",
        PortOutcome::Drop => "drop",
    }
}

fn policy_name(policy: TrafficPolicy) -> &'static str {
    match policy {
        TrafficPolicy::Cluster => "Cluster",
        TrafficPolicy::Local => "Local",
    }
}

fn family_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "IPv4",
        IpFamily::V6 => "IPv6",
    }
}

/// Sorted, deduplicated one-line renderings.
fn lines(mut diagnostics: Vec<Diagnostic>) -> Vec<String> {
    diagnostics.sort_by(pipeline::diagnostic_order);
    diagnostics.dedup();
    diagnostics.iter().map(ToString::to_string).collect()
}
