//! Example rulesets that use every construct of the model, for tests here and elsewhere.
//!
//! The kernel tests load these into a namespace and list them back, so every rule here is
//! one the kernel accepts where it is placed (NAT statements only in chains reached from
//! NAT hooks, `reject` only from input/forward/output, `masquerade` only from postrouting),
//! and every construct is written in the model's canonical form (see `CmpOp`). Tables,
//! chains and sets carry no comments: nft 1.0.6 cannot carry those through JSON.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::expr::{
    AddrType, BitOp, CmpOp, CtFlag, CtKey, Expr, FibAddr, L4Proto, MetaKey, PayloadField,
    RejectKind, Stmt, Value, Verdict,
};
use crate::model::{
    Chain, ChainType, DataType, Element, Family, Hook, Rule, Ruleset, Set, SetFlag, Table,
};

const MARK: u32 = 0x4000;
const COUNTER: &str = "counter-ABCDEFGH-default/web/tcp/http";

fn v4(a: u8, b: u8, c: u8, d: u8) -> Value {
    Value::Ipv4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> Value {
    Value::Ipv6(s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::LOCALHOST))
}

fn prefix(s: &str) -> Value {
    Value::Prefix(Box::new(
        s.parse()
            .unwrap_or_else(|_| ipnet::IpNet::from(IpAddr::from([0u8; 4]))),
    ))
}

fn lit(v: Value) -> Expr {
    Expr::Literal(v)
}

fn daddr(family: Family) -> Expr {
    Expr::Payload(match family {
        Family::Ip6 => PayloadField::Ip6Daddr,
        _ => PayloadField::IpDaddr,
    })
}

fn saddr(family: Family) -> Expr {
    Expr::Payload(match family {
        Family::Ip6 => PayloadField::Ip6Saddr,
        _ => PayloadField::IpSaddr,
    })
}

/// `daddr . meta l4proto . th dport`
fn dispatch_key(family: Family) -> Expr {
    Expr::concat(vec![
        daddr(family),
        Expr::Meta(MetaKey::L4proto),
        Expr::Payload(PayloadField::ThDport),
    ])
}

fn ct_new() -> Stmt {
    Stmt::is_in(Expr::Ct(CtKey::State), lit(Value::CtFlag(CtFlag::New)))
}

fn jump(chain: &str) -> Stmt {
    Stmt::Verdict(Verdict::Jump(chain.into()))
}

fn mark_or() -> Expr {
    Expr::Bitwise {
        left: Box::new(Expr::Meta(MetaKey::Mark)),
        op: BitOp::Or,
        right: MARK,
    }
}

fn tcp() -> Stmt {
    Stmt::eq(
        Expr::Meta(MetaKey::L4proto),
        lit(Value::Proto(L4Proto::Tcp)),
    )
}

fn base_chains() -> Vec<Chain> {
    vec![
        Chain::base("nat-prerouting", ChainType::Nat, Hook::Prerouting, -100)
            .with_rule(Rule::new(vec![jump("services")])),
        Chain::base("nat-output", ChainType::Nat, Hook::Output, -100)
            .with_rule(Rule::new(vec![jump("services")])),
        Chain::base("nat-postrouting", ChainType::Nat, Hook::Postrouting, 100)
            .with_rule(Rule::new(vec![jump("masquerading")])),
        Chain::base("filter-input", ChainType::Filter, Hook::Input, 0)
            .with_rule(Rule::new(vec![ct_new(), jump("service-endpoints-check")])),
        Chain::base("filter-forward", ChainType::Filter, Hook::Forward, 0)
            .with_rule(Rule::new(vec![ct_new(), jump("service-endpoints-check")]))
            .with_rule(Rule::new(vec![ct_new(), jump("cluster-ips-check")])),
        Chain::base(
            "filter-prerouting-pre-dnat",
            ChainType::Filter,
            Hook::Prerouting,
            -110,
        ),
    ]
}

