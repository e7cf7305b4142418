//! One Service's part of the ruleset, remembered so that it can be taken out again, and
//! the patching of a ruleset with such parts.
//!
//! A Service owns its chains and affinity sets (names derive from its identity) and its
//! map elements (conflicts are settled before, so no two Services emit one key). It
//! shares `cluster-ips` elements (two Services may claim one ClusterIP) and
//! `endpoint-hairpin` elements (one endpoint may back several Services): those are
//! reference-counted, and an element leaves its set with its last Service. Its counter
//! objects and their `service-counters` / `nodeport-counters` elements are its own too.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::quality::RandomState;
use nftproxy_rules::{Element, Ruleset, Table, TableId, Verdict};

use crate::counters::{self, NODEPORT_COUNTERS, SERVICE_COUNTERS};
use crate::emit::{
    self, Dispatch, Fragment, NodePortKey, Part, Tables, VipKey, addr_key, hairpin_key,
    node_port_key, vip_key,
};
use crate::family::IpFamily;
use crate::layout::{
    CLUSTER_IPS, ENDPOINT_HAIRPIN, FIREWALL_IPS, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES,
    SERVICE_IPS, SERVICE_NODEPORTS, TABLE, is_bare_shard, shard_of, shard_of_verdict, shard_table,
};

/// A verdict-map element key, as the Service emitted it, with the shard that holds it
/// (`None`: the main table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MapKey {
    Vip(&'static str, VipKey, Option<usize>),
    NodePort(&'static str, NodePortKey, Option<usize>),
}

/// What one Service put into one family's table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartRecord {
    /// Chain names, sorted, deduplicated.
    chains: Vec<String>,
    /// Affinity set names, sorted, deduplicated.
    sets: Vec<String>,
    /// `cluster-ips` addresses, sorted, deduplicated.
    cluster_ips: Vec<IpAddr>,
    /// `endpoint-hairpin` addresses, sorted, deduplicated.
    hairpin: Vec<IpAddr>,
    /// Verdict-map elements, one per key.
    elements: Vec<MapKey>,
    /// Counter objects, sorted, deduplicated.
    counters: Vec<String>,
    /// Counter-map elements (main table), one per key.
    counter_elements: Vec<MapKey>,
}

impl PartRecord {
    /// The record of `part`, whose map elements are first settled as
    /// [`emit::Tables::finish`] settles them (sorted, the first of equal keys kept).
    fn of(part: &mut Part) -> Self {
        let mut chains: Vec<String> = part.chains.iter().map(|c| c.name.clone()).collect();
        chains.sort_unstable();
        chains.dedup();
        let mut sets: Vec<String> = part.sets.iter().map(|s| s.name.clone()).collect();
        sets.sort_unstable();
        sets.dedup();
        let mut cluster_ips = part.cluster_ips.clone();
        cluster_ips.sort_unstable();
        cluster_ips.dedup();
        let mut hairpin = part.hairpin.clone();
        hairpin.sort_unstable();
        hairpin.dedup();
        let mut elements = Vec::new();
        for (map, dispatches) in vip_maps(part) {
            emit::first_of_each_key(dispatches);
            let shard = |d: &Dispatch<VipKey>| in_shard(map).then(|| shard_of_verdict(&d.verdict));
            elements.extend(dispatches.iter().map(|d| MapKey::Vip(map, d.key, shard(d))));
        }
        for (map, dispatches) in node_port_maps(part) {
            emit::first_of_each_key(dispatches);
            let shard =
                |d: &Dispatch<NodePortKey>| in_shard(map).then(|| shard_of_verdict(&d.verdict));
            elements.extend(
                dispatches
                    .iter()
                    .map(|d| MapKey::NodePort(map, d.key, shard(d))),
            );
        }
        let mut counters = part.counters.clone();
        counters.sort_unstable();
        counters.dedup();
        counters::first_of_each_key(&mut part.service_counters);
        counters::first_of_each_key(&mut part.nodeport_counters);
        let counter_elements = part
            .service_counters
            .iter()
            .map(|r| MapKey::Vip(SERVICE_COUNTERS, r.key, None))
            .chain(
                part.nodeport_counters
                    .iter()
                    .map(|r| MapKey::NodePort(NODEPORT_COUNTERS, r.key, None)),
            )
            .collect();
        PartRecord {
            chains,
            sets,
            cluster_ips,
            hairpin,
            elements,
            counters,
            counter_elements,
        }
    }
}

/// What one Service put into both tables.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FragmentRecord {
    parts: [PartRecord; 2],
}

