//! Service ports into the ruleset: map elements and `service-…` dnat-cascade chains.
//!
//! A service port with N usable endpoints is one chain of N rules; rule i (0-based) matches
//! with probability 1/(N−i) given that the earlier ones did not (`numgen random mod (N−i)
//! == 0`), which makes the choice uniform, and the last rule is unconditional. This layout
//! keeps the kernel's load time linear (see `docs/ruleset.md` for the measurements). With
//! session affinity the chain starts with one sticky rule per endpoint and records each
//! client in a per-endpoint set (see `affinity`).
//!
//! Services are emitted into a [`Fragment`] (their chains, sets and elements, per family),
//! which [`Tables::finish`] turns into the ruleset; the incremental compiler keeps one
//! fragment's worth of bookkeeping per service and patches a ruleset with them instead.
//!
//! Elements are collected as plain values and turned into set elements only at the end,
//! sorted by a cheap native key: a `BTreeMap` built from sorted input costs one comparison
//! per element instead of a tree search per insert (which dominated compile time at 10k
//! services), and duplicates (an endpoint shared by services) are dropped before any
//! allocation.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nftproxy_rules::{
    Chain, Element, ElementKey, Expr, L4Proto, MetaKey, Rule, Ruleset, Set, Stmt, Table, Value,
    Verdict,
};

use crate::affinity::{self, Affinity};
use crate::counters::{self, CounterRef};
use crate::external_chain;
use crate::family::IpFamily;
use crate::firewall::{self, SourceRanges};
use crate::layout::{self, REJECT_CHAIN, SERVICE_IPS, SERVICE_NODEPORTS, Sets};
use crate::naming::{ExternalNames, PortNames};
use crate::nodeport::NodePortAddrs;
use crate::protocol::Protocol;
use crate::select::{PortOutcome, Target};
use crate::service::{ServicePortDef, TrafficPolicy};

/// A `KEY : verdict` element before it becomes one (`VIP . proto . port` or
/// `proto . port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch<K> {
    pub key: K,
    pub verdict: Verdict,
    pub comment: String,
}

impl<K> Dispatch<K> {
    /// The map element, under `key` (the element key of `self.key`).
    pub fn into_element(self, key: ElementKey) -> Element {
        Element {
            key,
            value: Some(Value::Verdict(self.verdict)),
            comment: Some(self.comment.into()),
        }
    }
}

/// The key of a `service-ips`, `no-endpoint-services` or `firewall-ips` element.
pub type VipKey = (IpAddr, L4Proto, u16);
/// The key of a `service-nodeports` or `no-endpoint-nodeports` element.
pub type NodePortKey = (L4Proto, u16);

/// One externally reachable service port of one family, for [`Fragment::add_external`].
#[derive(Debug)]
pub struct ExternalPort<'a> {
    pub port: &'a ServicePortDef,
    pub node_port: Option<u16>,
    /// externalIPs and LB IPs of this family.
    pub ips: Vec<IpAddr>,
    pub names: &'a ExternalNames,
    pub comment: &'a str,
    /// The `service-…` chain, when it holds the cluster-wide endpoints (internalTrafficPolicy
    /// Cluster; topology hints narrow both alike).
    pub service_chain: Option<&'a str>,
    pub policy: TrafficPolicy,
    /// Session affinity of the port (`sessionAffinity: ClientIP`).
    pub affinity: Option<Affinity<'a>>,
}

/// The firewall of one service port, for [`Fragment::add_firewall`].
#[derive(Debug)]
pub struct FirewallPort<'a> {
    pub port: &'a ServicePortDef,
    /// The LB IPs of the family (those that did not lose a conflict).
    pub lb_ips: Vec<IpAddr>,
    pub ranges: &'a SourceRanges,
    /// The `firewall-…` chain.
    pub chain: &'a str,
    pub comment: &'a str,
    /// This node's addresses (Node addresses and configured extra node IPs).
    pub node_addresses: &'a [IpAddr],
}

/// What the chains of services depend on besides the services: the masquerade mark and
/// each family's local-traffic detector (see `masquerade`), indexed by [`IpFamily::index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitConfig {
    pub mark: u32,
    pub local: [Option<Stmt>; 2],
}

