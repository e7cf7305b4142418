//! Checks the network-namespace test support itself: isolation and clean-up.

mod common;

use common::netns::{NetNs, kernel_tests_enabled};

#[test]
fn namespace_has_its_own_empty_ruleset_and_is_deleted_on_drop() {
    if !kernel_tests_enabled("namespace_has_its_own_empty_ruleset_and_is_deleted_on_drop") {
        return;
    }
    let name;
    {
        let ns = NetNs::new("selftest");
        name = ns.name().to_owned();
        ns.nft_load("table ip nftproxy-selftest { }", false)
            .expect("load into the namespace");
        let listed = ns.exec_ok(&["nft", "list", "tables"]);
        assert!(listed.contains("nftproxy-selftest"), "listed: {listed}");
        let inside = ns.run_inside(|| std::fs::read_link("/proc/thread-self/ns/net"));
        let outside = std::fs::read_link("/proc/thread-self/ns/net");
        assert_ne!(inside.ok(), outside.ok(), "thread did not switch namespace");
    }
    let all = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(!String::from_utf8_lossy(&all.stdout).contains(&name));
}
