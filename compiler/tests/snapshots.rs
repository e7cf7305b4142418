//! Snapshot tests: every fixture cluster under `tests/fixtures/` compiles to the nft script
//! stored in `snapshots/<fixture>.snap` at the repository root, followed by its diagnostics.
//!
//! Snapshots are reviewed by humans (`cargo insta review`); CI runs with `INSTA_UPDATE=no`.
//! A fixture may hold a `KubeProxyConfiguration` document; the node is `node-1` unless its
//! `hostnameOverride` says otherwise.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "support/fixtures.rs"]
mod fixtures;

use std::fmt::Write as _;

use fixtures::{fixtures, load};
use nftproxy_compiler::{Compiled, compile};

/// The nft script, then the diagnostics one per line, then (when there are any) the
/// health-check node ports the compiler recorded.
fn render(compiled: &Compiled) -> String {
    let mut out = compiled.ruleset.to_string();
    out.push_str("\n# diagnostics:\n");
    if compiled.diagnostics.is_empty() {
        out.push_str("# (none)\n");
    }
    for diagnostic in &compiled.diagnostics {
        writeln!(out, "# {diagnostic}").expect("write to string");
    }
    if !compiled.health_checks.is_empty() {
        out.push_str("\n# health-check node ports:\n");
    }
    for check in &compiled.health_checks {
        writeln!(
            out,
            "# {}/{}: port {}, {} local ready endpoint(s)",
            check.namespace, check.name, check.node_port, check.local_endpoints
        )
        .expect("write to string");
    }
    out
}

#[test]
fn there_are_enough_fixtures() {
    assert!(fixtures().len() >= 12, "{:?}", fixtures());
}

#[test]
fn fixtures_compile_to_their_snapshots() {
    for (name, path) in fixtures() {
        let (snapshot, config) = load(&name, &path);
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
    for (name, path) in fixtures() {
        let (snapshot, config) = load(&name, &path);
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
