//! `nftproxy run` against the fake API server posts one Event per new diagnostic of a
//! Service or EndpointSlice, and does not post it again while it persists. Everything it
//! asks of the API server on the way is what `deploy/10-rbac.yaml` grants, no more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fake_apiserver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{get, metric};
use common::netns::{NetNs, kernel_tests_enabled};
use common::proxy::{Proxy, wait_kernel_equal};
use fake_apiserver::{FakeApiServer, OnThread};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use nftproxy_compiler::kube_proxy_config::KubeProxyConfiguration;
use nftproxy_compiler::{ClusterSnapshot, compile};
use nftproxy_rules::Ruleset;
use serde_json::{Value, json};

const CONFIG: &str = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\nnftables: {minSyncPeriod: 0s, syncPeriod: 1h}\n";

/// The fake API server, served from a thread inside `ns`, and the objects applied to it.
struct Cluster {
    api: OnThread,
    objects: Vec<Value>,
    /// `kind/name` to the uid the server gave the object when it was created.
    uids: BTreeMap<String, String>,
}

impl Cluster {
    fn start(ns: &NetNs) -> Cluster {
        let mut cluster = Cluster {
            api: OnThread::start(|f| ns.spawn(f)),
            objects: Vec::new(),
            uids: BTreeMap::new(),
        };
        cluster.apply(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
            "spec": {"podCIDRs": ["198.18.1.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.51.100.1"}]}
        }));
        cluster
    }

    /// Applies `object`; returns its uid (the server keeps it when an object is replaced).
    fn apply(&mut self, object: Value) -> String {
        let kind_name = |o: &Value| format!("{}/{}", o["kind"], o["metadata"]["name"]);
        let key = kind_name(&object);
        self.objects.retain(|o| kind_name(o) != key);
        let rv = self.api.server.apply(&object);
        self.objects.push(object);
        self.uids
            .entry(key)
            .or_insert_with(|| format!("00000000-0000-0000-0000-{rv:012}"))
            .clone()
    }

    fn compiled(&self) -> nftproxy_compiler::Compiled {
        let mut snapshot = ClusterSnapshot::default();
        for object in &self.objects {
            let object = object.clone();
            match object["kind"].as_str().unwrap() {
                "Service" => snapshot
                    .services
                    .push(Arc::new(serde_json::from_value(object).unwrap())),
                "EndpointSlice" => {
                    let slice: k8s_openapi::api::discovery::v1::EndpointSlice =
                        serde_json::from_value(object).unwrap();
                    snapshot.endpoint_slices.push(Arc::new(slice.into()));
                }
                _ => snapshot
                    .nodes
                    .push(Arc::new(serde_json::from_value(object).unwrap())),
            }
        }
        let config = KubeProxyConfiguration::from_yaml(CONFIG).unwrap();
        compile(&snapshot, &config.compile_config("node-1").unwrap())
    }

    fn expected(&self) -> Ruleset {
        self.compiled().ruleset
    }

    /// The message of the compiler's one diagnostic about `kind` `name`.
    fn diagnostic(&self, kind: &str, name: &str) -> String {
        let compiled = self.compiled();
        let mut found = compiled
            .diagnostics
            .iter()
            .filter(|d| d.object.kind == kind && d.object.name == name);
        let first = found.next().expect("a diagnostic").message.clone();
        assert!(found.next().is_none(), "one diagnostic about {kind} {name}");
        first
    }

    fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: nobody}}\ncurrent-context: fake\n",
            self.api.server.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Waits (up to 15 s) until the server holds `n` Events; returns them.
    fn wait_events(&self, n: usize, proxy: &Proxy) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let events = self.api.server.events();
            assert!(
                events.len() <= n,
                "more than {n} events: {events:#?}\n--- log ---\n{}",
                proxy.log_text()
            );
            if events.len() == n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {n} events, got {events:#?}\n--- log ---\n{}",
                proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn service(name: &str, ip: &str, extra: Value) -> Value {
    let mut spec = json!({"clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
        "type": "ClusterIP",
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]});
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn slice(service: &str, addresses: &[&str]) -> Value {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}, "nodeName": "node-2"}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-1"), "namespace": "default",
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
           "endpoints": endpoints})
}

