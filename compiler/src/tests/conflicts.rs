//! Services claiming the same externalIP / LB IP or NodePort: the older wins, a warning
//! names both (ClusterIP conflicts are in `services`).

use nftproxy_rules::{Family, L4Proto, Verdict};

use crate::testing::{ServiceBuilder, cluster, service, slice};

/// `ns/NAME` with ClusterIP 198.19.0.N, port `http` 80/TCP, created at `created`.
fn svc(name: &str, n: u8, created: i64) -> ServiceBuilder {
    service(&format!("ns/{name}"))
        .cluster_ip(&format!("198.19.0.{n}"))
        .port("http", 80)
        .created(created)
}

#[test]
fn older_service_wins_an_external_ip_conflict_and_both_are_named() {
    let compiled = cluster()
        .service(svc("a-new", 1, 2000).external_ips(&["192.0.2.9"]))
        .service(svc("b-old", 2, 1000).external_ips(&["192.0.2.9"]))
        .compile();
    let (_, comment) = compiled.no_endpoint("192.0.2.9", "TCP", 80).unwrap();
    assert_eq!(comment, "ns/b-old:http");
    assert_eq!(
        compiled.messages(),
        [
            "warning: Service ns/a-new: external address 192.0.2.9 TCP port 80 is already used by the older Service ns/b-old; ignored for port http"
        ]
    );
}

#[test]
fn older_service_wins_a_load_balancer_ip_conflict_with_an_external_ip() {
    let compiled = cluster()
        .service(
            svc("a-new", 1, 2000)
                .type_("LoadBalancer")
                .ingress("192.0.2.9", None)
                .source_ranges(&["203.0.113.0/24"]),
        )
        .service(svc("b-old", 2, 1000).external_ips(&["192.0.2.9"]))
        .compile();
    let (_, comment) = compiled.no_endpoint("192.0.2.9", "TCP", 80).unwrap();
    assert_eq!(comment, "ns/b-old:http");
    assert_eq!(
        compiled.set_len(Family::Ip, "firewall-ips"),
        0,
        "the loser's firewall is gone too"
    );
    assert_eq!(compiled.messages().len(), 1, "{:?}", compiled.messages());
}

#[test]
fn older_service_wins_a_node_port_conflict_and_both_are_named() {
    let endpoints = |name: &str, ip: &str| {
        slice(&format!("ns/{name}-1"), name)
            .port("http", 8080)
            .ready(&[ip])
    };
    let compiled = cluster()
        .service(svc("a-new", 1, 2000).type_("NodePort").node_port(30080))
        .service(svc("b-old", 2, 1000).type_("NodePort").node_port(30080))
        .slice(endpoints("a-new", "198.18.1.5"))
        .slice(endpoints("b-old", "198.18.1.6"))
        .compile();
    let verdict = compiled.node_port_in(Family::Ip, "service-nodeports", L4Proto::Tcp, 30080);
    let Some(Verdict::Goto(chain)) = verdict else {
        panic!("no NodePort element: {verdict:?}");
    };
    assert!(chain.ends_with("-ns/b-old/tcp/http"), "{chain}");
    assert_eq!(
        compiled.messages(),
        [
            "warning: Service ns/a-new: TCP NodePort 30080 is already used by the older Service ns/b-old; ignored for port http"
        ]
    );
}

#[test]
fn services_may_share_an_external_ip_on_different_ports_or_protocols() {
    let compiled = cluster()
        .service(svc("a", 1, 1000).external_ips(&["192.0.2.9"]))
        .service(
            service("ns/b")
                .cluster_ip("198.19.0.2")
                .port("https", 443)
                .external_ips(&["192.0.2.9"]),
        )
        .service(
            service("ns/c")
                .cluster_ip("198.19.0.3")
                .port_proto("dns", 80, "UDP")
                .type_("NodePort")
                .node_port(30080)
                .external_ips(&["192.0.2.9"]),
        )
        .service(svc("d", 4, 1000).type_("NodePort").node_port(30081))
        .compile();
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
}

#[test]
fn a_service_never_conflicts_with_itself() {
    let compiled = cluster()
        .service(
            svc("a", 1, 1000)
                .type_("LoadBalancer")
                .external_ips(&["192.0.2.9"])
                .ingress("192.0.2.9", None),
        )
        .compile();
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.messages());
}