fn filter_chains(family: Family) -> Vec<Chain> {
    let check = Chain::regular("cluster-ips-check")
        .with_rule(Rule::new(vec![
            Stmt::is_in(daddr(family), Expr::SetRef("cluster-ips".into())),
            Stmt::Reject(RejectKind::PortUnreachable),
        ]))
        .with_rule(Rule::new(vec![
            Stmt::is_in(daddr(family), Expr::SetRef("service-cidrs".into())),
            Stmt::Verdict(Verdict::Drop),
        ]))
        .with_rule(Rule::new(vec![Stmt::Reject(RejectKind::TcpReset)]));
    vec![
        check,
        Chain::regular("reject-chain")
            .with_rule(Rule::new(vec![Stmt::Reject(RejectKind::PortUnreachable)])),
        Chain::regular("service-endpoints-check").with_rule(Rule::new(vec![Stmt::Vmap {
            key: dispatch_key(family),
            map: "no-endpoint-services".into(),
        }])),
    ]
}

fn masquerading(family: Family) -> Chain {
    let bit_clear = Stmt::eq(
        Expr::Bitwise {
            left: Box::new(Expr::Meta(MetaKey::Mark)),
            op: BitOp::And,
            right: MARK,
        },
        lit(Value::Int(0)),
    );
    Chain::regular("masquerading")
        .with_rule(Rule::new(vec![
            Stmt::is_in(Expr::Ct(CtKey::Status), lit(Value::CtFlag(CtFlag::Dnat))),
            Stmt::is_in(
                Expr::concat(vec![saddr(family), daddr(family)]),
                Expr::SetRef("endpoint-hairpin".into()),
            ),
            Stmt::SetMark(mark_or()),
        ]))
        .with_rule(Rule::new(vec![bit_clear, Stmt::Verdict(Verdict::Return)]))
        .with_rule(Rule::new(vec![Stmt::SetMark(Expr::Bitwise {
            left: Box::new(Expr::Meta(MetaKey::Mark)),
            op: BitOp::Xor,
            right: MARK,
        })]))
        .with_rule(Rule::new(vec![Stmt::Masquerade { fully_random: true }]))
}

fn services(family: Family, pod_cidr: &str) -> Chain {
    let iif = |op, wildcard| Stmt::Match {
        left: Expr::Meta(MetaKey::Iifname),
        op,
        right: lit(Value::ifname("veth", wildcard)),
    };
    Chain::regular("services")
        .with_rule(Rule::new(vec![
            Stmt::is_in(daddr(family), Expr::SetRef("cluster-ips".into())),
            Stmt::ne(saddr(family), lit(prefix(pod_cidr))),
            Stmt::SetMark(mark_or()),
        ]))
        .with_rule(
            Rule::new(vec![
                iif(CmpOp::Ne, true),
                Stmt::Counter,
                Stmt::Verdict(Verdict::Continue),
            ])
            .with_comment("not from a pod: counted"),
        )
        .with_rule(Rule::new(vec![
            iif(CmpOp::Eq, false),
            Stmt::eq(
                Expr::Meta(MetaKey::Oifname),
                lit(Value::ifname("eth0", false)),
            ),
            Stmt::Verdict(Verdict::Accept),
        ]))
        .with_rule(Rule::new(vec![
            Stmt::eq(
                Expr::FibType(FibAddr::Daddr),
                lit(Value::AddrType(AddrType::Local)),
            ),
            Stmt::is_in(
                Expr::Meta(MetaKey::L4proto),
                Expr::anon_set(vec![Value::Proto(L4Proto::Tcp), Value::Proto(L4Proto::Udp)]),
            ),
            Stmt::ne(Expr::Meta(MetaKey::Mark), lit(Value::Int(7))),
            Stmt::Vmap {
                key: Expr::concat(vec![
                    Expr::Meta(MetaKey::L4proto),
                    Expr::Payload(PayloadField::ThDport),
                ]),
                map: "service-nodeports".into(),
            },
        ]))
        .with_rule(Rule::new(vec![Stmt::Vmap {
            key: dispatch_key(family),
            map: "service-ips".into(),
        }]))
}

