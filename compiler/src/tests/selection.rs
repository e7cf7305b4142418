//! Which endpoints a service port uses: ports, conditions, traffic policy, families.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use nftproxy_rules::{Family, Verdict};

use super::{goto, web, web_slice};
use crate::testing::{cluster, ep, service, slice};

#[test]
fn service_without_endpoints_rejects() {
    let compiled = cluster().service(web()).compile();
    assert_eq!(compiled.service_ip("198.19.0.10", "TCP", 80), None);
    assert_eq!(
        compiled.no_endpoint("198.19.0.10", "TCP", 80),
        Some((goto("reject-chain"), "ns/web:http".to_owned()))
    );
    assert_eq!(compiled.service_chains(), 0);
}

#[test]
fn named_target_port_is_resolved_per_slice() {
    let compiled = cluster()
        .service(web())
        .slice(
            slice("ns/web-1", "web")
                .port("http", 8080)
                .ready(&["198.18.1.5"]),
        )
        .slice(
            slice("ns/web-2", "web")
                .port("http", 9090)
                .ready(&["198.18.2.5"]),
        )
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080", "198.18.2.5:9090"]
    );
}

#[test]
fn slice_without_a_matching_port_name_contributes_nothing() {
    let compiled = cluster()
        .service(web())
        .slice(
            slice("ns/web-1", "web")
                .port("metrics", 9100)
                .ready(&["198.18.1.5"]),
        )
        .compile();
    assert!(compiled.no_endpoint("198.19.0.10", "TCP", 80).is_some());
}

#[test]
fn slice_port_must_match_the_protocol_too() {
    let compiled = cluster()
        .service(
            service("ns/dns")
                .cluster_ip("198.19.0.53")
                .port_proto("dns", 53, "UDP"),
        )
        .slice(
            slice("ns/dns-1", "dns")
                .port("dns", 53)
                .ready(&["198.18.1.5"]),
        )
        .compile();
    assert!(compiled.no_endpoint("198.19.0.53", "UDP", 53).is_some());
}

#[test]
fn unnamed_service_port_matches_the_unnamed_slice_port() {
    let compiled = cluster()
        .service(service("ns/db").cluster_ip("198.19.0.11").port("", 5432))
        .slice(slice("ns/db-1", "db").port("", 5433).ready(&["198.18.1.5"]))
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.11", "TCP", 5432),
        ["198.18.1.5:5433"]
    );
    assert_eq!(
        compiled.service_ip("198.19.0.11", "TCP", 5432).unwrap().1,
        "ns/db:5432"
    );
}

#[test]
fn terminating_endpoints_are_used_only_when_none_is_ready() {
    let with_ready = cluster()
        .service(web())
        .slice(web_slice([
            ep("198.18.1.5"),
            ep("198.18.1.6").terminating(),
        ]))
        .compile();
    assert_eq!(
        with_ready.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080"]
    );

    let without_ready = cluster()
        .service(web())
        .slice(web_slice([
            ep("198.18.1.5").not_ready(),
            ep("198.18.1.6").terminating(),
            ep("198.18.1.7").not_serving(),
        ]))
        .compile();
    assert_eq!(
        without_ready.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.6:8080"]
    );
}

#[test]
fn not_serving_endpoints_are_never_used() {
    let compiled = cluster()
        .service(web())
        .slice(web_slice([ep("198.18.1.7").not_serving()]))
        .compile();
    assert_eq!(
        compiled.no_endpoint("198.19.0.10", "TCP", 80).unwrap().0,
        goto("reject-chain")
    );
}

#[test]
fn missing_serving_condition_follows_ready() {
    let compiled = cluster()
        .service(web())
        .slice(web_slice([
            ep("198.18.1.5").conditions(Some(false), None, Some(true)),
            ep("198.18.1.6").conditions(None, None, None),
        ]))
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.6:8080"]
    );
}

#[test]
fn internal_local_uses_only_endpoints_on_this_node() {
    let compiled = cluster()
        .service(web().internal_local())
        .slice(web_slice([
            ep("198.18.1.5").node("node-1"),
            ep("198.18.2.5").node("node-2"),
        ]))
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080"]
    );
}

#[test]
fn internal_local_without_local_endpoints_drops() {
    let compiled = cluster()
        .service(web().internal_local())
        .slice(web_slice([ep("198.18.2.5").node("node-2")]))
        .compile();
    assert_eq!(
        compiled.no_endpoint("198.19.0.10", "TCP", 80).unwrap().0,
        Verdict::Drop
    );
    assert_eq!(compiled.service_chains(), 0);
}

#[test]
fn internal_local_without_any_endpoint_rejects() {
    let compiled = cluster().service(web().internal_local()).compile();
    assert_eq!(
        compiled.no_endpoint("198.19.0.10", "TCP", 80).unwrap().0,
        goto("reject-chain")
    );
}

#[test]
fn internal_local_decides_the_terminating_fallback_among_local_endpoints() {
    let compiled = cluster()
        .service(web().internal_local())
        .slice(web_slice([
            ep("198.18.1.5").node("node-1").terminating(),
            ep("198.18.2.5").node("node-2"),
        ]))
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080"]
    );
}

#[test]
fn an_endpoint_listed_twice_is_used_once_preferring_its_ready_copy() {
    let compiled = cluster()
        .service(web())
        .slice(web_slice([ep("198.18.1.5").terminating()]))
        .slice(
            slice("ns/web-2", "web")
                .port("http", 8080)
                .ready(&["198.18.1.5", "198.18.1.6"]),
        )
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080", "198.18.1.6:8080"]
    );
}

#[test]
fn single_stack_service_ignores_slices_of_the_other_family() {
    let compiled = cluster()
        .service(web())
        .slice(
            slice("ns/web-v6", "web")
                .ipv6()
                .port("http", 8080)
                .ready(&["2001:db8:18:1::5"]),
        )
        .compile();
    assert!(compiled.no_endpoint("198.19.0.10", "TCP", 80).is_some());
    assert_eq!(compiled.set_len(Family::Ip6, "no-endpoint-services"), 0);
}
