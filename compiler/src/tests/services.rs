//! Which objects are programmed: skipped kinds, legacy Endpoints, invalid objects, conflicts.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use nftproxy_rules::{Family, Value};

use super::web;
use crate::testing::{cluster, legacy, service, slice};

#[test]
fn every_handled_cluster_ip_is_in_cluster_ips() {
    let compiled = cluster()
        .service(web())
        .service(service("ns/db").cluster_ip("198.19.0.11").port("", 5432))
        .compile();
    for ip in ["198.19.0.10", "198.19.0.11"] {
        let value = Value::from(ip.parse::<std::net::IpAddr>().unwrap());
        assert!(
            compiled.set_has(Family::Ip, "cluster-ips", vec![value]),
            "{ip}"
        );
    }
}

#[test]
fn headless_external_name_and_foreign_proxy_services_get_nothing() {
    let compiled = cluster()
        .service(service("ns/headless").cluster_ip("None").port("http", 80))
        .service(service("ns/ext").type_("ExternalName").port("http", 80))
        .service(web().label("service.kubernetes.io/service-proxy-name", "other"))
        .slice(
            slice("ns/web-1", "web")
                .port("http", 8080)
                .ready(&["127.0.0.1"]),
        )
        .compile();
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
    assert_eq!(compiled.set_len(Family::Ip, "cluster-ips"), 0);
    assert_eq!(compiled.set_len(Family::Ip, "no-endpoint-services"), 0);
}

#[test]
fn legacy_endpoints_serve_a_service_without_slices() {
    let compiled = cluster()
        .service(web())
        .endpoints(legacy(
            "ns/web",
            &[("http", 8080)],
            &["198.18.1.5"],
            &["198.18.1.6"],
        ))
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080"]
    );
}

#[test]
fn legacy_endpoints_are_ignored_when_a_slice_exists() {
    let compiled = cluster()
        .service(web())
        .slice(
            slice("ns/web-1", "web")
                .port("http", 8080)
                .ready(&["198.18.1.5"]),
        )
        .endpoints(legacy("ns/web", &[("http", 8080)], &["198.18.1.9"], &[]))
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080"]
    );
}

#[test]
fn fqdn_slices_are_ignored() {
    let compiled = cluster()
        .service(web())
        .slice(
            slice("ns/web-1", "web")
                .address_type("FQDN")
                .port("http", 8080)
                .ready(&["example.org"]),
        )
        .compile();
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
    assert!(compiled.no_endpoint("198.19.0.10", "TCP", 80).is_some());
}

#[test]
fn invalid_endpoint_addresses_are_skipped_with_a_warning() {
    let compiled = cluster()
        .service(web())
        .slice(slice("ns/web-1", "web").port("http", 8080).ready(&[
            "198.18.1.5",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "0.0.0.0",
            "2001:db8::1",
            "bogus",
        ]))
        .compile();
    assert_eq!(
        compiled.targets("198.19.0.10", "TCP", 80),
        ["198.18.1.5:8080"]
    );
    let messages = compiled.messages();
    assert_eq!(messages.len(), 6, "{messages:#?}");
    assert!(
        messages
            .iter()
            .all(|m| m.starts_with("warning: EndpointSlice ns/web-1: endpoint address "))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"127.0.0.1\" is a loopback address"))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("\"2001:db8::1\" is not an IPv4 address"))
    );
}

#[test]
fn invalid_services_are_skipped_and_the_rest_compiles() {
    let compiled = cluster()
        .service(web())
        .service(
            service("ns/bad-ip")
                .cluster_ip("198.19.0.300")
                .port("http", 80),
        )
        .service(
            service("ns/bad-port")
                .cluster_ip("198.19.0.12")
                .port("http", 0),
        )
        .service(
            service("ns/Bad_Name")
                .cluster_ip("198.19.0.13")
                .port("http", 80),
        )
        .service(
            service("ns/bad-port-name")
                .cluster_ip("198.19.0.14")
                .port("http;drop", 80),
        )
        .compile();
    assert!(compiled.no_endpoint("198.19.0.10", "TCP", 80).is_some());
    assert_eq!(compiled.set_len(Family::Ip, "cluster-ips"), 1);
    let messages = compiled.messages();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert!(
        messages
            .iter()
            .all(|m| m.starts_with("error: Service ns/") && m.ends_with("; skipped"))
    );
}

#[test]
fn older_service_wins_a_port_conflict_and_both_are_named() {
    let compiled = cluster()
        .service(
            service("ns/new")
                .cluster_ip("198.19.0.10")
                .port("http", 80)
                .created(2000),
        )
        .service(
            service("ns/old")
                .cluster_ip("198.19.0.10")
                .port("web", 80)
                .created(1000),
        )
        .compile();
    assert_eq!(
        compiled.no_endpoint("198.19.0.10", "TCP", 80).unwrap().1,
        "ns/old:web"
    );
    assert_eq!(
        compiled.messages(),
        [
            "warning: Service ns/new: 198.19.0.10 TCP port 80 is already used by the older Service ns/old; port http ignored"
        ]
    );
}

#[test]
fn conflict_between_services_without_timestamps_is_decided_by_name() {
    let compiled = cluster()
        .service(service("ns/b").cluster_ip("198.19.0.10").port("http", 80))
        .service(service("ns/a").cluster_ip("198.19.0.10").port("http", 80))
        .compile();
    assert_eq!(
        compiled.no_endpoint("198.19.0.10", "TCP", 80).unwrap().1,
        "ns/a:http"
    );
}

#[test]
fn services_may_share_a_cluster_ip_on_different_ports() {
    let compiled = cluster()
        .service(service("ns/a").cluster_ip("198.19.0.10").port("http", 80))
        .service(service("ns/b").cluster_ip("198.19.0.10").port("https", 443))
        .service(
            service("ns/c")
                .cluster_ip("198.19.0.10")
                .port_proto("dns", 80, "UDP"),
        )
        .compile();
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
    assert_eq!(compiled.set_len(Family::Ip, "no-endpoint-services"), 3);
}

#[test]
fn duplicate_service_objects_with_different_contents_are_skipped() {
    let compiled = cluster()
        .service(web())
        .service(service("ns/web").cluster_ip("198.19.0.99").port("http", 80))
        .service(web())
        .compile();
    assert_eq!(compiled.set_len(Family::Ip, "cluster-ips"), 0);
    assert_eq!(
        compiled.messages(),
        ["error: Service ns/web: is defined more than once with different contents; skipped"]
    );
}

#[test]
fn slice_without_service_name_label_is_ignored_with_a_warning() {
    let mut unlabelled = slice("ns/stray", "web")
        .port("http", 8080)
        .ready(&["198.18.1.5"]);
    unlabelled.0.metadata.labels = None;
    let compiled = cluster().service(web()).slice(unlabelled).compile();
    assert!(compiled.no_endpoint("198.19.0.10", "TCP", 80).is_some());
    assert_eq!(
        compiled.messages(),
        ["warning: EndpointSlice ns/stray: has no kubernetes.io/service-name label; ignored"]
    );
}