/// A service chain: a two-endpoint `numgen` cascade plus affinity bookkeeping.
fn service_chain(name: &str, family: Family, endpoints: [IpAddr; 2]) -> Chain {
    Chain::regular(name)
        .with_rule(Rule::new(vec![
            Stmt::Match {
                left: Expr::NumgenRandom { modulus: 2 },
                op: CmpOp::Eq,
                right: lit(Value::Int(0)),
            },
            Stmt::UpdateSet {
                set: "affinity".into(),
                key: saddr(family),
            },
            tcp(),
            Stmt::Dnat {
                addr: endpoints[0],
                port: Some(8080),
            },
        ]))
        .with_rule(
            Rule::new(vec![
                tcp(),
                Stmt::Dnat {
                    addr: endpoints[1],
                    port: Some(8080),
                },
            ])
            .with_comment("last endpoint"),
        )
}

struct FamilyAddrs {
    family: Family,
    key: DataType,
    vips: [Value; 2],
    endpoints: [IpAddr; 2],
    cidr: &'static str,
    pod_cidr: &'static str,
}

fn sets(a: &FamilyAddrs, service: &str) -> Vec<Set> {
    let dispatch = vec![a.key, DataType::InetProto, DataType::InetService];
    let mut service_ips = Set::map("service-ips", dispatch.clone(), DataType::Verdict);
    service_ips.insert(
        Element::mapping(
            vec![
                a.vips[0].clone(),
                Value::Proto(L4Proto::Tcp),
                Value::Port(80),
            ],
            Value::Verdict(Verdict::Goto(service.into())),
        )
        .with_comment("default/web:http"),
    );
    service_ips.insert(Element::mapping(
        vec![
            a.vips[0].clone(),
            Value::Proto(L4Proto::Sctp),
            Value::Port(9),
        ],
        Value::Verdict(Verdict::Jump(service.into())),
    ));
    let mut counters = Set::map("service-counters", dispatch.clone(), DataType::Counter);
    counters.insert(Element::mapping(
        vec![
            a.vips[0].clone(),
            Value::Proto(L4Proto::Tcp),
            Value::Port(80),
        ],
        Value::ObjRef(COUNTER.into()),
    ));
    let mut no_endpoints = Set::map("no-endpoint-services", dispatch, DataType::Verdict);
    no_endpoints.insert(
        Element::mapping(
            vec![
                a.vips[1].clone(),
                Value::Proto(L4Proto::Udp),
                Value::Port(53),
            ],
            Value::Verdict(Verdict::Goto("reject-chain".into())),
        )
        .with_comment("kube-system/dns:53"),
    );
    no_endpoints.insert(Element::mapping(
        vec![
            a.vips[1].clone(),
            Value::Proto(L4Proto::Tcp),
            Value::Port(443),
        ],
        Value::Verdict(Verdict::Drop),
    ));
    let mut nodeports = Set::map(
        "service-nodeports",
        vec![DataType::InetProto, DataType::InetService],
        DataType::Verdict,
    );
    nodeports.insert(Element::mapping(
        vec![Value::Proto(L4Proto::Tcp), Value::Port(30080)],
        Value::Verdict(Verdict::Goto(service.into())),
    ));
    let mut cluster_ips = Set::set("cluster-ips", vec![a.key]);
    for vip in &a.vips {
        cluster_ips.insert(Element::key(vec![vip.clone()]));
    }
    let mut cidrs = Set::set("service-cidrs", vec![a.key]).with_flag(SetFlag::Interval);
    cidrs.insert(Element::key(vec![prefix(a.cidr)]).with_comment("primary range"));
    let mut hairpin = Set::set("endpoint-hairpin", vec![a.key, a.key]);
    for e in a.endpoints {
        hairpin.insert(Element::key(vec![Value::from(e), Value::from(e)]));
    }
    let mut affinity = Set::set("affinity", vec![a.key]).with_flag(SetFlag::Timeout);
    affinity.timeout_secs = Some(10800);
    let mut ranges =
        Set::set("source-ranges", vec![a.key, DataType::InetService]).with_flag(SetFlag::Interval);
    ranges.insert(Element::key(vec![prefix(a.pod_cidr), Value::Port(80)]));
    let mut marks = Set::map("marks", vec![DataType::Mark], DataType::Mark);
    marks.insert(Element::mapping(vec![Value::Int(1)], Value::Int(MARK)));
    let mut ifaces =
        Set::set("pod-interfaces", vec![DataType::Ifname]).with_flag(SetFlag::Interval);
    for (name, wildcard) in [("cni0", false), ("veth", true)] {
        ifaces.insert(Element::key(vec![Value::ifname(name, wildcard)]));
    }
    vec![
        service_ips,
        counters,
        no_endpoints,
        nodeports,
        cluster_ips,
        cidrs,
        hairpin,
        affinity,
        ranges,
        marks,
        ifaces,
    ]
}

