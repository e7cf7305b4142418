//! The data path stays flat: no chain that every packet traverses grows with the number of
//! services; services only add map elements and their own chains, spread over the shard
//! tables.
#![allow(clippy::expect_used)]

use nftproxy_compiler::{ClusterSnapshot, CompileConfig, DetectLocal, compile, manifest};
use std::collections::BTreeSet;

use nftproxy_rules::{Family, Ruleset, Verdict};

/// `count` dual-stack services with two endpoints each, as manifest text.
fn cluster(count: usize) -> String {
    let mut text = String::new();
    for i in 0..count {
        let (hi, lo) = (i / 250, i % 250 + 1);
        text.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: ns}}\n\
             spec:\n  clusterIPs: [198.19.{hi}.{lo}, \"2001:db8:19::{i:x}\"]\n  \
             ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: svc-{i}-a, namespace: ns, labels: {{kubernetes.io/service-name: svc-{i}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080}}]\n\
             endpoints:\n- {{addresses: [198.18.{hi}.{lo}], nodeName: node-1}}\n\
             - {{addresses: [198.18.{}.{lo}], nodeName: node-2}}\n---\n",
            hi + 100
        ));
    }
    text
}

fn compiled(count: usize) -> Ruleset {
    let mut snapshot = ClusterSnapshot::default();
    for decoded in manifest::decode(&cluster(count)).expect("generated manifests decode") {
        assert!(snapshot.push(decoded.object).is_none(), "only known kinds");
    }
    let config = CompileConfig {
        hostname: "node-1".into(),
        detect_local: DetectLocal::ClusterCidr(vec!["198.18.0.0/16".parse().expect("cidr")]),
        ..CompileConfig::default()
    };
    let compiled = compile(&snapshot, &config);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    compiled.ruleset
}

/// Whether `name` is a service port's own chain (`service-HASH-ns/name/proto/port`).
fn is_service_chain(name: &str) -> bool {
    name.starts_with("service-") && name.contains('/')
}

/// (family, main table or a shard, chain) -> rule count, for chains that are not a
/// service's own chain. Every shard has the same layout, so shards count as one.
fn shared_chains(ruleset: &Ruleset) -> BTreeSet<(Family, bool, String, usize)> {
    let mut out = BTreeSet::new();
    for (id, table) in &ruleset.tables {
        let shard = id.name != nftproxy_compiler::TABLE;
        for (name, chain) in &table.chains {
            if !is_service_chain(name) && !name.starts_with("external-") {
                out.insert((id.family, shard, name.clone(), chain.rules.len()));
            }
        }
    }
    out
}

#[test]
fn shared_chains_do_not_grow_with_the_number_of_services() {
    let small = compiled(1);
    let large = compiled(300);
    assert_eq!(shared_chains(&small), shared_chains(&large));
    let service_chains = |r: &Ruleset| -> usize {
        r.tables
            .values()
            .map(|t| t.chains.keys().filter(|n| is_service_chain(n)).count())
            .sum()
    };
    assert_eq!(
        service_chains(&large),
        300,
        "one IPv4 chain per service port"
    );
}

#[test]
fn services_reach_their_chains_only_through_map_elements() {
    let large = compiled(300);
    let mut elements = [0, 0];
    let mut shards = 0;
    for (id, table) in &large.tables {
        for chain in table.chains.values() {
            for rule in &chain.rules {
                for stmt in rule.stmts.list().iter() {
                    let target = stmt.target().unwrap_or_default();
                    assert!(
                        !is_service_chain(target),
                        "{} jumps to {target} directly",
                        chain.name
                    );
                }
            }
        }
        if id.name == nftproxy_compiler::TABLE {
            assert!(
                !table.sets.contains_key("service-ips"),
                "the main table dispatches nothing"
            );
            continue;
        }
        shards += 1;
        let service_ips = table.sets.get("service-ips").expect("service-ips map");
        for element in service_ips.elements.values() {
            let Some(nftproxy_rules::Value::Verdict(Verdict::Goto(chain))) = &element.value else {
                panic!("not a goto: {element:?}");
            };
            assert!(
                table.chains.contains_key(&**chain),
                "{chain} is not in {}",
                id.name
            );
        }
        elements[usize::from(table.family == Family::Ip6)] += service_ips.elements.len();
    }
    assert_eq!(elements, [300, 0], "one IPv4 element per service port");
    assert_eq!(
        shards,
        nftproxy_compiler::SHARDS,
        "300 ports use every IPv4 shard"
    );
}
