//! Generated clusters for measurements: N ClusterIP services with E ready endpoints each,
//! as the API objects the compiler reads, and the path of the built `nftproxy-nft` helper.
//! Self-contained, so benches can include it with `#[path]`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nftproxy_compiler::{ClusterSnapshot, CompileConfig};

/// The node the generated clusters are compiled for.
pub const NODE: &str = "node-0";

/// The workspace's `nftproxy-nft` helper, built next to the test's `deps/` directory.
pub fn nft_helper() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let helper = dir.join("nftproxy-nft");
    assert!(
        helper.exists(),
        "{} is missing: build it first (`cargo build -p nftproxy-nft`; `cargo test --workspace` does; add `--release` for release tests and benches)",
        helper.display()
    );
    helper
}

/// The default compile configuration as [`NODE`].
pub fn config() -> CompileConfig {
    CompileConfig {
        hostname: NODE.into(),
        ..CompileConfig::default()
    }
}

fn meta(name: String, labels: Option<BTreeMap<String, String>>) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("bench".into()),
        name: Some(name),
        labels,
        ..ObjectMeta::default()
    }
}

/// Service `svc-i`: ClusterIP 198.19.(i / 256).(i % 256), port `http` 80 -> 8080/TCP.
pub fn service(i: usize) -> Service {
    let ip = format!("198.19.{}.{}", (i >> 8) & 0xff, i & 0xff);
    Service {
        metadata: meta(format!("svc-{i}"), None),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.clone()),
            cluster_ips: Some(vec![ip]),
            ip_families: Some(vec!["IPv4".into()]),
            selector: Some(BTreeMap::from([("app".into(), format!("svc-{i}"))])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `svc-i`'s slice with `endpoints` ready endpoints spread over node-0..3. Endpoint `j`
/// gets address number `(i * endpoints + j + first) % 65000 + 2` in 198.18.0.0/16:
/// beyond 65k endpoints addresses repeat across services, as a pod may back several.
pub fn slice(i: usize, endpoints: usize, first: usize) -> EndpointSlice {
    let label = BTreeMap::from([("kubernetes.io/service-name".into(), format!("svc-{i}"))]);
    let endpoint = |j: usize| {
        let k = (i * endpoints + j + first) % 65_000 + 2;
        Endpoint {
            addresses: vec![format!("198.18.{}.{}", (k >> 8) & 0xff, k & 0xff)],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: Some(format!("node-{}", (i + j) % 4)),
            ..Endpoint::default()
        }
    };
    EndpointSlice {
        metadata: meta(format!("svc-{i}-abcde"), Some(label)),
        address_type: "IPv4".into(),
        endpoints: (0..endpoints).map(endpoint).collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

/// `services` services with `endpoints` endpoints each, and the Node [`NODE`].
pub fn cluster(services: usize, endpoints: usize) -> ClusterSnapshot {
    let node = Node {
        metadata: ObjectMeta {
            name: Some(NODE.into()),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: "198.51.100.10".into(),
            }]),
            ..NodeStatus::default()
        }),
        ..Node::default()
    };
    ClusterSnapshot {
        services: (0..services).map(|i| Arc::new(service(i))).collect(),
        endpoint_slices: (0..services)
            .map(|i| Arc::new(slice(i, endpoints, 0).into()))
            .collect(),
        nodes: vec![Arc::new(node)],
        ..ClusterSnapshot::default()
    }
}

/// The services and slices of [`cluster`] as one multi-document manifest file (without
/// the Node, which tests that run `nftproxy run` write for their own node name).
pub fn manifest(services: usize, endpoints: usize) -> String {
    let mut text = String::new();
    for i in 0..services {
        for document in [
            serde_yaml::to_string(&service(i)),
            serde_yaml::to_string(&slice(i, endpoints, 0)),
        ] {
            text.push_str(&document.expect("generated objects serialize"));
            text.push_str("---\n");
        }
    }
    text
}