/// What services add to one family's table, in the order they added it: their own chains
/// and sets, and their elements of the shared sets and maps (duplicates included; see
/// [`Tables::finish`] for how they are settled).
#[derive(Debug, Default)]
pub struct Part {
    /// Chains; a later chain replaces an earlier one of the same name.
    pub chains: Vec<Chain>,
    /// Affinity sets; a later set replaces an earlier one of the same name.
    pub sets: Vec<Set>,
    pub cluster_ips: Vec<IpAddr>,
    /// Endpoint addresses E of `endpoint-hairpin` (`E . E`).
    pub hairpin: Vec<IpAddr>,
    pub service_ips: Vec<Dispatch<VipKey>>,
    pub no_endpoint_services: Vec<Dispatch<VipKey>>,
    pub service_nodeports: Vec<Dispatch<NodePortKey>>,
    pub no_endpoint_nodeports: Vec<Dispatch<NodePortKey>>,
    pub firewall_ips: Vec<Dispatch<VipKey>>,
    /// Counter objects of the service ports (main table; see `counters`).
    pub counters: Vec<String>,
    pub service_counters: Vec<CounterRef<VipKey>>,
    pub nodeport_counters: Vec<CounterRef<NodePortKey>>,
}

impl Part {
    /// Moves everything `other` holds to the end of `self`.
    pub fn append(&mut self, other: &mut Part) {
        self.chains.append(&mut other.chains);
        self.sets.append(&mut other.sets);
        self.cluster_ips.append(&mut other.cluster_ips);
        self.hairpin.append(&mut other.hairpin);
        self.service_ips.append(&mut other.service_ips);
        self.no_endpoint_services
            .append(&mut other.no_endpoint_services);
        self.service_nodeports.append(&mut other.service_nodeports);
        self.no_endpoint_nodeports
            .append(&mut other.no_endpoint_nodeports);
        self.firewall_ips.append(&mut other.firewall_ips);
        self.counters.append(&mut other.counters);
        self.service_counters.append(&mut other.service_counters);
        self.nodeport_counters.append(&mut other.nodeport_counters);
    }
}

/// What one or more services add to both tables, per family ([`IpFamily::index`]).
#[derive(Debug, Default)]
pub struct Fragment {
    pub parts: [Part; 2],
}

/// The two tables without services, with what is global (masquerade rules, NodePort
/// addresses, ServiceCIDRs); [`finish`](Self::finish) adds the services' [`Fragment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    tables: [Table; 2],
    service_cidrs: [Vec<IpNet>; 2],
    nodeport_ips: [Vec<IpAddr>; 2],
    /// Whether NodePorts answer on every local address (per family).
    all_local: [bool; 2],
}

impl Tables {
    /// Empty layouts for both families, with their masquerade rules (see `masquerade`)
    /// and their NodePort addresses (see `nodeport`).
    pub fn new(mark: u32, mut rules: [Option<Rule>; 2], node_ports: [NodePortAddrs; 2]) -> Self {
        let mut nodeport_ips = [Vec::new(), Vec::new()];
        let mut all_local = [false; 2];
        let tables = IpFamily::ALL.map(|family| {
            let index = family.index();
            all_local[index] = match &node_ports[index] {
                NodePortAddrs::AllLocal => true,
                NodePortAddrs::Listed(ips) => {
                    nodeport_ips[index].clone_from(ips);
                    false
                }
            };
            layout::skeleton(family, mark, rules[index].take(), all_local[index])
        });
        Tables {
            tables,
            service_cidrs: [Vec::new(), Vec::new()],
            nodeport_ips,
            all_local,
        }
    }

    /// Shard table `k` of `family` as it is without services (see
    /// [`layout::shard_skeleton`]): a shard exists only while it holds something else.
    pub fn shard_template(&self, family: IpFamily, k: usize) -> Table {
        let index = family.index();
        let mut nodeport_ips = Sets::new(family).nodeport_ips;
        let addrs = sorted_addrs(self.nodeport_ips[index].clone());
        fill(&mut nodeport_ips, addrs, addr_key);
        layout::shard_skeleton(family, k, self.all_local[index], &nodeport_ips)
    }

