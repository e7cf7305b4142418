//! Incremental compile: redo only the Services whose inputs changed and patch the previous result.
//!
//! [`IncrementalCompiler::compile`] returns exactly what [`compile`](crate::compile) returns
//! for the same input, whatever it was given before. It keeps, per Service, its validated
//! definition and its inputs, and the assembled [`Compiled`]. What a Service's step (see
//! `pipeline`) added to the ruleset and to the diagnostics, health checks and UDP ports is
//! not kept: the step is a pure function of the Service's inputs and the global context, so
//! when a Service changes, its old part is made again from its inputs as they were and
//! taken out. (Keeping a record of every Service's part instead cost about 11 MB at 10k
//! Services, for parts that are seldom needed again.)
//!
//! On each call:
//!
//! 1. The global inputs (configuration, the Node named `hostname`, ServiceCIDRs) are
//!    compared with the previous ones; when what the global step makes of them changed
//!    (this node's zone or addresses, say, but not its heartbeat), everything is compiled
//!    from scratch.
//! 2. Services, EndpointSlices and Endpoints are compared with the previous lists (see
//!    `changes`: pointers first, then identity and content). A changed Service object
//!    re-validates its identity; a changed slice or Endpoints object marks the Service it
//!    belongs to. A Service is changed when its definition changed.
//! 3. Conflicts are settled again among the Services that share a dispatch key with
//!    another (usually none; see `conflict::claims`); a Service whose losses changed is
//!    changed too.
//! 4. Every changed Service's old part (its step run again on what its inputs were before
//!    this call) is taken out of the result, then its new part is put in. Outputs shared by Services (a hairpin element,
//!    a diagnostic) are counted, so they stay while any Service still contributes them.
//!
//! The first call (and one after a global change) compiles every Service the same way and
//! builds the ruleset in bulk, as `compile` does.

mod changes;
mod patch;
mod sorted;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::compact_slice::CompactSlice;
use foldhash::quality::RandomState;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;

use crate::conflict::{self, Claim, NO_LOSSES, ServiceLosses};
use crate::diagnostic::Diagnostic;
use crate::emit::{Fragment, Tables};
use crate::health_check::HealthCheck;
use crate::index;
use crate::meta;
use crate::pipeline::{self, Context, Outputs};
use crate::service::{ServiceDef, ServiceId};
use crate::udp::UdpPort;
use crate::{ClusterSnapshot, CompileConfig, Compiled};

use changes::{changes, remove_one, same_objects};
use patch::{FragmentRecord, Shared};
use sorted::Counted;

type Map<K, V> = HashMap<K, V, RandomState>;

/// A compiler that keeps its previous result and redoes only what changed.
///
/// ```
/// # use nftproxy_compiler::{ClusterSnapshot, CompileConfig, IncrementalCompiler, compile};
/// let (snapshot, config) = (ClusterSnapshot::default(), CompileConfig::default());
/// let mut compiler = IncrementalCompiler::new();
/// assert_eq!(compiler.compile(&snapshot, &config), &compile(&snapshot, &config));
/// ```
#[derive(Debug, Default)]
pub struct IncrementalCompiler {
    state: Option<Box<State>>,
}

impl IncrementalCompiler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles `snapshot`: equal to `compile(snapshot, config)`, in a fraction of its time
    /// when only a few Services' inputs changed since the previous call.
    pub fn compile(&mut self, snapshot: &ClusterSnapshot, config: &CompileConfig) -> &Compiled {
        let state = match self.state.take() {
            Some(mut state) => {
                if state.globals.refresh(snapshot, config) {
                    state.update(snapshot);
                    state
                } else {
                    drop(state);
                    Box::new(State::new(snapshot, config))
                }
            }
            None => Box::new(State::new(snapshot, config)),
        };
        &self.state.insert(state).compiled
    }

    /// The result of the last compile, if any.
    pub fn current(&self) -> Option<&Compiled> {
        self.state.as_ref().map(|s| &s.compiled)
    }

    /// How many Services the last compile compiled (`None` before the first).
    #[cfg(test)]
    fn recompiled(&self) -> Option<usize> {
        self.state.as_ref().map(|s| s.recompiled)
    }

    /// Forgets everything: the next compile starts from scratch.
    pub fn reset(&mut self) {
        self.state = None;
    }
}

