//! `nftproxy compile` as users and CI run it: the binary, its exit codes, stdout and stderr.
//!
//! These tests hold the CLI to DESIGN.md §4: inputs (files, directories, `-`, `kind: List`),
//! diagnostics that name the object and its file:line, `--strict`, `-o`, `--format json`,
//! and byte-identical output for identical input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A finished `nftproxy` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().expect("nftproxy was killed by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

fn nftproxy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nftproxy"));
    cmd.env_remove("RUST_LOG");
    cmd
}

fn compile(args: &[&str]) -> Run {
    nftproxy()
        .arg("compile")
        .args(args)
        .output()
        .expect("nftproxy runs")
        .into()
}

fn compile_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = nftproxy()
        .arg("compile")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nftproxy starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin accepts the manifest");
    child.wait_with_output().expect("nftproxy runs").into()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the manifest"))
}

const NODE: &str = "\
apiVersion: v1
kind: Node
metadata:
  name: node-1
status:
  addresses:
  - type: InternalIP
    address: 198.51.100.1
";

const WEB: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  clusterIP: 198.19.0.10
  clusterIPs: [198.19.0.10]
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: demo
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
- addresses: [198.18.1.10]
  conditions: {ready: true}
  nodeName: node-1
- addresses: [198.18.2.10]
  conditions: {ready: true}
  nodeName: node-2
";

/// A Service the API server would refuse: its port is out of range.
const BAD: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: bad
  namespace: demo
spec:
  clusterIP: 198.19.0.11
  clusterIPs: [198.19.0.11]
  ports:
  - name: http
    port: 70000
    protocol: TCP
";

fn cluster() -> String {
    format!("{NODE}---\n{WEB}")
}

fn cluster_with_bad_service() -> String {
    format!("{NODE}---\n{WEB}---\n{BAD}")
}

/// The chain name fragment the valid service's chain carries.
const WEB_CHAIN: &str = "demo/web/tcp/http";

