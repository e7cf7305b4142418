//! The fixed part of each family's table: sets, maps, base chains and the regular chains
//! every packet may traverse, exactly as `docs/ruleset.md` lays them out.
//!
//! Nothing here grows with the number of services; services only add map elements and
//! their own `service-…` chains (see `emit`).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nftproxy_rules::{
    AddrType, BitOp, Chain, ChainType, CmpOp, CtFlag, CtKey, DataType, Expr, FibAddr, Hook,
    MetaKey, PayloadField, RejectKind, Rule, Set, SetFlag, Stmt, Table, Value, Verdict,
};

use crate::counters;
use crate::family::IpFamily;

/// The name of both main tables (`ip nftproxy`, `ip6 nftproxy`).
pub const TABLE: &str = "nftproxy";

/// How many shard tables (`nftproxy-0` … `nftproxy-15`, per family) the service dispatch
/// is spread over. The kernel validates a whole table whenever a transaction changes a rule
/// in it; with the services' chains spread over shards, one endpoint change pays for one
/// shard. Every shard's NAT chain runs for a new connection until one translates it, so
/// more shards cost the data path (BENCHMARKS.md, "Scale (issue 6)": 16 keeps an endpoint
/// change at 44k services near 3 ms and a new connection within a few percent of one
/// shard). Changing it moves services between shards: a full resync.
pub const SHARDS: usize = 16;

/// The name of shard table `k`.
pub fn shard_table(k: usize) -> String {
    format!("{TABLE}-{k}")
}

/// Every table name nftproxy may create in a family: the main table, then the shards.
pub fn table_names() -> Vec<String> {
    std::iter::once(TABLE.to_owned())
        .chain((0..SHARDS).map(shard_table))
        .collect()
}

/// Every table nftproxy may create: both main tables (`ip`, then `ip6`), then the shards
/// of each family. Nothing else is ever listed, changed or deleted.
pub fn table_ids() -> Vec<nftproxy_rules::TableId> {
    let names = table_names();
    let families = [nftproxy_rules::Family::Ip, nftproxy_rules::Family::Ip6];
    let main = families.map(|f| nftproxy_rules::TableId::new(f, TABLE));
    let shards = families.into_iter().flat_map(|f| {
        names[1..]
            .iter()
            .map(move |n| nftproxy_rules::TableId::new(f, n.clone()))
    });
    main.into_iter().chain(shards).collect()
}

