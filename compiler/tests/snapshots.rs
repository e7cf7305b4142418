//! Snapshot tests: every fixture cluster under `tests/fixtures/` compiles to the nft script
//! stored in `snapshots/<fixture>.snap` at the repository root, followed by its diagnostics.
//!
//! Snapshots are reviewed by humans (`cargo insta review`); CI runs with `INSTA_UPDATE=no`.
//! A fixture may hold a `KubeProxyConfiguration` document; the node is `node-1` unless its
//! `hostnameOverride` says otherwise.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use nftproxy_compiler::kube_proxy_config::{self, KubeProxyConfiguration};
use nftproxy_compiler::manifest;
use nftproxy_compiler::{ClusterSnapshot, CompileConfig, Compiled, compile};

/// The node fixtures are compiled for when their configuration names none.
const HOSTNAME: &str = "node-1";

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
}

/// Decodes a fixture into a snapshot and the configuration it asks for.
fn load(text: &str, name: &str) -> (ClusterSnapshot, CompileConfig) {
    let mut snapshot = ClusterSnapshot::default();
    let mut config = None;
    for decoded in manifest::decode(text).unwrap_or_else(|e| panic!("{name}: {e}")) {
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

/// The nft script, then the diagnostics one per line.
fn render(compiled: &Compiled) -> String {
    let mut out = compiled.ruleset.to_string();
    out.push_str("\n# diagnostics:\n");
    if compiled.diagnostics.is_empty() {
        out.push_str("# (none)\n");
    }
    for diagnostic in &compiled.diagnostics {
        writeln!(out, "# {diagnostic}").expect("write to string");
    }
    out
}

#[test]
fn there_are_enough_fixtures() {
    assert!(fixtures().len() >= 12, "{:?}", fixtures());
}

#[test]
fn fixtures_compile_to_their_snapshots() {
    for path in fixtures() {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_owned();
        let text = fs::read_to_string(&path).expect("fixture");
        let (snapshot, config) = load(&text, &name);
        let rendered = render(&compile(&snapshot, &config));
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("compiler/tests/fixtures/{name}.yaml"),
        }, {
            insta::assert_snapshot!(name, rendered);
        });
    }
}

#[test]
fn fixtures_compile_the_same_whatever_the_object_order() {
    for path in fixtures() {
        let name = path.display().to_string();
        let text = fs::read_to_string(&path).expect("fixture");
        let (snapshot, config) = load(&text, &name);
        let mut reversed = snapshot.clone();
        reversed.services.reverse();
        reversed.endpoint_slices.reverse();
        reversed.endpoints.reverse();
        reversed.nodes.reverse();
        reversed.service_cidrs.reverse();
        assert_eq!(
            compile(&reversed, &config),
            compile(&snapshot, &config),
            "{name}"
        );
    }
}
