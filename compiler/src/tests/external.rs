//! External paths: NodePorts, externalIPs, LoadBalancer IPs and externalTrafficPolicy.

use nftproxy_rules::{Family, L4Proto, Verdict};

use super::{goto, web};
use crate::testing::{ServiceBuilder, cluster, ep, slice};

/// `ns/web` as a NodePort Service: 80 -> nodePort 30080.
fn node_port_web() -> ServiceBuilder {
    web().type_("NodePort").node_port(30080)
}

/// Endpoints of `ns/web`: 198.18.1.5 on node-1, 198.18.2.5 on node-2.
fn two_nodes() -> crate::testing::SliceBuilder {
    slice("ns/web-1", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.1.5").node("node-1"))
        .endpoint(ep("198.18.2.5").node("node-2"))
}

fn external_chain(verdict: Option<Verdict>) -> String {
    match verdict {
        Some(Verdict::Goto(chain)) if chain.starts_with("external-") => chain.to_string(),
        other => panic!("not an external chain: {other:?}"),
    }
}

#[test]
fn node_port_goes_to_an_external_chain_that_masquerades_then_uses_every_endpoint() {
    let compiled = cluster()
        .service(node_port_web())
        .slice(two_nodes())
        .compile();
    let verdict = compiled.node_port_in(Family::Ip, "service-nodeports", L4Proto::Tcp, 30080);
    let chain = external_chain(verdict);
    let (Some((Verdict::Goto(service), _)), rules) = (
        compiled.service_ip("198.19.0.10", "TCP", 80),
        compiled.chain_rules(Family::Ip, &chain),
    ) else {
        panic!("no service chain");
    };
    assert_eq!(
        rules,
        [
            "meta mark set meta mark | 0x4000".to_owned(),
            format!("goto {service}")
        ]
    );
}

#[test]
fn a_cluster_ip_service_never_gets_a_node_port() {
    let compiled = cluster()
        .service(web().node_port(30080))
        .slice(two_nodes())
        .compile();
    assert_eq!(compiled.set_len(Family::Ip, "service-nodeports"), 0);
}

#[test]
fn load_balancer_ips_are_proxied_except_those_in_proxy_mode() {
    let lb = web()
        .type_("LoadBalancer")
        .ingress("192.0.2.30", None)
        .ingress("192.0.2.31", Some("Proxy"));
    let compiled = cluster().service(lb).slice(two_nodes()).compile();
    external_chain(compiled.service_ip("192.0.2.30", "TCP", 80).map(|v| v.0));
    assert_eq!(compiled.service_ip("192.0.2.31", "TCP", 80), None);
    assert_eq!(compiled.set_len(Family::Ip, "service-nodeports"), 0);
}

#[test]
fn external_ips_of_the_other_family_stay_out_of_a_single_stack_service() {
    let svc = web().external_ips(&["192.0.2.20", "2001:db8:2::20"]);
    let compiled = cluster().service(svc).slice(two_nodes()).compile();
    external_chain(compiled.service_ip("192.0.2.20", "TCP", 80).map(|v| v.0));
    assert_eq!(compiled.service_ip("2001:db8:2::20", "TCP", 80), None);
}

#[test]
fn external_policy_local_sends_outside_traffic_to_local_endpoints_only() {
    let svc = node_port_web().external_local();
    let compiled = cluster().service(svc).slice(two_nodes()).compile();
    let verdict = compiled.node_port_in(Family::Ip, "service-nodeports", L4Proto::Tcp, 30080);
    let rules = compiled.chain_rules(Family::Ip, &external_chain(verdict));
    let last = rules.last().expect("rules");
    let local = last.strip_prefix("goto ").expect("goto local chain");
    assert!(local.starts_with("local-"), "{local}");
    assert_eq!(
        compiled.chain_rules(Family::Ip, local),
        ["meta l4proto tcp dnat to 198.18.1.5:8080"]
    );
    assert!(rules.contains(&"fib saddr type local meta mark set meta mark | 0x4000".to_owned()));
}

#[test]
fn external_policy_local_without_local_endpoints_drops_outside_traffic_only() {
    let svc = node_port_web()
        .external_local()
        .external_ips(&["192.0.2.20"]);
    let remote = slice("ns/web-1", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.2.5").node("node-2"));
    let compiled = cluster().service(svc).slice(remote).compile();
    let drop = compiled.node_port_in(Family::Ip, "no-endpoint-nodeports", L4Proto::Tcp, 30080);
    assert_eq!(drop, Some(Verdict::Drop));
    assert_eq!(
        compiled.no_endpoint("192.0.2.20", "TCP", 80).map(|v| v.0),
        Some(Verdict::Drop)
    );
    let verdict = compiled.node_port_in(Family::Ip, "service-nodeports", L4Proto::Tcp, 30080);
    let rules = compiled.chain_rules(Family::Ip, &external_chain(verdict));
    assert!(
        rules.iter().all(|r| r.starts_with("fib saddr type local")),
        "{rules:?}"
    );
}

#[test]
fn a_service_without_endpoints_rejects_on_its_node_port_and_external_ips() {
    let svc = node_port_web().external_ips(&["192.0.2.20"]);
    let compiled = cluster().service(svc).compile();
    let reject = Some(goto("reject-chain"));
    let node_port = compiled.node_port_in(Family::Ip, "no-endpoint-nodeports", L4Proto::Tcp, 30080);
    assert_eq!(node_port, reject);
    assert_eq!(
        compiled.no_endpoint("192.0.2.20", "TCP", 80).map(|v| v.0),
        reject
    );
    assert_eq!(compiled.set_len(Family::Ip, "service-nodeports"), 0);
}

#[test]
fn internal_policy_local_does_not_narrow_external_cluster_traffic() {
    let svc = node_port_web().internal_local();
    let compiled = cluster().service(svc).slice(two_nodes()).compile();
    let verdict = compiled.node_port_in(Family::Ip, "service-nodeports", L4Proto::Tcp, 30080);
    let rules = compiled.chain_rules(Family::Ip, &external_chain(verdict));
    let cluster_chain = rules[1].strip_prefix("goto ").expect("goto");
    assert!(cluster_chain.starts_with("cluster-"), "{cluster_chain}");
    assert_eq!(compiled.chain_rules(Family::Ip, cluster_chain).len(), 2);
}

#[test]
fn an_external_ip_that_is_not_an_address_refuses_the_service() {
    let compiled = cluster()
        .service(web().external_ips(&["192.0.2.300"]))
        .compile();
    assert_eq!(compiled.service_ip("198.19.0.10", "TCP", 80), None);
    assert!(
        compiled.messages()[0].contains("spec.externalIPs"),
        "{:?}",
        compiled.messages()
    );
}

#[test]
fn source_ranges_guard_only_the_load_balancer_ips_of_a_load_balancer_service() {
    let compiled = cluster()
        .service(
            node_port_web()
                .type_("LoadBalancer")
                .external_ips(&["192.0.2.9"])
                .ingress("192.0.2.10", None)
                .source_ranges(&["203.0.113.0/25"]),
        )
        .slice(two_nodes())
        .compile();
    assert_eq!(compiled.set_len(Family::Ip, "firewall-ips"), 1);
    let lb = nftproxy_rules::Value::from("192.0.2.10".parse::<std::net::IpAddr>().unwrap());
    let key = vec![
        lb,
        nftproxy_rules::Value::Proto(L4Proto::Tcp),
        nftproxy_rules::Value::Port(80),
    ];
    assert!(compiled.set_has(Family::Ip, "firewall-ips", key));
}

#[test]
fn source_ranges_of_a_service_that_is_not_a_load_balancer_are_ignored() {
    let compiled = cluster()
        .service(
            node_port_web()
                .external_ips(&["192.0.2.9"])
                .source_ranges(&["203.0.113.0/25"]),
        )
        .slice(two_nodes())
        .compile();
    assert_eq!(compiled.set_len(Family::Ip, "firewall-ips"), 0);
}

#[test]
fn external_and_ingress_ips_of_a_family_without_cluster_ip_are_reported_and_ignored() {
    let compiled = cluster()
        .service(
            web()
                .type_("LoadBalancer")
                .external_ips(&["192.0.2.10", "2001:db8:2::10"])
                .ingress("2001:db8:2::11", None),
        )
        .slice(two_nodes())
        .compile();
    assert_eq!(compiled.set_len(Family::Ip6, "service-ips"), 0);
    assert!(compiled.service_ip("192.0.2.10", "TCP", 80).is_some());
    let messages = compiled.messages();
    for expected in [
        "Service ns/web: externalIP 2001:db8:2::10 is IPv6 but the Service has no IPv6 ClusterIP; ignored",
        "Service ns/web: load balancer ingress IP 2001:db8:2::11 is IPv6 but the Service has no IPv6 ClusterIP; ignored",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "{messages:#?}"
        );
    }
}