    /// Adds ServiceCIDR prefixes (already folded so that none overlaps another).
    pub fn add_service_cidrs(&mut self, prefixes: impl IntoIterator<Item = IpNet>) {
        for net in prefixes {
            let family = IpFamily::of_net(&net);
            self.service_cidrs[family.index()].push(net);
        }
    }

    /// The finished ruleset: both tables, always, even without services. Chains and sets
    /// are inserted in fragment order (a later one replaces an earlier one of the same
    /// name); set elements are deduplicated, and of map elements with equal keys the first
    /// is kept.
    pub fn finish(self, fragment: Fragment) -> Ruleset {
        let mut ruleset = Ruleset::new();
        for (family, part) in IpFamily::ALL.into_iter().zip(fragment.parts) {
            let index = family.index();
            let template = |k| self.shard_template(family, k);
            let tables = finish_table(
                family,
                self.tables[index].clone(),
                part,
                self.service_cidrs[index].clone(),
                self.nodeport_ips[index].clone(),
                template,
            );
            for table in tables {
                ruleset.insert_table(table);
            }
        }
        ruleset
    }
}

impl Fragment {
    pub fn add_cluster_ip(&mut self, ip: IpAddr) {
        self.parts[IpFamily::of(&ip).index()].cluster_ips.push(ip);
    }

    /// Adds one service port of one family: its dispatch element and, with endpoints,
    /// its chain and hairpin elements.
    pub fn add_port(
        &mut self,
        vip: IpAddr,
        port: &ServicePortDef,
        names: &PortNames,
        outcome: PortOutcome,
        affinity: Option<Affinity<'_>>,
    ) {
        let part = &mut self.parts[IpFamily::of(&vip).index()];
        let key = (vip, port.protocol.l4(), port.port);
        let comment = names.comment.clone();
        let verdict = match outcome {
            PortOutcome::Endpoints(targets) => {
                part.hairpin.extend(targets.iter().map(|t| t.addr));
                part.push_cascade_chain(&names.chain, port.protocol, &targets, affinity);
                let verdict = Verdict::Goto(names.chain.clone().into());
                part.service_ips.push(Dispatch {
                    key,
                    verdict,
                    comment,
                });
                return;
            }
            PortOutcome::Reject => Verdict::Goto(REJECT_CHAIN.to_owned().into()),
            PortOutcome::Drop => Verdict::Drop,
        };
        let dispatch = Dispatch {
            key,
            verdict,
            comment,
        };
        part.no_endpoint_services.push(dispatch);
    }

    /// Adds the external paths of one service port in one family: NodePort, externalIP
    /// and LB IP elements, its `external-…` chain and the chains that one needs.
    /// `cluster` is the cluster-wide outcome, `local` the outcome among this node's
    /// endpoints (used with `externalTrafficPolicy: Local`).
    pub fn add_external(
        &mut self,
        config: &EmitConfig,
        family: IpFamily,
        ext: &ExternalPort<'_>,
        cluster: PortOutcome,
        local: PortOutcome,
    ) {
        if ext.node_port.is_none() && ext.ips.is_empty() {
            // Every external claim of this port lost a conflict: nothing would use a chain.
            return;
        }
        let part = &mut self.parts[family.index()];
        let PortOutcome::Endpoints(targets) = cluster else {
            part.no_endpoints(ext, Verdict::Goto(REJECT_CHAIN.to_owned().into()));
            return;
        };
        part.hairpin.extend(targets.iter().map(|t| t.addr));
        let cluster_chain = match ext.service_chain {
            Some(chain) => chain.to_owned(),
            None => {
                let name = &ext.names.cluster;
                part.push_cascade_chain(name, ext.port.protocol, &targets, ext.affinity);
                name.clone()
            }
        };
        let names = ext.names;
        let mark = config.mark;
        let detector = config.local[family.index()].as_ref();
        let chain = match (ext.policy, local) {
            (TrafficPolicy::Cluster, _) => {
                external_chain::cluster(&names.external, mark, &cluster_chain)
            }
            (TrafficPolicy::Local, PortOutcome::Endpoints(local)) => {
                part.hairpin.extend(local.iter().map(|t| t.addr));
                part.push_cascade_chain(&names.local, ext.port.protocol, &local, ext.affinity);
                let local_chain = Some(names.local.as_str());
                external_chain::local(&names.external, mark, detector, &cluster_chain, local_chain)
            }
            (TrafficPolicy::Local, _) => {
                part.no_endpoints(ext, Verdict::Drop);
                external_chain::local(&names.external, mark, detector, &cluster_chain, None)
            }
        };
        part.chains.push(chain);
        part.dispatch_external(ext, &Verdict::Goto(names.external.clone().into()));
    }

