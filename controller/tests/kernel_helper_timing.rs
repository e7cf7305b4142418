//! Measurements, not a timed test: what the `nftproxy-nft` helper costs next to `nft -j -f`.
//!
//! Prints the round trip of a ping and of an empty transaction through the helper, next to
//! starting `nft -j -f -` for the same empty document; then, for a 10k-service ruleset (10
//! endpoints each, the BENCHMARKS.md cluster), the time to load it into an empty namespace,
//! to apply one added endpoint on top, and to list and parse it back, through the helper
//! (`Kernel`) and through `nft`, each path twice and in both orders. Both paths start from
//! a `Transaction` and end with a parsed `Ruleset`, so both include rendering the JSON and
//! parsing the listing. Ignored by default (it takes about a minute and a half); run it with
//! `cargo test --release -p nftproxy --test kernel_helper_timing -- --ignored --nocapture`
//! as root, after `cargo build --release -p nftproxy-nft`. It asserts that both paths leave
//! exactly the compiled ruleset, never a duration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[allow(dead_code)]
#[path = "../src/kernel/mod.rs"]
mod kernel;

#[allow(dead_code)]
#[path = "../src/netlink.rs"]
mod netlink;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::generated::{self, nft_helper};
use common::netns::{NetNs, kernel_tests_enabled};
use kernel::{Kernel, tables};
use nftproxy_compiler::{ClusterSnapshot, compile};
use nftproxy_rules::{Ruleset, Transaction, diff};

const SERVICES: usize = 10_000;
const ENDPOINTS: usize = 10;

fn cluster() -> ClusterSnapshot {
    generated::cluster(SERVICES, ENDPOINTS)
}

/// Runs `nft -j -f -` on `input` from a thread inside `ns`; returns the wall time.
fn nft_json(ns: &NetNs, input: &str) -> Duration {
    nft_stdin(ns, &["-j", "-f", "-"], input)
}

/// `nft ARGS` reading `input` on stdin, from a thread inside `ns`; returns the wall time.
fn nft_stdin(ns: &NetNs, args: &'static [&'static str], input: &str) -> Duration {
    let input = input.to_owned();
    ns.run_inside(move || {
        let start = Instant::now();
        let mut child = Command::new("nft")
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        start.elapsed()
    })
}

/// `nft -j list ruleset` from a thread inside `ns`, parsed; returns it and the wall time.
fn nft_list(ns: &NetNs) -> (Ruleset, Duration) {
    let (out, list) = timed(|| {
        ns.run_inside(|| {
            let out = Command::new("nft").args(["-j", "list", "ruleset"]).output();
            out.unwrap().stdout
        })
    });
    let (parsed, parse) = timed(|| {
        let value = serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        Ruleset::from_nft_json(&value, &tables()).unwrap()
    });
    println!(
        "  (nft: listed {} MB in {list:.3?}, parsed in {parse:.3?})",
        out.len() / 1_000_000
    );
    (parsed, list + parse)
}

