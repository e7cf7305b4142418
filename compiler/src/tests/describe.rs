//! `describe`: the choices behind the rules, per Service, port and family.

use super::web;
use crate::describe;
use crate::testing::{cluster, config, ep, service, slice};

/// One ready endpoint on node-1 and one on node-2, `http` -> 8080.
fn two_nodes() -> crate::testing::SliceBuilder {
    slice("ns/web-1", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.1.5").node("node-1"))
        .endpoint(ep("198.18.2.5").node("node-2"))
}

#[test]
fn a_cluster_service_lists_every_endpoint_and_this_nodes_ones_apart() {
    let snapshot = cluster().service(web()).slice(two_nodes()).0;
    let description = describe(&snapshot, &config());
    let [service] = description.services.as_slice() else {
        panic!("one service: {description:?}");
    };
    assert_eq!((&*service.namespace, &*service.name), ("ns", "web"));
    let family = &service.ports[0].families[0];
    assert_eq!(family.verdict, "dnat");
    assert_eq!(family.endpoints, ["198.18.1.5:8080", "198.18.2.5:8080"]);
    assert_eq!(family.local_endpoints, ["198.18.1.5:8080"]);
    assert_eq!(
        family.external_endpoints, None,
        "not reachable from outside"
    );
    assert_eq!(description.no_local_endpoints, Default::default());
}

#[test]
fn local_policies_without_a_local_endpoint_drop_and_are_counted() {
    let remote = slice("ns/web-1", "web")
        .port("http", 8080)
        .endpoint(ep("198.18.2.5").node("node-2"));
    let local_web = web()
        .type_("NodePort")
        .internal_local()
        .node_port(30080)
        .external_local();
    let snapshot = cluster().service(local_web).slice(remote).0;
    let description = describe(&snapshot, &config());
    let family = &description.services[0].ports[0].families[0];
    assert_eq!(
        (family.verdict, family.external_verdict),
        ("drop", Some("drop"))
    );
    assert!(family.endpoints.is_empty());
    assert_eq!(description.no_local_endpoints.internal, 1);
    assert_eq!(description.no_local_endpoints.external, 1);
}

#[test]
fn a_service_without_any_endpoint_rejects_and_is_not_counted_as_lacking_local_ones() {
    let local_web = web()
        .type_("NodePort")
        .internal_local()
        .node_port(30080)
        .external_local();
    let description = describe(&cluster().service(local_web).0, &config());
    let family = &description.services[0].ports[0].families[0];
    assert_eq!(
        (family.verdict, family.external_verdict),
        ("reject", Some("reject"))
    );
    assert_eq!(description.no_local_endpoints, Default::default());
}

#[test]
fn diagnostics_are_filed_under_their_service_or_apart() {
    let odd = web().session_affinity("ClientIP").affinity_timeout(0);
    let broken = service("ns/broken")
        .cluster_ip("not-an-ip")
        .port("http", 80);
    let snapshot = cluster().service(odd).service(broken).0;
    let description = describe(&snapshot, &config());
    let web = &description.services[0];
    assert_eq!(web.session_affinity_seconds, Some(10800));
    assert_eq!(web.diagnostics.len(), 1, "{:?}", web.diagnostics);
    assert!(web.diagnostics[0].contains("Service ns/web"));
    assert!(
        description
            .other_diagnostics
            .iter()
            .any(|d| d.contains("Service ns/broken")),
        "{:?}",
        description.other_diagnostics
    );
}