fn table(a: &FamilyAddrs) -> Table {
    let service = "service-ABCDEFGH-default/web/tcp/http";
    let mut table = Table::new(a.family, "nftproxy");
    table.insert_counter(COUNTER);
    table.insert_counter("counter-IJKLMNOP-default/idle/udp/53");
    for set in sets(a, service) {
        table.insert_set(set);
    }
    for chain in base_chains().into_iter().chain(filter_chains(a.family)) {
        table.insert_chain(chain);
    }
    table.insert_chain(masquerading(a.family));
    table.insert_chain(services(a.family, a.pod_cidr));
    table.insert_chain(service_chain(service, a.family, a.endpoints));
    let count = Rule::new(vec![Stmt::CounterMap {
        key: dispatch_key(a.family),
        map: "service-counters".into(),
    }]);
    table
        .chains
        .update("filter-prerouting-pre-dnat", |c| c.push(count));
    table
}

/// Two tables (`ip nftproxy`, `ip6 nftproxy`) using every expression, statement, set shape
/// and declaration the model has, in canonical form.
pub fn every_construct() -> Ruleset {
    let ipv4 = FamilyAddrs {
        family: Family::Ip,
        key: DataType::Ipv4Addr,
        vips: [v4(198, 19, 0, 10), v4(198, 19, 0, 11)],
        endpoints: [[198, 18, 0, 2].into(), [198, 18, 1, 2].into()],
        cidr: "198.19.0.0/16",
        pod_cidr: "198.18.0.0/16",
    };
    let ipv6 = FamilyAddrs {
        family: Family::Ip6,
        key: DataType::Ipv6Addr,
        vips: [v6("2001:db8:19::10"), v6("2001:db8:19::11")],
        endpoints: [
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 2)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x18, 1, 0, 0, 0, 2)),
        ],
        cidr: "2001:db8:19::/112",
        pod_cidr: "2001:db8:18::/48",
    };
    let mut ruleset = Ruleset::new();
    ruleset.insert_table(table(&ipv4));
    ruleset.insert_table(table(&ipv6));
    ruleset
}

/// Table `ip nftproxy` with one counter object `counter-X-ns/a/tcp/80`, a counter map `m`
/// naming it for port 80, and a chain `c` whose rule counts through the map.
pub fn counter_table() -> Table {
    let mut table = Table::new(Family::Ip, "nftproxy");
    table.insert_counter("counter-X-ns/a/tcp/80");
    let mut map = Set::map("m", vec![DataType::InetService], DataType::Counter);
    map.insert(Element::mapping(
        vec![Value::Port(80)],
        Value::ObjRef("counter-X-ns/a/tcp/80".into()),
    ));
    table.insert_set(map);
    table.insert_chain(
        Chain::regular("c").with_rule(Rule::new(vec![Stmt::CounterMap {
            key: Expr::Payload(PayloadField::ThDport),
            map: "m".into(),
        }])),
    );
    table
}
