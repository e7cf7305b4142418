//! The shipped manifests in `deploy/` against the binary they start.
//!
//! `scripts/validate-manifests.sh` checks them against the Kubernetes schemas, but the
//! KubeProxyConfiguration inside the ConfigMap is not a Kubernetes object and no schema covers
//! it. So here: it must compile the example cluster with the real `nftproxy compile`; it may
//! name only fields nftproxy reads (a typo would otherwise be ignored silently, as kube-proxy's
//! decoder ignores unknown fields); and the DaemonSet must hand it to `nftproxy run` with flags
//! the binary accepts, probing the port it names. And least privilege: the ClusterRole only
//! reads the service graph and creates Events (`run_apiserver_events.rs` checks it against
//! what a run really asks for); the container is not privileged and has NET_ADMIN only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

mod common;

use common::rbac;

/// The configuration's key in the ConfigMap.
const CONFIG_KEY: &str = "config.yaml";

/// Every KubeProxyConfiguration field nftproxy decodes (`compiler/src/kube_proxy_config.rs`),
/// as dotted paths.
const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "mode",
    "clusterCIDR",
    "detectLocalMode",
    "detectLocal",
    "detectLocal.bridgeInterface",
    "detectLocal.interfaceNamePrefix",
    "nodePortAddresses",
    "hostnameOverride",
    "healthzBindAddress",
    "metricsBindAddress",
    "nftables",
    "nftables.masqueradeAll",
    "nftables.masqueradeBit",
    "nftables.syncPeriod",
    "nftables.minSyncPeriod",
    "conntrack",
    "conntrack.maxPerCore",
    "conntrack.min",
    "conntrack.tcpEstablishedTimeout",
    "conntrack.tcpCloseWaitTimeout",
    "conntrack.udpTimeout",
    "conntrack.udpStreamTimeout",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifest(name: &str) -> Value {
    let path = repo().join("deploy").join(name);
    let text = std::fs::read_to_string(&path).expect("the manifest is readable");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn configmap() -> Value {
    manifest("20-configmap.yaml")
}

fn daemonset() -> Value {
    manifest("30-daemonset.yaml")
}

/// The KubeProxyConfiguration text the ConfigMap holds.
fn config_text() -> String {
    configmap()["data"][CONFIG_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("deploy/20-configmap.yaml has no data.{CONFIG_KEY}"))
        .to_owned()
}

fn nftproxy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nftproxy"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// The dotted paths of every mapping key in `value`, below `prefix`.
fn field_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    let Value::Mapping(map) = value else { return };
    for (key, child) in map {
        let key = key.as_str().expect("keys are strings");
        let path = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        field_paths(child, &path, out);
        out.push(path);
    }
}

#[test]
fn the_configmaps_configuration_compiles_the_example_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(CONFIG_KEY);
    std::fs::write(&config, config_text()).unwrap();
    let out = nftproxy()
        .arg("compile")
        .arg("--config")
        .arg(&config)
        .args(["--hostname", "node-1"])
        .arg(repo().join("examples/cluster.yaml"))
        .output()
        .expect("nftproxy runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deploy/20-configmap.yaml data.{CONFIG_KEY} is refused: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("table ip nftproxy"), "{stdout}");
}

#[test]
fn the_configmaps_configuration_names_only_fields_nftproxy_reads() {
    let config: Value = serde_yaml::from_str(&config_text()).unwrap();
    let mut paths = Vec::new();
    field_paths(&config, "", &mut paths);
    let unknown: Vec<&String> = paths
        .iter()
        .filter(|p| !KNOWN_FIELDS.contains(&p.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "deploy/20-configmap.yaml data.{CONFIG_KEY}: nftproxy does not read {unknown:?} \
         (a typo? docs/configuration.md lists the fields)"
    );
    assert_eq!(config["mode"].as_str(), Some("nftables"));
}

#[test]
fn the_daemonset_passes_the_configmaps_file_and_the_node_name_to_nftproxy_run() {
    let ds = daemonset();
    let pod = &ds["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let command: Vec<&str> = container["command"]
        .as_sequence()
        .expect("the container has a command")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(command[..2], ["nftproxy", "run"]);
    let flag = |name: &str| {
        let at = command.iter().position(|a| *a == name);
        at.and_then(|i| command.get(i + 1).copied())
            .unwrap_or_else(|| panic!("the command has no {name} VALUE: {command:?}"))
    };

    // --config is the ConfigMap's key, where the ConfigMap's volume is mounted.
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == configmap()["metadata"]["name"])
        .expect("a volume holds the ConfigMap");
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap's volume is mounted");
    let mount_path = mount["mountPath"].as_str().unwrap();
    assert_eq!(flag("--config"), format!("{mount_path}/{CONFIG_KEY}"));

    // --hostname is the pod's node, from the downward API.
    assert_eq!(flag("--hostname"), "$(NODE_NAME)");
    let node_name = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME is set");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("spec.nodeName")
    );

    // The binary accepts these flags (clap parses them before it prints the help).
    let args: Vec<&str> = command[1..]
        .iter()
        .map(|a| if *a == "$(NODE_NAME)" { "node-1" } else { a })
        .collect();
    let out = nftproxy().args(&args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "nftproxy refuses the DaemonSet's command {command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_daemonsets_probes_use_the_configured_healthz_port() {
    let config: Value = serde_yaml::from_str(&config_text()).unwrap();
    let healthz = config["healthzBindAddress"].as_str().unwrap();
    let port: u64 = healthz.rsplit_once(':').unwrap().1.parse().unwrap();
    let container = &daemonset()["spec"]["template"]["spec"]["containers"][0];
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["port"].as_u64(), Some(port), "{probe} port");
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
    }
}

