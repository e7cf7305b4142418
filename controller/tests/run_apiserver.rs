//! `nftproxy run` against the fake API server, with the real kube-rs watchers and the real
//! kernel in a throwaway namespace: after each API event (and after watch disconnects and
//! compactions) the kernel's tables equal what `compile` makes of the server's objects.
//! A property test replays random event sequences and checks this after every step. An
//! API server gone for a minute changes nothing in the kernel, and a clean resync follows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fake_apiserver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{NetNs, kernel_tests_enabled};
use common::proxy::{Proxy, kernel_tables, wait_kernel_equal, wait_kernel_equal_within};
use fake_apiserver::{Kind, OnThread};
use nftproxy_compiler::kube_proxy_config::KubeProxyConfiguration;
use nftproxy_compiler::{ClusterSnapshot, compile};
use nftproxy_rules::Ruleset;
use proptest::prelude::*;
use serde_json::{Value, json};

const CONFIG: &str = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\nnftables: {minSyncPeriod: 0s, syncPeriod: 1h}\n";

/// The fake API server, served from a thread inside `ns` (so `nftproxy run` in `ns` reaches
/// it on 127.0.0.1), and the objects the test has applied, as the proxy should see them.
struct Cluster {
    api: OnThread,
    objects: BTreeMap<(String, String, String), Value>,
}

impl Cluster {
    fn start(ns: &NetNs) -> Cluster {
        let mut cluster = Cluster {
            api: OnThread::start(|f| ns.spawn(f)),
            objects: BTreeMap::new(),
        };
        cluster.apply(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "zone-a"}},
            "spec": {"podCIDRs": ["198.18.1.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.51.100.1"}]}
        }));
        cluster
    }

    fn apply(&mut self, object: Value) {
        self.api.server.apply(&object);
        self.objects.insert(key(&object), object);
    }

    fn delete(&mut self, kind: Kind, namespace: &str, name: &str) {
        self.api.server.delete(kind, namespace, name);
        self.objects.remove(&(
            kind.name().to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        ));
    }

    /// What `compile` makes of the objects (with the proxy's configuration).
    fn expected(&self) -> Ruleset {
        let mut snapshot = ClusterSnapshot::default();
        for object in self.objects.values() {
            match object["kind"].as_str().unwrap() {
                "Service" => snapshot
                    .services
                    .push(Arc::new(serde_json::from_value(object.clone()).unwrap())),
                "EndpointSlice" => {
                    let slice: k8s_openapi::api::discovery::v1::EndpointSlice =
                        serde_json::from_value(object.clone()).unwrap();
                    snapshot.endpoint_slices.push(Arc::new(slice.into()));
                }
                "Node" => snapshot
                    .nodes
                    .push(Arc::new(serde_json::from_value(object.clone()).unwrap())),
                other => panic!("unexpected kind {other}"),
            }
        }
        let config = KubeProxyConfiguration::from_yaml(CONFIG).unwrap();
        compile(&snapshot, &config.compile_config("node-1").unwrap()).ruleset
    }

    /// A kubeconfig for the fake server, written into `dir`.
    fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: nobody}}\ncurrent-context: fake\n",
            self.api.server.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn key(object: &Value) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

fn service(name: &str, ip: &str, node_port: Option<u16>) -> Value {
    let mut port = json!({"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080});
    let mut spec =
        json!({"clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"], "type": "ClusterIP"});
    if let Some(n) = node_port {
        port["nodePort"] = json!(n);
        spec["type"] = json!("NodePort");
    }
    spec["ports"] = json!([port]);
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn slice(service: &str, endpoints: &[(u8, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|&(host, ready)| {
            json!({"addresses": [format!("198.18.2.{host}")],
                   "conditions": {"ready": ready}, "nodeName": "node-2"})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-1"), "namespace": "default",
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
           "endpoints": endpoints})
}

fn start_proxy(ns: &NetNs, cluster: &Cluster, dir: &tempfile::TempDir) -> Proxy {
    let kubeconfig = cluster.kubeconfig(dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    Proxy::spawn(
        ns,
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
}

#[test]
fn kernel_follows_api_events_disconnects_and_compactions() {
    if !kernel_tests_enabled("kernel_follows_api_events_disconnects_and_compactions") {
        return;
    }
    let ns = NetNs::new("api");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&ns);
    cluster.apply(service("web", "198.19.0.10", None));
    cluster.apply(slice("web", &[(10, true), (11, true)]));
    let proxy = start_proxy(&ns, &cluster, &dir);
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "initial list");

    cluster.apply(slice("web", &[(10, true), (11, true), (12, true)]));
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "endpoint added");
    cluster.apply(service("api", "198.19.0.20", Some(30080)));
    cluster.apply(slice("api", &[(20, true)]));
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "service added");

    // A delete while every watch is stalled, then compaction and dropped connections: the
    // watchers must re-list, and the delete must not be lost.
    cluster.api.server.stall(true);
    cluster.delete(Kind::EndpointSlice, "default", "web-1");
    cluster.apply(slice("api", &[(20, false), (21, true)]));
    cluster.api.server.compact();
    cluster.api.server.drop_connections();
    cluster.api.server.stall(false);
    wait_kernel_equal(
        &ns,
        &cluster.expected(),
        &proxy,
        "after 410 Gone and a re-list",
    );

    cluster.api.server.set_unavailable(true);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        kernel_tables(&ns),
        cluster.expected(),
        "an unavailable API server changes nothing in the kernel"
    );
    cluster.api.server.set_unavailable(false);
    cluster.delete(Kind::Service, "default", "web");
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "after the outage");
    let syncs = proxy.syncs();
    assert!(syncs.iter().all(|s| s.ok), "{syncs:?}");
    assert!(
        syncs.iter().skip(1).all(|s| s.kind == "partial"),
        "only the first sync lists the kernel: {syncs:?}"
    );
    drop(proxy);
    drop(cluster);
}

