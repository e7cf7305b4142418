//! Property tests: `diff(old, new)` applied to `old` gives `new`, through valid states only.
//!
//! Rulesets are drawn from a small vocabulary (a few tables, sets, maps and chains with
//! fixed names) so that two random rulesets overlap a lot, as an old and a new ruleset do.
//! Jumps only go from a chain to one with a higher index and verdict maps only to the
//! "leaf" chains, so every generated ruleset is acyclic; references to objects that were
//! not drawn are dropped, so none dangles.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use nftproxy_rules::apply::apply_op;
use nftproxy_rules::graph::stmt_set_refs;
use nftproxy_rules::{
    Chain, ChainType, CmpOp, CtFlag, CtKey, DataType, Element, Expr, Family, Hook, L4Proto,
    MetaKey, Op, PayloadField, Rule, Ruleset, Set, SetFlag, Stmt, Table, Value, Verdict, diff,
    validate_ruleset,
};
use proptest::prelude::*;

const REGULAR: [&str; 6] = ["c0", "c1", "c2", "leaf3", "leaf4", "leaf5"];
const FIRST_LEAF: usize = 3;
const BASES: [(&str, ChainType, Hook, i32); 3] = [
    ("nat-prerouting", ChainType::Nat, Hook::Prerouting, -100),
    ("filter-input", ChainType::Filter, Hook::Input, 0),
    ("nat-postrouting", ChainType::Nat, Hook::Postrouting, 100),
];
const SETS: [&str; 5] = ["addrs", "pairs", "ports-map", "dispatch", "counters"];
const COUNTERS: [&str; 3] = ["k0", "k1", "ns/k2/tcp/80"];

/// A counter-map value: the name of one of the counter objects a table may declare.
fn counter_ref() -> impl Strategy<Value = Value> {
    prop::sample::select(COUNTERS.to_vec()).prop_map(|c| Value::ObjRef(c.to_string().into()))
}

fn addr() -> impl Strategy<Value = Value> {
    (0u8..6).prop_map(|i| Value::Ipv4(Ipv4Addr::new(198, 19, 0, i)))
}

fn port() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![53u16, 80, 443, 8080]).prop_map(Value::Port)
}

fn proto() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![L4Proto::Tcp, L4Proto::Udp, L4Proto::Sctp]).prop_map(Value::Proto)
}

/// A verdict-map value: a plain verdict or a jump/goto to a leaf chain.
fn map_verdict() -> impl Strategy<Value = Value> {
    let leaf = (FIRST_LEAF..REGULAR.len()).prop_map(|i| REGULAR[i].to_string());
    prop_oneof![
        Just(Verdict::Drop),
        Just(Verdict::Accept),
        leaf.clone().prop_map(|c| Verdict::Goto(c.into())),
        leaf.prop_map(|c| Verdict::Jump(c.into())),
    ]
    .prop_map(Value::Verdict)
}

fn comment() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "a/b:http".to_string(),
        "x".to_string(),
    ]))
}