/// The inputs of the global step (see `pipeline::prepare`) and what it made of them.
#[derive(Debug)]
struct Globals {
    config: CompileConfig,
    /// The Nodes named `config.hostname`.
    nodes: Vec<Arc<Node>>,
    service_cidrs: Vec<Arc<ServiceCIDR>>,
    context: Context,
    /// The tables without Services.
    skeleton: Tables,
    /// Sorted.
    diagnostics: Vec<Diagnostic>,
}

impl Globals {
    /// The global step; the tables without Services are returned, the rest kept.
    fn new(snapshot: &ClusterSnapshot, config: &CompileConfig) -> (Self, Tables) {
        let mut diagnostics = Vec::new();
        let (context, skeleton) = pipeline::prepare(snapshot, config, &mut diagnostics);
        diagnostics.sort_by(pipeline::diagnostic_order);
        let globals = Globals {
            config: config.clone(),
            nodes: this_nodes(snapshot, &config.hostname),
            service_cidrs: snapshot.service_cidrs.clone(),
            context,
            skeleton: skeleton.clone(),
            diagnostics,
        };
        (globals, skeleton)
    }

    /// Whether the global step would give what it gave before; if so, its inputs are
    /// kept for the next comparison. Unchanged objects (by pointer or content) are
    /// checked first; a changed object (this Node's status, say) that changes nothing
    /// the step makes of it costs one global step, not a compile from scratch.
    fn refresh(&mut self, snapshot: &ClusterSnapshot, config: &CompileConfig) -> bool {
        let nodes = this_nodes(snapshot, &config.hostname);
        let cidrs = changes(&self.service_cidrs, &snapshot.service_cidrs);
        let same_objects =
            self.config == *config && cidrs.is_empty() && same_objects(&self.nodes, &nodes);
        if !same_objects {
            let mut diagnostics = Vec::new();
            let (context, skeleton) = pipeline::prepare(snapshot, config, &mut diagnostics);
            diagnostics.sort_by(pipeline::diagnostic_order);
            if context != self.context
                || skeleton != self.skeleton
                || diagnostics != self.diagnostics
            {
                return false;
            }
            self.config.clone_from(config);
        }
        self.nodes = nodes;
        cidrs.store(&mut self.service_cidrs, &snapshot.service_cidrs);
        true
    }
}

fn this_nodes(snapshot: &ClusterSnapshot, hostname: &str) -> Vec<Arc<Node>> {
    let named = |n: &&Arc<Node>| n.metadata.name.as_deref() == Some(hostname);
    snapshot.nodes.iter().filter(named).cloned().collect()
}

/// Service objects are grouped by `(namespace, name)` as written: every object of one
/// identity is validated together (two different ones are ambiguous).
type RawKey = (String, Option<String>);

fn raw_key(service: &Service) -> RawKey {
    let meta = &service.metadata;
    (meta::namespace(meta).to_owned(), meta.name.clone())
}

fn service_id((namespace, name): (&str, &str)) -> ServiceId {
    ServiceId::new(namespace, name)
}

/// A changed Service's inputs as they were before the current update: what its old part
/// is made again from.
#[derive(Debug)]
struct Before {
    def: Option<ServiceDef>,
    losses: Option<ServiceLosses>,
    slices: Vec<Arc<CompactSlice>>,
    legacy: Vec<Arc<Endpoints>>,
}

/// One Service's step: its part of the ruleset (map elements settled), the record of that
/// part, and its diagnostics, health checks and UDP ports.
fn run_step(
    ctx: &Context,
    def: &ServiceDef,
    losses: &ServiceLosses,
    slices: &[Arc<CompactSlice>],
    legacy: &[Arc<Endpoints>],
) -> (Fragment, FragmentRecord, Outputs) {
    let mut outputs = Outputs::default();
    let slices = slices.iter().map(Arc::as_ref);
    let legacy = legacy.iter().map(Arc::as_ref);
    let slices = index::validate_slices(slices, legacy, &mut outputs.diagnostics);
    let mut fragment = Fragment::default();
    pipeline::service(ctx, def, losses, &slices, &mut fragment, &mut outputs);
    let record = FragmentRecord::of(&mut fragment);
    (fragment, record, outputs)
}

/// Who may claim each dispatch key, and the keys more than one Service may claim.
#[derive(Debug, Default)]
struct ClaimIndex {
    claimants: Map<Claim, Vec<ServiceId>>,
    contested: BTreeSet<Claim>,
}

