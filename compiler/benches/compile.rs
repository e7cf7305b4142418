//! Benchmarks of the compiler and of `diff`: the numbers behind BENCHMARKS.md.
//!
//! The cluster is N ClusterIP services × 10 ready endpoints, lab addresses only (ClusterIPs
//! in 198.19.0.0/16, pods in 198.18.0.0/16, nodes in 198.51.100.0/24; the diff cluster is
//! IPv6 in 2001:db8::/32 so that every pod address is unique), ports and port names
//! varied, endpoints spread over four nodes (this node is `node-0`). Goals: compiling 10k × 10
//! in ≤ 100 ms on one core; one added endpoint at 10k services diffs in ≤ 1 ms to ≤ 6 ops
//! (object level: a chain rewrite or an element is one; see `Transaction::object_operations`).
//! Run with `cargo bench -p nftproxy-compiler`; after each group the sizes that matter
//! (chains, rules, elements; transaction operations and nft commands) are printed.
//! `compile/NxM` times the compile without freeing its output (`iter_with_large_drop`);
//! `compile/NxM+drop` includes freeing it.
//!
//! `incremental/…` times `IncrementalCompiler::compile` at 10k × 10 after one change (goal:
//! ≤ 3 ms, ideally ≤ 1 ms): one EndpointSlice gaining or losing an endpoint (alternately, so
//! every iteration is a real change), one Service added or removed (alternately; its slice
//! stays in the snapshot, so an added Service has 10 endpoints), and the first compile of a
//! fresh compiler (what a change of the configuration, this Node or the ServiceCIDRs costs).

#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeSpec, NodeStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftproxy_compiler::CompactSlice;
use nftproxy_compiler::{
    ClusterSnapshot, CompileConfig, DetectLocal, IncrementalCompiler, compile,
};
use nftproxy_rules::Ruleset;

const ENDPOINTS_PER_SERVICE: usize = 10;
const NODES: usize = 4;
const THIS_NODE: &str = "node-0";

/// The address family of a generated cluster.
#[derive(Debug, Clone, Copy)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn name(self) -> &'static str {
        match self {
            Fam::V4 => "IPv4",
            Fam::V6 => "IPv6",
        }
    }

    /// The ClusterIP of service `i`: 198.19.0.0/16 (i < 65 536) or 2001:db8:19::/108.
    fn cluster_ip(self, i: usize) -> String {
        match self {
            Fam::V4 => format!("198.19.{}.{}", (i >> 8) & 0xff, i & 0xff),
            Fam::V6 => format!("2001:db8:19::{:x}:{:x}", (i >> 16) & 0xf, i & 0xffff),
        }
    }

    /// Pod address number `k`. IPv4 wraps inside 198.18.0.0/16, so clusters of more than
    /// 6 553 services reuse addresses across services; IPv6 (2001:db8:18::/64) never does.
    fn pod_ip(self, k: usize) -> String {
        match self {
            Fam::V4 => format!("198.18.{}.{}", (k >> 8) & 0xff, k & 0xff),
            Fam::V6 => format!("2001:db8:18::{:x}:{:x}", (k >> 16) & 0xffff, k & 0xffff),
        }
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// Ports vary with the service: name, port, protocol (every 7th is UDP) and target port.
fn port_of(i: usize) -> (&'static str, i32, &'static str, i32) {
    const NAMES: [&str; 4] = ["http", "grpc", "metrics", "api"];
    let protocol = if i % 7 == 3 { "UDP" } else { "TCP" };
    let port = 1024 + i32::try_from(i % 20_000).unwrap_or(0);
    let target = 8000 + i32::try_from(i % 100).unwrap_or(0);
    (NAMES[i % NAMES.len()], port, protocol, target)
}

fn service(fam: Fam, i: usize) -> Service {
    let (name, port, protocol, target) = port_of(i);
    let ip = fam.cluster_ip(i);
    Service {
        metadata: meta(&format!("ns-{}", i % 50), &format!("svc-{i}")),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some(ip.clone()),
            cluster_ips: Some(vec![ip]),
            ip_families: Some(vec![fam.name().to_owned()]),
            selector: Some(BTreeMap::from([("app".to_owned(), format!("svc-{i}"))])),
            ports: Some(vec![ServicePort {
                name: Some(name.to_owned()),
                port,
                protocol: Some(protocol.to_owned()),
                target_port: Some(IntOrString::Int(target)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn endpoint(fam: Fam, k: usize, node: usize) -> Endpoint {
    Endpoint {
        addresses: vec![fam.pod_ip(k)],
        conditions: Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }),
        node_name: Some(format!("node-{node}")),
        zone: Some(format!("zone-{}", node % 2)),
        ..Endpoint::default()
    }
}

fn endpoint_slice(fam: Fam, i: usize, endpoints: usize) -> CompactSlice {
    let (name, _, protocol, target) = port_of(i);
    let mut metadata = meta(&format!("ns-{}", i % 50), &format!("svc-{i}-abcde"));
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        format!("svc-{i}"),
    )]));
    EndpointSlice {
        metadata,
        address_type: fam.name().to_owned(),
        endpoints: (0..endpoints)
            .map(|j| endpoint(fam, i * ENDPOINTS_PER_SERVICE + j, (i + j) % NODES))
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some(name.to_owned()),
            port: Some(target),
            protocol: Some(protocol.to_owned()),
            ..EndpointPort::default()
        }]),
    }
    .into()
}

