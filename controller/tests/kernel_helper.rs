//! Kernel tests of `Kernel`: transactions applied through the real `nftproxy-nft` helper land
//! in the kernel exactly, refusals change nothing and carry nft's message, cleanup removes
//! only nftproxy's tables, and a killed helper is replaced on the next call.
//!
//! The helper is the `nftproxy-nft` program of this workspace, found in the target directory
//! next to this test's `deps/` directory (`cargo test --workspace` builds it; after changing
//! the helper, `cargo test -p nftproxy` alone does not rebuild it). Each kernel test starts
//! the `Kernel` from a thread inside its own network namespace, so the helper and every
//! restart of it program that namespace only. Kernel tests need root; without it they skip,
//! unless `NFTPROXY_REQUIRE_ROOT_TESTS=1`. The tests of a missing or failing helper need
//! neither root nor libnftables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[allow(dead_code)]
#[path = "../src/kernel/mod.rs"]
mod kernel;

#[allow(dead_code)]
#[path = "../src/netlink.rs"]
mod netlink;

#[path = "../../compiler/tests/support/fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::generated::nft_helper;
use common::netns::{NetNs, kernel_tests_enabled};
use common::process::{proc_state, wait_for_exit};
use kernel::{Kernel, KernelError, tables};
use nftproxy_compiler::compile;
use nftproxy_rules::{Chain, Element, Op, Rule, Ruleset, Stmt, Transaction, Value, Verdict, diff};

/// A `Kernel` whose helper works inside `ns`.
fn kernel_in(ns: &NetNs) -> Kernel {
    let path = nft_helper();
    ns.run_inside(move || Kernel::start(Some(&path)))
        .unwrap_or_else(|e| panic!("the helper does not start: {e}"))
}

/// A fixture compiled with its own configuration, and its snapshot for variations.
fn fixture(
    name: &str,
) -> (
    nftproxy_compiler::ClusterSnapshot,
    nftproxy_compiler::CompileConfig,
) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../compiler/tests/fixtures")
        .join(format!("{name}.yaml"));
    fixtures::load(name, &path)
}

fn every_service_type() -> Ruleset {
    let (snapshot, config) = fixture("every-service-type");
    compile(&snapshot, &config).ruleset
}

/// The namespace's ruleset as `nft list ruleset` prints it (every table, ours or not).
fn nft_listing(ns: &NetNs) -> String {
    ns.exec_ok(&["nft", "list", "ruleset"])
}

/// Our tables as `nft -j list ruleset` shows them: a second opinion next to `Kernel::list`.
fn nft_listed(ns: &NetNs) -> Ruleset {
    Ruleset::from_nft_json(&ns.nft_list_json(), &tables()).unwrap()
}

#[test]
fn a_compiled_fixture_applied_from_empty_lists_back_equal() {
    if !kernel_tests_enabled("a_compiled_fixture_applied_from_empty_lists_back_equal") {
        return;
    }
    let ns = NetNs::new("khfull");
    let kernel = kernel_in(&ns);
    assert_eq!(kernel.list().unwrap(), Ruleset::new(), "no tables yet");
    let r = every_service_type();
    assert!(
        tables()[..2].iter().all(|id| r.tables.contains_key(id)) && r.tables.len() > 2,
        "the fixture is dual-stack, with shards"
    );
    kernel.apply(&diff(&Ruleset::new(), &r).unwrap()).unwrap();
    let listed = kernel.list().unwrap();
    assert_eq!(listed, r, "listed:\n{listed}\ncompiled:\n{r}");
    assert_eq!(nft_listed(&ns), r, "nft itself lists the same");
    assert!(
        diff(&listed, &r).unwrap().is_empty(),
        "full sync is a no-op"
    );
}

#[test]
fn list_returns_the_nftproxy_tables_that_exist_and_nothing_else() {
    if !kernel_tests_enabled("list_returns_the_nftproxy_tables_that_exist_and_nothing_else") {
        return;
    }
    let ns = NetNs::new("khlist");
    ns.nft_load(
        "table ip nftproxy {\n\tchain services {\n\t}\n}\n\
         table inet nftproxy {\n\tchain other {\n\t}\n}\n\
         table ip6 bystander {\n\tchain c {\n\t}\n}\n",
        false,
    )
    .unwrap();
    let kernel = kernel_in(&ns);
    let listed = kernel.list().unwrap();
    assert_eq!(
        listed.tables.keys().collect::<Vec<_>>(),
        [&tables()[0]],
        "only ip nftproxy: no ip6 nftproxy exists, the others are not ours"
    );
    assert_eq!(listed, nft_listed(&ns));
    assert!(listed.tables[&tables()[0]].chains.contains_key("services"));
}

