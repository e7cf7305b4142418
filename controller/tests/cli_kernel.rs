//! `nftproxy compile` output against the real kernel: both formats load with `nft -f` /
//! `nft -j -f` into a fresh network namespace and produce the same ruleset.
//!
//! Needs root (skips with a message otherwise, fails when NFTPROXY_REQUIRE_ROOT_TESTS=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::netns::{NetNs, kernel_tests_enabled};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Compiles the example cluster in `format`; panics unless it succeeds cleanly.
fn compile_example(format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nftproxy"))
        .args(["compile", "--strict", "--format", format, "--config"])
        .arg(example("kube-proxy-config.yaml"))
        .arg(example("cluster.yaml"))
        .output()
        .expect("nftproxy runs");
    assert!(
        out.status.success(),
        "compile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 ruleset")
}

/// The ruleset the namespace's kernel holds, without handles (they differ between loads).
fn listed(ns: &NetNs) -> String {
    ns.exec_ok(&["nft", "list", "ruleset"])
}

#[test]
fn example_script_and_json_load_into_an_empty_namespace_and_give_the_same_ruleset() {
    if !kernel_tests_enabled(
        "example_script_and_json_load_into_an_empty_namespace_and_give_the_same_ruleset",
    ) {
        return;
    }
    let script = compile_example("nft");
    let json = compile_example("json");

    let from_script = NetNs::new("cli-nft");
    from_script
        .nft_load(&script, false)
        .unwrap_or_else(|e| panic!("nft -f refused the script: {e}\n{script}"));
    let from_json = NetNs::new("cli-json");
    from_json
        .nft_load(&json, true)
        .unwrap_or_else(|e| panic!("nft -j -f refused the JSON: {e}"));

    let listed_script = listed(&from_script);
    assert!(
        listed_script.contains("table ip nftproxy"),
        "{listed_script}"
    );
    assert!(
        listed_script.contains("table ip6 nftproxy"),
        "{listed_script}"
    );
    assert!(
        listed_script.contains("demo/web/tcp/http"),
        "{listed_script}"
    );
    assert_eq!(listed_script, listed(&from_json));
}