/// How long the API server stays away (`NFTPROXY_OUTAGE_SECONDS`, default 60).
fn outage() -> Duration {
    let seconds = std::env::var("NFTPROXY_OUTAGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

#[test]
fn an_api_server_gone_for_a_minute_changes_nothing_and_a_clean_resync_follows() {
    if !kernel_tests_enabled(
        "an_api_server_gone_for_a_minute_changes_nothing_and_a_clean_resync_follows",
    ) {
        return;
    }
    let ns = NetNs::new("api-gone");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&ns);
    cluster.apply(service("web", "198.19.0.10", None));
    cluster.apply(slice("web", &[(10, true), (11, true)]));
    cluster.apply(service("api", "198.19.0.20", Some(30080)));
    cluster.apply(slice("api", &[(20, true)]));
    let proxy = start_proxy(&ns, &cluster, &dir);
    let before = cluster.expected();
    wait_kernel_equal(&ns, &before, &proxy, "initial list");
    let lists = cluster.api.server.list_requests(Kind::Service);

    // The server goes; while it is away the cluster changes and its history is compacted,
    // so the watchers must re-list when it is back.
    cluster.api.server.set_gone(true);
    let gone = Instant::now();
    cluster.delete(Kind::Service, "default", "web");
    cluster.apply(slice("api", &[(20, true), (21, true)]));
    cluster.api.server.compact();
    let mut checks = 0;
    while gone.elapsed() < outage() {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            kernel_tables(&ns),
            before,
            "{:?} into the outage the kernel changed\n{}",
            gone.elapsed(),
            proxy.log_text()
        );
        checks += 1;
    }
    let failures = proxy
        .messages()
        .iter()
        .filter(|m| m.contains("watch failed"))
        .count();
    assert!(
        failures > 0,
        "the watchers saw the outage: {}",
        proxy.log_text()
    );

    cluster.api.server.set_gone(false);
    let back = Instant::now();
    // After a minute of failures kube's backoff (like client-go's) waits 30 s between
    // attempts, plus up to as much again of jitter.
    wait_kernel_equal_within(
        &ns,
        &cluster.expected(),
        &proxy,
        "after the API server came back",
        Duration::from_secs(90),
    );
    common::figures::report(&format!(
        "outage {:?}: kernel unchanged at {checks} checks, {failures} failed watch attempts; \
         resynced {:?} after the server came back",
        outage(),
        back.elapsed()
    ));
    assert!(
        cluster.api.server.list_requests(Kind::Service) > lists,
        "the history was compacted, so the watchers re-listed"
    );
    let syncs = proxy.syncs();
    assert!(syncs.iter().all(|s| s.ok), "{syncs:?}");
}

#[test]
fn nothing_is_applied_before_every_store_has_listed() {
    if !kernel_tests_enabled("nothing_is_applied_before_every_store_has_listed") {
        return;
    }
    let ns = NetNs::new("api-sync");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&ns);
    cluster.apply(service("web", "198.19.0.10", None));
    cluster.apply(slice("web", &[(10, true)]));
    cluster
        .api
        .server
        .set_kind_unavailable(Kind::EndpointSlice, true);
    let proxy = start_proxy(&ns, &cluster, &dir);
    std::thread::sleep(Duration::from_secs(1));
    let listing = ns.exec_ok(&["nft", "list", "tables"]);
    assert_eq!(
        listing.trim(),
        "",
        "no table before EndpointSlices are listed"
    );
    assert!(proxy.syncs().is_empty());
    cluster
        .api
        .server
        .set_kind_unavailable(Kind::EndpointSlice, false);
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "once every store listed");
    drop(proxy);
    drop(cluster);
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Service {
        index: u8,
        node_port: bool,
    },
    DeleteService(u8),
    Slice {
        index: u8,
        endpoints: Vec<(u8, bool)>,
    },
    DeleteSlice(u8),
    Disconnect {
        compact: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..4, any::<bool>()).prop_map(|(index, node_port)| Step::Service { index, node_port }),
        1 => (0u8..4).prop_map(Step::DeleteService),
        4 => (0u8..4, prop::collection::vec((10u8..16, any::<bool>()), 0..4))
            .prop_map(|(index, endpoints)| Step::Slice { index, endpoints }),
        1 => (0u8..4).prop_map(Step::DeleteSlice),
        1 => any::<bool>().prop_map(|compact| Step::Disconnect { compact }),
    ]
}