/// Checks what every Event of nftproxy carries, and that it regards Service `name`.
fn assert_event(event: &Value, name: &str, uid: &str, reason: &str, note: &str) {
    assert_eq!(event["apiVersion"], "events.k8s.io/v1", "{event:#}");
    assert_eq!(event["metadata"]["namespace"], "default", "{event:#}");
    assert_eq!(event["type"], "Warning", "{event:#}");
    assert_eq!(event["reason"], reason, "{event:#}");
    assert_eq!(event["action"], "Sync", "{event:#}");
    assert_eq!(event["note"], note, "{event:#}");
    assert_eq!(event["reportingController"], "nftproxy", "{event:#}");
    assert_eq!(event["reportingInstance"], "nftproxy-node-1", "{event:#}");
    let regarding = &event["regarding"];
    assert_eq!(regarding["kind"], "Service", "{event:#}");
    assert_eq!(regarding["apiVersion"], "v1", "{event:#}");
    assert_eq!(regarding["name"], name, "{event:#}");
    assert_eq!(regarding["uid"], uid, "{event:#}");
}

#[test]
fn each_new_diagnostic_of_a_service_is_posted_once_as_an_event() {
    if !kernel_tests_enabled("each_new_diagnostic_of_a_service_is_posted_once_as_an_event") {
        return;
    }
    let ns = NetNs::new("api-events");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&ns);
    cluster.apply(service("web", "198.19.0.10", json!({})));
    cluster.apply(slice("web", &["198.18.2.10"]));
    let bad_uid = cluster.apply(service(
        "bad",
        "198.19.0.11",
        json!({"internalTrafficPolicy": "Sometimes"}),
    ));
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let kubeconfig = cluster.kubeconfig(dir.path());
    let args = ["--kubeconfig", kubeconfig.to_str().unwrap()];
    let proxy = Proxy::spawn(
        &ns,
        &[&args[..], &["--config", config.to_str().unwrap()]].concat(),
    );
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "initial list");

    let events = cluster.wait_events(1, &proxy);
    let note = cluster.diagnostic("Service", "bad");
    assert!(note.contains("Sometimes"), "{note}");
    assert_event(&events[0], "bad", &bad_uid, "InvalidService", &note);
    assert_eq!(events[0]["related"], Value::Null);

    // More syncs, each with the same diagnostic: nothing is posted again.
    for addresses in [&["198.18.2.10", "198.18.2.11"][..], &["198.18.2.12"]] {
        cluster.apply(slice("web", addresses));
        wait_kernel_equal(&ns, &cluster.expected(), &proxy, "endpoints changed");
    }

    // A second bad Service gets its own Event. The publisher handles the sets in order,
    // so once this one is there, a repeat of the first would be there too.
    let lb = json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["not-a-cidr"]});
    let lb_uid = cluster.apply(service("lb", "198.19.0.12", lb));
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "second bad service");
    let events = cluster.wait_events(2, &proxy);
    let note = cluster.diagnostic("Service", "lb");
    assert!(note.contains("not-a-cidr"), "{note}");
    assert_event(&events[1], "lb", &lb_uid, "ServiceProxyWarning", &note);

    // A diagnostic of an EndpointSlice regards the slice's Service.
    let web_uid = cluster.apply(service("web", "198.19.0.10", json!({})));
    cluster.apply(slice("web", &["198.18.2.12", "127.0.0.1"]));
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "a loopback endpoint");
    let events = cluster.wait_events(3, &proxy);
    let note = format!(
        "EndpointSlice web-1: {}",
        cluster.diagnostic("EndpointSlice", "web-1")
    );
    assert_event(&events[2], "web", &web_uid, "ServiceProxyWarning", &note);
    assert_eq!(events[2]["related"]["kind"], "EndpointSlice");
    assert_eq!(events[2]["related"]["name"], "web-1");

    // Still three after further syncs.
    cluster.apply(service(
        "web",
        "198.19.0.10",
        json!({"sessionAffinity": "None"}),
    ));
    wait_kernel_equal(&ns, &cluster.expected(), &proxy, "one more sync");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.api.server.events().len(), 3);
    assert_eq!(cluster.api.server.event_posts(), 3, "no refused posts");
    let syncs = proxy.syncs();
    assert!(syncs.iter().all(|s| s.ok), "{syncs:?}");
    let metrics = get(&ns, "127.0.0.1:10249".parse().unwrap(), "/metrics").unwrap();
    assert_eq!(
        metric(&metrics.body, "nftproxy_events_posted_total"),
        Some(3.0)
    );
    assert_eq!(
        metric(&metrics.body, "nftproxy_events_dropped_total"),
        Some(0.0)
    );
    drop(proxy);
    assert_the_shipped_role_allows_exactly_what_was_asked(&cluster.api.server);
    drop(cluster);
}

