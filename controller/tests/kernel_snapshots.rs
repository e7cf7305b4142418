//! Kernel tests for the compiled fixtures: every fixture cluster under
//! `compiler/tests/fixtures/` compiles to a ruleset that the kernel accepts as a script and
//! as JSON, and that lists back (parsed) exactly as compiled, so a full sync right after a
//! load is a no-op.
//!
//! Fixtures are read the way the compiler's snapshot tests read them: a fixture may hold a
//! `KubeProxyConfiguration` document; the node is `node-1` unless it says otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "../../compiler/tests/support/fixtures.rs"]
mod fixtures;

use std::path::Path;

use common::netns::{NetNs, kernel_tests_enabled};
use fixtures::{fixtures, load};
use nftproxy_compiler::compile;
use nftproxy_rules::{Family, Ruleset, TableId, diff, validate_ruleset};

/// Compiles a fixture with the configuration it carries (or the defaults for `node-1`).
fn compiled(name: &str, path: &Path) -> Ruleset {
    let (snapshot, config) = load(name, path);
    compile(&snapshot, &config).ruleset
}

fn our_tables(r: &Ruleset) -> Vec<TableId> {
    let mut ids: Vec<TableId> = r.tables.keys().cloned().collect();
    for family in [Family::Ip, Family::Ip6] {
        let id = TableId::new(family, "nftproxy");
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Loads `input` into a fresh namespace and returns what the kernel lists, parsed.
fn load_and_list(name: &str, r: &Ruleset, input: &str, json: bool) -> Ruleset {
    let ns = NetNs::new("h1snap");
    ns.nft_load(input, json)
        .unwrap_or_else(|e| panic!("{name}: kernel refused the {}: {e}", form(json)));
    Ruleset::from_nft_json(&ns.nft_list_json(), &our_tables(r))
        .unwrap_or_else(|e| panic!("{name}: listing does not parse: {e}"))
}

fn form(json: bool) -> &'static str {
    if json { "JSON" } else { "script" }
}

fn check_fixture(name: &str, path: &Path, json: bool) -> Result<(), String> {
    let r = compiled(name, path);
    validate_ruleset(&r).map_err(|e| format!("{name}: invalid references: {e}"))?;
    let input = if json {
        r.to_json().to_string()
    } else {
        r.to_string()
    };
    let check = NetNs::new("h1chk");
    check
        .nft_check(&input, json)
        .map_err(|e| format!("{name}: nft -c refused the {}: {e}", form(json)))?;
    drop(check);
    let back = load_and_list(name, &r, &input, json);
    if back != r {
        return Err(format!(
            "{name}: {} lists back differently\nlisted:\n{back}\ncompiled:\n{r}",
            form(json)
        ));
    }
    let resync = diff(&back, &r).map_err(|e| e.to_string())?;
    if !resync.is_empty() {
        return Err(format!(
            "{name}: full sync after load is not empty:\n{resync}"
        ));
    }
    Ok(())
}

fn check_all(json: bool) {
    let fixtures = fixtures();
    assert!(!fixtures.is_empty(), "no fixtures found");
    let with_chains = fixtures
        .iter()
        .filter(|(name, path)| {
            compiled(name, path)
                .tables
                .values()
                .any(|t| !t.chains.is_empty())
        })
        .count();
    assert!(
        with_chains > 0,
        "no fixture compiles to any chain: nothing was tested"
    );
    let failures: Vec<String> = fixtures
        .iter()
        .filter_map(|(name, path)| check_fixture(name, path, json).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_fixture_loads_as_script_and_lists_back_as_compiled() {
    if !kernel_tests_enabled("every_fixture_loads_as_script_and_lists_back_as_compiled") {
        return;
    }
    check_all(false);
}

#[test]
fn every_fixture_loads_as_json_and_lists_back_as_compiled() {
    if !kernel_tests_enabled("every_fixture_loads_as_json_and_lists_back_as_compiled") {
        return;
    }
    check_all(true);
}