/// Whether `name` is one of nftproxy's table names, for any number of shards (so that
/// `cleanup` also removes the shards of a build with another [`SHARDS`]).
pub fn is_table_name(name: &str) -> bool {
    name == TABLE
        || name
            .strip_prefix(TABLE)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The kinds of chains and sets that live in a shard, with their service port.
const SHARDED_KINDS: [&str; 5] = ["service-", "external-", "local-", "cluster-", "affinity-"];

/// The shard of a chain or set that belongs to one service port (`service-HASH-ID`,
/// `external-…`, `local-…`, `cluster-…`, `affinity-HASH-ID__ENDPOINT`): a hash of the port
/// identity `ID` (`namespace/name/proto/port`), so a port's chains and sets share a shard.
/// `None` for everything else, which stays in the main table (`firewall-…` chains
/// included: the main table's `firewall-ips` map reaches them).
pub fn shard_of(name: &str) -> Option<usize> {
    let kind = SHARDED_KINDS.iter().find(|k| name.starts_with(*k))?;
    let rest = &name[kind.len()..];
    let (hash, identity) = (rest.get(..8)?, rest.get(8..)?);
    let is_hash = hash
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    let identity = identity.strip_prefix('-').filter(|_| is_hash)?;
    let identity = identity.split("__").next().unwrap_or(identity);
    Some(shard_of_identity(identity))
}

/// The shard a dispatch element goes to: that of the chain its verdict leads to (always a
/// service port's chain; shard 0 for anything else, so that every element has one).
pub fn shard_of_verdict(verdict: &Verdict) -> usize {
    verdict.target().and_then(shard_of).unwrap_or(0)
}

/// FNV-1a (64 bits) of `identity`, modulo [`SHARDS`]: stable across builds and releases,
/// so that a restarted nftproxy finds each service where the previous one put it.
fn shard_of_identity(identity: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in identity.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(hash % SHARDS as u64).unwrap_or(0)
}

pub const CLUSTER_IPS: &str = "cluster-ips";
pub const SERVICE_CIDRS: &str = "service-cidrs";
pub const SERVICE_IPS: &str = "service-ips";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const ENDPOINT_HAIRPIN: &str = "endpoint-hairpin";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NODEPORT_IPS: &str = "nodeport-ips";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const FIREWALL_IPS: &str = "firewall-ips";

pub const SERVICES: &str = "services";
pub const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
pub const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
pub const FIREWALL_CHECK: &str = "firewall-check";
pub const REJECT_CHAIN: &str = "reject-chain";
pub const MASQUERADING: &str = "masquerading";

/// A table with every chain of the layout and no set (see [`Sets`]).
/// `masquerade_rule` is the optional first rule of `services`; `mark` is the masquerade bit;
/// `all_local` selects the `fib daddr type local` form of NodePort matching over
/// `@nodeport-ips`.
pub fn skeleton(
    family: IpFamily,
    mark: u32,
    masquerade_rule: Option<Rule>,
    all_local: bool,
) -> Table {
    let mut table = Table::new(family.table_family(), TABLE);
    for chain in base_chains() {
        table.insert_chain(chain);
    }
    // The dispatch itself is in the shards (see `shard_skeleton`); the main table's NAT
    // chains run first and only set the masquerade mark.
    let mut services = Chain::regular(SERVICES);
    services.rules.extend(masquerade_rule);
    table.insert_chain(services);
    let check = Chain::regular(SERVICE_ENDPOINTS_CHECK);
    table.insert_chain(check.with_rule(dispatch(family, NO_ENDPOINT_SERVICES)));
    let check = Chain::regular(NODEPORT_ENDPOINTS_CHECK);
    let rule = nodeport_dispatch(family, all_local, NO_ENDPOINT_NODEPORTS);
    table.insert_chain(check.with_rule(rule));
    table.insert_chain(cluster_ips_check(family));
    table.insert_chain(Chain::regular(FIREWALL_CHECK).with_rule(dispatch(family, FIREWALL_IPS)));
    let reject = Rule::new(vec![Stmt::Reject(RejectKind::PortUnreachable)]);
    table.insert_chain(Chain::regular(REJECT_CHAIN).with_rule(reject));
    table.insert_chain(masquerading(family, mark));
    for map in counters::maps(family) {
        table.insert_set(map);
    }
    let counting = counters::rules(family, nodeport_condition(family, all_local));
    for chain in ["filter-prerouting-pre-dnat", "filter-output-pre-dnat"] {
        table.chains.update(chain, |c| {
            for (i, rule) in counting.iter().enumerate() {
                c.rules.insert(i, rule.clone());
            }
        });
    }
    table
}

/// Shard table `k` of `family` without services: NAT base chains (after the main table's)
/// that jump to `services`, which dispatches ClusterIPs, external addresses and NodePorts
/// through the shard's own `service-ips` and `service-nodeports`; and a copy of the main
/// table's `nodeport-ips` (`nodeport_ips`, its elements) for the NodePort check.
pub fn shard_skeleton(family: IpFamily, k: usize, all_local: bool, nodeport_ips: &Set) -> Table {
    use ChainType::Nat;
    let mut table = Table::new(family.table_family(), shard_table(k));
    let jump = || {
        Rule::new(vec![Stmt::Verdict(Verdict::Jump(
            SERVICES.to_owned().into(),
        ))])
    };
    table.insert_chain(
        Chain::base("nat-prerouting", Nat, Hook::Prerouting, SHARD_NAT_PRIORITY).with_rule(jump()),
    );
    table.insert_chain(
        Chain::base("nat-output", Nat, Hook::Output, SHARD_NAT_PRIORITY).with_rule(jump()),
    );
    let services = Chain::regular(SERVICES)
        .with_rule(dispatch(family, SERVICE_IPS))
        .with_rule(nodeport_dispatch(family, all_local, SERVICE_NODEPORTS));
    table.insert_chain(services);
    let sets = Sets::new(family);
    table.insert_set(sets.service_ips);
    table.insert_set(sets.service_nodeports);
    table.insert_set(nodeport_ips.clone());
    table
}

/// Whether shard table `table` holds nothing but its skeleton: no service port's chain,
/// affinity set or dispatch element. Such a shard is left out of the ruleset.
pub fn is_bare_shard(table: &Table) -> bool {
    let own_names = table.chains.keys().chain(table.sets.keys());
    let dispatch_empty = [SERVICE_IPS, SERVICE_NODEPORTS]
        .iter()
        .all(|map| table.sets.get(*map).is_none_or(|m| m.elements.is_empty()));
    dispatch_empty && own_names.into_iter().all(|name| shard_of(name).is_none())
}

/// The priority of the main table's NAT chains: before the shards' ([`SHARD_NAT_PRIORITY`]),
/// so that the masquerade mark is set before a shard's DNAT ends the NAT lookup.
pub const MAIN_NAT_PRIORITY: i32 = -101;
/// The priority of the shards' NAT chains: `dstnat`.
pub const SHARD_NAT_PRIORITY: i32 = -100;

/// The sets and maps of one table, filled while compiling, then moved into the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sets {
    pub cluster_ips: Set,
    pub service_cidrs: Set,
    pub service_ips: Set,
    pub no_endpoint_services: Set,
    pub endpoint_hairpin: Set,
    pub service_nodeports: Set,
    pub nodeport_ips: Set,
    pub no_endpoint_nodeports: Set,
    pub firewall_ips: Set,
}