fn node() -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(THIS_NODE.to_owned()),
            labels: Some(BTreeMap::from([(
                "topology.kubernetes.io/zone".to_owned(),
                "zone-0".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some("198.18.0.0/24".to_owned()),
            pod_cidrs: Some(vec![
                "198.18.0.0/24".to_owned(),
                "2001:db8:18::/64".to_owned(),
            ]),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(
                ["198.51.100.10", "2001:db8:51::10"]
                    .map(|address| NodeAddress {
                        type_: "InternalIP".to_owned(),
                        address: address.to_owned(),
                    })
                    .to_vec(),
            ),
            ..NodeStatus::default()
        }),
    }
}

fn service_cidr() -> ServiceCIDR {
    ServiceCIDR {
        metadata: ObjectMeta {
            name: Some("kubernetes".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceCIDRSpec {
            cidrs: Some(vec![
                "198.19.0.0/16".to_owned(),
                "2001:db8:19::/108".to_owned(),
            ]),
        }),
        status: None,
    }
}

/// `services` ClusterIP services of one family with 10 endpoints each, on four nodes.
fn cluster(fam: Fam, services: usize) -> ClusterSnapshot {
    ClusterSnapshot {
        services: (0..services).map(|i| Arc::new(service(fam, i))).collect(),
        endpoint_slices: (0..services)
            .map(|i| Arc::new(endpoint_slice(fam, i, ENDPOINTS_PER_SERVICE)))
            .collect(),
        endpoints: Vec::new(),
        nodes: vec![Arc::new(node())],
        service_cidrs: vec![Arc::new(service_cidr())],
    }
}

fn config() -> CompileConfig {
    CompileConfig {
        hostname: THIS_NODE.to_owned(),
        detect_local: DetectLocal::ClusterCidr(vec![
            "198.18.0.0/16".parse().expect("a literal CIDR"),
            "2001:db8:18::/48".parse().expect("a literal CIDR"),
        ]),
        ..CompileConfig::default()
    }
}

/// (chains, rules, set/map elements) of a ruleset.
fn size(ruleset: &Ruleset) -> (usize, usize, usize) {
    let tables = ruleset.tables.values();
    tables.fold((0, 0, 0), |(c, r, e), t| {
        (
            c + t.chains.len(),
            r + t.chains.values().map(|ch| ch.rules.len()).sum::<usize>(),
            e + t.sets.values().map(|s| s.elements.len()).sum::<usize>(),
        )
    })
}

fn bench_compile(c: &mut Criterion) {
    let config = config();
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let mut figures = Vec::new();
    for services in [1_000, 10_000, 50_000] {
        let snapshot = cluster(Fam::V4, services);
        group.throughput(Throughput::Elements(services as u64));
        let id = format!("{services}x{ENDPOINTS_PER_SERVICE}");
        // The goal figure: the compile alone. A controller drops the previous ruleset off
        // the sync path, so freeing the output is timed separately, in `…+drop`.
        group.bench_with_input(BenchmarkId::from_parameter(&id), &snapshot, |b, s| {
            b.iter_with_large_drop(|| compile(black_box(s), black_box(&config)))
        });
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{id}+drop")),
            &snapshot,
            |b, s| b.iter(|| compile(black_box(s), black_box(&config))),
        );
        let compiled = compile(&snapshot, &config);
        let (chains, rules, elements) = size(&compiled.ruleset);
        let script_bytes = compiled.ruleset.to_string().len();
        figures.push(format!(
            "compile {services}x{ENDPOINTS_PER_SERVICE}: {chains} chains, {rules} rules, \
             {elements} elements, {script_bytes} bytes of nft script, {} diagnostics",
            compiled.diagnostics.len()
        ));
    }
    group.finish();
    for line in figures {
        println!("{line}");
    }
}

