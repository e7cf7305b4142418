//! The HTTP side of `nftproxy run --manifests DIR`, in a throwaway namespace: health and
//! readiness through their transitions, metrics that move with syncs and changes, and the
//! debug endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{Answer, get, metric};
use common::netns::{NetNs, kernel_tests_enabled};
use common::proxy::Proxy;

const HEALTH: &str = "127.0.0.1:10256";
const METRICS: &str = "127.0.0.1:10249";

/// node-1, optionally tainted for deletion by the cluster autoscaler.
fn node(tainted: bool) -> String {
    let taint = if tainted {
        "spec: {taints: [{key: ToBeDeletedByClusterAutoscaler, effect: NoSchedule}]}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: node-1}}\n{taint}status:\n  addresses: [{{type: InternalIP, address: 198.51.100.1}}]\n"
    )
}

/// `web` (ClusterIP 198.19.0.10:80) with `endpoints` on node-1, the slice annotated with
/// a change trigger time of `trigger`.
fn web(endpoints: &[&str], trigger: &str) -> String {
    let endpoints: String = endpoints
        .iter()
        .map(|a| format!("- {{addresses: [{a}], conditions: {{ready: true}}, nodeName: node-1}}\n"))
        .collect();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  clusterIP: 198.19.0.10
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 0}}}}
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
  annotations: {{endpoints.kubernetes.io/last-change-trigger-time: "{trigger}"}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
{endpoints}"#
    )
}

fn now_rfc3339() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Running {
    ns: NetNs,
    dir: tempfile::TempDir,
    _config: tempfile::TempDir,
    proxy: Proxy,
}

