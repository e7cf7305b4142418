//! `nftproxy run --manifests DIR` against the real kernel in a throwaway namespace: after
//! every edit of the directory the kernel's tables equal what `compile` makes of the same
//! objects; restarts adopt the table without changes; drift and refused transactions are
//! repaired by full syncs, and so are tables flushed or deleted by hand; an instance killed
//! anywhere in a sync leaves the old or the new ruleset, never a mix, and the next repairs
//! it; a second instance refuses to run; `cleanup` removes nftproxy's tables and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{NetNs, kernel_tests_enabled};
use common::proxy::{Proxy, delete_element_by_hand, kernel_tables, nft_helper, wait_kernel_equal};
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
    common::proxy::compiled_manifests(dir, config_text, "node-1")
}

/// `nftproxy cleanup` in `ns`.
fn run_cleanup(ns: &NetNs) -> std::process::Output {
    let helper = nft_helper();
    ns.exec(&[
        env!("CARGO_BIN_EXE_nftproxy"),
        "cleanup",
        "--nft-helper",
        helper.to_str().unwrap(),
    ])
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
    let cleanup = run_cleanup(&s.ns);
    assert!(cleanup.status.success(), "{cleanup:?}");
    assert!(cleanup.stdout.is_empty(), "{cleanup:?}");
    assert!(kernel_tables(&s.ns).tables.is_empty());
    let listing = s.ns.exec_ok(&["nft", "list", "tables"]);
    assert_eq!(listing.trim(), "table inet someone-else");
    // Idempotent: nothing to remove is not an error.
    let again = run_cleanup(&s.ns);
    assert!(again.status.success(), "{again:?}");
}

#[test]
fn a_second_instance_refuses_to_run_and_the_first_keeps_working() {
    if !kernel_tests_enabled("a_second_instance_refuses_to_run_and_the_first_keeps_working") {
        return;
    }
    let s = setup("twice", "0s", "1h");
    let first = s.start();
    wait_kernel_equal(&s.ns, &s.expected(), &first, "first instance");
    let before = kernel_tables(&s.ns);
    let mut second = s.start();
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("the second instance exits by itself");
    assert_eq!(status.code(), Some(2), "{}", second.log_text());
    let said = second.log_text();
    assert!(
        said.contains("already running in this network namespace")
            && said.contains(&format!("(pid {})", first.pid())),
        "the refusal names the running instance: {said}"
    );
    assert_eq!(second.syncs().len(), 0, "{said}");
    // `cleanup` refuses too: the running instance would put the tables back.
    let cleanup = run_cleanup(&s.ns);
    let stderr = String::from_utf8_lossy(&cleanup.stderr);
    assert_eq!(cleanup.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    assert_eq!(kernel_tables(&s.ns), before, "neither touched the kernel");
    // The first instance goes on as if nothing happened.
    write(s.dir.path(), "api.yaml", API);
    wait_kernel_equal(
        &s.ns,
        &s.expected(),
        &first,
        "first instance after the refusal",
    );
    // The kernel frees the lock of a killed instance: the next one runs and adopts.
    first.kill();
    let third = s.start();
    let syncs = third.wait_syncs(1, Duration::from_secs(10));
    assert!(
        syncs[0].ok && syncs[0].operations == 0,
        "{syncs:?}\n{}",
        third.log_text()
    );
}

#[test]
fn tables_flushed_or_deleted_by_hand_are_restored_by_the_next_full_sync() {
    if !kernel_tests_enabled("tables_flushed_or_deleted_by_hand_are_restored_by_the_next_full_sync")
    {
        return;
    }
    let s = setup("flushed", "0s", "1s");
    write(s.dir.path(), "api.yaml", API);
    let proxy = s.start();
    let expected = s.expected();
    wait_kernel_equal(&s.ns, &expected, &proxy, "initial");

    s.ns.exec_ok(&["nft", "flush", "table", "ip", "nftproxy"]);
    assert_ne!(
        kernel_tables(&s.ns),
        expected,
        "the main table lost its rules"
    );
    wait_kernel_equal(
        &s.ns,
        &expected,
        &proxy,
        "after `nft flush table ip nftproxy`",
    );

    // Every IPv4 table: the main one and whichever shards hold web and api.
    let mut deleted = 0;
    for table in nftproxy_compiler::table_names() {
        deleted += usize::from(
            s.ns.exec(&["nft", "delete", "table", "ip", &table])
                .status
                .success(),
        );
    }
    assert!(
        deleted >= 2,
        "the main table and at least one shard: {deleted}"
    );
    assert_ne!(kernel_tables(&s.ns), expected, "the IPv4 tables are gone");
    wait_kernel_equal(&s.ns, &expected, &proxy, "after `nft delete table` of each");
    let failed: Vec<_> = proxy.syncs().into_iter().filter(|e| !e.ok).collect();
    assert!(failed.is_empty(), "repairs need no failed sync: {failed:?}");
}

/// The helper of `proxy` (from its start-up log line).
fn helper_pid(proxy: &Proxy) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = proxy
            .field_of("nftables helper started", "pid")
            .and_then(|p| p.as_u64())
        {
            return u32::try_from(pid).unwrap();
        }
        assert!(Instant::now() < deadline, "{}", proxy.log_text());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_instance_killed_anywhere_in_a_full_sync_leaves_all_or_nothing_and_the_next_repairs() {
    if !kernel_tests_enabled(
        "an_instance_killed_anywhere_in_a_full_sync_leaves_all_or_nothing_and_the_next_repairs",
    ) {
        return;
    }
    let s = setup("midsync", "0s", "1h");
    write(
        s.dir.path(),
        "generated.yaml",
        &common::generated::manifest(3000, 4),
    );
    let expected = s.expected();
    // How long the first sync into an empty kernel takes here, from start to "synced".
    let started = Instant::now();
    let probe = s.start();
    let syncs = probe.wait_syncs(1, Duration::from_secs(120));
    let first_sync = started.elapsed();
    assert!(syncs[0].ok, "{syncs:?}");
    assert!(probe.stop());
    assert!(run_cleanup(&s.ns).status.success());

    let (mut nothing, mut everything) = (0, 0);
    for percent in [20u32, 50, 80, 95, 110] {
        let proxy = s.start();
        let helper = helper_pid(&proxy);
        std::thread::sleep(first_sync * percent / 100);
        let logged_synced = proxy.syncs().iter().any(|e| e.ok);
        proxy.kill();
        // An orphaned helper finishes the request it was in, then sees end of input.
        common::process::wait_for_exit(helper, Duration::from_secs(60));
        let kernel = kernel_tables(&s.ns);
        if kernel.tables.is_empty() {
            assert!(
                !logged_synced,
                "a logged sync is in the kernel ({percent}%)"
            );
            nothing += 1;
        } else {
            assert!(
                kernel == expected,
                "killed at {percent}% of a sync: the kernel holds part of the ruleset"
            );
            everything += 1;
        }
        let next = s.start();
        wait_kernel_equal(&s.ns, &expected, &next, "the instance after the kill");
        let repair = next.wait_syncs(1, Duration::from_secs(60));
        assert!(repair[0].ok && repair[0].kind == "full", "{repair:?}");
        assert!(next.stop());
        assert!(run_cleanup(&s.ns).status.success());
    }
    common::figures::report(&format!(
        "first sync {first_sync:?}; killed before its commit {nothing} times, after {everything}"
    ));
    assert!(nothing > 0, "at least one kill landed before the commit");
}
