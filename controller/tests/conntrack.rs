//! Kernel tests of the ctnetlink client: in a throwaway namespace, entries made with
//! `conntrack -I` are dumped with their tuples, and cleanup deletes exactly the entries its
//! filters select (checked with `conntrack -L`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[allow(dead_code)]
#[path = "../src/conntrack/mod.rs"]
mod conntrack;
#[allow(dead_code)]
#[path = "../src/netlink.rs"]
mod netlink;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;

use common::netns::{NetNs, kernel_tests_enabled};
use conntrack::netlink::{Conntrack, IPPROTO_UDP};
use conntrack::sample_ports::{dns, dns6, sa};

fn enabled(test: &str) -> bool {
    if !kernel_tests_enabled(test) {
        return false;
    }
    let found = Command::new("conntrack").arg("--version").output().is_ok();
    let required = std::env::var("NFTPROXY_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    assert!(
        found || !required,
        "{test}: `conntrack` is missing (scripts/setup.sh installs it)"
    );
    if !found {
        eprintln!("skipping {test}: `conntrack` is not installed");
    }
    found
}

/// One entry as a line: `proto client -> destination <- reply source`.
fn line(proto: &str, client: &str, to: &str, from: &str) -> String {
    format!("{proto} {client} -> {to} <- {from}")
}

/// `conntrack -I` of an entry from `client` to `to`, answered by `from`.
fn insert(ns: &NetNs, proto: &str, client: &str, to: &str, from: &str) {
    let (client, to, from) = (sa(client), sa(to), sa(from));
    let args = [
        "conntrack".to_owned(),
        "-I".into(),
        "-p".into(),
        proto.into(),
        "-s".into(),
        client.ip().to_string(),
        "-d".into(),
        to.ip().to_string(),
        "--sport".into(),
        client.port().to_string(),
        "--dport".into(),
        to.port().to_string(),
        "--reply-src".into(),
        from.ip().to_string(),
        "--reply-dst".into(),
        client.ip().to_string(),
        "--reply-port-src".into(),
        from.port().to_string(),
        "--reply-port-dst".into(),
        client.port().to_string(),
        "-t".into(),
        "300".into(),
    ];
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    if proto == "tcp" {
        args.extend(["--state", "ESTABLISHED"]);
    }
    ns.exec_ok(&args);
}

/// Every entry of the namespace as [`line`]s, read with `conntrack -L`.
fn listing(ns: &NetNs) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for family in ["ipv4", "ipv6"] {
        let text = ns.exec_ok(&["conntrack", "-L", "-f", family]);
        for row in text.lines() {
            let words: Vec<&str> = row.split_whitespace().collect();
            let field = |key: &str, nth: usize| -> String {
                let prefix = format!("{key}=");
                let values: Vec<&str> = words
                    .iter()
                    .filter_map(|w| w.strip_prefix(prefix.as_str()))
                    .collect();
                values[nth].to_owned()
            };
            let addr = |ip: String, port: String| {
                SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap())
            };
            out.insert(line(
                words[0],
                &addr(field("src", 0), field("sport", 0)).to_string(),
                &addr(field("dst", 0), field("dport", 0)).to_string(),
                &addr(field("src", 1), field("sport", 1)).to_string(),
            ));
        }
    }
    out
}

#[test]
fn a_dump_lists_one_familys_entries_with_both_tuples() {
    if !enabled("a_dump_lists_one_familys_entries_with_both_tuples") {
        return;
    }
    let ns = NetNs::new("ct-dump");
    let v4 = ("198.18.1.20:4000", "198.19.0.10:53", "198.18.1.10:5353");
    let v6 = (
        "[2001:db8:1::20]:4000",
        "[2001:db8::10]:53",
        "[2001:db8:1::10]:5353",
    );
    insert(&ns, "udp", v4.0, v4.1, v4.2);
    insert(&ns, "tcp", v4.0, v4.1, v4.2);
    insert(&ns, "udp", v6.0, v6.1, v6.2);
    let (ipv4, ipv6) = ns.run_inside(|| {
        let mut conntrack = Conntrack::open().unwrap();
        (
            conntrack.dump(false).unwrap(),
            conntrack.dump(true).unwrap(),
        )
    });
    let summary = |entries: &[conntrack::netlink::Entry]| -> BTreeSet<(u8, String)> {
        entries
            .iter()
            .map(|e| {
                let text = line(
                    "",
                    &e.original.src.to_string(),
                    &e.original.dst.to_string(),
                    &e.reply.src.to_string(),
                );
                assert_eq!(e.reply.dst, e.original.src);
                assert!(e.id.is_some(), "the kernel reports ids");
                (e.proto, text)
            })
            .collect()
    };
    let v4_line = line("", v4.0, v4.1, v4.2);
    assert_eq!(
        summary(&ipv4),
        BTreeSet::from([(IPPROTO_UDP, v4_line.clone()), (6, v4_line)])
    );
    assert_eq!(
        summary(&ipv6),
        BTreeSet::from([(IPPROTO_UDP, line("", v6.0, v6.1, v6.2))])
    );
}

