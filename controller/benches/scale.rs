//! The control-plane scale harness (issue 6): compile, full apply, incremental apply and
//! restart adoption at 1k / 10k / 44k services (1 endpoint each) and 5k services x 50
//! endpoints, each in a throwaway network namespace with the real kernel.
//!
//! Run as root, after building the helper in release mode:
//!
//! ```text
//! cargo build --release -p nftproxy-nft
//! cargo bench -p nftproxy --bench scale                # every shape
//! cargo bench -p nftproxy --bench scale -- 10000x1     # shapes whose name contains this
//! ```
//!
//! It prints figures and asserts only correctness (the kernel holds what was compiled; an
//! adoption finds nothing to change), never a duration. The steps are the ones
//! `nftproxy run` takes: a full sync applies `diff(empty, compiled)` through libnftables; a
//! partial sync compiles incrementally, diffs against the last applied ruleset and sends
//! nftproxy's own netlink batch; a restart lists nftproxy's tables, compiles from scratch
//! and diffs. `nft -f` of the same ruleset as a script is printed beside the full apply:
//! that is the kernel's (and nft's) own cost for that many objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unused_imports)]
#[path = "../src/kernel/mod.rs"]
mod kernel;

#[allow(dead_code, unused_imports)]
#[path = "../src/netlink.rs"]
mod netlink;

#[allow(dead_code, unused_imports)]
#[path = "../tests/common/netns.rs"]
mod netns;

#[allow(dead_code, unused_imports)]
#[path = "../src/sync.rs"]
mod sync;

#[allow(dead_code, unused_imports)]
#[path = "../src/kernel_target.rs"]
mod kernel_target;

#[path = "../tests/common/generated.rs"]
mod generated;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use generated::{config, nft_helper, service, slice};
use kernel::Kernel;
use kernel_target::KernelTarget;
use netns::NetNs;
use nftproxy_compiler::{ClusterSnapshot, compile};
use nftproxy_rules::{Ruleset, diff};
use sync::{Route, SyncKind, SyncReport, Syncer};

/// A generated cluster: `services` ClusterIP services with `endpoints` ready endpoints each.
#[derive(Debug, Clone, Copy)]
struct Shape {
    services: usize,
    endpoints: usize,
    /// Whether to measure incremental changes and adoption on it.
    changes: bool,
}

impl Shape {
    fn name(self) -> String {
        format!("{}x{}", self.services, self.endpoints)
    }
}

const SHAPES: [Shape; 4] = [
    Shape {
        services: 1_000,
        endpoints: 1,
        changes: false,
    },
    Shape {
        services: 10_000,
        endpoints: 1,
        changes: true,
    },
    Shape {
        services: 44_000,
        endpoints: 1,
        changes: true,
    },
    Shape {
        services: 5_000,
        endpoints: 50,
        changes: false,
    },
];

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Objects of a ruleset: chains, rules, set elements, counters.
fn size(ruleset: &Ruleset) -> (usize, usize, usize, usize) {
    let mut size = (0, 0, 0, 0);
    for table in ruleset.tables.values() {
        size.0 += table.chains.len();
        size.1 += table.chains.values().map(|c| c.rules.len()).sum::<usize>();
        size.2 += table.sets.values().map(|s| s.elements.len()).sum::<usize>();
        size.3 += table.counters.len();
    }
    size
}