/// One of the fixed sets, with a random declaration variant and random elements.
fn set(name: &'static str) -> BoxedStrategy<Set> {
    let decl = (any::<bool>(), prop::option::of(Just(60u32)));
    match name {
        "addrs" => (decl, prop::collection::vec((addr(), comment()), 0..5))
            .prop_map(|((interval, timeout), elems)| {
                let mut s = Set::set("addrs", vec![DataType::Ipv4Addr]);
                if interval {
                    s = s.with_flag(SetFlag::Interval);
                }
                if timeout.is_some() {
                    s = s.with_flag(SetFlag::Timeout);
                    s.timeout_secs = timeout;
                }
                for (a, c) in elems {
                    let mut e = Element::key(vec![a]);
                    e.comment = c.map(Box::from);
                    s.insert(e);
                }
                s
            })
            .boxed(),
        "pairs" => prop::collection::vec((addr(), addr()), 0..5)
            .prop_map(|elems| {
                let mut s = Set::set("pairs", vec![DataType::Ipv4Addr, DataType::Ipv4Addr]);
                for (a, b) in elems {
                    s.insert(Element::key(vec![a, b]));
                }
                s
            })
            .boxed(),
        "ports-map" => (
            any::<bool>(),
            prop::collection::vec((port(), map_verdict()), 0..5),
        )
            .prop_map(|(commented, elems)| {
                let mut s = Set::map("ports-map", vec![DataType::InetService], DataType::Verdict);
                if commented {
                    s.comment = Some("ports".into());
                }
                for (p, v) in elems {
                    s.insert(Element::mapping(vec![p], v));
                }
                s
            })
            .boxed(),
        "counters" => prop::collection::vec((port(), counter_ref()), 0..4)
            .prop_map(|elems| {
                let mut s = Set::map("counters", vec![DataType::InetService], DataType::Counter);
                for (p, c) in elems {
                    s.insert(Element::mapping(vec![p], c));
                }
                s
            })
            .boxed(),
        _ => prop::collection::vec((addr(), proto(), port(), map_verdict(), comment()), 0..6)
            .prop_map(|elems| {
                let key = vec![
                    DataType::Ipv4Addr,
                    DataType::InetProto,
                    DataType::InetService,
                ];
                let mut s = Set::map("dispatch", key, DataType::Verdict);
                for (a, pr, p, v, c) in elems {
                    let mut e = Element::mapping(vec![a, pr, p], v);
                    e.comment = c.map(Box::from);
                    s.insert(e);
                }
                s
            })
            .boxed(),
    }
}

/// A statement that may appear in chain number `index` (-1 for base chains).
fn stmt(index: i32) -> BoxedStrategy<Stmt> {
    let later: Vec<String> = REGULAR
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as i32 > index)
        .map(|(_, n)| n.to_string())
        .collect();
    let mut choices: Vec<BoxedStrategy<Stmt>> = vec![
        Just(Stmt::is_in(
            Expr::Payload(PayloadField::IpDaddr),
            Expr::SetRef("addrs".into()),
        ))
        .boxed(),
        Just(Stmt::is_in(
            Expr::concat(vec![
                Expr::Payload(PayloadField::IpSaddr),
                Expr::Payload(PayloadField::IpDaddr),
            ]),
            Expr::SetRef("pairs".into()),
        ))
        .boxed(),
        proto()
            .prop_map(|p| Stmt::eq(Expr::Meta(MetaKey::L4proto), Expr::Literal(p)))
            .boxed(),
        Just(Stmt::Match {
            left: Expr::Ct(CtKey::State),
            op: CmpOp::In,
            right: Expr::Literal(Value::CtFlag(CtFlag::New)),
        })
        .boxed(),
        (0u8..4)
            .prop_map(|i| Stmt::Dnat {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, i)),
                port: Some(8080),
            })
            .boxed(),
        Just(Stmt::Counter).boxed(),
        Just(Stmt::CounterMap {
            key: Expr::Payload(PayloadField::ThDport),
            map: "counters".into(),
        })
        .boxed(),
        Just(Stmt::Verdict(Verdict::Accept)).boxed(),
        Just(Stmt::UpdateSet {
            set: "addrs".into(),
            key: Expr::Payload(PayloadField::IpSaddr),
        })
        .boxed(),
    ];
    if !later.is_empty() {
        let targets = prop::sample::select(later);
        choices.push(
            (targets, any::<bool>())
                .prop_map(|(t, j)| {
                    Stmt::Verdict(if j {
                        Verdict::Jump(t.into())
                    } else {
                        Verdict::Goto(t.into())
                    })
                })
                .boxed(),
        );
    }
    if index < FIRST_LEAF as i32 {
        choices.push(
            Just(Stmt::Vmap {
                key: Expr::Payload(PayloadField::ThDport),
                map: "ports-map".into(),
            })
            .boxed(),
        );
        choices.push(
            Just(Stmt::Vmap {
                key: Expr::concat(vec![
                    Expr::Payload(PayloadField::IpDaddr),
                    Expr::Meta(MetaKey::L4proto),
                    Expr::Payload(PayloadField::ThDport),
                ]),
                map: "dispatch".into(),
            })
            .boxed(),
        );
    }
    prop::strategy::Union::new(choices).boxed()
}

