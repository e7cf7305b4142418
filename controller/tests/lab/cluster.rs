//! Compiling a cluster with the real `nftproxy compile` binary, as node-1 would get it.
//!
//! Tests write their Services and EndpointSlices inline; [`BASE`] adds the two nodes and
//! the ServiceCIDR of the lab's address plan. Manifests go to a temporary directory
//! removed on drop, and the CLI is run as a user would run it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// node-1, node-2 and the cluster's ServiceCIDR, matching the lab's addresses.
pub const BASE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-1
spec:
  podCIDR: 198.18.1.0/24
  podCIDRs: [198.18.1.0/24, "2001:db8:18:1::/64"]
status:
  addresses:
  - {type: InternalIP, address: 198.51.100.1}
  - {type: InternalIP, address: "2001:db8:51::1"}
  - {type: Hostname, address: node-1}
---
apiVersion: v1
kind: Node
metadata:
  name: node-2
spec:
  podCIDR: 198.18.2.0/24
  podCIDRs: [198.18.2.0/24, "2001:db8:18:2::/64"]
status:
  addresses:
  - {type: InternalIP, address: 198.51.100.2}
  - {type: InternalIP, address: "2001:db8:51::2"}
  - {type: Hostname, address: node-2}
---
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata:
  name: kubernetes
spec:
  cidrs: [198.19.0.0/16, "2001:db8:19::/108"]
"#;

/// A KubeProxyConfiguration (mode nftables) whose remaining fields are `body`.
pub fn kube_proxy_config(body: &str) -> String {
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n{body}"
    )
}

/// The configuration most lab tests use: pods are told apart by the IPv4 pod range.
pub fn cluster_cidr_config() -> String {
    kube_proxy_config("detectLocalMode: ClusterCIDR\nclusterCIDR: 198.18.0.0/16\n")
}

/// The output format asked of `nftproxy compile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Nft,
    Json,
}

/// What `nftproxy compile` printed.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The ruleset (nft script or JSON).
    pub output: String,
    /// Diagnostics, one per line.
    pub stderr: String,
    pub format: Format,
}

/// Runs `nftproxy compile --hostname node-1 [--config FILE] [--format json] FILE` on
/// [`BASE`] plus `manifests`; panics with stderr unless it exits 0.
pub fn compile(manifests: &str, config: Option<&str>, format: Format) -> Compiled {
    compile_with_node_ips(manifests, config, format, &[])
}

/// Like [`compile`], with `--node-ip ADDR` for each of `node_ips` (addresses of node-1
/// that its Node object does not list).
pub fn compile_with_node_ips(
    manifests: &str,
    config: Option<&str>,
    format: Format,
    node_ips: &[&str],
) -> Compiled {
    compile_on(BASE, manifests, config, format, node_ips)
}

/// Like [`compile_with_node_ips`], with `base` (the Node and ServiceCIDR objects) in place
/// of [`BASE`].
pub fn compile_on(
    base: &str,
    manifests: &str,
    config: Option<&str>,
    format: Format,
    node_ips: &[&str],
) -> Compiled {
    let dir = TempDir::new();
    let cluster = dir.write("cluster.yaml", &format!("{base}---\n{manifests}"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nftproxy"));
    cmd.args(["compile", "--hostname", "node-1"]);
    for ip in node_ips {
        cmd.args(["--node-ip", ip]);
    }
    if let Some(config) = config {
        cmd.arg("--config").arg(dir.write("config.yaml", config));
    }
    if format == Format::Json {
        cmd.args(["--format", "json"]);
    }
    cmd.arg(&cluster);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run nftproxy: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "nftproxy compile failed ({}):\n{stderr}",
        output.status
    );
    Compiled {
        output: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        format,
    }
}

/// A directory under the system's temporary directory, removed with its content on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("nftproxy-lab-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, content)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `web`: a NodePort (TCP and UDP 30080) whose one endpoint is pod `b` on node-2.
pub const NODE_PORT_WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 198.19.0.10
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: echo, protocol: UDP, port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v4, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}, {name: echo, protocol: UDP, port: 8080}]
endpoints:
- {addresses: [198.18.2.10], conditions: {ready: true}, nodeName: node-2}
"#;