/// `nft -f -` of `script` inside `ns`; the wall time.
fn nft_script(ns: &NetNs, script: &str) -> Duration {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn compile_figures(shape: Shape, snapshot: &ClusterSnapshot) -> Ruleset {
    let mut times = Vec::new();
    let mut ruleset = Ruleset::new();
    for _ in 0..3 {
        let (compiled, t) = timed(|| compile(snapshot, &config()));
        times.push(t);
        ruleset = compiled.ruleset;
    }
    times.sort();
    let (chains, rules, elements, counters) = size(&ruleset);
    let script = ruleset.to_string();
    println!(
        "{}: compile median {:.0} ms (min {:.0}, max {:.0}); {chains} chains, {rules} rules, {elements} elements, {counters} counters, {:.1} MB of script",
        shape.name(),
        ms(times[1]),
        ms(times[0]),
        ms(times[2]),
        script.len() as f64 / 1e6
    );
    ruleset
}

/// The kernel client of `nftproxy run`, started inside `ns`: full syncs through
/// libnftables, partial syncs as nftproxy's own netlink batches.
fn target(ns: &NetNs) -> KernelTarget {
    let path = nft_helper();
    let kernel = ns.run_inside(move || Kernel::start(Some(&path)).unwrap());
    KernelTarget {
        kernel,
        batches: true,
    }
}

/// Full apply as the first sync of `nftproxy run` does it (list the empty kernel,
/// compile, diff, one libnftables transaction), in a new namespace; `nft -f` of the
/// script and the same transaction as JSON, each in another namespace, beside it.
/// Returns the namespace and the syncer, which remembers what it applied.
fn full_apply(
    shape: Shape,
    snapshot: &ClusterSnapshot,
    ruleset: &Ruleset,
) -> (NetNs, Syncer<KernelTarget>) {
    let reference = NetNs::new("scale-nft");
    let script = diff(&Ruleset::new(), ruleset).unwrap().to_string();
    let nft = nft_script(&reference, &script);
    drop(reference);
    let json = through_json(ruleset);
    let ns = NetNs::new("scale");
    let mut syncer = Syncer::new(target(&ns), config());
    let report = syncer.sync(snapshot, true).unwrap();
    assert_eq!(report.kind, SyncKind::Full);
    println!(
        "{}: full apply {:.2} s (compile {:.0} ms, apply {:.2} s, {} commands); the same as JSON through the helper {:.2} s; nft -f of the script {:.2} s",
        shape.name(),
        report.total_time.as_secs_f64(),
        ms(report.compile_time),
        report.apply_time.as_secs_f64(),
        report.commands,
        json.as_secs_f64(),
        nft.as_secs_f64()
    );
    (ns, syncer)
}

/// The full transaction through the helper as libnftables JSON instead of the nft script
/// `Kernel::apply` sends, in a namespace of its own; the kernel must hold the same
/// ruleset after it.
fn through_json(ruleset: &Ruleset) -> Duration {
    let ns = NetNs::new("scale-json");
    let KernelTarget { kernel, .. } = target(&ns);
    let tx = diff(&Ruleset::new(), ruleset).unwrap();
    let ((), elapsed) = timed(|| kernel.apply_json(&tx).unwrap());
    assert!(
        kernel.list().unwrap() == *ruleset,
        "JSON gives the same ruleset as the script"
    );
    elapsed
}

/// Endpoint added/removed and service added/removed, 10 rounds each, as partial syncs of
/// the syncer that made the full apply (incremental compile, diff against what it
/// applied, own netlink batch). Ends with the cluster as it was.
fn incremental(shape: Shape, syncer: &mut Syncer<KernelTarget>, snapshot: &ClusterSnapshot) {
    let base = snapshot.clone();
    let mut with_endpoint = base.clone();
    with_endpoint.endpoint_slices[0] = Arc::new(slice(0, shape.endpoints + 1, 60_000).into());
    let mut with_service = base.clone();
    let extra = shape.services;
    with_service.services.push(Arc::new(service(extra)));
    with_service
        .endpoint_slices
        .push(Arc::new(slice(extra, shape.endpoints, 0).into()));
    let changes = [
        ("endpoint added", &with_endpoint, "endpoint removed"),
        ("service added", &with_service, "service removed"),
    ];
    for (up_name, changed, down_name) in changes {
        let (mut ups, mut downs) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            ups.push(syncer.sync(changed, false).unwrap());
            downs.push(syncer.sync(&base, false).unwrap());
        }
        for (name, reports) in [(up_name, ups), (down_name, downs)] {
            print_partial(shape, name, reports);
        }
    }
}

fn print_partial(shape: Shape, name: &str, mut reports: Vec<SyncReport>) {
    let partial = |r: &SyncReport| r.kind == SyncKind::Partial && r.operations > 0;
    assert!(
        reports.iter().all(partial),
        "every change is a partial sync"
    );
    reports.sort_by_key(|r| r.total_time);
    let median = &reports[reports.len() / 2];
    let max = &reports[reports.len() - 1];
    println!(
        "{}: one {name}: compile + diff + apply median {:.2} ms (compile {:.2}, apply {:.2}), max {:.2} ms ({} operations, via {})",
        shape.name(),
        ms(median.total_time),
        ms(median.compile_time),
        ms(median.apply_time),
        ms(max.total_time),
        median.operations,
        median.route.map_or("-", Route::as_str),
    );
}

/// A restart over the complete ruleset: a new kernel client and syncer, whose first
/// (full) sync lists the tables, compiles from scratch and diffs, and must find nothing
/// to do (which also checks that the partial syncs left exactly the cluster's ruleset).
fn adoption(shape: Shape, ns: &NetNs, snapshot: &ClusterSnapshot) {
    let restarted = target(ns);
    let expected = compile(snapshot, &config()).ruleset;
    let ((held, how), check) = timed(|| restarted.kernel.list_expecting(&expected).unwrap());
    assert!(held == expected, "the kernel holds what was compiled");
    drop((held, expected));
    let (listed, list) = timed(|| restarted.kernel.list().unwrap());
    drop(listed);
    let mut syncer = Syncer::new(restarted, config());
    let report = syncer.sync(snapshot, true).unwrap();
    assert_eq!(report.operations, 0, "an adoption with no change");
    println!(
        "{}: restart adoption {:.2} s, 0 operations (compile {:.0} ms; reading the tables alone {:.2} s: {} checked from netlink dumps, {} listed through libnftables; listing them all through libnftables {:.2} s)",
        shape.name(),
        report.total_time.as_secs_f64(),
        ms(report.compile_time),
        check.as_secs_f64(),
        how.checked,
        how.listed,
        list.as_secs_f64(),
    );
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !netns::kernel_tests_enabled("scale") {
        return;
    }
    for shape in SHAPES {
        if !filter.is_empty() && !filter.iter().any(|f| shape.name().contains(f.as_str())) {
            continue;
        }
        let snapshot = generated::cluster(shape.services, shape.endpoints);
        let ruleset = compile_figures(shape, &snapshot);
        let (ns, mut syncer) = full_apply(shape, &snapshot, &ruleset);
        drop(ruleset);
        if shape.changes {
            incremental(shape, &mut syncer, &snapshot);
            drop(syncer);
            adoption(shape, &ns, &snapshot);
        }
    }
}
