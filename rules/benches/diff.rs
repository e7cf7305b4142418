//! Benchmarks `diff` where it matters: one endpoint change among many services.
//!
//! The ruleset mimics the compiled layout (a dispatch map, a hairpin set, one chain per
//! service with a `numgen` cascade of two `dnat` rules), so the numbers are comparable with
//! a real sync. Run with `cargo bench -p nftproxy-rules`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::Ipv4Addr;

use criterion::{Criterion, criterion_group, criterion_main};
use nftproxy_rules::{
    Chain, DataType, Element, Expr, Family, L4Proto, MetaKey, Rule, Ruleset, Set, Stmt, Table,
    Value, Verdict, diff,
};

/// `services` services with two endpoints each; service `moved` has its endpoints shifted.
fn ruleset(services: u32, moved: Option<u32>) -> Ruleset {
    let mut t = Table::new(Family::Ip, "nftproxy");
    let dispatch = vec![
        DataType::Ipv4Addr,
        DataType::InetProto,
        DataType::InetService,
    ];
    let mut map = Set::map("service-ips", dispatch, DataType::Verdict);
    let mut hairpin = Set::set(
        "endpoint-hairpin",
        vec![DataType::Ipv4Addr, DataType::Ipv4Addr],
    );
    for i in 0..services {
        let name = format!("service-ABCDEFGH-ns{i}/svc{i}/tcp/http");
        let vip = Value::Ipv4(Ipv4Addr::from(0xC613_0000 + i));
        let key = vec![vip, Value::Proto(L4Proto::Tcp), Value::Port(80)];
        let goto = Value::Verdict(Verdict::Goto(name.as_str().into()));
        map.insert(Element::mapping(key, goto).with_comment(format!("ns{i}/svc{i}:http")));
        let mut chain = Chain::regular(name);
        let shift = if moved == Some(i) { 2 } else { 0 };
        for e in 0..2u32 {
            let ep = Ipv4Addr::from(0xC612_0000 + i * 4 + e + shift);
            hairpin.insert(Element::key(vec![Value::Ipv4(ep), Value::Ipv4(ep)]));
            let mut stmts = Vec::new();
            if e == 0 {
                let numgen = Expr::NumgenRandom { modulus: 2 };
                stmts.push(Stmt::eq(numgen, Expr::Literal(Value::Int(0))));
            }
            let tcp = Expr::Literal(Value::Proto(L4Proto::Tcp));
            stmts.push(Stmt::eq(Expr::Meta(MetaKey::L4proto), tcp));
            stmts.push(Stmt::Dnat {
                addr: ep.into(),
                port: Some(8080),
            });
            chain.push(Rule::new(stmts));
        }
        t.insert_chain(chain);
    }
    t.insert_set(map);
    t.insert_set(hairpin);
    let mut r = Ruleset::new();
    r.insert_table(t);
    r
}

fn bench_diff(c: &mut Criterion) {
    let old = ruleset(10_000, None);
    let new = ruleset(10_000, Some(5_000));
    assert_eq!(diff(&old, &new).unwrap().len(), 5);
    c.bench_function("diff_10k_services_one_endpoint_moved", |b| {
        b.iter(|| diff(&old, &new).unwrap())
    });
    c.bench_function("diff_10k_services_unchanged", |b| {
        b.iter(|| diff(&old, &old).unwrap())
    });
}

criterion_group!(benches, bench_diff);
criterion_main!(benches);