/// The median of `n` runs of `f`.
fn median(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..n).map(|_| f()).collect();
    times.sort();
    times[n / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// The 10k-service figures, for the helper and for `nft`; each in a new namespace.
#[derive(Debug, Default)]
struct Figures {
    load: Duration,
    one: Duration,
    list: Duration,
}

fn through_helper(r0: &Ruleset, r1: &Ruleset) -> Figures {
    let ns = NetNs::new("khtime");
    let path = nft_helper();
    let kernel = ns.run_inside(move || Kernel::start(Some(&path)).unwrap());
    let full = diff(&Ruleset::new(), r0).unwrap();
    let ((), load) = timed(|| kernel.apply(&full).unwrap());
    let one = diff(r0, r1).unwrap();
    let ((), one) = timed(|| kernel.apply(&one).unwrap());
    let (listed, list) = timed(|| kernel.list().unwrap());
    assert!(
        &listed == r1,
        "the helper's namespace differs from the compiled ruleset"
    );
    Figures { load, one, list }
}

/// Renders `tx` (as `Kernel::apply` does) and loads it with `nft -j -f -`.
fn render_and_nft(ns: &NetNs, tx: &Transaction) -> Duration {
    let (json, render) = timed(|| tx.to_json().to_string());
    render + nft_json(ns, &json)
}

fn through_nft(r0: &Ruleset, r1: &Ruleset) -> Figures {
    let ns = NetNs::new("khtnft");
    let load = render_and_nft(&ns, &diff(&Ruleset::new(), r0).unwrap());
    let one = render_and_nft(&ns, &diff(r0, r1).unwrap());
    let (listed, list) = nft_list(&ns);
    assert!(
        &listed == r1,
        "nft's namespace differs from the compiled ruleset"
    );
    Figures { load, one, list }
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture (as root)"]
fn helper_round_trips_and_10k_service_loads_next_to_nft() {
    if !kernel_tests_enabled("helper_round_trips_and_10k_service_loads_next_to_nft") {
        return;
    }
    let ns = NetNs::new("khtrt");
    let path = nft_helper();
    let kernel = ns.run_inside(move || Kernel::start(Some(&path)).unwrap());
    let ping = median(1000, || timed(|| kernel.ping().unwrap()).1);
    let empty = Transaction::new();
    let noop = median(200, || timed(|| kernel.apply(&empty).unwrap()).1);
    let empty_json = empty.to_json().to_string();
    let nft_noop = median(50, || nft_json(&ns, &empty_json));
    println!("ping through the helper:                    {ping:>12.3?}");
    println!("empty transaction through the helper:       {noop:>12.3?}");
    println!("empty document through `nft -j -f -`:       {nft_noop:>12.3?}");
    drop(kernel);

    let (r0, r1) = one_endpoint_added();
    let full = diff(&Ruleset::new(), &r0).unwrap();
    let (json, render) = timed(|| full.to_json().to_string());
    println!(
        "{SERVICES} services x {ENDPOINTS}: {} MB of JSON (rendered in {render:.3?}), \
         {} nft commands; one endpoint added: {} nft commands",
        json.len() / 1_000_000,
        full.len(),
        diff(&r0, &r1).unwrap().len()
    );
    // Both orders, so that neither path always runs on a warmer (or busier) machine.
    let rounds = [
        ("helper", through_helper(&r0, &r1)),
        ("nft", through_nft(&r0, &r1)),
        ("nft", through_nft(&r0, &r1)),
        ("helper", through_helper(&r0, &r1)),
    ];
    println!(
        "{:<8} {:>12} {:>14} {:>12}",
        "path", "load", "one endpoint", "list+parse"
    );
    for (path, f) in rounds {
        println!(
            "{path:<8} {:>12.3?} {:>14.3?} {:>12.3?}",
            f.load, f.one, f.list
        );
    }
}

/// The compiled cluster, and the same with one endpoint added to the first service.
fn one_endpoint_added() -> (Ruleset, Ruleset) {
    let config = generated::config();
    let mut snapshot = cluster();
    let r0 = compile(&snapshot, &config).ruleset;
    snapshot.endpoint_slices[0] = Arc::new(generated::slice(0, ENDPOINTS + 1, 0).into());
    let r1 = compile(&snapshot, &config).ruleset;
    (r0, r1)
}

/// `nft -f -` (script) from a thread inside `ns`; returns the wall time.
fn nft_script(ns: &NetNs, input: &str) -> Duration {
    nft_stdin(ns, &["-f", "-"], input)
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture (as root)"]
fn one_endpoint_change_at_10k_as_script_and_as_json() {
    if !kernel_tests_enabled("one_endpoint_change_at_10k_as_script_and_as_json") {
        return;
    }
    let (r0, r1) = one_endpoint_added();
    let ns = NetNs::new("khtfmt");
    nft_script(&ns, &diff(&Ruleset::new(), &r0).unwrap().to_string());
    let (up, down) = (diff(&r0, &r1).unwrap(), diff(&r1, &r0).unwrap());
    let mut script = Vec::new();
    let mut json = Vec::new();
    for _ in 0..10 {
        script.push(nft_script(&ns, &up.to_string()));
        script.push(nft_script(&ns, &down.to_string()));
        json.push(nft_json(&ns, &up.to_json().to_string()));
        json.push(nft_json(&ns, &down.to_json().to_string()));
    }
    script.sort_unstable();
    json.sort_unstable();
    println!(
        "one endpoint at {SERVICES} services, nft -f: median {:?} max {:?}; nft -j -f: median {:?} max {:?}",
        script[script.len() / 2],
        script[script.len() - 1],
        json[json.len() / 2],
        json[json.len() - 1]
    );
}

/// The batch of `tx` (turning `from` into `to`), sent by `kernel` as nftproxy's own;
/// returns the wall time of encoding, sending and reading the kernel's answer.
fn through_batch(kernel: &Kernel, tx: &Transaction, from: &Ruleset, to: &Ruleset) -> Duration {
    let started = Instant::now();
    kernel
        .apply_batch(tx, &[to, from])
        .expect("the kernel takes the batch");
    started.elapsed()
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture (as root)"]
fn one_endpoint_change_at_10k_as_a_batch_of_our_own() {
    if !kernel_tests_enabled("one_endpoint_change_at_10k_as_a_batch_of_our_own") {
        return;
    }
    let (r0, r1) = one_endpoint_added();
    let ns = NetNs::new("khtbatch");
    nft_script(&ns, &diff(&Ruleset::new(), &r0).unwrap().to_string());
    let path = nft_helper();
    let kernel = ns.run_inside(move || Kernel::start(Some(&path)).expect("the helper starts"));
    let (up, down) = (diff(&r0, &r1).unwrap(), diff(&r1, &r0).unwrap());
    // The parts of the change on their own: the elements, and the chain rewrite.
    let (elements, rules): (Vec<_>, Vec<_>) = up.ops.iter().cloned().partition(|op| {
        matches!(
            op,
            nftproxy_rules::Op::AddElements { .. } | nftproxy_rules::Op::DeleteElements { .. }
        )
    });
    println!(
        "one endpoint added at {SERVICES} x {ENDPOINTS}: {} operations ({} on elements)",
        up.len(),
        elements.len()
    );
    let mut times = Vec::new();
    for _ in 0..15 {
        times.push(through_batch(&kernel, &up, &r0, &r1));
        times.push(through_batch(&kernel, &down, &r1, &r0));
    }
    times.sort();
    println!(
        "whole change as a batch: median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    for (label, ops) in [("elements only", elements), ("chain rewrite only", rules)] {
        if ops.is_empty() {
            continue;
        }
        let tx = Transaction { ops };
        let t = through_batch(&kernel, &tx, &r0, &r1);
        println!("{label}: {t:?}");
        through_batch(&kernel, &diff(&r1, &r0).unwrap(), &r1, &r0);
    }
    // Single operations, to tell the kernel's table validation (run at commit when a rule
    // or element can jump) from the rest. The probes go to shard 0, which holds a share of
    // the service chains, as an endpoint change does; the hairpin set is the main table's.
    use nftproxy_rules::{Element, L4Proto, Op, Rule, Stmt, TableId, Value, Verdict};
    let main = TableId::new(nftproxy_rules::Family::Ip, nftproxy_compiler::TABLE);
    let table = TableId::new(
        nftproxy_rules::Family::Ip,
        nftproxy_compiler::shard_table(0),
    );
    let some_chain = r0.tables[&table]
        .chains
        .keys()
        .find(|c| c.starts_with("service-"))
        .unwrap()
        .clone();
    let probe_ip = Value::Ipv4(std::net::Ipv4Addr::new(198, 19, 255, 254));
    let hairpin = Element::key([probe_ip.clone(), probe_ip.clone()]);
    let vip = Element::mapping(
        [probe_ip, Value::Proto(L4Proto::Tcp), Value::Port(9)],
        Value::Verdict(Verdict::Goto(some_chain.as_str().into())),
    );
    let table_of = |set: &str| {
        if set == "endpoint-hairpin" {
            main.clone()
        } else {
            table.clone()
        }
    };
    let add = |set: &str, e: &Element| Op::AddElements {
        table: table_of(set),
        set: set.into(),
        elements: vec![e.clone()],
    };
    let del = |set: &str, e: &Element| Op::DeleteElements {
        table: table_of(set),
        set: set.into(),
        elements: vec![e.clone()],
    };
    let probe = |stmts: Vec<Stmt>| Op::AddRule {
        table: table.clone(),
        chain: "probe".into(),
        rule: Rule::new(stmts),
    };
    let create_probe = Op::AddChain {
        table: table.clone(),
        chain: nftproxy_rules::Chain::regular("probe"),
    };
    let flush_probe = Op::FlushChain {
        table: table.clone(),
        chain: "probe".into(),
    };
    let single = Transaction {
        ops: vec![create_probe],
    };
    through_batch(&kernel, &single, &r0, &r0);
    let cases: Vec<(&str, Vec<Op>, Vec<Op>)> = vec![
        (
            "plain set element",
            vec![add("endpoint-hairpin", &hairpin)],
            vec![del("endpoint-hairpin", &hairpin)],
        ),
        (
            "verdict map element (goto)",
            vec![add("service-ips", &vip)],
            vec![del("service-ips", &vip)],
        ),
        (
            "rule: counter",
            vec![probe(vec![Stmt::Counter])],
            vec![flush_probe.clone()],
        ),
        (
            "rule: accept",
            vec![probe(vec![Stmt::Verdict(Verdict::Accept)])],
            vec![flush_probe.clone()],
        ),
        (
            "rule: dnat",
            vec![probe(vec![Stmt::Dnat {
                addr: "198.18.0.1".parse().unwrap(),
                port: Some(80),
            }])],
            vec![flush_probe.clone()],
        ),
    ];
    for (label, forth, back) in cases {
        let (forth, back) = (Transaction { ops: forth }, Transaction { ops: back });
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let t = through_batch(&kernel, &forth, &r0, &r0);
                through_batch(&kernel, &back, &r0, &r0);
                t
            })
            .collect();
        times.sort();
        println!("{label:<28} median {:?}", times[2]);
    }
    let drop_probe = Transaction {
        ops: vec![Op::DeleteChain {
            table: table.clone(),
            chain: "probe".into(),
        }],
    };
    through_batch(&kernel, &drop_probe, &r0, &r0);
    let listed = Ruleset::from_nft_json(&ns.nft_list_json(), &tables()).unwrap();
    assert!(
        listed == r0,
        "the namespace differs from the compiled ruleset"
    );
}
