//! `Compiled::udp_ports`: the UDP service ports stale-conntrack cleanup works from.

use std::net::SocketAddr;

use crate::UdpPort;
use crate::testing::{cluster, ep, service, slice};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn sas(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|s| sa(s)).collect()
}

#[test]
fn a_udp_port_records_its_destinations_and_endpoints_and_tcp_ports_are_left_out() {
    let compiled = cluster()
        .service(
            service("ns/dns")
                .cluster_ip("198.19.0.10")
                .port_proto("dns", 53, "UDP")
                .type_("LoadBalancer")
                .node_port(30053)
                .port_proto("dns-tcp", 53, "TCP")
                .external_ips(&["192.0.2.1"])
                .ingress("192.0.2.9", None),
        )
        .slice(
            slice("ns/dns-1", "dns")
                .port_proto("dns", 5353, "UDP")
                .port_proto("dns-tcp", 5353, "TCP")
                .endpoint(ep("198.18.2.5").node("node-2"))
                .endpoint(ep("198.18.1.5").node("node-1")),
        )
        .compile();
    assert_eq!(
        compiled.udp_ports,
        [UdpPort {
            service: "ns/dns".into(),
            port_name: "dns".into(),
            cluster_ip: sa("198.19.0.10:53"),
            external: sas(&["192.0.2.1:53", "192.0.2.9:53"]),
            node_port: Some(30053),
            endpoints: sas(&["198.18.1.5:5353", "198.18.2.5:5353"]),
        }]
    );
}

#[test]
fn a_udp_port_without_endpoints_is_recorded_with_none() {
    let compiled = cluster()
        .service(
            service("ns/dns")
                .cluster_ip("198.19.0.10")
                .port_proto("dns", 53, "UDP"),
        )
        .compile();
    assert_eq!(compiled.udp_ports.len(), 1);
    assert_eq!(compiled.udp_ports[0].cluster_ip, sa("198.19.0.10:53"));
    assert!(compiled.udp_ports[0].endpoints.is_empty());
    assert_eq!(compiled.udp_ports[0].node_port, None);
}

#[test]
fn endpoints_are_the_union_of_the_internal_and_external_paths() {
    // internalTrafficPolicy Local keeps node-1's endpoint for ClusterIP traffic; the
    // NodePort (externalTrafficPolicy Cluster) DNATs to both.
    let compiled = cluster()
        .service(
            service("ns/dns")
                .cluster_ip("198.19.0.10")
                .port_proto("dns", 53, "UDP")
                .type_("NodePort")
                .node_port(30053)
                .internal_local(),
        )
        .slice(
            slice("ns/dns-1", "dns")
                .port_proto("dns", 53, "UDP")
                .endpoint(ep("198.18.1.5").node("node-1"))
                .endpoint(ep("198.18.2.5").node("node-2")),
        )
        .compile();
    assert_eq!(
        compiled.udp_ports[0].endpoints,
        sas(&["198.18.1.5:53", "198.18.2.5:53"])
    );
}

#[test]
fn a_dual_stack_port_is_recorded_per_family_ipv4_first_with_its_own_endpoints() {
    let compiled = cluster()
        .service(
            service("ns/dns")
                .cluster_ips(&["2001:db8::10", "198.19.0.10"])
                .port_proto("dns", 53, "UDP"),
        )
        .slice(
            slice("ns/dns-4", "dns")
                .port_proto("dns", 53, "UDP")
                .ready(&["198.18.1.5"]),
        )
        .slice(
            slice("ns/dns-6", "dns")
                .ipv6()
                .port_proto("dns", 53, "UDP")
                .ready(&["2001:db8:1::5"]),
        )
        .compile();
    let summary: Vec<(SocketAddr, Vec<SocketAddr>)> = compiled
        .udp_ports
        .iter()
        .map(|p| (p.cluster_ip, p.endpoints.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (sa("198.19.0.10:53"), sas(&["198.18.1.5:53"])),
            (sa("[2001:db8::10]:53"), sas(&["[2001:db8:1::5]:53"])),
        ]
    );
    assert!(!compiled.udp_ports[0].is_ipv6() && compiled.udp_ports[1].is_ipv6());
}

#[test]
fn udp_ports_are_sorted_by_service_whatever_the_input_order() {
    let b = service("ns/b")
        .cluster_ip("198.19.0.11")
        .port_proto("", 53, "UDP");
    let a = service("ns/a")
        .cluster_ip("198.19.0.12")
        .port_proto("", 53, "UDP");
    let one = cluster().service(b.clone()).service(a.clone()).compile();
    let two = cluster().service(a).service(b).compile();
    let names: Vec<&str> = one.udp_ports.iter().map(|p| p.service.as_str()).collect();
    assert_eq!(names, ["ns/a", "ns/b"]);
    assert_eq!(one.udp_ports, two.udp_ports);
}