fn bench_diff(c: &mut Criterion) {
    const SERVICES: usize = 10_000;
    const CHANGED: usize = SERVICES / 2;
    let config = config();
    // IPv6, so that the new endpoint has an address no other endpoint uses (as a new pod
    // would): the diff then also adds its hairpin element.
    let before = cluster(Fam::V6, SERVICES);
    let mut after = before.clone();
    after.endpoint_slices[CHANGED] =
        Arc::new(endpoint_slice(Fam::V6, CHANGED, ENDPOINTS_PER_SERVICE + 1));
    let old = compile(&before, &config).ruleset;
    let new = compile(&after, &config).ruleset;

    let mut group = c.benchmark_group("diff");
    group.sample_size(50);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("one-endpoint-added-at-10k", |b| {
        b.iter(|| nftproxy_rules::diff(black_box(&old), black_box(&new)))
    });
    group.finish();

    let tx = nftproxy_rules::diff(&old, &new).expect("compiled rulesets diff");
    println!(
        "diff one endpoint added at {SERVICES} services: {} operations (object level), \
         {} nft commands",
        tx.object_operations(),
        tx.len()
    );
}

fn bench_incremental(c: &mut Criterion) {
    const SERVICES: usize = 10_000;
    const CHANGED: usize = SERVICES / 2;
    let config = config();
    let mut snapshot = cluster(Fam::V4, SERVICES);
    // Service SERVICES comes and goes; its slice is always there.
    let extra_service = Arc::new(service(Fam::V4, SERVICES));
    snapshot.endpoint_slices.push(Arc::new(endpoint_slice(
        Fam::V4,
        SERVICES,
        ENDPOINTS_PER_SERVICE,
    )));
    let slices = [
        Arc::new(endpoint_slice(Fam::V4, CHANGED, ENDPOINTS_PER_SERVICE + 1)),
        Arc::clone(&snapshot.endpoint_slices[CHANGED]),
    ];
    let mut compiler = IncrementalCompiler::new();
    compiler.compile(&snapshot, &config);

    let mut group = c.benchmark_group("incremental");
    group.sample_size(50);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let mut flip = 0;
    let mut slice_changed = |compiler: &mut IncrementalCompiler, snapshot: &mut ClusterSnapshot| {
        flip ^= 1;
        snapshot.endpoint_slices[CHANGED] = Arc::clone(&slices[flip]);
        black_box(compiler.compile(black_box(snapshot), black_box(&config)));
    };
    group.bench_function("one-slice-changed-at-10k", |b| {
        b.iter(|| slice_changed(&mut compiler, &mut snapshot))
    });
    let service_toggled = |compiler: &mut IncrementalCompiler, snapshot: &mut ClusterSnapshot| {
        if snapshot.services.len() > SERVICES {
            snapshot.services.pop();
        } else {
            snapshot.services.push(Arc::clone(&extra_service));
        }
        black_box(compiler.compile(black_box(snapshot), black_box(&config)));
    };
    group.bench_function("one-service-added-or-removed-at-10k", |b| {
        b.iter(|| service_toggled(&mut compiler, &mut snapshot))
    });
    group.sample_size(10);
    group.bench_function("first-compile-at-10k", |b| {
        b.iter_with_large_drop(|| {
            let mut fresh = IncrementalCompiler::new();
            fresh.compile(black_box(&snapshot), black_box(&config));
            fresh
        })
    });
    group.finish();

    // The figures, measured again by hand: medians of single compiles, each checked
    // against `compile` once.
    let median = |mut f: Box<dyn FnMut() -> Duration + '_>, runs: usize| {
        let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect();
        times.sort_unstable();
        times[runs / 2]
    };
    let mut compiler = IncrementalCompiler::new();
    compiler.compile(&snapshot, &config);
    let slice_median = median(
        Box::new(|| {
            let start = Instant::now();
            slice_changed(&mut compiler, &mut snapshot);
            start.elapsed()
        }),
        201,
    );
    assert!(compiler.compile(&snapshot, &config) == &compile(&snapshot, &config));
    let service_median = median(
        Box::new(|| {
            let start = Instant::now();
            service_toggled(&mut compiler, &mut snapshot);
            start.elapsed()
        }),
        201,
    );
    assert!(compiler.compile(&snapshot, &config) == &compile(&snapshot, &config));
    let full_median = median(
        Box::new(|| {
            let start = Instant::now();
            black_box(compile(black_box(&snapshot), black_box(&config)));
            start.elapsed()
        }),
        5,
    );
    println!(
        "incremental at {SERVICES}x{ENDPOINTS_PER_SERVICE}: one slice changed {slice_median:?}, \
         one service added/removed {service_median:?} (medians of 201; full compile {full_median:?})"
    );
}

criterion_group!(benches, bench_compile, bench_diff, bench_incremental);
criterion_main!(benches);
