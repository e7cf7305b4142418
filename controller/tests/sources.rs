//! The watch layer (`sources`) with kube-rs's real watchers against the fake API server.
//!
//! Each test starts its own fake API server and `ClusterSources`, drives the server
//! (changes, bookmarks, compactions, dropped and stalled connections, outages) and checks
//! that the stores end up equal to what the server serves under kube-proxy's selectors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../src/sources/mod.rs"]
#[allow(dead_code)]
mod sources;

#[path = "../src/change_log.rs"]
#[allow(dead_code)]
mod change_log;

mod fake_apiserver;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, Kind};
use kube::ResourceExt;
use nftproxy_compiler::ClusterSnapshot;
use serde_json::{Value, json};
use sources::{ClusterSources, PROXIED_SELECTOR, Source, SourcesConfig};

const NODE: &str = "node-1";
const PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
const HEADLESS: &str = "service.kubernetes.io/headless";

// ---------------------------------------------------------------- fixtures

fn labels(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn service(ns: &str, name: &str, port: u16, extra: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name, "labels": labels(extra)},
        "spec": {"clusterIP": "198.19.0.10", "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    })
}

fn headless_service(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": "None", "ports": [{"port": 5432}]},
    })
}

fn slice(ns: &str, name: &str, service: &str, ready: bool, extra: &[(&str, &str)]) -> Value {
    let mut l = labels(extra);
    l["kubernetes.io/service-name"] = json!(service);
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": name, "labels": l},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["198.18.1.10"], "conditions": {"ready": ready}, "nodeName": NODE}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

fn node(name: &str, zone: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.51.100.1"}]},
    })
}

fn service_cidr(name: &str, cidr: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": name},
        "spec": {"cidrs": [cidr]},
    })
}

/// A small cluster: two proxied services with slices, a headless one, a foreign one, two
/// nodes and a ServiceCIDR.
fn seed(server: &FakeApiServer) {
    let mut a = service("demo", "a", 80, &[("app", "a")]);
    a["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Service\"}",
        "example.com/owner": "team-a",
    });
    a["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply"}]);
    server.apply(&a);
    server.apply(&slice("demo", "a-1", "a", true, &[("app", "a")]));
    server.apply(&service("demo", "b", 81, &[]));
    server.apply(&slice("demo", "b-1", "b", true, &[]));
    server.apply(&headless_service("demo", "db"));
    server.apply(&slice("demo", "db-1", "db", true, &[(HEADLESS, "")]));
    server.apply(&service(
        "demo",
        "foreign",
        82,
        &[(PROXY_NAME, "other-proxy")],
    ));
    server.apply(&slice(
        "demo",
        "foreign-1",
        "foreign",
        true,
        &[(PROXY_NAME, "other-proxy")],
    ));
    server.apply(&node(NODE, "zone-a"));
    server.apply(&node("node-2", "zone-b"));
    server.apply(&service_cidr("kubernetes", "198.19.0.0/16"));
}

// ---------------------------------------------------------------- views and waiting

type View = BTreeMap<Kind, BTreeMap<String, String>>;

fn key<K: ResourceExt>(o: &K) -> String {
    match o.namespace() {
        Some(ns) => format!("{ns}/{}", o.name_any()),
        None => o.name_any(),
    }
}

fn entries<K: ResourceExt>(objects: &[Arc<K>]) -> BTreeMap<String, String> {
    let map: BTreeMap<_, _> = objects
        .iter()
        .map(|o| (key(o.as_ref()), o.resource_version().unwrap_or_default()))
        .collect();
    assert_eq!(
        map.len(),
        objects.len(),
        "duplicate objects in the snapshot: {map:?}"
    );
    map
}

/// What the snapshot holds: per kind, `namespace/name` to resourceVersion (no duplicates).
fn view_of(snapshot: &ClusterSnapshot) -> View {
    assert!(
        snapshot.endpoints.is_empty(),
        "legacy Endpoints are not watched"
    );
    BTreeMap::from([
        (Kind::Service, entries(&snapshot.services)),
        (Kind::EndpointSlice, entries(&snapshot.endpoint_slices)),
        (Kind::Node, entries(&snapshot.nodes)),
        (Kind::ServiceCidr, entries(&snapshot.service_cidrs)),
    ])
}