/// Every request `nftproxy run` made is allowed by `deploy/10-rbac.yaml`'s ClusterRole, and
/// every verb that role grants was used: nothing more is granted than the run needed.
fn assert_the_shipped_role_allows_exactly_what_was_asked(server: &FakeApiServer) {
    let rules = common::rbac::cluster_role_rules();
    let requests = server.requests();
    for access in &requests {
        assert!(
            common::rbac::allowed(&rules, &access.verb, &access.group, &access.resource),
            "nftproxy asked for something deploy/10-rbac.yaml does not grant: {access:?}"
        );
    }
    for rule in &rules {
        for (group, resource, verb) in grants_of(rule) {
            assert!(
                requests
                    .iter()
                    .any(|a| a.group == group && a.resource == resource && a.verb == verb),
                "deploy/10-rbac.yaml grants {verb} on {group:?}/{resource}, which nftproxy \
                 never used: {requests:?}"
            );
        }
    }
}

/// Every (group, resource, verb) a rule grants.
fn grants_of(rule: &common::rbac::Rule) -> Vec<(String, String, String)> {
    let mut grants = Vec::new();
    for group in &rule.groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                grants.push((group.clone(), resource.clone(), verb.clone()));
            }
        }
    }
    grants
}

/// The fake's Event endpoint answers as the API server does (no kernel needed).
#[test]
fn the_fake_api_server_creates_and_validates_events() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = FakeApiServer::start().await;
        let events: Api<Event> = Api::namespaced(server.client(), "default");
        let event = Event {
            metadata: ObjectMeta {
                name: Some("web.1".into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            type_: Some("Warning".into()),
            reason: Some("InvalidService".into()),
            action: Some("Sync".into()),
            reporting_controller: Some("nftproxy".into()),
            reporting_instance: Some("nftproxy-node-1".into()),
            regarding: Some(ObjectReference {
                kind: Some("Service".into()),
                name: Some("web".into()),
                ..ObjectReference::default()
            }),
            ..Event::default()
        };
        let created = events.create(&PostParams::default(), &event).await.unwrap();
        assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
        assert!(created.metadata.resource_version.is_some());
        assert!(created.metadata.uid.is_some());
        let again = events.create(&PostParams::default(), &event).await;
        assert!(
            matches!(&again, Err(kube::Error::Api(s)) if s.code == 409),
            "{again:?}"
        );
        let invalid = Event {
            reason: None,
            metadata: ObjectMeta {
                name: Some("web.2".into()),
                ..ObjectMeta::default()
            },
            ..event.clone()
        };
        let refused = events.create(&PostParams::default(), &invalid).await;
        assert!(
            matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422),
            "{refused:?}"
        );
        let other: Api<Event> = Api::namespaced(server.client(), "other");
        let wrong_ns = Event {
            metadata: ObjectMeta {
                name: Some("web.3".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            ..event
        };
        let refused = other.create(&PostParams::default(), &wrong_ns).await;
        assert!(
            matches!(&refused, Err(kube::Error::Api(s)) if s.code == 400),
            "{refused:?}"
        );
        assert_eq!(server.events().len(), 1);
        assert_eq!(server.event_posts(), 4);
        assert_eq!(server.events()[0]["metadata"]["name"], "web.1");
    });
}
