//! `nftproxy run --manifests DIR` against the real kernel in a throwaway namespace: after
//! every edit of the directory the kernel's tables equal what `compile` makes of the same
//! objects; restarts adopt the table without changes; drift and refused transactions are
//! repaired by full syncs; `cleanup` removes nftproxy's tables and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{NetNs, kernel_tests_enabled};
use common::proxy::{Proxy, delete_element_by_hand, kernel_tables, nft_helper, wait_kernel_equal};
use nftproxy_compiler::kube_proxy_config::KubeProxyConfiguration;
use nftproxy_compiler::{ClusterSnapshot, compile, manifest};
use nftproxy_rules::Ruleset;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [198.18.1.0/24]}
status:
  addresses: [{type: InternalIP, address: 198.51.100.1}]
"#;

/// `web`: ClusterIP 198.19.0.10:80 with the given endpoint addresses (all on node-2).
fn web(endpoints: &[&str]) -> String {
    let endpoints: String = endpoints
        .iter()
        .map(|a| format!("- {{addresses: [{a}], conditions: {{ready: true}}, nodeName: node-2}}\n"))
        .collect();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  clusterIP: 198.19.0.10
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
{endpoints}"#
    )
}

const API: &str = r#"apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  type: NodePort
  clusterIP: 198.19.0.20
  ports: [{protocol: UDP, port: 53, targetPort: 5353, nodePort: 30053}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: default, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{protocol: UDP, port: 5353}]
endpoints:
- {addresses: [198.18.2.20], conditions: {ready: true}, nodeName: node-2}
"#;

/// A KubeProxyConfiguration with these nftables sync periods.
fn config(min_sync: &str, sync: &str) -> String {
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\nnftables: {{minSyncPeriod: {min_sync}, syncPeriod: {sync}}}\n"
    )
}

/// What `compile` makes of the manifest files in `dir` (with `config_text`).
fn compiled(dir: &Path, config_text: &str) -> Ruleset {
    let mut snapshot = ClusterSnapshot::default();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for decoded in manifest::decode(&text).expect("valid test manifests") {
            assert!(snapshot.push(decoded.object).is_none());
        }
    }
    let kube_proxy = KubeProxyConfiguration::from_yaml(config_text).unwrap();
    compile(&snapshot, &kube_proxy.compile_config("node-1").unwrap()).ruleset
}

/// Writes `name` in `dir` so the poller sees a change even within one timestamp tick.
fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

struct Setup {
    ns: NetNs,
    dir: tempfile::TempDir,
    /// Holds the configuration file (outside the manifest directory).
    config_dir: tempfile::TempDir,
    config_text: String,
}

fn setup(tag: &str, min_sync: &str, sync: &str) -> Setup {
    let ns = NetNs::new(tag);
    let dir = tempfile::tempdir().unwrap();
    let config_text = config(min_sync, sync);
    let config_dir = tempfile::tempdir().unwrap();
    std::fs::write(config_dir.path().join("config.yaml"), &config_text).unwrap();
    write(dir.path(), "node.yaml", NODE);
    write(
        dir.path(),
        "web.yaml",
        &web(&["198.18.2.10", "198.18.2.11"]),
    );
    Setup {
        ns,
        dir,
        config_dir,
        config_text,
    }
}

impl Setup {
    fn start(&self) -> Proxy {
        let config = self.config_dir.path().join("config.yaml");
        Proxy::start(
            &self.ns,
            self.dir.path(),
            &["--config", config.to_str().unwrap()],
        )
    }

    fn expected(&self) -> Ruleset {
        compiled(self.dir.path(), &self.config_text)
    }
}