impl Sets {
    /// The empty sets and maps of `family`'s table.
    pub fn new(family: IpFamily) -> Self {
        let addr = family.addr_type();
        let service_key = vec![addr, DataType::InetProto, DataType::InetService];
        let nodeport_key = vec![DataType::InetProto, DataType::InetService];
        Sets {
            cluster_ips: Set::set(CLUSTER_IPS, vec![addr]),
            service_cidrs: Set::set(SERVICE_CIDRS, vec![addr]).with_flag(SetFlag::Interval),
            service_ips: Set::map(SERVICE_IPS, service_key.clone(), DataType::Verdict),
            no_endpoint_services: Set::map(
                NO_ENDPOINT_SERVICES,
                service_key.clone(),
                DataType::Verdict,
            ),
            firewall_ips: Set::map(FIREWALL_IPS, service_key, DataType::Verdict),
            endpoint_hairpin: Set::set(ENDPOINT_HAIRPIN, vec![addr, addr]),
            service_nodeports: Set::map(SERVICE_NODEPORTS, nodeport_key.clone(), DataType::Verdict),
            nodeport_ips: Set::set(NODEPORT_IPS, vec![addr]),
            no_endpoint_nodeports: Set::map(NO_ENDPOINT_NODEPORTS, nodeport_key, DataType::Verdict),
        }
    }

    /// Moves the main table's sets into `table` (`service-ips` and `service-nodeports`
    /// belong to the shards and are dropped here).
    pub fn insert_into(self, table: &mut Table) {
        table.insert_set(self.cluster_ips);
        table.insert_set(self.service_cidrs);
        table.insert_set(self.no_endpoint_services);
        table.insert_set(self.endpoint_hairpin);
        table.insert_set(self.nodeport_ips);
        table.insert_set(self.no_endpoint_nodeports);
        table.insert_set(self.firewall_ips);
    }
}

fn base_chains() -> [Chain; 8] {
    use ChainType::{Filter, Nat};
    let new_jump = |target: &str| {
        Rule::new(vec![
            Stmt::is_in(
                Expr::Ct(CtKey::State),
                Expr::Literal(Value::CtFlag(CtFlag::New)),
            ),
            Stmt::Verdict(Verdict::Jump(target.to_owned().into())),
        ])
    };
    let jump =
        |target: &str| Rule::new(vec![Stmt::Verdict(Verdict::Jump(target.to_owned().into()))]);
    [
        Chain::base("filter-prerouting-pre-dnat", Filter, Hook::Prerouting, -110)
            .with_rule(new_jump(FIREWALL_CHECK)),
        Chain::base("filter-output-pre-dnat", Filter, Hook::Output, -110)
            .with_rule(new_jump(FIREWALL_CHECK)),
        Chain::base("nat-prerouting", Nat, Hook::Prerouting, MAIN_NAT_PRIORITY)
            .with_rule(jump(SERVICES)),
        Chain::base("nat-output", Nat, Hook::Output, MAIN_NAT_PRIORITY).with_rule(jump(SERVICES)),
        Chain::base("filter-input", Filter, Hook::Input, 0)
            .with_rule(new_jump(NODEPORT_ENDPOINTS_CHECK))
            .with_rule(new_jump(SERVICE_ENDPOINTS_CHECK)),
        Chain::base("filter-forward", Filter, Hook::Forward, 0)
            .with_rule(new_jump(SERVICE_ENDPOINTS_CHECK))
            .with_rule(new_jump(CLUSTER_IPS_CHECK)),
        Chain::base("filter-output", Filter, Hook::Output, 0)
            .with_rule(new_jump(SERVICE_ENDPOINTS_CHECK))
            .with_rule(new_jump(CLUSTER_IPS_CHECK)),
        Chain::base("nat-postrouting", Nat, Hook::Postrouting, 100).with_rule(jump(MASQUERADING)),
    ]
}