#[test]
fn cleanup_deletes_exactly_the_entries_of_a_removed_endpoint() {
    if !enabled("cleanup_deletes_exactly_the_entries_of_a_removed_endpoint") {
        return;
    }
    let ns = NetNs::new("ct-clean");
    let stale_ep = "198.18.1.10:5353";
    let kept_ep = "198.18.2.10:5353";
    let deleted = [
        line("udp", "198.18.1.20:4000", "198.19.0.10:53", stale_ep),
        line("udp", "203.0.113.5:4000", "192.0.2.1:53", stale_ep),
        line("udp", "203.0.113.5:4001", "198.51.100.1:30053", stale_ep),
    ];
    let kept = [
        line("udp", "198.18.1.20:4001", "198.19.0.10:53", kept_ep),
        line("tcp", "198.18.1.20:4000", "198.19.0.10:53", stale_ep),
        line("udp", "198.18.1.20:4002", "198.19.0.20:53", stale_ep),
        line(
            "udp",
            "[2001:db8:1::20]:4000",
            "[2001:db8::10]:53",
            "[2001:db8:1::10]:5353",
        ),
    ];
    for entry in deleted.iter().chain(&kept) {
        let words: Vec<&str> = entry.split(' ').collect();
        insert(&ns, words[0], words[1], words[3], words[5]);
    }
    let all: BTreeSet<String> = deleted.iter().chain(&kept).cloned().collect();
    assert_eq!(listing(&ns), all, "conntrack -I made every entry");
    let old = [dns(&[kept_ep, stale_ep]), dns6(&["[2001:db8:1::10]:5353"])];
    let new = [dns(&[kept_ep]), dns6(&["[2001:db8:1::10]:5353"])];
    let filters = conntrack::stale(&old, &new);
    let cleaned = ns.run_inside(move || conntrack::clean(&filters).unwrap());
    assert_eq!(cleaned.deleted, 3);
    assert_eq!(cleaned.listed, 6, "only the IPv4 table is listed");
    assert_eq!(listing(&ns), kept.iter().cloned().collect::<BTreeSet<_>>());
}

#[test]
fn cleanup_after_scaling_up_from_zero_deletes_undnated_entries_only() {
    if !enabled("cleanup_after_scaling_up_from_zero_deletes_undnated_entries_only") {
        return;
    }
    let ns = NetNs::new("ct-zero");
    let undnated = line(
        "udp",
        "198.18.1.20:4000",
        "198.19.0.10:53",
        "198.19.0.10:53",
    );
    let fresh = line(
        "udp",
        "198.18.1.20:4001",
        "198.19.0.10:53",
        "198.18.2.10:5353",
    );
    for entry in [&undnated, &fresh] {
        let words: Vec<&str> = entry.split(' ').collect();
        insert(&ns, words[0], words[1], words[3], words[5]);
    }
    let filters = conntrack::stale(&[dns(&[])], &[dns(&["198.18.2.10:5353"])]);
    let cleaned = ns.run_inside(move || conntrack::clean(&filters).unwrap());
    assert_eq!(cleaned.deleted, 1);
    assert_eq!(listing(&ns), BTreeSet::from([fresh]));
}

#[test]
fn cleanup_without_filters_does_not_list_the_table() {
    if !enabled("cleanup_without_filters_does_not_list_the_table") {
        return;
    }
    let ns = NetNs::new("ct-none");
    insert(
        &ns,
        "udp",
        "198.18.1.20:4000",
        "198.19.0.10:53",
        "198.18.1.10:5353",
    );
    let cleaned = ns.run_inside(|| conntrack::clean(&[]).unwrap());
    assert_eq!((cleaned.listed, cleaned.deleted), (0, 0));
    assert_eq!(listing(&ns).len(), 1);
}

#[test]
fn deleting_an_entry_that_is_already_gone_is_not_an_error() {
    if !enabled("deleting_an_entry_that_is_already_gone_is_not_an_error") {
        return;
    }
    let ns = NetNs::new("ct-gone");
    insert(
        &ns,
        "udp",
        "198.18.1.20:4000",
        "198.19.0.10:53",
        "198.18.1.10:5353",
    );
    let (first, second) = ns.run_inside(|| {
        let mut conntrack = Conntrack::open().unwrap();
        let entries = conntrack.dump(false).unwrap();
        assert_eq!(entries.len(), 1);
        (
            conntrack.delete(&entries[0]).unwrap(),
            conntrack.delete(&entries[0]).unwrap(),
        )
    });
    assert_eq!((first, second), (true, false));
    assert!(listing(&ns).is_empty());
}
