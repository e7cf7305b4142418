//! Targeted cases: what the incremental compiler recompiles, and the hand-overs between
//! Services that a patch must get right. Every case also checks equality with `compile`
//! (random histories and every fixture are in `tests/incremental.rs`).

use std::sync::Arc;

use nftproxy_rules::{Family, Value, Verdict};

use super::IncrementalCompiler;
use crate::testing::{
    Cluster, ServiceBuilder, cluster, config, legacy, service, slice, zoned_node,
};
use crate::{ClusterSnapshot, CompileConfig, Compiled, compile};

/// `ns/NAME`: ClusterIP 198.19.0.N, port `http` 80/TCP.
fn svc(name: &str, n: u8) -> ServiceBuilder {
    service(&format!("ns/{name}"))
        .cluster_ip(&format!("198.19.0.{n}"))
        .port("http", 80)
}

/// Compiles incrementally, checks the result against `compile`, returns it and how many
/// Services were compiled.
fn step(compiler: &mut IncrementalCompiler, snapshot: &ClusterSnapshot) -> (Compiled, usize) {
    step_with(compiler, snapshot, &config())
}

fn step_with(
    compiler: &mut IncrementalCompiler,
    snapshot: &ClusterSnapshot,
    config: &CompileConfig,
) -> (Compiled, usize) {
    let got = compiler.compile(snapshot, config).clone();
    assert_eq!(got, compile(snapshot, config));
    (got, compiler.recompiled().unwrap_or_default())
}

/// Ten Services `svc-I` with ClusterIP 198.19.0.I+1, each with a slice of one endpoint.
fn ten() -> Cluster {
    (0..10u8).fold(cluster(), |c, i| {
        let name = format!("svc-{i}");
        c.service(svc(&name, i + 1)).slice(
            slice(&format!("ns/{name}-1"), &name)
                .port("http", 8080)
                .ready(&[&format!("198.18.0.{}", i + 1)]),
        )
    })
}

#[test]
fn a_changed_slice_recompiles_only_its_service() {
    let mut compiler = IncrementalCompiler::new();
    let mut snapshot = ten().0;
    assert_eq!(step(&mut compiler, &snapshot).1, 10);
    assert_eq!(step(&mut compiler, &snapshot).1, 0);
    snapshot.endpoint_slices[3] = Arc::new(
        slice("ns/svc-3-1", "svc-3")
            .port("http", 8080)
            .ready(&["198.18.0.4", "198.18.0.40"])
            .build()
            .into(),
    );
    let (compiled, recompiled) = step(&mut compiler, &snapshot);
    assert_eq!(recompiled, 1);
    assert_eq!(
        compiled.targets("198.19.0.4", "TCP", 80),
        ["198.18.0.4:8080", "198.18.0.40:8080"]
    );
}

#[test]
fn equal_objects_in_new_arcs_and_another_order_recompile_nothing() {
    let mut compiler = IncrementalCompiler::new();
    let snapshot = ten().0;
    step(&mut compiler, &snapshot);
    let copied = ClusterSnapshot {
        services: copied(&snapshot.services),
        endpoint_slices: copied(&snapshot.endpoint_slices),
        ..snapshot.clone()
    };
    assert_eq!(step(&mut compiler, &copied).1, 0);
}

/// The objects of `list` in new `Arc`s, in reverse order.
fn copied<T: Clone>(list: &[Arc<T>]) -> Vec<Arc<T>> {
    list.iter().rev().map(|o| Arc::new(T::clone(o))).collect()
}

#[test]
fn a_global_change_recompiles_everything() {
    let mut compiler = IncrementalCompiler::new();
    let mut snapshot = ten().0;
    step(&mut compiler, &snapshot);
    snapshot
        .nodes
        .push(Arc::new(zoned_node("node-1", "zone-a")));
    assert_eq!(step(&mut compiler, &snapshot).1, 10);
    // A change of this Node that changes nothing the compile reads (a heartbeat).
    let mut beat = zoned_node("node-1", "zone-a");
    let annotations = beat.metadata.annotations.get_or_insert_default();
    annotations.insert("heartbeat".to_owned(), "1".to_owned());
    snapshot.nodes[0] = Arc::new(beat);
    assert_eq!(step(&mut compiler, &snapshot).1, 0);
    snapshot.nodes[0] = Arc::new(zoned_node("node-1", "zone-b"));
    assert_eq!(step(&mut compiler, &snapshot).1, 10);
    // Another node is not a global input.
    snapshot
        .nodes
        .push(Arc::new(zoned_node("node-2", "zone-b")));
    assert_eq!(step(&mut compiler, &snapshot).1, 0);
    let masquerade_all = CompileConfig {
        masquerade_all: true,
        ..config()
    };
    assert_eq!(step_with(&mut compiler, &snapshot, &masquerade_all).1, 10);
}

