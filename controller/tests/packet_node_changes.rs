//! `nftproxy run --manifests DIR` in node-1 follows changes of the node itself: a LAN
//! address added or removed (seen over netlink, no manifest changes) moves the NodePort
//! addresses that `nodePortAddresses` CIDRs select, and a new zone label on the Node
//! changes which hinted endpoints traffic goes to.
//!
//! The lab's Node object lists only `198.51.100.1` for node-1; `198.51.100.11` is added
//! to its LAN interface during the test. Pods: `a` (node-1), `b` (node-2), client pod `x`
//! (node-1), external client `ext`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod lab;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::netns::{NetNs, kernel_tests_enabled};
use common::proxy::Proxy;
use lab::zones::zoned_base;
use lab::{Lab, Member, NODE_PORT_WEB, Outcome, Proto, at, ip};
use nftproxy_compiler::kube_proxy_config::KubeProxyConfiguration;
use nftproxy_compiler::{ClusterSnapshot, compile, manifest};
use nftproxy_rules::Ruleset;

/// `web` (PreferClose): endpoint `a` on node-1 hinted for zone-a, `b` on node-2 for zone-b.
const HINTED: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 198.19.0.10
  trafficDistribution: PreferClose
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v4, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
- addresses: [198.18.1.10]
  conditions: {ready: true}
  nodeName: node-1
  hints: {forZones: [{name: zone-a}]}
- addresses: [198.18.2.10]
  conditions: {ready: true}
  nodeName: node-2
  hints: {forZones: [{name: zone-b}]}
"#;

const SECOND: &str = "198.51.100.11";

/// A manifest directory holding `base.yaml` and `web.yaml`, and a config file elsewhere.
struct Setup {
    dir: tempfile::TempDir,
    config_dir: tempfile::TempDir,
    config_text: String,
}

impl Setup {
    fn new(base: &str, web: &str, config_body: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.yaml"), base).unwrap();
        std::fs::write(dir.path().join("web.yaml"), web).unwrap();
        let config_dir = tempfile::tempdir().unwrap();
        let config_text = lab::kube_proxy_config(&format!(
            "detectLocalMode: ClusterCIDR\nclusterCIDR: 198.18.0.0/16\nnftables: {{minSyncPeriod: 0s}}\n{config_body}"
        ));
        std::fs::write(config_dir.path().join("config.yaml"), &config_text).unwrap();
        Setup {
            dir,
            config_dir,
            config_text,
        }
    }

    /// Starts `nftproxy run` in node-1 and waits for its first (successful) sync.
    fn start(&self, lab: &Lab) -> Proxy {
        let config = self.config_dir.path().join("config.yaml");
        let proxy = Proxy::start(
            lab.node1(),
            self.dir.path(),
            &["--config", config.to_str().unwrap()],
        );
        let first = proxy.wait_syncs(1, Duration::from_secs(10));
        assert!(first[0].ok, "{}", proxy.log_text());
        proxy
    }

    /// What `compile` makes of the directory's manifests as node-1.
    fn compiled(&self) -> Ruleset {
        let mut snapshot = ClusterSnapshot::default();
        for name in ["base.yaml", "web.yaml"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap();
            for decoded in manifest::decode(&text).expect("valid test manifests") {
                assert!(snapshot.push(decoded.object).is_none());
            }
        }
        let config = KubeProxyConfiguration::from_yaml(&self.config_text).unwrap();
        compile(&snapshot, &config.compile_config("node-1").unwrap()).ruleset
    }
}

