//! The libnftables FFI under valgrind: the `nftproxy-nft` helper, run by memcheck inside a
//! throwaway network namespace, serves every kind of request (script and JSON batches,
//! listings of several megabytes through the output buffer, refusals through the error
//! buffer, input with a NUL byte) and exits with no invalid read or write, no use of
//! uninitialised memory, no mismatched free and no definitely lost block. The only
//! suppressions (`valgrind.supp`) are for padding in the netlink messages libnftables
//! builds and sends in its own buffers.
//!
//! Needs root and valgrind (`scripts/setup.sh` installs it); skips without them unless
//! `NFTPROXY_REQUIRE_ROOT_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::io::Read;
use std::process::{Child, Command};

use common::netns::{NetNs, kernel_tests_enabled};
use common::{HELPER, ask, run, spawn_piped};
use nftproxy_wire::{Format, Request, Response};

/// memcheck's exit status when it found an error (any status but the helper's own).
const VALGRIND_ERROR: i32 = 99;

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The helper under memcheck, inside `ns`, its log in `log`.
fn start_under_valgrind(ns: &NetNs, log: &std::path::Path) -> Child {
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=memcheck")
        .arg(format!("--error-exitcode={VALGRIND_ERROR}"))
        .arg("--leak-check=full")
        .arg("--errors-for-leak-kinds=definite")
        .arg("--show-leak-kinds=definite")
        .arg(format!("--log-file={}", log.display()))
        .arg(concat!(
            "--suppressions=",
            env!("CARGO_MANIFEST_DIR"),
            "/tests/valgrind.supp"
        ))
        .arg(HELPER);
    spawn_piped(ns, valgrind)
}

/// A table with a map of `n` elements and a chain that uses it, as an nft script.
fn script(n: usize) -> String {
    let mut text = String::from(
        "table ip nftproxy {\n map m { type ipv4_addr . inet_service : verdict\n elements = { ",
    );
    for i in 0..n {
        let sep = if i == 0 { "" } else { ", " };
        write!(
            text,
            "{sep}198.19.{}.{} . {} : drop",
            i / 250,
            i % 250 + 1,
            80 + i % 100
        )
        .unwrap();
    }
    text.push_str(" }\n }\n chain c {\n  ip daddr . tcp dport vmap @m comment \"x\"\n }\n}\n");
    text
}

#[test]
fn the_helper_under_valgrind_serves_every_kind_of_request_without_a_memory_error() {
    if !kernel_tests_enabled(
        "the_helper_under_valgrind_serves_every_kind_of_request_without_a_memory_error",
    ) {
        return;
    }
    if !valgrind_available() {
        assert!(
            std::env::var_os("NFTPROXY_REQUIRE_ROOT_TESTS").is_none(),
            "valgrind is missing: run scripts/setup.sh"
        );
        eprintln!("skipped: valgrind is not installed (scripts/setup.sh installs it)");
        return;
    }
    let ns = NetNs::new("nftvalgrind");
    let log = std::env::temp_dir().join(format!("nftproxy-memcheck-{}.log", std::process::id()));
    let mut helper = start_under_valgrind(&ns, &log);

    assert_eq!(
        ask(&mut helper, &Request::Ping),
        Response::Ok(String::new())
    );
    // A script batch of 20k elements, then its listing (megabytes through the output
    // buffer), in both formats.
    let elements = 20_000;
    assert_eq!(
        ask(&mut helper, &run(Format::Script, &script(elements))),
        Response::Ok(String::new())
    );
    let Response::Ok(listing) = ask(&mut helper, &run(Format::Script, "list ruleset")) else {
        panic!("the listing failed");
    };
    assert_eq!(
        listing.matches(" : drop").count(),
        elements,
        "every element listed"
    );
    let Response::Ok(json) = ask(&mut helper, &run(Format::Json, "list ruleset")) else {
        panic!("the JSON listing failed");
    };
    assert!(json.len() > 1_000_000, "{} bytes", json.len());
    // A JSON batch.
    let add =
        r#"{"nftables": [{"add": {"chain": {"family": "ip", "table": "nftproxy", "name": "d"}}}]}"#;
    assert_eq!(
        ask(&mut helper, &run(Format::Json, add)),
        Response::Ok(String::new())
    );
    // Refusals: the error buffer, in both formats.
    let Response::Err(message) = ask(
        &mut helper,
        &run(Format::Script, "delete chain ip nftproxy nope"),
    ) else {
        panic!("a missing chain is refused");
    };
    assert!(message.contains("nope"), "{message}");
    let refused =
        r#"{"nftables": [{"delete": {"chain": {"family": "ip", "table": "nope", "name": "c"}}}]}"#;
    assert!(matches!(
        ask(&mut helper, &run(Format::Json, refused)),
        Response::Err(_)
    ));
    // Not even parsed: a NUL byte inside the commands.
    assert!(matches!(
        ask(
            &mut helper,
            &run(Format::Script, "list ruleset\0flush ruleset")
        ),
        Response::Err(_)
    ));
    assert_eq!(
        ask(
            &mut helper,
            &run(Format::Script, "delete table ip nftproxy")
        ),
        Response::Ok(String::new())
    );

    drop(helper.stdin.take());
    let status = helper.wait().unwrap();
    let mut stderr = String::new();
    helper
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let report = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        report.contains("ERROR SUMMARY: 0 errors"),
        "memcheck found errors:\n{report}\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "memcheck report:\n{report}\n{stderr}"
    );
    for bad in [
        "Invalid read",
        "Invalid write",
        "uninitialised",
        "Mismatched free",
        "definitely lost in",
    ] {
        assert!(!report.contains(bad), "{bad}:\n{report}");
    }
    println!(
        "{}",
        report
            .lines()
            .filter(|l| [
                "ERROR SUMMARY",
                "in use at exit",
                "definitely lost",
                "total heap"
            ]
            .iter()
            .any(|k| l.contains(k)))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