/// Starts `nftproxy run` with `syncPeriod: sync` and waits for its first sync.
fn start(tag: &str, sync: &str, extra: &[&str]) -> Running {
    let ns = NetNs::new(tag);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("node.yaml"), node(false)).unwrap();
    let trigger = now_rfc3339();
    std::fs::write(dir.path().join("web.yaml"), web(&["198.18.1.10"], &trigger)).unwrap();
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("config.yaml");
    let text = format!(
        "kind: KubeProxyConfiguration\nnftables: {{minSyncPeriod: 0s, syncPeriod: {sync}}}\n"
    );
    std::fs::write(&path, text).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend(extra);
    let proxy = Proxy::start(&ns, dir.path(), &args);
    let first = proxy.wait_syncs(1, Duration::from_secs(20));
    assert!(first[0].ok, "{}", proxy.log_text());
    Running {
        ns,
        dir,
        _config: config,
        proxy,
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

impl Running {
    fn get(&self, server: &str, path: &str) -> Answer {
        get(&self.ns, addr(server), path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.proxy.log_text()))
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    /// Polls `GET path` until `check` holds (10 s at most).
    fn wait_for(
        &self,
        server: &str,
        path: &str,
        what: &str,
        check: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = self.get(server, path);
            if check(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: last answer {answer:?}\n{}",
                self.proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn health_turns_unhealthy_while_a_change_cannot_be_programmed_and_recovers() {
    if !kernel_tests_enabled(
        "health_turns_unhealthy_while_a_change_cannot_be_programmed_and_recovers",
    ) {
        return;
    }
    // Every sync goes through the helper, so stopping it holds a change back.
    let run = start("health", "1s", &["--partial-apply", "libnftables"]);
    let ready = run.get(HEALTH, "/readyz");
    assert_eq!((ready.code, ready.body.as_str()), (200, "ok\n"));
    let healthz = run.get(HEALTH, "/healthz");
    assert_eq!(healthz.code, 200, "{healthz:?}");
    let body = healthz.json();
    assert_eq!(body["nodeEligible"], true);
    assert!(body["lastUpdated"].is_string(), "{body}");
    assert_eq!(healthz.header("content-type"), Some("application/json"));

    let helper = run
        .proxy
        .field_of("nftables helper started", "pid")
        .unwrap();
    let helper = helper.as_u64().unwrap().to_string();
    Command::new("kill")
        .args(["-STOP", &helper])
        .status()
        .unwrap();
    run.write("web.yaml", &web(&["198.18.1.11"], &now_rfc3339()));
    // The health timeout is 2 x syncPeriod = 2 s.
    let sick = run.wait_for(
        HEALTH,
        "/healthz",
        "unhealthy while the change waits",
        |a| a.code == 503,
    );
    assert_eq!(sick.json()["nodeEligible"], true);
    assert_eq!(run.get(HEALTH, "/livez").code, 503);
    assert_eq!(
        run.get(HEALTH, "/readyz").code,
        200,
        "readiness stays once synced"
    );
    Command::new("kill")
        .args(["-CONT", &helper])
        .status()
        .unwrap();
    run.wait_for(
        HEALTH,
        "/healthz",
        "healthy once the change is programmed",
        |a| a.code == 200,
    );
    assert_eq!(run.get(HEALTH, "/livez").code, 200);
    let metrics = run.get(METRICS, "/metrics").body;
    assert!(metric(&metrics, "kubeproxy_proxy_healthz_total{code=\"503\"}").unwrap() >= 1.0);
    assert!(metric(&metrics, "kubeproxy_proxy_healthz_total{code=\"200\"}").unwrap() >= 2.0);
}

#[test]
fn a_node_tainted_for_deletion_fails_healthz_but_not_livez() {
    if !kernel_tests_enabled("a_node_tainted_for_deletion_fails_healthz_but_not_livez") {
        return;
    }
    let run = start("eligible", "30s", &[]);
    assert_eq!(run.get(HEALTH, "/healthz").code, 200);
    run.write("node.yaml", &node(true));
    let answer = run.wait_for(HEALTH, "/healthz", "503 for a node being removed", |a| {
        a.code == 503
    });
    assert_eq!(answer.json()["nodeEligible"], false);
    assert_eq!(run.get(HEALTH, "/livez").code, 200);
    run.write("node.yaml", &node(false));
    run.wait_for(HEALTH, "/healthz", "eligible again", |a| a.code == 200);
}

#[test]
fn metrics_move_with_syncs_and_changes() {
    if !kernel_tests_enabled("metrics_move_with_syncs_and_changes") {
        return;
    }
    let run = start("metrics", "30s", &[]);
    let before = run.get(METRICS, "/metrics");
    assert_eq!(before.code, 200);
    assert!(
        before
            .header("content-type")
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = &before.body;
    let value = |text: &str, name: &str| {
        metric(text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert_eq!(
        value(text, "kubeproxy_sync_proxy_rules_duration_seconds_count"),
        1.0
    );
    assert_eq!(
        value(
            text,
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count"
        ),
        1.0
    );
    assert!(value(text, "kubeproxy_sync_proxy_rules_last_timestamp_seconds") > 1.7e9);
    assert_eq!(
        value(text, "kubeproxy_sync_proxy_rules_service_changes_total"),
        1.0
    );
    assert_eq!(
        value(text, "kubeproxy_sync_proxy_rules_endpoint_changes_total"),
        1.0
    );
    assert_eq!(
        value(text, "kubeproxy_sync_proxy_rules_endpoint_changes_pending"),
        0.0
    );
    assert_eq!(
        value(text, "kubeproxy_network_programming_duration_seconds_count"),
        1.0
    );
    assert!(value(text, "nftproxy_ruleset_objects{kind=\"chains\"}") > 10.0);
    assert_eq!(
        value(
            text,
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"
        ),
        0.0
    );
    assert_eq!(
        value(
            text,
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"internal\"}"
        ),
        0.0
    );

    run.write(
        "web.yaml",
        &web(&["198.18.1.10", "198.18.1.11"], &now_rfc3339()),
    );
    let after = run.wait_for(METRICS, "/metrics", "a second sync counted", |a| {
        metric(&a.body, "kubeproxy_sync_proxy_rules_duration_seconds_count") == Some(2.0)
    });
    let text = &after.body;
    assert_eq!(
        value(
            text,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count"
        ),
        1.0
    );
    assert_eq!(
        value(text, "kubeproxy_sync_proxy_rules_endpoint_changes_total"),
        2.0
    );
    assert_eq!(
        value(text, "kubeproxy_sync_proxy_rules_service_changes_total"),
        1.0
    );
    assert_eq!(
        value(text, "kubeproxy_network_programming_duration_seconds_count"),
        2.0
    );
    assert!(value(text, "nftproxy_sync_operations_count") >= 2.0);
}

#[test]
fn debug_endpoints_show_the_applied_ruleset_transaction_and_services() {
    if !kernel_tests_enabled("debug_endpoints_show_the_applied_ruleset_transaction_and_services") {
        return;
    }
    let run = start("debug", "30s", &[]);
    let ruleset = run.get(METRICS, "/debug/ruleset");
    assert_eq!(ruleset.code, 200);
    assert!(
        ruleset.body.contains("table ip nftproxy {"),
        "{}",
        ruleset.body
    );
    // What the endpoint shows is what the kernel holds.
    let listed = run.ns.exec_ok(&["nft", "list", "ruleset"]);
    for line in ruleset.body.lines().filter(|l| l.contains("dnat to")) {
        assert!(
            listed.contains(line.trim()),
            "{line:?} not in the kernel:\n{listed}"
        );
    }

    run.write(
        "web.yaml",
        &web(&["198.18.1.10", "198.18.1.12"], &now_rfc3339()),
    );
    let transaction = run.wait_for(
        METRICS,
        "/debug/transaction",
        "the partial sync's transaction",
        |a| a.body.starts_with("# partial sync"),
    );
    assert!(
        transaction.body.contains("198.18.1.12"),
        "{}",
        transaction.body
    );

    let services = run.get(METRICS, "/debug/services?service=default/web");
    assert_eq!(services.code, 200);
    let json = services.json();
    let web = &json["services"][0];
    assert_eq!(web["name"], "web");
    let family = &web["ports"][0]["families"][0];
    assert_eq!(family["verdict"], "dnat");
    assert_eq!(
        family["endpoints"],
        serde_json::json!(["198.18.1.10:8080", "198.18.1.12:8080"])
    );
    assert_eq!(family["local_endpoints"], family["endpoints"]);
    let diagnostics = web["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics
            .iter()
            .any(|d| d.as_str().unwrap().contains("timeoutSeconds")),
        "{diagnostics:?}"
    );
    assert_eq!(
        run.get(METRICS, "/debug/services?service=default/nope")
            .code,
        404
    );
    assert_eq!(
        run.get(HEALTH, "/debug/ruleset").code,
        404,
        "debug only on the metrics address"
    );
}