#[test]
fn valid_cluster_compiles_to_a_ruleset_with_the_services_chain() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "cluster.yaml", &cluster());
    let run = compile(&["--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(WEB_CHAIN), "{run:?}");
    assert!(run.stdout.contains("198.18.1.10"), "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
}

#[test]
fn malformed_yaml_in_a_multi_document_file_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [broken\n",
        cluster()
    );
    let input = write(dir.path(), "broken.yaml", &text);
    let run = compile(&["--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 2, "{run:?}");
    let broken_line = line_of(&text, "name: [broken");
    // The parser may notice the error on the broken line or at the end of the document.
    let located = (broken_line..=text.lines().count() + 1)
        .any(|line| run.stderr.contains(&format!("{}:{line}", s(&input))));
    assert!(located, "want {}:{broken_line}: {run:?}", s(&input));
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn invalid_service_is_reported_by_name_file_and_line_while_the_rest_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let text = cluster_with_bad_service();
    let input = write(dir.path(), "cluster.yaml", &text);
    let run = compile(&["--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    let diagnostic = run
        .stderr
        .lines()
        .find(|l| l.contains("demo/bad"))
        .unwrap_or_else(|| panic!("no diagnostic names demo/bad: {run:?}"));
    let bad_line = line_of(&text, "name: bad") - 3; // the document's `apiVersion` line
    assert!(
        diagnostic.contains(&format!("{}:{bad_line}", s(&input))),
        "want {}:{bad_line} in {diagnostic:?}",
        s(&input)
    );
    assert!(run.stdout.contains(WEB_CHAIN), "{run:?}");
    assert!(!run.stdout.contains("198.19.0.11"), "{run:?}");
}

#[test]
fn strict_turns_diagnostics_into_exit_1_and_still_writes_the_ruleset() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "cluster.yaml", &cluster_with_bad_service());
    let run = compile(&["--strict", "--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains(WEB_CHAIN), "{run:?}");
}

#[test]
fn strict_with_clean_input_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "cluster.yaml", &cluster());
    let run = compile(&["--strict", "--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn output_flag_writes_the_ruleset_to_the_file_and_nothing_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "cluster.yaml", &cluster());
    let out = dir.path().join("ruleset.nft");
    let run = compile(&["--hostname", "node-1", "-o", s(&out), s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.contains(WEB_CHAIN), "{written}");
    let to_stdout = compile(&["--hostname", "node-1", s(&input)]);
    assert_eq!(written, to_stdout.stdout);
}

#[test]
fn json_format_is_one_document_with_an_nftables_array() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "cluster.yaml", &cluster());
    let run = compile(&["--format", "json", "--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("valid JSON");
    let commands = doc["nftables"].as_array().expect("an nftables array");
    assert!(!commands.is_empty());
    assert!(run.stdout.contains(WEB_CHAIN), "{run:?}");
}

#[test]
fn dash_reads_the_manifests_from_stdin() {
    let run = compile_stdin(&["--hostname", "node-1", "-"], &cluster());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(WEB_CHAIN), "{run:?}");
}

#[test]
fn diagnostics_for_stdin_input_name_stdin() {
    let run = compile_stdin(&["--hostname", "node-1", "-"], &cluster_with_bad_service());
    let diagnostic = run.stderr.lines().find(|l| l.contains("demo/bad"));
    assert!(
        diagnostic.is_some_and(|l| l.contains("<stdin>:")),
        "{run:?}"
    );
}

#[test]
fn directory_input_reads_manifests_recursively_and_skips_other_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "node.yaml", NODE);
    write(dir.path(), "apps/web/web.yml", WEB);
    write(dir.path(), "apps/README.md", "not: [a manifest");
    write(dir.path(), ".hidden/broken.yaml", "not: [a manifest");
    let run = compile(&["--strict", "--hostname", "node-1", s(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(WEB_CHAIN), "{run:?}");
}

#[test]
fn json_manifests_are_read_from_directories() {
    let dir = tempfile::tempdir().unwrap();
    let node: serde_json::Value = serde_yaml::from_str(NODE).unwrap();
    write(dir.path(), "node.json", &node.to_string());
    write(dir.path(), "web.yaml", WEB);
    let run = compile(&["--strict", "--hostname", "node-1", s(dir.path())]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn kind_list_input_is_read_item_by_item() {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<serde_yaml::Value> = cluster()
        .split("---\n")
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect();
    let list = serde_yaml::to_string(&serde_yaml::Value::Mapping(
        [
            ("apiVersion".into(), "v1".into()),
            ("kind".into(), "List".into()),
            ("items".into(), serde_yaml::Value::Sequence(items)),
        ]
        .into_iter()
        .collect(),
    ))
    .unwrap();
    let input = write(dir.path(), "list.yaml", &list);
    let run = compile(&["--strict", "--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(WEB_CHAIN), "{run:?}");
}

#[test]
fn unknown_kind_warns_with_file_line_and_kind_and_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        cluster()
    );
    let input = write(dir.path(), "cluster.yaml", &text);
    let run = compile(&["--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    let warning = run.stderr.lines().find(|l| l.contains("ConfigMap"));
    let line = line_of(&text, "kind: ConfigMap") - 1;
    assert!(
        warning.is_some_and(
            |w| w.starts_with("warning:") && w.contains(&format!("{}:{line}", s(&input)))
        ),
        "want a warning at {}:{line}: {run:?}",
        s(&input)
    );
    assert!(run.stdout.contains(WEB_CHAIN), "{run:?}");
    let strict = compile(&["--strict", "--hostname", "node-1", s(&input)]);
    assert_eq!(strict.code, 1, "{strict:?}");
}

#[test]
fn kube_proxy_configuration_in_the_input_warns_that_config_comes_from_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n",
        cluster()
    );
    let input = write(dir.path(), "cluster.yaml", &text);
    let run = compile(&["--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("KubeProxyConfiguration") && l.contains("--config")),
        "{run:?}"
    );
}

#[test]
fn same_input_twice_gives_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "cluster.yaml", &cluster_with_bad_service());
    for format in ["nft", "json"] {
        let first = compile(&["--format", format, "--hostname", "node-1", s(&input)]);
        let second = compile(&["--format", format, "--hostname", "node-1", s(&input)]);
        assert!(!first.stdout.is_empty(), "{first:?}");
        assert_eq!(first.stdout, second.stdout, "{format}");
        assert_eq!(first.stderr, second.stderr, "{format}");
    }
}

#[test]
fn order_of_inputs_does_not_change_the_ruleset() {
    let dir = tempfile::tempdir().unwrap();
    let node = write(dir.path(), "node.yaml", NODE);
    let web = write(dir.path(), "web.yaml", WEB);
    let ab = compile(&["--hostname", "node-1", s(&node), s(&web)]);
    let ba = compile(&["--hostname", "node-1", s(&web), s(&node)]);
    assert_eq!(ab.code, 0, "{ab:?}");
    assert_eq!(ab.stdout, ba.stdout);
}

#[test]
fn missing_input_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.yaml");
    let run = compile(&["--hostname", "node-1", s(&missing)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains(s(&missing)), "{run:?}");
}

#[test]
fn bad_config_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "kube-proxy.yaml",
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\n",
    );
    let input = write(dir.path(), "cluster.yaml", &cluster());
    let run = compile(&["--config", s(&config), "--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains(&format!("{}:3", s(&config))), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn unknown_flag_exits_2() {
    let run = compile(&["--no-such-flag", "x.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn hostname_override_from_the_config_selects_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "kube-proxy.yaml",
        "kind: KubeProxyConfiguration\nhostnameOverride: node-1\n",
    );
    let input = write(dir.path(), "cluster.yaml", &cluster());
    let run = compile(&["--strict", "--config", s(&config), s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn a_node_missing_from_the_input_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "cluster.yaml", &cluster());
    let run = compile(&["--hostname", "node-9", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("node-9")),
        "{run:?}"
    );
}

#[test]
fn example_cluster_compiles_cleanly_with_the_example_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = root.join("examples/kube-proxy-config.yaml");
    let cluster = root.join("examples/cluster.yaml");
    let run = compile(&["--strict", "--config", s(&config), s(&cluster)]);
    assert_eq!(run.code, 0, "{run:?}");
    for chain in [
        "demo/web/tcp/http",
        "demo/api/tcp/https",
        "demo/dns/udp/dns",
    ] {
        assert!(run.stdout.contains(chain), "no {chain}: {run:?}");
    }
    assert!(run.stdout.contains("2001:db8:18:1::20"), "{run:?}");
    assert!(run.stdout.contains("demo/idle:http"), "{run:?}");
}

#[test]
fn services_format_describes_each_service_with_its_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "cluster.yaml", &cluster());
    let run = compile(&["--format", "services", "--hostname", "node-1", s(&input)]);
    assert_eq!(run.code, 0, "{run:?}");
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let web = &json["services"][0];
    assert_eq!(
        (&web["namespace"], &web["name"]),
        (&"demo".into(), &"web".into())
    );
    let family = &web["ports"][0]["families"][0];
    assert_eq!(family["verdict"], "dnat");
    let endpoints = family["endpoints"].as_array().unwrap();
    assert!(
        endpoints
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("198.18.1.10:")),
        "{family}"
    );
}