/// What the server serves under the selectors the sources use.
fn server_view(server: &FakeApiServer) -> View {
    let this_node = format!("metadata.name={NODE}");
    BTreeMap::from([
        (
            Kind::Service,
            server.visible(Kind::Service, PROXIED_SELECTOR, ""),
        ),
        (
            Kind::EndpointSlice,
            server.visible(Kind::EndpointSlice, PROXIED_SELECTOR, ""),
        ),
        (Kind::Node, server.visible(Kind::Node, "", &this_node)),
        (Kind::ServiceCidr, server.visible(Kind::ServiceCidr, "", "")),
    ])
}

fn names(view: &View, kind: Kind) -> Vec<&str> {
    view[&kind].keys().map(String::as_str).collect()
}

/// Runs a test body with a deadline, so nothing hangs CI.
async fn within<F: Future<Output = ()>>(limit: Duration, body: F) {
    tokio::time::timeout(limit, body)
        .await
        .expect("test timed out");
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `limit`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn converged(server: &FakeApiServer, sources: &ClusterSources, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (want, got) = (server_view(server), view_of(&sources.snapshot()));
        if want == got {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stores did not converge:\nserver: {want:#?}\nstores: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (briefly) for a poke on the change channel and marks it seen. The poke follows the
/// store update, so a test that saw the update may have to wait a moment for it.
async fn poked(changes: &mut tokio::sync::watch::Receiver<u64>) -> bool {
    let poke = tokio::time::timeout(Duration::from_secs(2), changes.changed()).await;
    changes.borrow_and_update();
    matches!(poke, Ok(Ok(())))
}

async fn all_watching(server: &FakeApiServer) {
    eventually(
        "every kind has an open watch",
        Duration::from_secs(10),
        || Kind::ALL.iter().all(|k| server.open_watches(*k) == 1),
    )
    .await;
}

fn counts(server: &FakeApiServer, f: fn(&FakeApiServer, Kind) -> u64) -> Vec<u64> {
    Kind::ALL.iter().map(|k| f(server, *k)).collect()
}

async fn started(server: &FakeApiServer, config: SourcesConfig) -> ClusterSources {
    init_logging();
    let sources = ClusterSources::start(server.client(), config);
    tokio::time::timeout(Duration::from_secs(10), sources.wait_synced())
        .await
        .expect("sources synced");
    sources
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

const LIMIT: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_yields_exactly_the_proxied_objects() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        seed(&server);
        let sources = started(&server, SourcesConfig::new(NODE)).await;
        let snapshot = sources.snapshot();
        let view = view_of(&snapshot);
        assert_eq!(view, server_view(&server));
        // The selector cannot see clusterIP: the headless Service stays (the compiler skips
        // it) but its slice, labelled headless by the EndpointSlice controller, does not.
        assert_eq!(names(&view, Kind::Service), ["demo/a", "demo/b", "demo/db"]);
        assert_eq!(names(&view, Kind::EndpointSlice), ["demo/a-1", "demo/b-1"]);
        assert_eq!(names(&view, Kind::Node), [NODE]);
        assert_eq!(names(&view, Kind::ServiceCidr), ["kubernetes"]);
        // The objects are the served ones, decoded (the snapshot has no particular order).
        let a = snapshot
            .services
            .iter()
            .find(|s| s.name_any() == "a")
            .expect("service demo/a");
        let spec = a.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("198.19.0.10"));
        assert_eq!(spec.ports.as_ref().expect("ports")[0].port, 80);
        let a_1 = snapshot
            .endpoint_slices
            .iter()
            .find(|s| s.name_any() == "a-1")
            .expect("slice demo/a-1");
        assert_eq!(a_1.endpoints[0].address.as_deref(), Some("198.18.1.10"));
        assert!(snapshot.endpoints.is_empty());
        // What nobody reads is not kept: managed fields, a Service's annotations (kubectl's
        // last-applied copy among them) and its labels (served with `app: a`).
        assert!(a.metadata.managed_fields.is_none());
        assert!(a.annotations().is_empty());
        assert!(a.labels().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_is_false_until_every_store_has_listed() {
    within(LIMIT, async {
        init_logging();
        let server = FakeApiServer::start().await;
        seed(&server);
        server.set_kind_unavailable(Kind::EndpointSlice, true);
        let sources = ClusterSources::start(server.client(), SourcesConfig::new(NODE));
        eventually("every store but EndpointSlices synced", CONVERGE, || {
            sources.pending() == [Source::EndpointSlices]
        })
        .await;
        assert!(!sources.synced());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!sources.synced(), "EndpointSlices never listed");
        assert!(server.list_requests(Kind::EndpointSlice) >= 1);
        assert!(sources.snapshot().endpoint_slices.is_empty());

        server.set_kind_unavailable(Kind::EndpointSlice, false);
        tokio::time::timeout(CONVERGE, sources.wait_synced())
            .await
            .expect("synced");
        assert!(sources.synced());
        assert!(sources.pending().is_empty());
        assert_eq!(view_of(&sources.snapshot()), server_view(&server));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_changes_and_deletes_reach_the_snapshot_and_poke_the_change_channel() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        seed(&server);
        let sources = started(&server, SourcesConfig::new(NODE)).await;
        let mut changes = sources.changes();
        changes.borrow_and_update();
        let snapshot_has = |ns: &str, name: &str| {
            sources
                .snapshot()
                .services
                .iter()
                .any(|s| key(s.as_ref()) == format!("{ns}/{name}"))
        };

        server.apply(&service("demo", "c", 90, &[]));
        server.apply(&slice("demo", "c-1", "c", false, &[]));
        converged(&server, &sources, CONVERGE).await;
        assert!(snapshot_has("demo", "c"));
        assert!(poked(&mut changes).await, "an add pokes");

        server.apply(&service("demo", "c", 91, &[]));
        converged(&server, &sources, CONVERGE).await;
        let port = |s: &ClusterSnapshot| {
            let c = s.services.iter().find(|s| s.name_any() == "c").expect("c");
            c.spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .expect("ports")[0]
                .port
        };
        assert_eq!(port(&sources.snapshot()), 91);
        assert!(poked(&mut changes).await, "a change pokes");

        // Gaining the service-proxy-name label is a delete for this selector; losing it an add.
        server.apply(&service("demo", "c", 91, &[(PROXY_NAME, "other-proxy")]));
        converged(&server, &sources, CONVERGE).await;
        assert!(!snapshot_has("demo", "c"));
        server.apply(&service("demo", "c", 91, &[]));
        converged(&server, &sources, CONVERGE).await;
        assert!(snapshot_has("demo", "c"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        changes.borrow_and_update();

        assert!(server.delete(Kind::Service, "demo", "c"));
        assert!(server.delete(Kind::EndpointSlice, "demo", "c-1"));
        converged(&server, &sources, CONVERGE).await;
        assert!(!snapshot_has("demo", "c"));
        assert!(
            sources
                .snapshot()
                .endpoint_slices
                .iter()
                .all(|s| s.name_any() != "c-1")
        );
        assert!(poked(&mut changes).await, "a delete pokes");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_change_nothing_but_let_a_watch_resume_after_compaction_without_a_relist() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        seed(&server);
        let sources = started(&server, SourcesConfig::new(NODE)).await;
        all_watching(&server).await;
        // A Service change moves the global resourceVersion past what the other watches saw.
        server.apply(&service("demo", "b", 85, &[]));
        converged(&server, &sources, CONVERGE).await;
        tokio::time::sleep(Duration::from_millis(100)).await; // its poke follows the store
        let before = view_of(&sources.snapshot());
        let mut changes = sources.changes();
        changes.borrow_and_update();
        let (lists, watches) = (
            counts(&server, FakeApiServer::list_requests),
            counts(&server, FakeApiServer::watch_requests),
        );

        server.send_bookmarks();
        eventually("a bookmark went to every watch", CONVERGE, || {
            Kind::ALL.iter().all(|k| server.bookmarks_sent(*k) == 1)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(view_of(&sources.snapshot()), before);
        assert!(
            !changes.has_changed().expect("sender alive"),
            "a bookmark is no change"
        );
        assert_eq!(
            counts(&server, FakeApiServer::watch_requests),
            watches,
            "no reconnect"
        );

        // Every watcher now resumes from the bookmark's resourceVersion, which survives
        // the compaction: reconnecting needs no re-list (without the bookmark the Node
        // watcher would re-list, see the compaction test).
        server.compact();
        server.drop_connections();
        eventually("every kind watched again", CONVERGE, || {
            counts(&server, FakeApiServer::watch_requests)
                .iter()
                .zip(&watches)
                .all(|(now, was)| now > was)
                && Kind::ALL.iter().all(|k| server.open_watches(*k) == 1)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            counts(&server, FakeApiServer::list_requests),
            lists,
            "no re-list"
        );
        assert_eq!(view_of(&sources.snapshot()), before);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_while_the_watch_is_down_relists_with_no_duplicates_and_no_lost_deletes() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        seed(&server);
        let sources = started(&server, SourcesConfig::new(NODE)).await;
        all_watching(&server).await;
        let lists = counts(&server, FakeApiServer::list_requests);

        // The watches hear nothing while the cluster changes, then the history is gone.
        server.stall(true);
        assert!(server.delete(Kind::Service, "demo", "a"));
        assert!(server.delete(Kind::EndpointSlice, "demo", "a-1"));
        server.apply(&service("demo", "b", 99, &[]));
        server.apply(&service("demo", "c", 90, &[]));
        server.apply(&slice("demo", "c-1", "c", true, &[]));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stale = view_of(&sources.snapshot());
        assert!(
            stale[&Kind::Service].contains_key("demo/a"),
            "nothing arrived while stalled"
        );
        server.compact();
        server.drop_connections();
        server.stall(false);

        // Every watcher was behind the compaction (the Node and ServiceCIDR ones because the
        // global resourceVersion moved on), so every one gets 410 Gone and re-lists.
        eventually("every watcher re-listed", CONVERGE, || {
            counts(&server, FakeApiServer::list_requests)
                .iter()
                .zip(&lists)
                .all(|(now, was)| now > was)
        })
        .await;
        converged(&server, &sources, CONVERGE).await;
        let view = view_of(&sources.snapshot());
        assert_eq!(names(&view, Kind::Service), ["demo/b", "demo/c", "demo/db"]);
        assert_eq!(names(&view, Kind::EndpointSlice), ["demo/b-1", "demo/c-1"]);
        assert!(sources.synced());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_api_server_keeps_the_last_state_and_converges_after() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        seed(&server);
        let sources = started(&server, SourcesConfig::new(NODE)).await;
        all_watching(&server).await;
        let before = view_of(&sources.snapshot());
        let lists = counts(&server, FakeApiServer::list_requests);
        let watches = server.watch_requests(Kind::Service);

        server.set_unavailable(true);
        assert!(server.delete(Kind::Service, "demo", "a"));
        assert!(server.delete(Kind::EndpointSlice, "demo", "a-1"));
        server.apply(&node(NODE, "zone-c"));
        eventually("the watchers keep trying", CONVERGE, || {
            server.watch_requests(Kind::Service) > watches + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            view_of(&sources.snapshot()),
            before,
            "the stores keep their last state"
        );
        assert!(sources.synced());

        server.set_unavailable(false);
        converged(&server, &sources, Duration::from_secs(40)).await;
        let snapshot = sources.snapshot();
        assert!(
            snapshot.services.iter().all(|s| s.name_any() != "a"),
            "the delete is not lost"
        );
        assert_eq!(
            snapshot.nodes[0].labels()["topology.kubernetes.io/zone"],
            "zone-c"
        );
        // The history was intact, so the watches resumed from their resourceVersion.
        assert_eq!(
            counts(&server, FakeApiServer::list_requests),
            lists,
            "no re-list"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watch_keeps_a_consistent_store_and_catches_up_after() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        seed(&server);
        let config = SourcesConfig {
            watch_timeout: Some(1),
            ..SourcesConfig::new(NODE)
        };
        let sources = started(&server, config).await;
        all_watching(&server).await;
        let before = view_of(&sources.snapshot());
        let lists = counts(&server, FakeApiServer::list_requests);

        server.stall(true);
        let watches = server.watch_requests(Kind::Service);
        assert!(server.delete(Kind::Service, "demo", "a"));
        server.apply(&service("demo", "b", 100, &[]));
        // A silent watch counts as dead after its timeout + 5 s; the watcher reconnects
        // (into another stalled watch) and the store stays as it was, whole.
        eventually("the silent watch was given up", CONVERGE, || {
            server.watch_requests(Kind::Service) > watches
        })
        .await;
        assert_eq!(view_of(&sources.snapshot()), before);
        assert!(sources.synced());

        server.stall(false);
        converged(&server, &sources, CONVERGE).await;
        assert!(
            sources
                .snapshot()
                .services
                .iter()
                .all(|s| s.name_any() != "a")
        );
        assert_eq!(
            counts(&server, FakeApiServer::list_requests),
            lists,
            "held-back events resumed, no re-list"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_watcher_sees_only_this_node() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        seed(&server);
        server.apply(&node("node-10", "zone-a"));
        let sources = started(&server, SourcesConfig::new(NODE)).await;
        all_watching(&server).await;
        assert_eq!(names(&view_of(&sources.snapshot()), Kind::Node), [NODE]);
        let mut changes = sources.changes();
        let start = *changes.borrow_and_update();

        server.apply(&node("node-2", "zone-z"));
        server.apply(&node(NODE, "zone-b"));
        converged(&server, &sources, CONVERGE).await;
        let snapshot = sources.snapshot();
        assert_eq!(snapshot.nodes.len(), 1);
        assert_eq!(
            snapshot.nodes[0].labels()["topology.kubernetes.io/zone"],
            "zone-b"
        );
        assert!(poked(&mut changes).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            *changes.borrow_and_update(),
            start + 1,
            "only this node's change poked"
        );

        assert!(server.delete(Kind::Node, "", NODE));
        converged(&server, &sources, CONVERGE).await;
        assert!(sources.snapshot().nodes.is_empty());
        server.apply(&node(NODE, "zone-a"));
        converged(&server, &sources, CONVERGE).await;
        assert_eq!(names(&view_of(&sources.snapshot()), Kind::Node), [NODE]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_cidrs_not_served_count_as_none_until_they_appear() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        seed(&server);
        server.set_served(Kind::ServiceCidr, false);
        let sources = started(&server, SourcesConfig::new(NODE)).await;
        assert!(sources.synced());
        assert!(sources.snapshot().service_cidrs.is_empty());
        assert!(server.list_requests(Kind::ServiceCidr) >= 1);
        assert_eq!(
            names(&view_of(&sources.snapshot()), Kind::Service),
            ["demo/a", "demo/b", "demo/db"]
        );

        // An upgraded API server starts serving them: the watcher, still retrying, lists them.
        server.set_served(Kind::ServiceCidr, true);
        converged(&server, &sources, CONVERGE).await;
        assert_eq!(
            names(&view_of(&sources.snapshot()), Kind::ServiceCidr),
            ["kubernetes"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_read_page_by_page() {
    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        for i in 0..5 {
            server.apply(&service("paged", &format!("s{i}"), 80, &[]));
        }
        server.apply(&service("paged", "foreign", 80, &[(PROXY_NAME, "x")]));
        let config = SourcesConfig {
            page_size: 2,
            ..SourcesConfig::new(NODE)
        };
        let sources = started(&server, config).await;
        assert_eq!(
            server.list_requests(Kind::Service),
            3,
            "5 services in pages of 2"
        );
        assert_eq!(server.list_requests(Kind::Node), 1);
        assert_eq!(names(&view_of(&sources.snapshot()), Kind::Service).len(), 5);
        assert_eq!(view_of(&sources.snapshot()), server_view(&server));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_server_answers_a_watch_from_before_a_compaction_with_410_expired() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, WatchEvent, WatchParams};

    within(LIMIT, async {
        let server = FakeApiServer::start().await;
        let first = server.apply(&service("demo", "a", 80, &[]));
        server.apply(&service("demo", "b", 80, &[]));
        server.compact();
        let api: Api<Service> = Api::all(server.client());
        let mut old = api
            .watch(&WatchParams::default(), &first.to_string())
            .await
            .expect("watch")
            .boxed();
        match old.next().await {
            Some(Ok(WatchEvent::Error(status))) => {
                assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            }
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }
        assert!(old.next().await.is_none(), "the watch ends after the error");

        let current = server.resource_version().to_string();
        let mut fresh = api
            .watch(&WatchParams::default(), &current)
            .await
            .expect("watch")
            .boxed();
        server.apply(&service("demo", "c", 80, &[]));
        match fresh.next().await {
            Some(Ok(WatchEvent::Added(s))) => assert_eq!(s.name_any(), "c"),
            other => panic!("expected ADDED c, got {other:?}"),
        }
    })
    .await;
}

// ---------------------------------------------------------------- property test

mod random_history {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy)]
    enum Label {
        Plain,
        Headless,
        Foreign,
    }

    #[derive(Debug, Clone)]
    enum Op {
        ApplyService {
            id: u8,
            port: u16,
            label: Label,
        },
        ApplySlice {
            id: u8,
            part: u8,
            ready: bool,
            label: Label,
        },
        DeleteService(u8),
        DeleteSlice {
            id: u8,
            part: u8,
        },
        ApplyNode {
            other: bool,
            zone: u8,
        },
        DeleteNode {
            other: bool,
        },
        Disconnect,
        Compact,
        Bookmarks,
        Stall(bool),
        Outage(bool),
    }

    fn label() -> impl Strategy<Value = Label> {
        prop_oneof![6 => Just(Label::Plain), 1 => Just(Label::Headless), 1 => Just(Label::Foreign)]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..6u8, 80..83u16, label()).prop_map(|(id, port, label)| Op::ApplyService { id, port, label }),
            6 => (0..6u8, 0..2u8, any::<bool>(), label())
                .prop_map(|(id, part, ready, label)| Op::ApplySlice { id, part, ready, label }),
            3 => (0..6u8).prop_map(Op::DeleteService),
            3 => (0..6u8, 0..2u8).prop_map(|(id, part)| Op::DeleteSlice { id, part }),
            1 => (any::<bool>(), 0..3u8).prop_map(|(other, zone)| Op::ApplyNode { other, zone }),
            1 => any::<bool>().prop_map(|other| Op::DeleteNode { other }),
            1 => Just(Op::Disconnect),
            1 => Just(Op::Compact),
            1 => Just(Op::Bookmarks),
            1 => any::<bool>().prop_map(Op::Stall),
            1 => any::<bool>().prop_map(Op::Outage),
        ]
    }

    fn extra(label: Label) -> Vec<(&'static str, &'static str)> {
        match label {
            Label::Plain => vec![],
            Label::Headless => vec![(HEADLESS, "")],
            Label::Foreign => vec![(PROXY_NAME, "other-proxy")],
        }
    }

    fn run(server: &FakeApiServer, op: &Op) {
        match *op {
            Op::ApplyService { id, port, label } => {
                server.apply(&service("p", &format!("s{id}"), port, &extra(label)));
            }
            Op::ApplySlice {
                id,
                part,
                ready,
                label,
            } => {
                server.apply(&slice(
                    "p",
                    &format!("s{id}-{part}"),
                    &format!("s{id}"),
                    ready,
                    &extra(label),
                ));
            }
            Op::DeleteService(id) => {
                server.delete(Kind::Service, "p", &format!("s{id}"));
            }
            Op::DeleteSlice { id, part } => {
                server.delete(Kind::EndpointSlice, "p", &format!("s{id}-{part}"));
            }
            Op::ApplyNode { other, zone } => {
                server.apply(&node(
                    if other { "node-2" } else { NODE },
                    &format!("zone-{zone}"),
                ));
            }
            Op::DeleteNode { other } => {
                server.delete(Kind::Node, "", if other { "node-2" } else { NODE });
            }
            Op::Disconnect => server.drop_connections(),
            Op::Compact => server.compact(),
            Op::Bookmarks => server.send_bookmarks(),
            Op::Stall(on) => server.stall(on),
            Op::Outage(on) => server.set_unavailable(on),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_api_history_ends_with_stores_equal_to_the_server(
            ops in prop::collection::vec((op(), 0..25u64), 1..40),
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(within(LIMIT, async {
                let server = FakeApiServer::start().await;
                seed(&server);
                let sources = started(&server, SourcesConfig { watch_timeout: Some(3), ..SourcesConfig::new(NODE) }).await;
                for (op, pause_ms) in &ops {
                    run(&server, op);
                    tokio::time::sleep(Duration::from_millis(*pause_ms)).await;
                }
                server.stall(false);
                server.set_unavailable(false);
                converged(&server, &sources, Duration::from_secs(45)).await;
                assert!(sources.synced());
            }));
        }
    }
}