    /// Adds the `loadBalancerSourceRanges` check of one service port in one family: its
    /// `firewall-…` chain and a `firewall-ips` element per LB IP. Nothing when the port
    /// has no LB IP of the family or the Service lists no range.
    pub fn add_firewall(&mut self, family: IpFamily, fw: &FirewallPort<'_>) {
        if fw.lb_ips.is_empty() || !fw.ranges.listed {
            return;
        }
        let part = &mut self.parts[family.index()];
        let chain = firewall::chain(fw.chain, family, fw.ranges, &fw.lb_ips, fw.node_addresses);
        part.chains.push(chain);
        let verdict = Verdict::Goto(fw.chain.to_owned().into());
        for &ip in &fw.lb_ips {
            let key = (ip, fw.port.protocol.l4(), fw.port.port);
            part.firewall_ips.push(dispatch(key, &verdict, fw.comment));
        }
    }
}

impl Part {
    /// Adds the dnat cascade `name` of `targets` and, with affinity, the sets it uses
    /// (shared by every cascade of the port: adding one again changes nothing).
    fn push_cascade_chain(
        &mut self,
        name: &str,
        protocol: Protocol,
        targets: &[Target],
        affinity: Option<Affinity<'_>>,
    ) {
        let mut chain = Chain::regular(name);
        let Some(affinity) = affinity else {
            chain.rules.reserve_exact(targets.len());
            push_cascade(&mut chain, protocol, targets, None);
            self.chains.push(chain);
            return;
        };
        let sets: Vec<String> = targets.iter().map(|t| affinity.set_name(t)).collect();
        chain.rules.reserve_exact(3 * targets.len());
        for (target, set) in targets.iter().zip(&sets) {
            chain.push(affinity::sticky_rule(target, set, protocol));
        }
        push_cascade(&mut chain, protocol, targets, Some(&sets));
        push_cascade(&mut chain, protocol, targets, None);
        self.chains.push(chain);
        for (target, set) in targets.iter().zip(sets) {
            self.sets.push(affinity.set(target, set));
        }
    }

    /// `service-nodeports` and `service-ips` elements of an external port.
    fn dispatch_external(&mut self, ext: &ExternalPort<'_>, verdict: &Verdict) {
        let (proto, comment) = (ext.port.protocol.l4(), ext.comment);
        if let Some(node_port) = ext.node_port {
            self.service_nodeports
                .push(dispatch((proto, node_port), verdict, comment));
        }
        for ip in &ext.ips {
            let key = (*ip, proto, ext.port.port);
            self.service_ips.push(dispatch(key, verdict, comment));
        }
    }

    /// `no-endpoint-nodeports` and `no-endpoint-services` elements of an external port.
    fn no_endpoints(&mut self, ext: &ExternalPort<'_>, verdict: Verdict) {
        let (proto, comment) = (ext.port.protocol.l4(), ext.comment);
        if let Some(node_port) = ext.node_port {
            self.no_endpoint_nodeports
                .push(dispatch((proto, node_port), &verdict, comment));
        }
        for ip in &ext.ips {
            let key = (*ip, proto, ext.port.port);
            self.no_endpoint_services
                .push(dispatch(key, &verdict, comment));
        }
    }
}