impl FragmentRecord {
    /// The record of `fragment`; settles its map elements (see [`PartRecord::of`]).
    pub fn of(fragment: &mut Fragment) -> Self {
        let [v4, v6] = &mut fragment.parts;
        FragmentRecord {
            parts: [PartRecord::of(v4), PartRecord::of(v6)],
        }
    }
}

/// Whether `map` lives in the shards (the dispatch maps) rather than the main table.
fn in_shard(map: &str) -> bool {
    map == SERVICE_IPS || map == SERVICE_NODEPORTS
}

fn vip_maps(part: &mut Part) -> [(&'static str, &mut Vec<Dispatch<VipKey>>); 3] {
    [
        (SERVICE_IPS, &mut part.service_ips),
        (NO_ENDPOINT_SERVICES, &mut part.no_endpoint_services),
        (FIREWALL_IPS, &mut part.firewall_ips),
    ]
}

fn node_port_maps(part: &mut Part) -> [(&'static str, &mut Vec<Dispatch<NodePortKey>>); 2] {
    [
        (SERVICE_NODEPORTS, &mut part.service_nodeports),
        (NO_ENDPOINT_NODEPORTS, &mut part.no_endpoint_nodeports),
    ]
}

/// The reference counts of the elements Services share, and the patching of a ruleset.
#[derive(Debug, Default)]
pub struct Shared {
    cluster_ips: AddressCounts,
    hairpin: AddressCounts,
}

/// Reference counts by address, IPv4 and IPv6 apart: an IPv4 entry takes 8 bytes where an
/// `IpAddr` one takes 24 (the hairpin counts hold one entry per endpoint).
#[derive(Debug, Default)]
struct AddressCounts {
    v4: HashMap<Ipv4Addr, u32, RandomState>,
    v6: HashMap<Ipv6Addr, u32, RandomState>,
}

impl AddressCounts {
    /// Counts one reference more; whether it is the first.
    fn increment(&mut self, ip: IpAddr) -> bool {
        let count = match ip {
            IpAddr::V4(a) => self.v4.entry(a).or_insert(0),
            IpAddr::V6(a) => self.v6.entry(a).or_insert(0),
        };
        *count += 1;
        *count == 1
    }

    /// Counts one reference less; whether it was the last.
    fn decrement(&mut self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => decrement(&mut self.v4, a),
            IpAddr::V6(a) => decrement(&mut self.v6, a),
        }
    }
}

impl Shared {
    /// Counts a Service's shared elements without touching a ruleset (for a ruleset
    /// built in bulk from the same fragments).
    pub fn count(&mut self, record: &FragmentRecord) {
        for part in &record.parts {
            for ip in &part.cluster_ips {
                self.cluster_ips.increment(*ip);
            }
            for ip in &part.hairpin {
                self.hairpin.increment(*ip);
            }
        }
    }

    /// Adds a Service's `fragment` (settled by [`FragmentRecord::of`], which gave
    /// `record`) to `ruleset`; `tables` gives the shards' templates.
    pub fn insert(
        &mut self,
        ruleset: &mut Ruleset,
        tables: &Tables,
        fragment: Fragment,
        record: &FragmentRecord,
    ) {
        let parts = fragment.parts.into_iter().zip(&record.parts);
        for (family, (mut part, record)) in IpFamily::ALL.into_iter().zip(parts) {
            for chain in part.chains.drain(..) {
                match shard_of(&chain.name) {
                    Some(k) => shard(ruleset, tables, family, k).insert_chain(chain),
                    None => table(ruleset, family).insert_chain(chain),
                }
            }
            for set in part.sets.drain(..) {
                match shard_of(&set.name) {
                    Some(k) => shard(ruleset, tables, family, k).insert_set(set),
                    None => table(ruleset, family).insert_set(set),
                }
            }
            let main = table(ruleset, family);
            for ip in &record.cluster_ips {
                if self.cluster_ips.increment(*ip) {
                    insert(main, CLUSTER_IPS, Element::key(addr_key(*ip)));
                }
            }
            for ip in &record.hairpin {
                if self.hairpin.increment(*ip) {
                    insert(main, ENDPOINT_HAIRPIN, Element::key(hairpin_key(*ip)));
                }
            }
            for (map, dispatches) in vip_maps(&mut part) {
                for d in dispatches.drain(..) {
                    let target = holder(ruleset, tables, family, map, &d.verdict);
                    let key = vip_key(d.key);
                    insert(target, map, d.into_element(key));
                }
            }
            for (map, dispatches) in node_port_maps(&mut part) {
                for d in dispatches.drain(..) {
                    let target = holder(ruleset, tables, family, map, &d.verdict);
                    let key = node_port_key(d.key);
                    insert(target, map, d.into_element(key));
                }
            }
            let main = table(ruleset, family);
            for counter in &record.counters {
                main.insert_counter(counter.as_str());
            }
            for r in part.service_counters.drain(..) {
                let element = counters::element(vip_key(r.key), r.counter);
                insert(main, SERVICE_COUNTERS, element);
            }
            for r in part.nodeport_counters.drain(..) {
                let element = counters::element(node_port_key(r.key), r.counter);
                insert(main, NODEPORT_COUNTERS, element);
            }
        }
    }

    /// Takes what `record` says a Service added out of `ruleset` again; a shard left with
    /// nothing but its skeleton is removed.
    pub fn remove(&mut self, ruleset: &mut Ruleset, record: &FragmentRecord) {
        for (family, part) in IpFamily::ALL.into_iter().zip(&record.parts) {
            let mut touched = BTreeSet::new();
            for chain in &part.chains {
                let k = shard_of(chain);
                touched.extend(k);
                if let Some(t) = table_of(ruleset, family, k) {
                    t.chains.remove(chain);
                }
            }
            for set in &part.sets {
                let k = shard_of(set);
                touched.extend(k);
                if let Some(t) = table_of(ruleset, family, k) {
                    t.sets.remove(set);
                }
            }
            let main = table(ruleset, family);
            for ip in &part.cluster_ips {
                if self.cluster_ips.decrement(*ip) {
                    remove(main, CLUSTER_IPS, &addr_key(*ip));
                }
            }
            for ip in &part.hairpin {
                if self.hairpin.decrement(*ip) {
                    remove(main, ENDPOINT_HAIRPIN, &hairpin_key(*ip));
                }
            }
            let main = table(ruleset, family);
            for counter in &part.counters {
                main.counters.remove(counter);
            }
            for element in part.elements.iter().chain(&part.counter_elements) {
                let (map, key, k) = match *element {
                    MapKey::Vip(map, key, k) => (map, vip_key(key), k),
                    MapKey::NodePort(map, key, k) => (map, node_port_key(key), k),
                };
                touched.extend(k);
                if let Some(t) = table_of(ruleset, family, k) {
                    remove(t, map, &key);
                }
            }
            for k in touched {
                let id = TableId::new(family.table_family(), shard_table(k));
                if ruleset.tables.get(&id).is_some_and(is_bare_shard) {
                    ruleset.tables.remove(&id);
                }
            }
        }
    }
}

/// The table that holds `map`'s element leading to `verdict`: the shard of its chain for
/// the dispatch maps, else the main table.
fn holder<'r>(
    ruleset: &'r mut Ruleset,
    tables: &Tables,
    family: IpFamily,
    map: &str,
    verdict: &Verdict,
) -> &'r mut Table {
    if in_shard(map) {
        shard(ruleset, tables, family, shard_of_verdict(verdict))
    } else {
        table(ruleset, family)
    }
}