#[test]
fn a_clusterip_passes_to_the_younger_service_when_the_older_goes() {
    let mut compiler = IncrementalCompiler::new();
    let older = svc("old", 1).created(1000);
    let younger = svc("young", 1).created(2000);
    let both = cluster().service(older).service(younger.clone());
    let (compiled, _) = step(&mut compiler, &both.0);
    let (_, comment) = compiled.no_endpoint("198.19.0.1", "TCP", 80).unwrap();
    assert_eq!(comment, "ns/old:http");
    assert_eq!(compiled.messages().len(), 1);
    // The older one goes: the younger one's losses change, so it is compiled again.
    let (compiled, recompiled) = step(&mut compiler, &cluster().service(younger).0);
    assert_eq!(recompiled, 1);
    let (_, comment) = compiled.no_endpoint("198.19.0.1", "TCP", 80).unwrap();
    assert_eq!(comment, "ns/young:http");
    assert!(compiled.messages().is_empty());
}

#[test]
fn a_shared_endpoint_and_clusterip_stay_while_one_service_uses_them() {
    let mut compiler = IncrementalCompiler::new();
    let shared = |name: &str| {
        slice(&format!("ns/{name}-1"), name)
            .port("http", 8080)
            .ready(&["198.18.0.7"])
    };
    // `a` and `b` share an endpoint; `a` and `c` share a ClusterIP (on other ports).
    let all = cluster()
        .service(svc("a", 1))
        .service(svc("b", 2))
        .service(service("ns/c").cluster_ip("198.19.0.1").port("dns", 53))
        .slice(shared("a"))
        .slice(shared("b"));
    let ip = |text: &str| Value::from(text.parse::<std::net::IpAddr>().unwrap());
    let (compiled, _) = step(&mut compiler, &all.0);
    assert!(compiled.messages().is_empty());
    let hairpin = vec![ip("198.18.0.7"), ip("198.18.0.7")];
    assert!(compiled.set_has(Family::Ip, "endpoint-hairpin", hairpin.clone()));
    let mut without_a = all.0.clone();
    without_a.services.remove(0);
    let (compiled, recompiled) = step(&mut compiler, &without_a);
    assert_eq!(
        recompiled, 0,
        "`a` is only taken out; `b` and `c` are left alone"
    );
    assert!(compiled.set_has(Family::Ip, "endpoint-hairpin", hairpin.clone()));
    assert!(compiled.set_has(Family::Ip, "cluster-ips", vec![ip("198.19.0.1")]));
    // And they go with their last user.
    let (compiled, _) = step(&mut compiler, &cluster().service(svc("a", 1)).0);
    assert!(!compiled.set_has(Family::Ip, "endpoint-hairpin", hairpin));
    assert!(compiled.set_has(Family::Ip, "cluster-ips", vec![ip("198.19.0.1")]));
    assert!(!compiled.set_has(Family::Ip, "cluster-ips", vec![ip("198.19.0.2")]));
}

#[test]
fn a_slice_that_changes_owner_moves_its_endpoints() {
    let mut compiler = IncrementalCompiler::new();
    let base = cluster().service(svc("a", 1)).service(svc("b", 2));
    let with = |owner: &str| {
        base.clone().slice(
            slice("ns/moving", owner)
                .port("http", 8080)
                .ready(&["198.18.0.9"]),
        )
    };
    step(&mut compiler, &with("a").0);
    let (compiled, recompiled) = step(&mut compiler, &with("b").0);
    assert_eq!(recompiled, 2);
    assert!(compiled.targets("198.19.0.1", "TCP", 80).is_empty());
    assert_eq!(
        compiled.targets("198.19.0.2", "TCP", 80),
        ["198.18.0.9:8080"]
    );
}

#[test]
fn legacy_endpoints_count_only_while_the_service_has_no_slice() {
    let mut compiler = IncrementalCompiler::new();
    let base = cluster().service(svc("a", 1)).endpoints(legacy(
        "ns/a",
        &[("http", 8080)],
        &["198.18.0.1"],
        &[],
    ));
    let (compiled, _) = step(&mut compiler, &base.0);
    assert_eq!(
        compiled.targets("198.19.0.1", "TCP", 80),
        ["198.18.0.1:8080"]
    );
    let with_slice = base.slice(
        slice("ns/a-1", "a")
            .port("http", 8080)
            .ready(&["198.18.0.2"]),
    );
    let (compiled, _) = step(&mut compiler, &with_slice.0);
    assert_eq!(
        compiled.targets("198.19.0.1", "TCP", 80),
        ["198.18.0.2:8080"]
    );
    let goto = Verdict::Goto("reject-chain".to_owned().into());
    let mut without = with_slice.0.clone();
    without.endpoints.clear();
    without.endpoint_slices.clear();
    let (compiled, _) = step(&mut compiler, &without);
    assert_eq!(
        compiled.no_endpoint("198.19.0.1", "TCP", 80).unwrap().0,
        goto
    );
}

#[test]
fn reset_and_current() {
    let mut compiler = IncrementalCompiler::new();
    assert!(compiler.current().is_none());
    let snapshot = ten().0;
    let compiled = compiler.compile(&snapshot, &config()).clone();
    assert_eq!(compiler.current(), Some(&compiled));
    compiler.reset();
    assert!(compiler.current().is_none());
    assert_eq!(step(&mut compiler, &snapshot).1, 10);
}