impl ClaimIndex {
    fn add(&mut self, id: &ServiceId, def: &ServiceDef) {
        for claim in conflict::claims(def) {
            let claimants = self.claimants.entry(claim).or_default();
            claimants.push(id.clone());
            if claimants.len() == 2 {
                self.contested.insert(claim);
            }
        }
    }

    fn remove(&mut self, id: &ServiceId, def: &ServiceDef) {
        for claim in conflict::claims(def) {
            let Some(claimants) = self.claimants.get_mut(&claim) else {
                continue;
            };
            if let Some(found) = claimants.iter().position(|c| c == id) {
                claimants.swap_remove(found);
            }
            match claimants.len() {
                0 => {
                    self.claimants.remove(&claim);
                }
                1 => {
                    self.contested.remove(&claim);
                }
                _ => {}
            }
        }
    }

    /// The Services that share a key with another, sorted.
    fn contested_services(&self) -> Vec<&ServiceId> {
        let mut ids: Vec<&ServiceId> = self
            .contested
            .iter()
            .flat_map(|claim| self.claimants.get(claim).into_iter().flatten())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Everything kept between compiles.
#[derive(Debug)]
struct State {
    globals: Globals,
    /// The tables without Services, until the first update builds the ruleset in bulk.
    pending: Option<Tables>,
    /// The object lists of the previous snapshot.
    services: Vec<Arc<Service>>,
    endpoint_slices: Vec<Arc<CompactSlice>>,
    endpoints: Vec<Arc<Endpoints>>,
    /// Service objects by identity as written.
    raw_services: Map<RawKey, Vec<Arc<Service>>>,
    /// The validation diagnostics of each identity's Service objects.
    group_diagnostics: Map<RawKey, Vec<Diagnostic>>,
    /// EndpointSlices and legacy Endpoints by the Service they belong to.
    slices: Map<ServiceId, Vec<Arc<CompactSlice>>>,
    legacy: Map<ServiceId, Vec<Arc<Endpoints>>>,
    /// Valid Services.
    /// (Boxed: a table of 10k entries has 16k slots, and a slot holds a pointer rather
    /// than a 330-byte value.)
    defs: Map<ServiceId, Box<ServiceDef>>,
    claims: ClaimIndex,
    /// The Services that lost a conflict, with their losses.
    losses: Map<ServiceId, ServiceLosses>,
    /// The changed Services' inputs as they were, during an update (empty otherwise).
    before: Map<ServiceId, Before>,
    shared: Shared,
    diagnostics: Counted<Diagnostic>,
    health_checks: Counted<HealthCheck>,
    udp_ports: Counted<UdpPort>,
    compiled: Compiled,
    /// How many Services the last update compiled (for tests).
    recompiled: usize,
}

impl State {
    /// A compile from scratch.
    fn new(snapshot: &ClusterSnapshot, config: &CompileConfig) -> Self {
        let (globals, tables) = Globals::new(snapshot, config);
        let global_diagnostics = globals.diagnostics.clone();
        let mut state = State {
            globals,
            pending: Some(tables),
            services: Vec::new(),
            endpoint_slices: Vec::new(),
            endpoints: Vec::new(),
            raw_services: Map::default(),
            group_diagnostics: Map::default(),
            slices: Map::default(),
            legacy: Map::default(),
            defs: Map::default(),
            claims: ClaimIndex::default(),
            losses: Map::default(),
            before: Map::default(),
            shared: Shared::default(),
            diagnostics: Counted::default(),
            health_checks: Counted::default(),
            udp_ports: Counted::default(),
            compiled: Compiled::default(),
            recompiled: 0,
        };
        for diagnostic in global_diagnostics {
            state.diagnostics.add(diagnostic);
        }
        state.update(snapshot);
        state
    }

    /// Brings the result up to date with `snapshot` (whose global inputs are unchanged).
    fn update(&mut self, snapshot: &ClusterSnapshot) {
        let mut changed = Vec::new();
        self.update_slices(&snapshot.endpoint_slices, &mut changed);
        self.update_legacy(&snapshot.endpoints, &mut changed);
        self.update_services(&snapshot.services, &mut changed);
        self.settle_conflicts(&mut changed);
        changed.sort_unstable();
        changed.dedup();
        self.recompile(&changed);
        self.diagnostics.patch(&mut self.compiled.diagnostics);
        self.health_checks.patch(&mut self.compiled.health_checks);
        self.udp_ports.patch(&mut self.compiled.udp_ports);
    }

    /// Keeps the inputs of Service `id` as they are now, unless already kept in this
    /// update: called before any of them changes. (Not on the first update: nothing was
    /// compiled before it.)
    fn remember(&mut self, id: &ServiceId) {
        if self.pending.is_some() || self.before.contains_key(id) {
            return;
        }
        let before = Before {
            def: self.defs.get(id).map(|def| ServiceDef::clone(def)),
            losses: self.losses.get(id).cloned(),
            slices: self.slices.get(id).cloned().unwrap_or_default(),
            legacy: self.legacy.get(id).cloned().unwrap_or_default(),
        };
        self.before.insert(id.clone(), before);
    }

    fn update_slices(&mut self, new: &[Arc<CompactSlice>], changed: &mut Vec<ServiceId>) {
        let diff = changes(&self.endpoint_slices, new);
        if diff.identical {
            return;
        }
        diff.store(&mut self.endpoint_slices, new);
        for slice in diff.removed {
            match index::slice_owner(&slice) {
                Ok(owner) => {
                    let id = service_id(owner);
                    self.remember(&id);
                    if let Some(list) = self.slices.get_mut(&id) {
                        remove_one(list, &slice);
                        if list.is_empty() {
                            self.slices.remove(&id);
                        }
                    }
                    changed.push(id);
                }
                Err(diagnostic) => self.diagnostics.remove(diagnostic),
            }
        }
        for slice in diff.added {
            match index::slice_owner(&slice) {
                Ok(owner) => {
                    let id = service_id(owner);
                    self.remember(&id);
                    self.slices.entry(id.clone()).or_default().push(slice);
                    changed.push(id);
                }
                Err(diagnostic) => self.diagnostics.add(diagnostic),
            }
        }
    }

    fn update_legacy(&mut self, new: &[Arc<Endpoints>], changed: &mut Vec<ServiceId>) {
        let diff = changes(&self.endpoints, new);
        if diff.identical {
            return;
        }
        diff.store(&mut self.endpoints, new);
        for endpoints in diff.removed {
            let Some(id) = index::endpoints_owner(&endpoints).map(service_id) else {
                continue;
            };
            self.remember(&id);
            if let Some(list) = self.legacy.get_mut(&id) {
                remove_one(list, &endpoints);
                if list.is_empty() {
                    self.legacy.remove(&id);
                }
            }
            changed.push(id);
        }
        for endpoints in diff.added {
            let Some(id) = index::endpoints_owner(&endpoints).map(service_id) else {
                continue;
            };
            self.remember(&id);
            self.legacy.entry(id.clone()).or_default().push(endpoints);
            changed.push(id);
        }
    }

    fn update_services(&mut self, new: &[Arc<Service>], changed: &mut Vec<ServiceId>) {
        let diff = changes(&self.services, new);
        if diff.identical {
            return;
        }
        diff.store(&mut self.services, new);
        let mut keys = Vec::with_capacity(diff.removed.len() + diff.added.len());
        for service in diff.removed {
            let key = raw_key(&service);
            if let Some(list) = self.raw_services.get_mut(&key) {
                remove_one(list, &service);
                if list.is_empty() {
                    self.raw_services.remove(&key);
                }
            }
            keys.push(key);
        }
        for service in diff.added {
            let key = raw_key(&service);
            self.raw_services
                .entry(key.clone())
                .or_default()
                .push(service);
            keys.push(key);
        }
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            self.revalidate(key, changed);
        }
    }

    /// Validates the Service objects of one identity again.
    fn revalidate(&mut self, key: RawKey, changed: &mut Vec<ServiceId>) {
        for diagnostic in self.group_diagnostics.remove(&key).into_iter().flatten() {
            self.diagnostics.remove(diagnostic);
        }
        let mut diagnostics = Vec::new();
        let objects = self.raw_services.get(&key).into_iter().flatten();
        let mut defs = index::services(objects.map(Arc::as_ref), &mut diagnostics);
        // The objects share one identity, so there is at most one definition.
        let def = defs.pop();
        debug_assert!(defs.is_empty());
        for diagnostic in &diagnostics {
            self.diagnostics.add(diagnostic.clone());
        }
        if !diagnostics.is_empty() {
            self.group_diagnostics.insert(key.clone(), diagnostics);
        }
        let (namespace, Some(name)) = key else {
            return;
        };
        debug_assert!(
            def.as_ref()
                .is_none_or(|d| d.id == ServiceId::new(&namespace, &name))
        );
        // The definition's identity, whose strings the indexes then share.
        let id = match &def {
            Some(def) => def.id.clone(),
            None => ServiceId::new(&namespace, &name),
        };
        if self.defs.get(&id).map(Box::as_ref) == def.as_ref() {
            return;
        }
        self.remember(&id);
        if let Some(old) = self.defs.remove(&id) {
            self.claims.remove(&id, &old);
        }
        if let Some(def) = def {
            self.claims.add(&id, &def);
            self.defs.insert(id.clone(), Box::new(def));
        }
        changed.push(id);
    }

    /// Settles conflicts among the Services that share a key with another; marks the
    /// Services whose losses changed.
    fn settle_conflicts(&mut self, changed: &mut Vec<ServiceId>) {
        let contested = self.claims.contested_services();
        if contested.is_empty() && self.losses.is_empty() {
            return;
        }
        let defs: Vec<&ServiceDef> = contested
            .iter()
            .filter_map(|id| self.defs.get(*id).map(Box::as_ref))
            .collect();
        let losses: Map<ServiceId, ServiceLosses> = conflict::resolve(&defs)
            .into_losses()
            .map(|(index, losses)| (defs[index].id.clone(), losses))
            .collect();
        let before = self
            .losses
            .iter()
            .filter(|(id, l)| losses.get(*id) != Some(*l));
        let after = losses
            .iter()
            .filter(|(id, l)| self.losses.get(*id) != Some(*l));
        let moved: Vec<ServiceId> = before.chain(after).map(|(id, _)| id.clone()).collect();
        for id in &moved {
            self.remember(id);
        }
        changed.extend(moved);
        self.losses = losses;
    }

    /// Takes the changed Services' old parts out, then puts their new parts in.
    fn recompile(&mut self, changed: &[ServiceId]) {
        let ctx = &self.globals.context;
        // Everything out first: a changed Service may take over a key another one held.
        for id in changed {
            let Some(Before {
                def: Some(def),
                losses,
                slices,
                legacy,
            }) = self.before.remove(id)
            else {
                continue;
            };
            let losses = losses.as_ref().unwrap_or(&NO_LOSSES);
            let (_, record, outputs) = run_step(ctx, &def, losses, &slices, &legacy);
            self.shared.remove(&mut self.compiled.ruleset, &record);
            let Outputs {
                diagnostics,
                health_checks,
                udp_ports,
            } = outputs;
            diagnostics
                .into_iter()
                .for_each(|d| self.diagnostics.remove(d));
            health_checks
                .into_iter()
                .for_each(|h| self.health_checks.remove(h));
            udp_ports.into_iter().for_each(|u| self.udp_ports.remove(u));
        }
        debug_assert!(
            self.before.is_empty(),
            "inputs kept for an unchanged Service"
        );
        self.before.clear();
        let pending = self.pending.take();
        let mut bulk = Fragment::default();
        self.recompiled = 0;
        for id in changed {
            let Some(def) = self.defs.get(id) else {
                continue;
            };
            let losses = self.losses.get(id).unwrap_or(&NO_LOSSES);
            let slices = self.slices.get(id).map(Vec::as_slice).unwrap_or_default();
            let legacy = self.legacy.get(id).map(Vec::as_slice).unwrap_or_default();
            let (mut fragment, record, outputs) = run_step(ctx, def, losses, slices, legacy);
            self.recompiled += 1;
            if pending.is_some() {
                self.shared.count(&record);
                for (all, part) in bulk.parts.iter_mut().zip(&mut fragment.parts) {
                    all.append(part);
                }
            } else {
                self.shared.insert(
                    &mut self.compiled.ruleset,
                    &self.globals.skeleton,
                    fragment,
                    &record,
                );
            }
            for diagnostic in outputs.diagnostics {
                self.diagnostics.add(diagnostic);
            }
            for check in outputs.health_checks {
                self.health_checks.add(check);
            }
            for port in outputs.udp_ports {
                self.udp_ports.add(port);
            }
        }
        if let Some(tables) = pending {
            self.compiled.ruleset = tables.finish(bulk);
        }
    }
}