/// Counts one reference less to `ip` in `counts`; whether it was the last.
fn decrement<A: Hash + Eq + fmt::Display>(
    counts: &mut HashMap<A, u32, RandomState>,
    ip: A,
) -> bool {
    let Some(count) = counts.get_mut(&ip) else {
        debug_assert!(false, "{ip} was not counted");
        return false;
    };
    *count -= 1;
    if *count > 0 {
        return false;
    }
    counts.remove(&ip);
    true
}

/// `family`'s main table; the ruleset always has both.
fn table(ruleset: &mut Ruleset, family: IpFamily) -> &mut Table {
    let id = TableId::new(family.table_family(), TABLE);
    ruleset
        .tables
        .entry(id)
        .or_insert_with(|| Table::new(family.table_family(), TABLE))
}

/// `family`'s shard `k`, made from its template when it does not exist yet.
fn shard<'r>(
    ruleset: &'r mut Ruleset,
    tables: &Tables,
    family: IpFamily,
    k: usize,
) -> &'r mut Table {
    let id = TableId::new(family.table_family(), shard_table(k));
    ruleset
        .tables
        .entry(id)
        .or_insert_with(|| tables.shard_template(family, k))
}

/// `family`'s shard `k` (`Some`) or main table (`None`), if it exists.
fn table_of(ruleset: &mut Ruleset, family: IpFamily, k: Option<usize>) -> Option<&mut Table> {
    let name = k.map_or_else(|| TABLE.to_owned(), shard_table);
    ruleset
        .tables
        .get_mut(&TableId::new(family.table_family(), name))
}

fn insert(table: &mut Table, set: &str, element: Element) {
    if let Some(set) = table.sets.get_mut(set) {
        set.insert(element);
    }
}

fn remove(table: &mut Table, set: &str, key: &nftproxy_rules::ElementKey) {
    if let Some(set) = table.sets.get_mut(set) {
        set.elements.remove(key);
    }
}