#[test]
fn kernel_follows_the_manifest_directory_through_a_sequence_of_edits() {
    if !kernel_tests_enabled("kernel_follows_the_manifest_directory_through_a_sequence_of_edits") {
        return;
    }
    let s = setup("follow", "0s", "1h");
    let proxy = s.start();
    wait_kernel_equal(&s.ns, &s.expected(), &proxy, "initial");
    let dir = s.dir.path();
    let steps: [(&str, &str, String); 4] = [
        (
            "endpoint added",
            "web.yaml",
            web(&["198.18.2.10", "198.18.2.11", "198.18.2.12"]),
        ),
        ("service added", "api.yaml", API.to_owned()),
        ("endpoint removed", "web.yaml", web(&["198.18.2.12"])),
        ("service without endpoints", "web.yaml", web(&[])),
    ];
    for (what, file, text) in steps {
        write(dir, file, &text);
        wait_kernel_equal(&s.ns, &s.expected(), &proxy, what);
    }
    std::fs::remove_file(dir.join("api.yaml")).unwrap();
    wait_kernel_equal(&s.ns, &s.expected(), &proxy, "service file deleted");
    let syncs = proxy.syncs();
    assert!(syncs.iter().all(|e| e.ok), "{syncs:?}");
    assert_eq!(syncs[0].kind, "full");
    assert!(
        syncs[1..].iter().all(|e| e.kind == "partial"),
        "edits are partial syncs: {syncs:?}"
    );
    // Partial syncs go as nftproxy's own netlink batches; the full one through libnftables.
    assert_eq!(syncs[0].via, "libnftables", "{syncs:?}");
    assert!(
        syncs[1..].iter().all(|e| e.via == "netlink"),
        "partial syncs as netlink batches: {syncs:?}"
    );
}

