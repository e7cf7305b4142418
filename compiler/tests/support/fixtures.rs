//! Fixture clusters: finding them and decoding one into a snapshot and its configuration.
//!
//! Shared by the compiler's snapshot tests and the controller's kernel tests (included
//! with `#[path]`), so both read a fixture the same way: a fixture may hold a
//! `KubeProxyConfiguration` document; the node is `node-1` unless its `hostnameOverride`
//! says otherwise.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use nftproxy_compiler::kube_proxy_config::{self, KubeProxyConfiguration};
use nftproxy_compiler::manifest;
use nftproxy_compiler::{ClusterSnapshot, CompileConfig};

/// The node fixtures are compiled for when their configuration names none.
pub const HOSTNAME: &str = "node-1";

/// Every fixture as (name, path), sorted by name.
pub fn fixtures() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compiler/tests/fixtures");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("file name");
            (name.to_owned(), path)
        })
        .collect()
}

/// Reads and decodes a fixture into a snapshot and the configuration it asks for.
pub fn load(name: &str, path: &Path) -> (ClusterSnapshot, CompileConfig) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut snapshot = ClusterSnapshot::default();
    let mut config = None;
    for decoded in manifest::decode(&text).unwrap_or_else(|e| panic!("{name}: {e}")) {
        let Some(other) = snapshot.push(decoded.object) else {
            continue;
        };
        assert_eq!(
            other.kind,
            kube_proxy_config::KIND,
            "{name}:{}: unexpected kind",
            decoded.line
        );
        let parsed: KubeProxyConfiguration =
            serde_json::from_value(other.value).unwrap_or_else(|e| panic!("{name}: {e}"));
        let hostname = kube_proxy_config::resolve_hostname(None, &parsed.hostname_override, || {
            Ok::<_, String>(HOSTNAME.to_owned())
        })
        .expect("hostname");
        config = Some(
            parsed
                .compile_config(&hostname)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    let config = config.unwrap_or_else(|| CompileConfig {
        hostname: HOSTNAME.to_owned(),
        ..CompileConfig::default()
    });
    (snapshot, config)
}