fn rules(index: i32) -> impl Strategy<Value = Vec<Rule>> {
    let rule = (prop::collection::vec(stmt(index), 1..4), comment()).prop_map(|(stmts, c)| {
        let mut r = Rule::new(stmts);
        r.comment = c.map(Box::from);
        r
    });
    prop::collection::vec(rule, 0..4)
}

fn table(family: Family, name: &'static str) -> impl Strategy<Value = Table> {
    let sets = SETS.map(|s| prop::option::of(set(s)));
    let regular: Vec<_> = (0..REGULAR.len())
        .map(|i| prop::option::weighted(0.7, rules(i as i32)))
        .collect();
    let bases: Vec<_> = BASES
        .iter()
        .map(|_| prop::option::of((rules(-1), any::<bool>())))
        .collect();
    let counters = [any::<bool>(), any::<bool>(), any::<bool>()];
    (sets, regular, bases, counters).prop_map(move |(sets, regular, bases, counters)| {
        let mut t = Table::new(family, name);
        set_counters(&mut t, counters);
        for s in sets.into_iter().flatten() {
            t.insert_set(s);
        }
        for (i, rules) in regular.into_iter().enumerate() {
            if let Some(rules) = rules {
                let mut c = Chain::regular(REGULAR[i]);
                c.rules = rules.into();
                t.insert_chain(c);
            }
        }
        for (b, spec) in BASES.iter().zip(bases) {
            if let Some((rules, shifted)) = spec {
                let mut c = Chain::base(b.0, b.1, b.2, b.3 + i32::from(shifted));
                c.rules = rules.into();
                t.insert_chain(c);
            }
        }
        drop_dangling(&mut t);
        t
    })
}

/// Declares exactly the counters of `COUNTERS` whose flag is set.
fn set_counters(t: &mut Table, present: [bool; 3]) {
    t.counters.clear();
    for (name, present) in COUNTERS.iter().zip(present) {
        if present {
            t.insert_counter(*name);
        }
    }
}

/// Removes rules and elements that refer to chains, sets or counters the table does not have.
fn drop_dangling(t: &mut Table) {
    let chains: Vec<String> = t.chains.keys().cloned().collect();
    let sets: Vec<String> = t.sets.keys().cloned().collect();
    let counters: Vec<String> = t.counters.keys().cloned().collect();
    for set in t.sets.values_mut() {
        set.elements.retain(|_, e| match &e.value {
            Some(Value::Verdict(v)) => v.target().is_none_or(|c| chains.iter().any(|n| n == c)),
            Some(Value::ObjRef(c)) => counters.iter().any(|k| **k == **c),
            _ => true,
        });
    }
    t.chains.update_each(|_, chain| {
        chain.rules.retain(|r| {
            r.stmts.referring().iter().all(|s| {
                let mut ok = s.target().is_none_or(|c| chains.iter().any(|n| n == c));
                stmt_set_refs(s, &mut |name| ok &= sets.iter().any(|n| n == name));
                ok
            })
        });
    });
}

fn ruleset() -> impl Strategy<Value = Ruleset> {
    (
        table(Family::Ip, "nftproxy"),
        prop::option::of(table(Family::Ip6, "nftproxy")),
    )
        .prop_map(|(a, b)| {
            let mut r = Ruleset::new();
            r.insert_table(a);
            if let Some(b) = b {
                r.insert_table(b);
            }
            r
        })
}

/// A small edit of a table: the realistic difference between two syncs.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace set number `n` with a freshly drawn one (often: a few elements differ).
    ReplaceSet(usize, Option<Set>),
    /// Replace the rules of regular chain number `n`, or remove the chain.
    ReplaceChain(usize, Option<Vec<Rule>>),
    /// Remove one element of set number `n`.
    DropElement(usize, usize),
    /// Declare exactly these counters (elements naming a dropped one go with it).
    SetCounters([bool; 3]),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..SETS.len()).prop_flat_map(
            |n| prop::option::of(set(SETS[n])).prop_map(move |s| Mutation::ReplaceSet(n, s))
        ),
        (0..REGULAR.len())
            .prop_flat_map(|n| prop::option::of(rules(n as i32))
                .prop_map(move |r| Mutation::ReplaceChain(n, r))),
        (0..SETS.len(), 0usize..6).prop_map(|(n, i)| Mutation::DropElement(n, i)),
        [any::<bool>(), any::<bool>(), any::<bool>()].prop_map(Mutation::SetCounters),
    ]
}

