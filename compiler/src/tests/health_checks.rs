//! `Compiled::health_checks`: LoadBalancer Services with externalTrafficPolicy Local and a
//! healthCheckNodePort, with this node's ready endpoints.

use super::web;
use crate::HealthCheck;
use crate::testing::{ServiceBuilder, SliceBuilder, cluster, ep, service, slice};

/// `ns/web` as a Local LoadBalancer with healthCheckNodePort 32000.
fn local_lb() -> ServiceBuilder {
    web()
        .type_("LoadBalancer")
        .node_port(30080)
        .external_local()
        .health_check_node_port(32000)
}

fn check(name: &str, node_port: u16, local_endpoints: usize) -> HealthCheck {
    HealthCheck {
        namespace: "ns".to_owned(),
        name: name.to_owned(),
        node_port,
        local_endpoints,
    }
}

/// One ready and one terminating endpoint on node-1, one ready on node-2.
fn mixed() -> SliceBuilder {
    slice("ns/web-1", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.1.5").node("node-1"))
        .endpoint(ep("198.18.1.6").node("node-1").terminating())
        .endpoint(ep("198.18.2.5").node("node-2"))
}

#[test]
fn local_load_balancer_with_a_health_check_node_port_is_recorded_with_its_local_ready_endpoints() {
    let compiled = cluster().service(local_lb()).slice(mixed()).compile();
    assert_eq!(compiled.health_checks, [check("web", 32000, 1)]);
}

#[test]
fn an_endpoint_listed_in_two_slices_counts_once() {
    let again = slice("ns/web-2", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.1.5").node("node-1"));
    let compiled = cluster()
        .service(local_lb())
        .slice(mixed())
        .slice(again)
        .compile();
    assert_eq!(compiled.health_checks, [check("web", 32000, 1)]);
}

#[test]
fn a_node_without_local_endpoints_reports_zero() {
    let remote = slice("ns/web-1", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.2.5").node("node-2"));
    let compiled = cluster().service(local_lb()).slice(remote).compile();
    assert_eq!(compiled.health_checks, [check("web", 32000, 0)]);
}

#[test]
fn cluster_policy_or_other_types_or_no_port_need_no_health_check() {
    let cluster_policy = web()
        .type_("LoadBalancer")
        .node_port(30080)
        .health_check_node_port(32000);
    let node_port = service("ns/np")
        .cluster_ip("198.19.0.11")
        .port("http", 80)
        .type_("NodePort")
        .node_port(30081)
        .external_local()
        .health_check_node_port(32001);
    let unset = service("ns/unset")
        .cluster_ip("198.19.0.12")
        .port("http", 80)
        .type_("LoadBalancer")
        .node_port(30082)
        .external_local();
    let compiled = cluster()
        .service(cluster_policy)
        .service(node_port)
        .service(unset)
        .compile();
    assert_eq!(compiled.health_checks, []);
}

#[test]
fn health_checks_are_sorted_by_service_whatever_the_input_order() {
    let other = service("ns/alpha")
        .cluster_ip("198.19.0.11")
        .port("http", 80)
        .type_("LoadBalancer")
        .node_port(30081)
        .external_local()
        .health_check_node_port(32001);
    let expected = [check("alpha", 32001, 0), check("web", 32000, 1)];
    let forward = cluster()
        .service(local_lb())
        .service(other.clone())
        .slice(mixed())
        .compile();
    let backward = cluster()
        .slice(mixed())
        .service(other)
        .service(local_lb())
        .compile();
    assert_eq!(forward.health_checks, expected);
    assert_eq!(backward.health_checks, expected);
}

#[test]
fn health_check_node_port_out_of_range_refuses_the_service_with_a_diagnostic() {
    let compiled = cluster()
        .service(local_lb().health_check_node_port(70000))
        .compile();
    assert_eq!(compiled.health_checks, []);
    let messages = compiled.messages();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("spec.healthCheckNodePort 70000 is out of range")),
        "{messages:?}"
    );
}