/// One family's finished table: the skeleton with the services' part and the global sets.
/// The main table of `family` and its shards that hold something (see `layout`): chains
/// and affinity sets of a service port go to the port's shard, and so do the `service-ips`
/// and `service-nodeports` elements, by the chain they lead to.
fn finish_table(
    family: IpFamily,
    mut table: Table,
    part: Part,
    mut service_cidrs: Vec<IpNet>,
    nodeport_ips: Vec<IpAddr>,
    template: impl Fn(usize) -> Table,
) -> Vec<Table> {
    let mut shards: BTreeMap<usize, Table> = BTreeMap::new();
    for chain in part.chains {
        match layout::shard_of(&chain.name) {
            Some(k) => shard(&mut shards, &template, k).insert_chain(chain),
            None => table.insert_chain(chain),
        }
    }
    for set in part.sets {
        match layout::shard_of(&set.name) {
            Some(k) => shard(&mut shards, &template, k).insert_set(set),
            None => table.insert_set(set),
        }
    }
    for (k, dispatches) in by_shard(part.service_ips) {
        if let Some(map) = shard(&mut shards, &template, k).sets.get_mut(SERVICE_IPS) {
            fill_map(map, dispatches, vip_key);
        }
    }
    for (k, dispatches) in by_shard(part.service_nodeports) {
        if let Some(map) = shard(&mut shards, &template, k)
            .sets
            .get_mut(SERVICE_NODEPORTS)
        {
            fill_map(map, dispatches, node_port_key);
        }
    }
    let mut sets = Sets::new(family);
    fill(
        &mut sets.cluster_ips,
        sorted_addrs(part.cluster_ips),
        addr_key,
    );
    service_cidrs.sort_unstable();
    service_cidrs.dedup();
    fill(&mut sets.service_cidrs, service_cidrs, |net| {
        ElementKey::from([Value::Prefix(Box::new(net))])
    });
    fill(
        &mut sets.endpoint_hairpin,
        sorted_addrs(part.hairpin),
        hairpin_key,
    );
    fill(&mut sets.nodeport_ips, sorted_addrs(nodeport_ips), addr_key);
    fill_map(
        &mut sets.no_endpoint_services,
        part.no_endpoint_services,
        vip_key,
    );
    fill_map(
        &mut sets.no_endpoint_nodeports,
        part.no_endpoint_nodeports,
        node_port_key,
    );
    fill_map(&mut sets.firewall_ips, part.firewall_ips, vip_key);
    sets.insert_into(&mut table);
    counters::fill(
        &mut table,
        part.counters,
        part.service_counters,
        part.nodeport_counters,
    );
    std::iter::once(table).chain(shards.into_values()).collect()
}

/// Shard `k`, made from its template the first time something goes into it.
fn shard<'a>(
    shards: &'a mut BTreeMap<usize, Table>,
    template: &impl Fn(usize) -> Table,
    k: usize,
) -> &'a mut Table {
    shards.entry(k).or_insert_with(|| template(k))
}

/// `dispatches` settled (the first of equal keys kept) and grouped by the shard of the
/// chain each leads to.
fn by_shard<K: Ord + Copy>(mut dispatches: Vec<Dispatch<K>>) -> BTreeMap<usize, Vec<Dispatch<K>>> {
    first_of_each_key(&mut dispatches);
    let mut groups: BTreeMap<usize, Vec<Dispatch<K>>> = BTreeMap::new();
    for d in dispatches {
        groups
            .entry(layout::shard_of_verdict(&d.verdict))
            .or_default()
            .push(d);
    }
    groups
}

/// The element key of an address set (`cluster-ips`, `nodeport-ips`).
pub fn addr_key(ip: IpAddr) -> ElementKey {
    ElementKey::from([Value::from(ip)])
}

/// The element key `E . E` of `endpoint-hairpin`.
pub fn hairpin_key(ip: IpAddr) -> ElementKey {
    ElementKey::from([Value::from(ip), Value::from(ip)])
}

/// The element key `VIP . proto . port`.
pub fn vip_key((vip, proto, port): VipKey) -> ElementKey {
    ElementKey::from([Value::from(vip), Value::Proto(proto), Value::Port(port)])
}

/// The element key `proto . port`.
pub fn node_port_key((proto, port): NodePortKey) -> ElementKey {
    ElementKey::from([Value::Proto(proto), Value::Port(port)])
}