fn apply_step(cluster: &mut Cluster, step: &Step) {
    let name = |i: u8| format!("svc-{i}");
    match step {
        Step::Service { index, node_port } => {
            let ip = format!("198.19.1.{index}");
            let node_port = node_port.then(|| 30000 + u16::from(*index));
            cluster.apply(service(&name(*index), &ip, node_port));
        }
        Step::DeleteService(index) => cluster.delete(Kind::Service, "default", &name(*index)),
        Step::Slice { index, endpoints } => {
            let mut endpoints = endpoints.clone();
            endpoints.sort_unstable();
            endpoints.dedup_by_key(|e| e.0);
            cluster.apply(slice(&name(*index), &endpoints));
        }
        Step::DeleteSlice(index) => {
            cluster.delete(
                Kind::EndpointSlice,
                "default",
                &format!("{}-1", name(*index)),
            );
        }
        Step::Disconnect { compact } => {
            if *compact {
                cluster.api.server.compact();
            }
            cluster.api.server.drop_connections();
        }
    }
}

#[test]
fn random_event_sequences_keep_the_kernel_equal_to_the_compiled_ruleset() {
    if !kernel_tests_enabled("random_event_sequences_keep_the_kernel_equal_to_the_compiled_ruleset")
    {
        return;
    }
    let config = ProptestConfig {
        cases: 4,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in prop::collection::vec(step(), 5..25))| {
        let ns = NetNs::new("api-prop");
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::start(&ns);
        let proxy = start_proxy(&ns, &cluster, &dir);
        wait_kernel_equal(&ns, &cluster.expected(), &proxy, "empty cluster");
        for (i, step) in steps.iter().enumerate() {
            apply_step(&mut cluster, step);
            wait_kernel_equal(&ns, &cluster.expected(), &proxy, &format!("step {i}: {step:?}"));
        }
        let syncs = proxy.syncs();
        prop_assert!(syncs.iter().all(|s| s.ok), "{:?}", syncs);
        drop(proxy);
        drop(cluster);
    });
}

/// Event-to-kernel latency of one endpoint change with 10k services programmed and
/// `minSyncPeriod: 0`: from the API server accepting the change to `nftproxy run` logging
/// that the transaction is applied. A measurement, not a timed test.
#[test]
#[ignore = "benchmark: cargo build --release -p nftproxy-nft, then cargo test --release -p nftproxy --test run_apiserver -- --ignored --nocapture (root)"]
fn event_to_kernel_latency_of_one_endpoint_at_10k_services() {
    if !kernel_tests_enabled("event_to_kernel_latency_of_one_endpoint_at_10k_services") {
        return;
    }
    const SERVICES: usize = 10_000;
    let ns = NetNs::new("api-lat");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&ns);
    let endpoints: Vec<(u8, bool)> = (10..20).map(|h| (h, true)).collect();
    for i in 0..SERVICES {
        let name = format!("svc-{i}");
        let ip = format!("198.19.{}.{}", i / 250, i % 250 + 1);
        cluster.apply(service(&name, &ip, None));
        cluster.apply(slice(&name, &endpoints));
    }
    let proxy = start_proxy(&ns, &cluster, &dir);
    let started = Instant::now();
    let first = proxy.wait_syncs(1, Duration::from_secs(600));
    assert!(first[0].ok, "{}", proxy.log_text());
    println!(
        "initial full sync of {SERVICES} services x 10: {:?}",
        started.elapsed()
    );
    const ROUNDS: usize = 200;
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let before = proxy.syncs().len();
        let mut changed = endpoints.clone();
        if round % 2 == 0 {
            changed.push((20, true));
        }
        let sent = Instant::now();
        cluster.apply(slice("svc-0", &changed));
        let syncs = proxy.wait_syncs(before + 1, Duration::from_secs(60));
        let sync = &syncs[before];
        assert!(sync.ok && sync.operations > 0, "{sync:?}");
        samples.push((
            sync.seen - sent,
            sync.snapshot_ms,
            sync.compile_ms,
            sync.apply_ms,
            sync.report_ms,
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    samples.sort_by_key(|s| s.0);
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!("{ROUNDS} changes:");
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        let (total, snapshot, compile, apply, report) = pick(q);
        println!(
            "event to kernel {label}: {total:?} (that sync: snapshot {snapshot:.1} ms, compile {compile:.1} ms, apply {apply:.1} ms, report {report:.1} ms)"
        );
    }
    drop(proxy);
    drop(cluster);
}