#[test]
fn a_broken_edit_keeps_what_the_file_programmed_and_says_where() {
    if !kernel_tests_enabled("a_broken_edit_keeps_what_the_file_programmed_and_says_where") {
        return;
    }
    let s = setup("broken", "0s", "1h");
    write(s.dir.path(), "api.yaml", API);
    let proxy = s.start();
    let before = s.expected();
    wait_kernel_equal(&s.ns, &before, &proxy, "initial");
    write(
        s.dir.path(),
        "api.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: [\n",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.messages().iter().any(|m| m.contains("api.yaml:")) {
        assert!(
            Instant::now() < deadline,
            "no error naming the file:\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        kernel_tables(&s.ns),
        before,
        "nothing already programmed is lost"
    );
    // Other files still follow edits, while the broken one keeps its last good content.
    write(s.dir.path(), "web.yaml", &web(&["198.18.2.99"]));
    let expected_dir = tempfile::tempdir().unwrap();
    for name in ["node.yaml", "web.yaml"] {
        std::fs::copy(s.dir.path().join(name), expected_dir.path().join(name)).unwrap();
    }
    write(expected_dir.path(), "api.yaml", API);
    let expected = compiled(expected_dir.path(), &s.config_text);
    wait_kernel_equal(&s.ns, &expected, &proxy, "after an edit of another file");
}

#[test]
fn a_restart_over_its_own_table_changes_nothing() {
    if !kernel_tests_enabled("a_restart_over_its_own_table_changes_nothing") {
        return;
    }
    let s = setup("restart", "0s", "1h");
    let first = s.start();
    wait_kernel_equal(&s.ns, &s.expected(), &first, "first instance");
    assert!(first.stop(), "SIGTERM ends the process with status 0");
    assert_eq!(
        kernel_tables(&s.ns),
        s.expected(),
        "rules stay after SIGTERM"
    );
    let second = s.start();
    let syncs = second.wait_syncs(1, Duration::from_secs(10));
    assert_eq!(syncs[0].kind, "full");
    assert_eq!(
        syncs[0].operations,
        0,
        "adoption changes nothing: {}",
        second.log_text()
    );
}

#[test]
fn a_killed_instance_is_adopted_and_repaired_by_the_next() {
    if !kernel_tests_enabled("a_killed_instance_is_adopted_and_repaired_by_the_next") {
        return;
    }
    let s = setup("killed", "0s", "1h");
    let first = s.start();
    wait_kernel_equal(&s.ns, &s.expected(), &first, "first instance");
    first.kill();
    write(s.dir.path(), "api.yaml", API);
    let second = s.start();
    wait_kernel_equal(&s.ns, &s.expected(), &second, "after SIGKILL and an edit");
    let syncs = second.wait_syncs(1, Duration::from_secs(10));
    assert!(
        syncs[0].ok && syncs[0].kind == "full" && syncs[0].operations > 0,
        "{syncs:?}"
    );
}

#[test]
fn a_full_sync_repairs_an_element_deleted_by_hand() {
    if !kernel_tests_enabled("a_full_sync_repairs_an_element_deleted_by_hand") {
        return;
    }
    let s = setup("drift", "0s", "1s");
    let proxy = s.start();
    let expected = s.expected();
    wait_kernel_equal(&s.ns, &expected, &proxy, "initial");
    delete_element_by_hand(&s.ns, "service-ips", "198.19.0.10 . tcp . 80");
    assert_ne!(kernel_tables(&s.ns), expected, "the element is gone");
    wait_kernel_equal(&s.ns, &expected, &proxy, "after the periodic full sync");
    let repaired = proxy
        .syncs()
        .iter()
        .any(|e| e.ok && e.kind == "full" && e.operations == 1);
    assert!(
        repaired,
        "one full sync restored one element:\n{}",
        proxy.log_text()
    );
}

#[test]
fn a_refused_transaction_changes_nothing_and_a_full_sync_recovers() {
    if !kernel_tests_enabled("a_refused_transaction_changes_nothing_and_a_full_sync_recovers") {
        return;
    }
    let s = setup("refused", "0s", "1h");
    let proxy = s.start();
    wait_kernel_equal(&s.ns, &s.expected(), &proxy, "initial");
    // The next incremental transaction will delete 198.18.2.11's hairpin element; deleting
    // it by hand first makes the kernel refuse that whole transaction.
    delete_element_by_hand(&s.ns, "endpoint-hairpin", "198.18.2.11 . 198.18.2.11");
    let tampered = kernel_tables(&s.ns);
    write(s.dir.path(), "web.yaml", &web(&["198.18.2.10"]));
    let syncs = proxy.wait_syncs(2, Duration::from_secs(10));
    assert!(!syncs[1].ok, "the kernel refused: {syncs:?}");
    assert!(syncs[1].error.contains("refused"), "{syncs:?}");
    // The refusal names the operation the kernel refused.
    assert!(
        syncs[1]
            .error
            .contains("elements from ip nftproxy endpoint-hairpin"),
        "{syncs:?}"
    );
    // Between the refusal and the retry (1 s backoff) the kernel is exactly as it was.
    assert_eq!(
        kernel_tables(&s.ns),
        tampered,
        "a refused transaction changes nothing"
    );
    wait_kernel_equal(&s.ns, &s.expected(), &proxy, "after the retry");
    let syncs = proxy.syncs();
    assert!(syncs[2].ok && syncs[2].kind == "full", "{syncs:?}");
}

#[test]
fn cleanup_removes_nftproxys_tables_and_nothing_else() {
    if !kernel_tests_enabled("cleanup_removes_nftproxys_tables_and_nothing_else") {
        return;
    }
    let s = setup("cleanup", "0s", "1h");
    let proxy = s.start();
    wait_kernel_equal(&s.ns, &s.expected(), &proxy, "initial");
    assert!(proxy.stop());
    s.ns.exec_ok(&["nft", "add", "table", "inet", "someone-else"]);
    let helper = nft_helper();
    let cleanup = s.ns.exec_ok(&[
        env!("CARGO_BIN_EXE_nftproxy"),
        "cleanup",
        "--nft-helper",
        helper.to_str().unwrap(),
    ]);
    assert_eq!(cleanup, "");
    assert!(kernel_tables(&s.ns).tables.is_empty());
    let listing = s.ns.exec_ok(&["nft", "list", "tables"]);
    assert_eq!(listing.trim(), "table inet someone-else");
    // Idempotent: nothing to remove is not an error.
    s.ns.exec_ok(&[
        env!("CARGO_BIN_EXE_nftproxy"),
        "cleanup",
        "--nft-helper",
        helper.to_str().unwrap(),
    ]);
}