#[test]
fn an_incremental_diff_applies_and_lists_back_equal() {
    if !kernel_tests_enabled("an_incremental_diff_applies_and_lists_back_equal") {
        return;
    }
    let ns = NetNs::new("khincr");
    let kernel = kernel_in(&ns);
    let (mut snapshot, config) = fixture("every-service-type");
    let r0 = compile(&snapshot, &config).ruleset;
    let removed = snapshot.services.remove(0);
    let slice = snapshot
        .endpoint_slices
        .iter_mut()
        .find(|s| s.endpoints.len() > 1)
        .expect("a slice with two endpoints");
    let slice = Arc::make_mut(slice);
    let mut endpoints = std::mem::take(&mut slice.endpoints).into_vec();
    endpoints.pop();
    slice.endpoints = endpoints.into();
    let r1 = compile(&snapshot, &config).ruleset;
    kernel.apply(&diff(&Ruleset::new(), &r0).unwrap()).unwrap();
    let tx = diff(&r0, &r1).unwrap();
    assert!(
        !tx.is_empty(),
        "removing {:?} changed nothing",
        removed.metadata.name
    );
    // The main tables stay; a shard may come or go with the last service port in it.
    let main_table = |id: &nftproxy_rules::TableId| id.name == nftproxy_compiler::TABLE;
    assert!(
        !tx.ops.iter().any(|op| match op {
            Op::DeleteTable(id) => main_table(id),
            Op::AddTable(table) => main_table(&table.id()),
            _ => false,
        }),
        "not incremental:\n{tx}"
    );
    kernel.apply(&tx).unwrap();
    let listed = kernel.list().unwrap();
    assert_eq!(listed, r1, "listed:\n{listed}\ndesired:\n{r1}");
    assert_eq!(nft_listed(&ns), r1);
}

/// `tx` followed by an operation the kernel refuses.
fn refused_variants(r0: &Ruleset, r1: &Ruleset) -> Vec<(&'static str, Transaction)> {
    let ip = tables()[0].clone();
    let chain = r0.tables[&ip].chains.keys().next().unwrap().clone();
    let mut jump = diff(r0, r1).unwrap();
    jump.push(Op::AddRule {
        table: ip.clone(),
        chain,
        rule: Rule::new(vec![Stmt::Verdict(Verdict::Jump("no-such-chain".into()))]),
    });
    let mut missing = diff(r0, r1).unwrap();
    assert!(r0.tables[&ip].sets.contains_key("cluster-ips"));
    missing.push(Op::DeleteElements {
        table: ip,
        set: "cluster-ips".into(),
        elements: vec![Element::key(vec![Value::Ipv4([198, 19, 255, 254].into())])],
    });
    vec![
        ("jump to a missing chain", jump),
        ("delete a missing element", missing),
    ]
}

#[test]
fn a_refused_transaction_leaves_the_kernel_exactly_as_before_with_nfts_message() {
    if !kernel_tests_enabled(
        "a_refused_transaction_leaves_the_kernel_exactly_as_before_with_nfts_message",
    ) {
        return;
    }
    let ns = NetNs::new("khrefuse");
    let kernel = kernel_in(&ns);
    let r0 = every_service_type();
    let mut r1 = r0.clone();
    r1.tables
        .get_mut(&tables()[0])
        .unwrap()
        .insert_chain(Chain::regular("new-chain"));
    kernel.apply(&diff(&Ruleset::new(), &r0).unwrap()).unwrap();
    let before = nft_listing(&ns);
    for (what, tx) in refused_variants(&r0, &r1) {
        match kernel.apply(&tx) {
            Err(KernelError::Refused { message }) => assert!(
                message.contains("Error:") && message.contains("No such file or directory"),
                "{what}: not nft's message: {message}"
            ),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(nft_listing(&ns), before, "{what}: the kernel changed");
        assert_eq!(kernel.list().unwrap(), r0, "{what}");
    }
    kernel.apply(&diff(&r0, &r1).unwrap()).unwrap();
    assert_eq!(
        kernel.list().unwrap(),
        r1,
        "the helper still works after refusals"
    );
}

#[test]
fn cleanup_deletes_only_nftproxys_tables_and_is_quiet_when_they_are_gone() {
    if !kernel_tests_enabled(
        "cleanup_deletes_only_nftproxys_tables_and_is_quiet_when_they_are_gone",
    ) {
        return;
    }
    let ns = NetNs::new("khclean");
    let foreign = "table inet bystander {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n\
                   table ip nftproxy-other {\n}\n\
                   table inet nftproxy {\n}\n";
    ns.nft_load(foreign, false).unwrap();
    let only_foreign = nft_listing(&ns);
    let kernel = kernel_in(&ns);
    kernel
        .apply(&diff(&Ruleset::new(), &every_service_type()).unwrap())
        .unwrap();
    assert_ne!(nft_listing(&ns), only_foreign);
    kernel.delete_tables().unwrap();
    assert_eq!(
        nft_listing(&ns),
        only_foreign,
        "a foreign table was touched"
    );
    assert_eq!(kernel.list().unwrap(), Ruleset::new());
    kernel.delete_tables().unwrap();
    assert_eq!(nft_listing(&ns), only_foreign);
}

fn sigkill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_exit(pid, Duration::from_secs(5));
}

