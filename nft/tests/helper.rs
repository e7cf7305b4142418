//! Kernel tests of the `nftproxy-nft` program: frames in on stdin, frames out on stdout,
//! in order, through one context; exit 0 at end of input, 2 on a malformed request.
//!
//! The helper is started from a thread inside a throwaway network namespace, so it and its
//! netlink socket live there. Needs root; skips without it unless
//! `NFTPROXY_REQUIRE_ROOT_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command};

use common::netns::{NetNs, kernel_tests_enabled};
use common::{HELPER, ask, run, spawn_piped};
use nftproxy_wire::{Format, Request, Response};

/// Starts the helper inside `ns` with all three standard streams piped.
fn start(ns: &NetNs) -> Child {
    spawn_piped(ns, Command::new(HELPER))
}

#[test]
fn the_helper_answers_each_request_in_order_and_exits_0_at_end_of_input() {
    if !kernel_tests_enabled("the_helper_answers_each_request_in_order_and_exits_0_at_end_of_input")
    {
        return;
    }
    let ns = NetNs::new("nfthelper");
    let mut helper = start(&ns);
    assert_eq!(
        ask(&mut helper, &Request::Ping),
        Response::Ok(String::new())
    );
    let add = r#"{"nftables": [{"add": {"table": {"family": "ip", "name": "nftproxy"}}},
                 {"add": {"chain": {"family": "ip", "table": "nftproxy", "name": "c"}}}]}"#;
    assert_eq!(
        ask(&mut helper, &run(Format::Json, add)),
        Response::Ok(String::new())
    );
    let Response::Ok(listing) = ask(
        &mut helper,
        &run(
            Format::Json,
            r#"{"nftables": [{"list": {"table": {"family": "ip", "name": "nftproxy"}}}]}"#,
        ),
    ) else {
        panic!("listing refused");
    };
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(listing, ns.nft_list_json());
    match ask(
        &mut helper,
        &run(Format::Script, "delete chain ip nftproxy nope"),
    ) {
        Response::Err(message) => assert!(
            message.starts_with("Error:") && message.contains("delete chain ip nftproxy nope"),
            "{message}"
        ),
        other => panic!("deleting a missing chain: {other:?}"),
    }
    assert_eq!(
        ask(&mut helper, &run(Format::Script, "list tables")),
        Response::Ok("table ip nftproxy\n".into())
    );
    drop(helper.stdin.take());
    let out = helper.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    assert!(out.stdout.is_empty(), "stray bytes after the last frame");
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_helper_exits_2_with_a_message_on_a_malformed_request() {
    if !kernel_tests_enabled("the_helper_exits_2_with_a_message_on_a_malformed_request") {
        return;
    }
    let ns = NetNs::new("nftbad");
    let mut helper = start(&ns);
    assert_eq!(
        ask(&mut helper, &Request::Ping),
        Response::Ok(String::new())
    );
    let stdin = helper.stdin.as_mut().unwrap();
    stdin.write_all(&[0x7f, 0, 0, 0, 0]).unwrap();
    stdin.flush().unwrap();
    let status = helper.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    helper
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("nftproxy-nft: bad request: unknown request kind byte 0x7f"),
        "{stderr}"
    );
}