fn mutate(old: &Ruleset, mutations: &[Mutation]) -> Ruleset {
    let mut new = old.clone();
    for table in new.tables.values_mut() {
        for m in mutations {
            match m {
                Mutation::ReplaceSet(_, Some(s)) => table.insert_set(s.clone()),
                Mutation::ReplaceSet(n, None) => drop(table.sets.remove(SETS[*n])),
                Mutation::ReplaceChain(n, Some(rules)) => {
                    let mut c = Chain::regular(REGULAR[*n]);
                    c.rules = rules.clone().into();
                    table.insert_chain(c);
                }
                Mutation::ReplaceChain(n, None) => drop(table.chains.remove(REGULAR[*n])),
                Mutation::SetCounters(present) => set_counters(table, *present),
                Mutation::DropElement(n, i) => {
                    if let Some(s) = table.sets.get_mut(SETS[*n]) {
                        let key = s.elements.keys().nth(*i).cloned();
                        if let Some(k) = key {
                            s.elements.remove(&k);
                        }
                    }
                }
            }
        }
        drop_dangling(table);
    }
    new
}

/// Applies `old -> new` op by op, checking that every intermediate state is valid.
fn assert_diff_applies(old: &Ruleset, new: &Ruleset) -> Result<(), TestCaseError> {
    prop_assert_eq!(validate_ruleset(new), Ok(()));
    let tx = diff(old, new).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut state = old.clone();
    for (i, op) in tx.ops.iter().enumerate() {
        if let Err(e) = apply_op(&mut state, i, op) {
            return Err(TestCaseError::fail(format!("{e}\ntransaction:\n{tx}")));
        }
        prop_assert_eq!(validate_ruleset(&state), Ok(()), "after op {}: {}", i, op);
    }
    prop_assert_eq!(&state, new, "transaction:\n{}", tx);
    let applied = tx.apply_to(old);
    prop_assert_eq!(applied.as_ref(), Ok(new));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn diff_between_unrelated_rulesets_applies_exactly(old in ruleset(), new in ruleset()) {
        assert_diff_applies(&old, &new)?;
    }

    #[test]
    fn diff_after_small_edits_applies_exactly(
        old in ruleset(),
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let new = mutate(&old, &edits);
        assert_diff_applies(&old, &new)?;
        assert_diff_applies(&new, &old)?;
    }

    #[test]
    fn diff_of_a_ruleset_with_itself_is_empty(r in ruleset()) {
        prop_assert!(diff(&r, &r).unwrap().is_empty());
    }

    #[test]
    fn small_edits_produce_no_ops_for_untouched_objects(
        old in ruleset(),
        edits in prop::collection::vec(mutation(), 1..3),
    ) {
        let new = mutate(&old, &edits);
        let tx = diff(&old, &new).unwrap();
        for op in &tx.ops {
            if let Op::FlushChain { table, chain } = op {
                let before = &old.table(table).unwrap().chains[chain];
                let after = new.table(table).and_then(|t| t.chains.get(chain));
                let recreated_set = |name: &str| {
                    let o = old.table(table).and_then(|t| t.sets.get(name));
                    let n = new.table(table).and_then(|t| t.sets.get(name));
                    matches!((o, n), (Some(o), Some(n)) if !o.same_declaration(n))
                };
                let refers_to_recreated = before.rules.iter().flat_map(|r| r.stmts.referring()).any(|s| {
                    let mut found = false;
                    stmt_set_refs(s, &mut |name| found |= recreated_set(name));
                    found
                });
                prop_assert!(
                    after != Some(before) || refers_to_recreated,
                    "unchanged chain {} flushed", chain
                );
            }
        }
    }
}