#[test]
fn a_helper_killed_with_sigkill_is_restarted_on_the_next_call() {
    if !kernel_tests_enabled("a_helper_killed_with_sigkill_is_restarted_on_the_next_call") {
        return;
    }
    let ns = NetNs::new("khkill");
    let kernel = kernel_in(&ns);
    let r = every_service_type();
    let first = kernel.helper_pid().unwrap();
    sigkill(first);
    kernel.apply(&diff(&Ruleset::new(), &r).unwrap()).unwrap();
    let second = kernel.helper_pid().unwrap();
    assert_ne!(first, second, "no new helper");
    assert_eq!(
        nft_listed(&ns),
        r,
        "the restarted helper programs the same namespace"
    );
    sigkill(second);
    assert_eq!(kernel.list().unwrap(), r);
    assert_ne!(kernel.helper_pid().unwrap(), second);
    assert_ne!(
        proc_state(first).as_deref(),
        Some("Z"),
        "the dead helper was not reaped"
    );
}

#[test]
fn a_helper_that_cannot_be_restarted_fails_that_call_and_the_next_call_tries_again() {
    if !kernel_tests_enabled(
        "a_helper_that_cannot_be_restarted_fails_that_call_and_the_next_call_tries_again",
    ) {
        return;
    }
    let ns = NetNs::new("khgone");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(kernel::HELPER);
    install_executable(&nft_helper(), &copy);
    let path = copy.clone();
    let kernel = ns.run_inside(move || Kernel::start(Some(&path))).unwrap();
    std::fs::rename(&copy, dir.path().join("moved")).unwrap();
    sigkill(kernel.helper_pid().unwrap());
    match kernel.ping() {
        Err(KernelError::StartHelper { path, .. }) => assert_eq!(path, copy),
        other => panic!("restart without a helper program: {other:?}"),
    }
    assert_eq!(kernel.helper_pid(), None);
    std::fs::rename(dir.path().join("moved"), &copy).unwrap();
    kernel.ping().unwrap();
    assert_eq!(kernel.list().unwrap(), Ruleset::new());
}

#[test]
fn a_missing_helper_is_a_start_error_naming_it() {
    let missing = Path::new("/nonexistent/nftproxy-nft");
    match Kernel::start(Some(missing)) {
        Err(e @ KernelError::StartHelper { .. }) => {
            assert!(e.to_string().contains("/nonexistent/nftproxy-nft"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_helper_that_dies_reports_its_exit_status_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-helper");
    install_script(
        &fake,
        "#!/bin/sh\necho 'nftproxy-nft: cannot open a netlink socket' >&2\nexit 3\n",
    );
    match Kernel::start(Some(&fake)) {
        Err(e @ KernelError::HelperDied { .. }) => {
            let KernelError::HelperDied { status, stderr } = &e else {
                unreachable!()
            };
            assert!(status.contains('3'), "{status}");
            assert!(stderr.contains("cannot open a netlink socket"), "{stderr}");
            assert!(
                e.to_string().contains("cannot open a netlink socket"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_helper_that_answers_garbage_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("garbage-helper");
    // Reads the ping, answers with an unknown status byte, then waits for its stdin to end.
    install_script(
        &fake,
        "#!/bin/sh\nhead -c 5 >/dev/null\nprintf 'X\\000\\000\\000\\000'\ncat >/dev/null\n",
    );
    match Kernel::start(Some(&fake)) {
        Err(KernelError::Protocol { source }) => {
            assert!(
                source.to_string() == "unknown response status byte 0x58",
                "{source}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Copies `from` to an executable `to` through `install(1)`. Writing an executable from this
/// process would race with other test threads starting processes: a child forked while the
/// file is open for writing holds that descriptor until it execs, and running the file in
/// that window fails with ETXTBSY ("Text file busy").
fn install_executable(from: &Path, to: &Path) {
    let status = std::process::Command::new("install")
        .args(["-m", "0755"])
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "install {} {}",
        from.display(),
        to.display()
    );
}

/// An executable script at `path` with `text`, written race-free (see [`install_executable`]).
fn install_script(path: &Path, text: &str) {
    let source = path.with_extension("txt");
    std::fs::write(&source, text).unwrap();
    install_executable(&source, path);
}