/// The elements of node-1's `ip nftproxy` set `nodeport-ips`, sorted.
fn nodeport_ips(node: &NetNs) -> Vec<IpAddr> {
    let out = node.exec_ok(&["nft", "-j", "list", "set", "ip", "nftproxy", "nodeport-ips"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let set = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("set"))
        .expect("the listing holds the set");
    let mut ips: Vec<IpAddr> = set["elem"]
        .as_array()
        .map(|elems| {
            elems
                .iter()
                .map(|e| e.as_str().unwrap().parse().unwrap())
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    ips
}

/// Polls `check` for up to 5 s; panics with `what` and the log when it never holds.
fn wait_until(proxy: &Proxy, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not so after 5 s\n--- log ---\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_lan_address_added_and_removed_moves_the_node_port_addresses_without_a_manifest_change() {
    if !kernel_tests_enabled(
        "a_lan_address_added_and_removed_moves_the_node_port_addresses_without_a_manifest_change",
    ) {
        return;
    }
    let lab = Lab::builder()
        .pod("b", lab::Node::Two, 10)
        .client("ext", 10)
        .build();
    let setup = Setup::new(
        lab::BASE,
        NODE_PORT_WEB,
        "nodePortAddresses: [\"198.51.100.0/24\"]\n",
    );
    let proxy = setup.start(&lab);
    let to = at(&format!("{SECOND}:30080"));
    assert_eq!(nodeport_ips(lab.node1()), [ip("198.51.100.1")]);
    let before = lab.probe(Member::Client("ext"), Proto::Tcp, to);
    assert!(
        !matches!(before.outcome, Outcome::Reply { .. }),
        "answered before the address exists: {before}"
    );

    let syncs = proxy.syncs().len();
    lab.add_node1_lan_address(&format!("{SECOND}/24"));
    wait_until(&proxy, "the set holds the new address", || {
        nodeport_ips(lab.node1()) == [ip("198.51.100.1"), ip(SECOND)]
    });
    for proto in [Proto::Tcp, Proto::Udp] {
        let probe = lab.probe(Member::Client("ext"), proto, to);
        assert_eq!(probe.reply().0, "b", "{probe}");
    }
    let after = proxy.syncs();
    assert!(
        after.len() > syncs,
        "no sync for the new address: {after:?}"
    );
    assert!(
        after[syncs..].iter().all(|s| s.ok && s.kind == "partial"),
        "{after:?}"
    );

    lab.del_node1_lan_address(&format!("{SECOND}/24"));
    wait_until(&proxy, "the set no longer holds the address", || {
        nodeport_ips(lab.node1()) == [ip("198.51.100.1")]
    });
    assert!(proxy.stop(), "nftproxy run exits cleanly");
}

/// nftproxy's tables as node-1's kernel lists them.
fn kernel_tables(node: &NetNs) -> Ruleset {
    let tables = nftproxy_compiler::table_ids();
    Ruleset::from_nft_json(&node.nft_list_json(), &tables).expect("listing parses")
}

/// The pods that answered 16 new TCP connections from pod `x` to the ClusterIP.
fn answering(lab: &Lab) -> Vec<String> {
    let spread = lab.spread(Member::Pod("x"), Proto::Tcp, at("198.19.0.10:80"), 16);
    spread.assert_all_answered();
    spread.pod_names().into_iter().map(str::to_owned).collect()
}

#[test]
fn a_new_zone_label_on_the_node_moves_traffic_to_the_endpoints_hinted_for_that_zone() {
    if !kernel_tests_enabled(
        "a_new_zone_label_on_the_node_moves_traffic_to_the_endpoints_hinted_for_that_zone",
    ) {
        return;
    }
    let lab = Lab::builder()
        .pod("a", lab::Node::One, 10)
        .pod("b", lab::Node::Two, 10)
        .pod("x", lab::Node::One, 20)
        .build();
    let setup = Setup::new(&zoned_base([Some("zone-a"), Some("zone-b")]), HINTED, "");
    let proxy = setup.start(&lab);
    let in_zone_a = setup.compiled();
    wait_until(&proxy, "the kernel holds the zone-a ruleset", || {
        kernel_tables(lab.node1()) == in_zone_a
    });
    assert_eq!(answering(&lab), ["a"]);

    let relabelled = zoned_base([Some("zone-b"), Some("zone-b")]);
    std::fs::write(setup.dir.path().join("base.yaml"), relabelled).unwrap();
    let in_zone_b = setup.compiled();
    assert_ne!(in_zone_a, in_zone_b, "the label must change the ruleset");
    wait_until(&proxy, "the kernel holds the zone-b ruleset", || {
        kernel_tables(lab.node1()) == in_zone_b
    });
    assert_eq!(answering(&lab), ["b"]);
    assert!(proxy.syncs().iter().all(|s| s.ok), "{:?}", proxy.syncs());
}
