//! Service ports into the ruleset: map elements and `service-…` dnat-cascade chains.
//!
//! A service port with N usable endpoints is one chain of N rules; rule i (0-based) matches
//! with probability 1/(N−i) given that the earlier ones did not (`numgen random mod (N−i)
//! == 0`), which makes the choice uniform, and the last rule is unconditional. This layout
//! keeps the kernel's load time linear (see `docs/ruleset.md` for the measurements).
//!
//! Elements are collected as plain values and turned into set elements only at the end,
//! sorted by a cheap native key: a `BTreeMap` built from sorted input costs one comparison
//! per element instead of a tree search per insert (which dominated compile time at 10k
//! services), and duplicates (an endpoint shared by services) are dropped before any
//! allocation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nftproxy_rules::{
    Chain, Element, ElementKey, Expr, L4Proto, MetaKey, Rule, Ruleset, Set, Stmt, Stmts, Table,
    Value, Verdict,
};

use crate::family::IpFamily;
use crate::layout::{self, REJECT_CHAIN, Sets};
use crate::naming::PortNames;
use crate::protocol::Protocol;
use crate::select::{PortOutcome, Target};
use crate::service::ServicePortDef;

/// A `VIP . proto . port : verdict` element before it becomes one.
#[derive(Debug)]
struct Dispatch {
    key: (IpAddr, L4Proto, u16),
    verdict: Verdict,
    comment: String,
}

/// One family's table while it is being built.
#[derive(Debug)]
struct Building {
    table: Table,
    cluster_ips: Vec<IpAddr>,
    service_cidrs: Vec<IpNet>,
    service_ips: Vec<Dispatch>,
    no_endpoint_services: Vec<Dispatch>,
    hairpin: Vec<IpAddr>,
}

/// The two tables being built; see [`finish`](Self::finish).
#[derive(Debug)]
pub struct Tables {
    tables: [Building; 2],
}

impl Tables {
    /// Empty layouts for both families, with their masquerade rules (see `masquerade`).
    pub fn new(mark: u32, masquerade_rules: [Option<Rule>; 2]) -> Self {
        let [v4, v6] = masquerade_rules;
        let building = |family: IpFamily, rule| Building {
            table: layout::skeleton(family, mark, rule),
            cluster_ips: Vec::new(),
            service_cidrs: Vec::new(),
            service_ips: Vec::new(),
            no_endpoint_services: Vec::new(),
            hairpin: Vec::new(),
        };
        Tables {
            tables: [building(IpFamily::V4, v4), building(IpFamily::V6, v6)],
        }
    }

    /// Adds ServiceCIDR prefixes (already folded so that none overlaps another).
    pub fn add_service_cidrs(&mut self, prefixes: impl IntoIterator<Item = IpNet>) {
        for net in prefixes {
            let family = IpFamily::of_net(&net);
            self.tables[family.index()].service_cidrs.push(net);
        }
    }

    pub fn add_cluster_ip(&mut self, ip: IpAddr) {
        self.tables[IpFamily::of(&ip).index()].cluster_ips.push(ip);
    }

    /// Adds one service port of one family: its dispatch element and, with endpoints,
    /// its chain and hairpin elements.
    pub fn add_port(
        &mut self,
        vip: IpAddr,
        port: &ServicePortDef,
        names: &PortNames,
        outcome: PortOutcome,
    ) {
        let building = &mut self.tables[IpFamily::of(&vip).index()];
        let key = (vip, port.protocol.l4(), port.port);
        let comment = names.comment.clone();
        let verdict = match outcome {
            PortOutcome::Endpoints(targets) => {
                building.hairpin.extend(targets.iter().map(|t| t.addr));
                let chain = cascade(&names.chain, port.protocol, &targets);
                building.table.insert_chain(chain);
                let verdict = Verdict::Goto(names.chain.clone());
                building.service_ips.push(Dispatch {
                    key,
                    verdict,
                    comment,
                });
                return;
            }
            PortOutcome::Reject => Verdict::Goto(REJECT_CHAIN.to_owned()),
            PortOutcome::Drop => Verdict::Drop,
        };
        let dispatch = Dispatch {
            key,
            verdict,
            comment,
        };
        building.no_endpoint_services.push(dispatch);
    }

    /// The finished ruleset: both tables, always, even without services.
    pub fn finish(self) -> Ruleset {
        let mut ruleset = Ruleset::new();
        for (family, building) in IpFamily::ALL.into_iter().zip(self.tables) {
            ruleset.insert_table(building.finish(family));
        }
        ruleset
    }
}

impl Building {
    fn finish(mut self, family: IpFamily) -> Table {
        let mut sets = Sets::new(family);
        fill(
            &mut sets.cluster_ips,
            sorted_addrs(self.cluster_ips),
            |ip| ElementKey::from([Value::from(ip)]),
        );
        self.service_cidrs.sort_unstable();
        self.service_cidrs.dedup();
        fill(&mut sets.service_cidrs, self.service_cidrs, |net| {
            ElementKey::from([Value::Prefix(net)])
        });
        fill(
            &mut sets.endpoint_hairpin,
            sorted_addrs(self.hairpin),
            |ip| ElementKey::from([Value::from(ip), Value::from(ip)]),
        );
        fill_map(&mut sets.service_ips, self.service_ips);
        fill_map(&mut sets.no_endpoint_services, self.no_endpoint_services);
        sets.insert_into(&mut self.table);
        self.table
    }
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

fn fill_map(set: &mut Set, mut dispatches: Vec<Dispatch>) {
    dispatches.sort_unstable_by_key(|d| d.key);
    set.elements = dispatches
        .into_iter()
        .map(|d| {
            let (vip, proto, port) = d.key;
            let key = ElementKey::from([Value::from(vip), Value::Proto(proto), Value::Port(port)]);
            let element = Element {
                key: key.clone(),
                value: Some(Value::Verdict(d.verdict)),
                comment: Some(d.comment),
            };
            (key, element)
        })
        .collect();
}

/// `[numgen random mod K == 0] meta l4proto PROTO dnat to E:PORT`, one rule per endpoint.
fn cascade(name: &str, protocol: Protocol, targets: &[Target]) -> Chain {
    let count = targets.len();
    let mut chain = Chain::regular(name);
    chain.rules.reserve_exact(count);
    for (i, target) in targets.iter().enumerate() {
        let remaining = count - i;
        let mut stmts = Stmts::with_capacity(3);
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
        stmts.push(Stmt::Dnat {
            addr: target.addr,
            port: Some(target.port),
        });
        chain.push(Rule::new(stmts));
    }
    chain
}