/// Addresses sorted (in `IpAddr` order) and deduplicated. Sorting plain integers is much
/// faster than comparing `IpAddr`s, which matters for the hairpin set (one address per
/// endpoint). A table holds one family, so IPv4 addresses (all of them, in an `ip` table)
/// sort as `u32`s; anything else as `(is IPv6, bits)`, which orders exactly as `IpAddr`.
fn sorted_addrs(addrs: Vec<IpAddr>) -> Vec<IpAddr> {
    let v4: Option<Vec<u32>> = addrs
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(a) => Some(a.to_bits()),
            IpAddr::V6(_) => None,
        })
        .collect();
    if let Some(mut bits) = v4 {
        bits.sort_unstable();
        bits.dedup();
        return bits
            .into_iter()
            .map(|b| IpAddr::V4(Ipv4Addr::from_bits(b)))
            .collect();
    }
    let mut keys: Vec<(bool, u128)> = addrs
        .into_iter()
        .map(|ip| match ip {
            IpAddr::V4(a) => (false, u128::from(a.to_bits())),
            IpAddr::V6(a) => (true, a.to_bits()),
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|(v6, bits)| match u32::try_from(bits) {
            Ok(b) if !v6 => IpAddr::V4(Ipv4Addr::from_bits(b)),
            _ => IpAddr::V6(Ipv6Addr::from_bits(bits)),
        })
        .collect()
}

/// Sets `set`'s elements (plain keys) from values that are sorted and deduplicated in the
/// order of the element keys they become, so the map is built in one pass. The key is
/// built twice rather than cloned: building is cheaper than a clone's copy.
fn fill<T: Copy>(set: &mut Set, values: Vec<T>, key: impl Fn(T) -> ElementKey) {
    set.elements = values
        .into_iter()
        .map(|value| {
            let element = Element {
                key: key(value),
                value: None,
                comment: None,
            };
            (key(value), element)
        })
        .collect();
}

fn dispatch<K>(key: K, verdict: &Verdict, comment: &str) -> Dispatch<K> {
    Dispatch {
        key,
        verdict: verdict.clone(),
        comment: comment.to_owned(),
    }
}

/// Sets a verdict map's elements. Conflicts between services are settled before (see
/// `conflict`); of equal keys the first is kept (see [`first_of_each_key`]), so any
/// duplicate left (one service listing an address twice) is dropped deterministically.
fn fill_map<K: Ord + Copy>(
    set: &mut Set,
    mut dispatches: Vec<Dispatch<K>>,
    element_key: impl Fn(K) -> ElementKey,
) {
    first_of_each_key(&mut dispatches);
    set.elements = dispatches
        .into_iter()
        .map(|d| {
            let key = element_key(d.key);
            (key.clone(), d.into_element(key))
        })
        .collect();
}

/// Sorts `dispatches` by key and keeps the first of equal keys (the sort is stable).
pub fn first_of_each_key<K: Ord + Copy>(dispatches: &mut Vec<Dispatch<K>>) {
    dispatches.sort_by_key(|d| d.key);
    dispatches.dedup_by_key(|d| d.key);
}

/// Appends `[numgen random mod K == 0] meta l4proto PROTO [update @SET { ip saddr }] dnat
/// to E:PORT`, one rule per endpoint; `sets[i]` is the affinity set of `targets[i]`.
fn push_cascade(
    chain: &mut Chain,
    protocol: Protocol,
    targets: &[Target],
    sets: Option<&[String]>,
) {
    let count = targets.len();
    for (i, target) in targets.iter().enumerate() {
        let remaining = count - i;
        let affinity_set = sets.and_then(|sets| sets.get(i));
        // Exactly sized: a rule with affinity keeps its statements as a boxed slice (the
        // others are kept inline, see `Stmts`).
        let mut stmts = Vec::with_capacity(
            2 + usize::from(remaining > 1) + usize::from(affinity_set.is_some()),
        );
        if remaining > 1 {
            stmts.push(Stmt::eq(
                Expr::NumgenRandom {
                    modulus: u32::try_from(remaining).unwrap_or(u32::MAX),
                },
                Expr::Literal(Value::Int(0)),
            ));
        }
        stmts.push(Stmt::eq(
            Expr::Meta(MetaKey::L4proto),
            Expr::Literal(Value::Proto(protocol.l4())),
        ));
        if let Some(set) = affinity_set {
            stmts.push(affinity::update(target, set));
        }
        stmts.push(Stmt::Dnat {
            addr: target.addr,
            port: Some(target.port),
        });
        chain.push(Rule::new(stmts));
    }
}
