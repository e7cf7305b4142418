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
//! (`layout`, `masquerade`). The global step and the step of one Service are in `pipeline`;
//! [`IncrementalCompiler`] redoes only the Services whose inputs changed and patches the
//! previous result, with the same output as [`compile`].

pub mod compact;
pub mod compact_slice;
pub mod compact_text;
pub mod config;
pub mod diagnostic;
pub mod kube_proxy_config;
pub mod manifest;
pub mod snapshot;

mod affinity;
mod cidrs;
mod conflict;
mod counters;
mod describe;
mod emit;
mod endpoints;
mod external;
mod external_chain;
mod family;
mod firewall;
mod health_check;
mod incremental;
mod index;
mod layout;
mod masquerade;
mod meta;
mod names;
mod naming;
mod nodeport;
mod pipeline;
mod protocol;
mod select;
mod service;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod udp;

pub use compact::Compact;
pub use compact_slice::{CompactEndpoint, CompactPort, CompactSlice};
pub use config::{CompileConfig, DetectLocal};
pub use counters::{CounterLabels, NODEPORT_COUNTERS, SERVICE_COUNTERS, parse_counter_name};
pub use describe::{
    Description, FamilyDescription, NoLocalEndpoints, PortDescription, ServiceDescription, describe,
};
pub use diagnostic::{Diagnostic, ObjectRef, Severity};
pub use health_check::HealthCheck;
pub use incremental::IncrementalCompiler;
pub use layout::{SHARDS, TABLE, is_table_name, shard_table, table_ids, table_names};
pub use meta::object_ref;
pub use snapshot::ClusterSnapshot;
pub use udp::UdpPort;

use nftproxy_rules::Ruleset;

use crate::emit::Fragment;
use crate::pipeline::Outputs;
use crate::service::ServiceDef;

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
    let mut out = Outputs::default();
    let (context, tables) = pipeline::prepare(snapshot, config, &mut out.diagnostics);
    let inputs = index::Inputs::build(snapshot, &mut out.diagnostics);
    let services: Vec<&ServiceDef> = inputs.services.iter().collect();
    let losers = conflict::resolve(&services);
    let mut fragment = Fragment::default();
    for (index, service) in inputs.services.iter().enumerate() {
        let slices = inputs.slices_for(&service.id, &mut out.diagnostics);
        let losses = losers.of(index);
        pipeline::service(&context, service, losses, &slices, &mut fragment, &mut out);
    }
    out.finish(tables.finish(fragment))
}