#[test]
fn the_cluster_role_only_reads_the_service_graph_and_creates_events() {
    const READS: [&str; 3] = ["get", "list", "watch"];
    const RESOURCES: [&str; 5] = [
        "services",
        "endpointslices",
        "servicecidrs",
        "nodes",
        "events",
    ];
    let rules = rbac::cluster_role_rules();
    assert!(!rules.is_empty());
    for rule in &rules {
        let everything = [&rule.groups, &rule.resources, &rule.verbs];
        assert!(
            everything
                .iter()
                .all(|list| !list.iter().any(|x| x.contains('*'))),
            "no wildcards: {rule:?}"
        );
        for resource in &rule.resources {
            assert!(
                RESOURCES.contains(&resource.as_str()),
                "{resource}: {rule:?}"
            );
            for verb in &rule.verbs {
                let event_creation =
                    resource == "events" && verb == "create" && rule.groups == ["events.k8s.io"];
                assert!(
                    READS.contains(&verb.as_str()) || event_creation,
                    "{verb} on {resource} is more than reading: {rule:?}"
                );
            }
        }
    }
    // Reads nothing secret, writes no object of the service graph.
    for (verb, group, resource) in [
        ("get", "", "secrets"),
        ("list", "", "pods"),
        ("update", "", "services"),
        ("patch", "", "nodes"),
        ("create", "", "events"),
        ("update", "events.k8s.io", "events"),
    ] {
        assert!(
            !rbac::allowed(&rules, verb, group, resource),
            "{verb} {group}/{resource}"
        );
    }
    // Bound to nftproxy's own service account only, which is the one the DaemonSet uses.
    let binding = rbac::documents()
        .into_iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .expect("a ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "nftproxy");
    let subjects = binding["subjects"].as_sequence().unwrap();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(
        subjects[0]["namespace"],
        daemonset()["metadata"]["namespace"]
    );
    assert_eq!(
        subjects[0]["name"],
        daemonset()["spec"]["template"]["spec"]["serviceAccountName"]
    );
}

#[test]
fn the_daemonset_is_not_privileged_and_adds_only_net_admin() {
    let ds = daemonset();
    let pod = &ds["spec"]["template"]["spec"];
    for field in ["hostPID", "hostIPC"] {
        assert!(pod[field].is_null() || pod[field] == false, "{field}");
    }
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod[k].as_sequence())
        .flatten()
        .collect();
    assert!(!containers.is_empty());
    for container in containers {
        let name = &container["name"];
        let sc = &container["securityContext"];
        assert_eq!(sc["privileged"], false, "{name:?}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name:?}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name:?}");
        let list = |k: &str| -> Vec<&str> {
            sc["capabilities"][k]
                .as_sequence()
                .map(|s| s.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        assert_eq!(list("drop"), ["ALL"], "{name:?}");
        assert_eq!(list("add"), ["NET_ADMIN"], "{name:?}");
        // Every host path is mounted read-only.
        let host_paths: Vec<&Value> = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|v| !v["hostPath"].is_null())
            .collect();
        for volume in host_paths {
            let mount = container["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|m| m["name"] == volume["name"]);
            if let Some(mount) = mount {
                assert_eq!(mount["readOnly"], true, "{name:?}: {mount:?}");
            }
        }
    }
}