/// `ip daddr . meta l4proto . th dport vmap @map`
fn dispatch(family: IpFamily, map: &str) -> Rule {
    let key = Expr::concat(vec![
        Expr::Payload(family.daddr()),
        Expr::Meta(MetaKey::L4proto),
        Expr::Payload(PayloadField::ThDport),
    ]);
    Rule::new(vec![Stmt::Vmap {
        key,
        map: map.to_owned(),
    }])
}

/// `ip daddr @nodeport-ips meta l4proto . th dport vmap @map`, or with `all_local`
/// `fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @map`.
fn nodeport_dispatch(family: IpFamily, all_local: bool, map: &str) -> Rule {
    let mut stmts = nodeport_condition(family, all_local);
    let key = Expr::concat(vec![
        Expr::Meta(MetaKey::L4proto),
        Expr::Payload(PayloadField::ThDport),
    ]);
    stmts.push(Stmt::Vmap {
        key,
        map: map.to_owned(),
    });
    Rule::new(stmts)
}

/// The NodePort address condition: `ip daddr @nodeport-ips`, or with `all_local`
/// `fib daddr type local ip daddr != 127.0.0.0/8`.
fn nodeport_condition(family: IpFamily, all_local: bool) -> Vec<Stmt> {
    let daddr = || Expr::Payload(family.daddr());
    if all_local {
        let loopback = match family {
            IpFamily::V4 => IpNet::from(Ipv4Net::new_assert(Ipv4Addr::LOCALHOST, 8)),
            IpFamily::V6 => IpNet::from(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
        };
        vec![
            Stmt::eq(
                Expr::FibType(FibAddr::Daddr),
                Expr::Literal(Value::AddrType(AddrType::Local)),
            ),
            Stmt::ne(daddr(), Expr::Literal(Value::prefix(loopback))),
        ]
    } else {
        vec![Stmt::is_in(daddr(), Expr::SetRef(NODEPORT_IPS.into()))]
    }
}

/// `ip daddr @cluster-ips reject`, then `ip daddr @service-cidrs drop`.
fn cluster_ips_check(family: IpFamily) -> Chain {
    let in_set = |set: &str| Stmt::is_in(Expr::Payload(family.daddr()), Expr::SetRef(set.into()));
    Chain::regular(CLUSTER_IPS_CHECK)
        .with_rule(Rule::new(vec![
            in_set(CLUSTER_IPS),
            Stmt::Reject(RejectKind::PortUnreachable),
        ]))
        .with_rule(Rule::new(vec![
            in_set(SERVICE_CIDRS),
            Stmt::Verdict(Verdict::Drop),
        ]))
}

/// `meta mark set meta mark OP mark`
pub fn set_mark(op: BitOp, mark: u32) -> Stmt {
    Stmt::SetMark(Expr::Bitwise {
        left: Box::new(Expr::Meta(MetaKey::Mark)),
        op,
        right: mark,
    })
}

/// Hairpin marking, then masquerade-and-clear of marked packets.
fn masquerading(family: IpFamily, mark: u32) -> Chain {
    let hairpin = Rule::new(vec![
        Stmt::is_in(
            Expr::Ct(CtKey::Status),
            Expr::Literal(Value::CtFlag(CtFlag::Dnat)),
        ),
        Stmt::is_in(
            Expr::concat(vec![
                Expr::Payload(family.saddr()),
                Expr::Payload(family.daddr()),
            ]),
            Expr::SetRef(ENDPOINT_HAIRPIN.into()),
        ),
        set_mark(BitOp::Or, mark),
    ]);
    let unmarked = Rule::new(vec![
        Stmt::Match {
            left: Expr::Bitwise {
                left: Box::new(Expr::Meta(MetaKey::Mark)),
                op: BitOp::And,
                right: mark,
            },
            op: CmpOp::Eq,
            right: Expr::Literal(Value::Int(0)),
        },
        Stmt::Verdict(Verdict::Return),
    ]);
    Chain::regular(MASQUERADING)
        .with_rule(hairpin)
        .with_rule(unmarked)
        .with_rule(Rule::new(vec![set_mark(BitOp::Xor, mark)]))
        .with_rule(Rule::new(vec![Stmt::Masquerade { fully_random: true }]))
}

#[cfg(test)]
mod shard_tests {
    use super::*;

    #[test]
    fn every_chain_and_set_of_a_port_shares_its_shard() {
        let id = "shop/web/tcp/http";
        let names = [
            format!("service-ABCDEFGH-{id}"),
            format!("external-QRSTUVWX-{id}"),
            format!("local-A2B3C4D5-{id}"),
            format!("cluster-ZZZZZZZZ-{id}"),
            format!("affinity-MNOPQR23-{id}__198.18.1.10/8080"),
        ];
        let shards: Vec<Option<usize>> = names.iter().map(|n| shard_of(n)).collect();
        assert!(shards[0].is_some());
        assert!(shards.iter().all(|s| *s == shards[0]), "{shards:?}");
        let other = shard_of("service-ABCDEFGH-shop/web/tcp/metrics");
        assert!(other.is_some());
    }

    #[test]
    fn the_shard_function_never_changes() {
        // A restart must find every port where the previous build put it: FNV-1a of the
        // identity modulo 16, with these values written down on purpose. (Earlier builds had 32
        // shards: the same hash modulo 32; a full sync moves their services.)
        let shard = |id: &str| shard_of(&format!("service-ABCDEFGH-{id}"));
        assert_eq!(shard("default/web/tcp/http"), Some(4));
        assert_eq!(shard("kube-system/dns/udp/dns"), Some(6));
        assert_eq!(shard("a/b/sctp/9"), Some(0));
        assert_eq!(SHARDS, 16);
    }

    #[test]
    fn layout_and_firewall_chains_stay_in_the_main_table() {
        for name in [
            "services",
            "service-endpoints-check",
            "cluster-ips-check",
            "firewall-check",
            "firewall-ABCDEFGH-shop/web/tcp/http",
            "service-abcdefgh-shop/web/tcp/http",
            "service-ABCDEFG",
            "reject-chain",
        ] {
            assert_eq!(shard_of(name), None, "{name}");
        }
    }

    #[test]
    fn a_shard_is_bare_until_a_port_puts_something_in_it() {
        let family = IpFamily::V4;
        let skeleton = shard_skeleton(family, 3, false, &Sets::new(family).nodeport_ips);
        assert!(is_bare_shard(&skeleton));
        let mut with_chain = skeleton.clone();
        with_chain.insert_chain(Chain::regular("service-ABCDEFGH-shop/web/tcp/http"));
        assert!(!is_bare_shard(&with_chain));
        let mut with_set = skeleton.clone();
        with_set.insert_set(Set::set(
            "affinity-ABCDEFGH-shop/web/tcp/http__198.18.1.10/80",
            vec![DataType::Ipv4Addr],
        ));
        assert!(!is_bare_shard(&with_set));
    }

    #[test]
    fn table_names_are_the_main_table_and_numbered_shards() {
        for ours in ["nftproxy", "nftproxy-0", "nftproxy-31", "nftproxy-99"] {
            assert!(is_table_name(ours), "{ours}");
        }
        for theirs in [
            "nftproxy-",
            "nftproxy-x",
            "nftproxyx",
            "nftproxy-1a",
            "other",
            "",
        ] {
            assert!(!is_table_name(theirs), "{theirs}");
        }
        let names = table_names();
        assert_eq!(names.len(), SHARDS + 1);
        assert!(names.iter().all(|n| is_table_name(n)));
        assert_eq!(table_ids().len(), 2 * (SHARDS + 1));
    }
}
