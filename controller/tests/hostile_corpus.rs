//! A corpus of hostile objects, each compiled beside a baseline cluster: names and port
//! names at their maximum lengths, unicode and characters that mean something to nft or
//! JSON, 100k endpoints in one slice, thousands of ports, duplicates and conflicts,
//! IPv4-mapped IPv6 addresses, wrong address families, ports 0 and 65536, negative and
//! huge timeouts.
//!
//! For every case: the compiler does not panic; the baseline's chains and elements are
//! all still there, unchanged (one bad object never breaks the others); a refused object
//! gets a diagnostic naming it; no hostile string reaches the rendered ruleset (script or
//! JSON), so nothing can be injected through a name or comment; and the kernel takes the
//! ruleset (`nft -c`, and for the mixed cluster a load that lists back equal to the model).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::netns::{NetNs, kernel_tests_enabled};
use nftproxy_compiler::{ClusterSnapshot, CompileConfig, Compiled, compile, manifest};
use nftproxy_rules::{Ruleset, validate_ruleset};
use serde_json::{Value, json};

/// Strings that would change the meaning of an nft script or a JSON document if they got
/// into one, or that are not what Kubernetes allows in a name.
const HOSTILE_STRINGS: &[&str] = &[
    "a\"b",
    "x; flush ruleset",
    "} ; table ip evil { chain c { type filter hook input priority 0; policy drop; } }",
    "# comment",
    "line\nbreak",
    "tab\there",
    "$define @set",
    "back\\slash",
    "\"},{\"flush\":{\"ruleset\":null}},{\"x\":\"",
    "ünïcödé-名前",
    "UPPER",
    "-leading-dash",
    "trailing-dash-",
    "dots.in.label",
    "",
    " ",
];

fn service(namespace: &str, name: &str, ip: &str, ports: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"clusterIP": ip, "ports": ports}})
}

fn tcp_port(name: &str, port: Value) -> Value {
    json!({"name": name, "protocol": "TCP", "port": port, "targetPort": 8080})
}

fn slice(namespace: &str, name: &str, service: &str, family: &str, endpoints: Value) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": namespace,
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": family,
           "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
           "endpoints": endpoints})
}

fn ready(address: &str, node: &str) -> Value {
    json!({"addresses": [address], "conditions": {"ready": true}, "nodeName": node})
}

/// The cluster every case is added to: `default/web` (TCP, two endpoints), `default/dns`
/// (UDP), and node-1.
fn baseline() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
               "status": {"addresses": [{"type": "InternalIP", "address": "198.51.100.1"}]}}),
        service(
            "default",
            "web",
            "198.19.0.10",
            json!([tcp_port("http", json!(80))]),
        ),
        slice(
            "default",
            "web-1",
            "web",
            "IPv4",
            json!([
                ready("198.18.2.10", "node-2"),
                ready("198.18.2.11", "node-2")
            ]),
        ),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "dns", "namespace": "default"},
               "spec": {"clusterIP": "198.19.0.11",
                        "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "dns-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "dns"}},
               "addressType": "IPv4",
               "ports": [{"name": "dns", "protocol": "UDP", "port": 53}],
               "endpoints": [ready("198.18.2.20", "node-2")]}),
    ]
}

fn config() -> CompileConfig {
    CompileConfig {
        hostname: "node-1".into(),
        ..CompileConfig::default()
    }
}

/// Decodes `objects` the way `nftproxy` reads a manifest file (one JSON array) and
/// compiles them.
fn compiled(objects: &[Value]) -> Compiled {
    let text = Value::Array(objects.to_vec()).to_string();
    let mut snapshot = ClusterSnapshot::default();
    for decoded in manifest::decode(&text).unwrap_or_else(|e| panic!("{e}")) {
        assert!(snapshot.push(decoded.object).is_none());
    }
    compile(&snapshot, &config())
}

/// Everything the baseline compiles to is in `combined`, unchanged: every table, every
/// chain with the same rules, every set with the same declaration and at least the same
/// elements.
fn assert_baseline_kept(base: &Ruleset, combined: &Ruleset, case: &str) {
    for (id, table) in &base.tables {
        let other = combined
            .table(id)
            .unwrap_or_else(|| panic!("{case}: table {id:?} is gone"));
        for (name, chain) in table.chains.iter() {
            let kept = other.chains.get(name.as_str());
            // Base chains and shared dispatch chains may gain rules for the new object;
            // a service's own chain must be exactly as it was.
            if chain.base.is_none() && !name.starts_with("service-") {
                continue;
            }
            if chain.base.is_none() {
                assert_eq!(kept, Some(chain), "{case}: chain {name} changed");
            } else {
                assert!(kept.is_some(), "{case}: base chain {name} is gone");
            }
        }
        for (name, set) in &table.sets {
            let kept = other
                .sets
                .get(name)
                .unwrap_or_else(|| panic!("{case}: set {name} is gone"));
            for (key, element) in set.elements.iter() {
                assert_eq!(
                    kept.elements.get(key),
                    Some(element),
                    "{case}: element {key:?} of {name} changed or is gone"
                );
            }
        }
    }
}

/// The rendered forms of `r` hold none of `strings` (those with a character that means
/// something to nft or JSON).
fn assert_not_rendered(r: &Ruleset, strings: &[&str], case: &str) {
    let script = r.to_string();
    let json = r.to_json().to_string();
    for s in strings {
        if s.len() < 3
            || s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            continue;
        }
        assert!(!script.contains(s), "{case}: {s:?} is in the nft script");
        let escaped = serde_json::to_string(s).unwrap();
        let inner = &escaped[1..escaped.len() - 1];
        assert!(!json.contains(inner), "{case}: {s:?} is in the JSON");
    }
}

/// Compiles baseline + `extra`; checks what every case must hold; returns the result.
fn check_case(ns: &NetNs, case: &str, extra: &[Value], strings: &[&str]) -> Compiled {
    let base = compiled(&baseline()).ruleset;
    let mut objects = baseline();
    objects.extend_from_slice(extra);
    let out = std::panic::catch_unwind(|| compiled(&objects))
        .unwrap_or_else(|_| panic!("{case}: the compiler panicked"));
    validate_ruleset(&out.ruleset).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_baseline_kept(&base, &out.ruleset, case);
    assert_not_rendered(&out.ruleset, strings, case);
    ns.nft_check(&out.ruleset.to_string(), false)
        .unwrap_or_else(|e| panic!("{case}: the kernel refused the ruleset: {e}"));
    out
}

/// Whether a diagnostic is about the object `kind namespace/name`. A name that is not a
/// valid Kubernetes name is shown quoted and escaped (`"a\"b"`), so that it stays on one
/// line and cannot pass for another.
fn names(out: &Compiled, kind: &str, namespace: &str, name: &str) -> bool {
    let either = |shown: &str, raw: &str| shown == raw || shown == format!("{raw:?}");
    out.diagnostics.iter().any(|d| {
        d.object.kind == kind
            && d.object
                .namespace
                .as_deref()
                .is_some_and(|ns| either(ns, namespace))
            && either(&d.object.name, name)
    })
}

fn kernel_lists_back(ns: &NetNs, r: &Ruleset, case: &str) {
    ns.nft_load(&r.to_string(), false)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let tables = nftproxy_compiler::table_ids();
    let listed = Ruleset::from_nft_json(&ns.nft_list_json(), &tables).unwrap();
    assert_eq!(&listed, r, "{case}: the kernel holds something else");
    ns.exec_ok(&["nft", "flush", "ruleset"]);
}

#[test]
fn hostile_names_anywhere_are_refused_or_kept_out_of_the_ruleset() {
    if !kernel_tests_enabled("hostile_names_anywhere_are_refused_or_kept_out_of_the_ruleset") {
        return;
    }
    let ns = NetNs::new("hostile-names");
    let mut everything = Vec::new();
    for (i, s) in HOSTILE_STRINGS.iter().enumerate() {
        let ip = format!("198.19.5.{}", i + 1);
        let ok_name = format!("ok-{i}");
        let cases = [
            (
                "service name",
                vec![service(
                    "default",
                    s,
                    &ip,
                    json!([tcp_port("http", json!(80))]),
                )],
                ("Service", "default", *s),
            ),
            (
                "namespace",
                vec![service(
                    s,
                    &ok_name,
                    &ip,
                    json!([tcp_port("http", json!(80))]),
                )],
                ("Service", *s, ok_name.as_str()),
            ),
            (
                "port name",
                vec![service(
                    "default",
                    &ok_name,
                    &ip,
                    json!([tcp_port(s, json!(80))]),
                )],
                ("Service", "default", ok_name.as_str()),
            ),
            (
                "slice name and service label",
                vec![
                    service(
                        "default",
                        &ok_name,
                        &ip,
                        json!([tcp_port("http", json!(80))]),
                    ),
                    slice(
                        "default",
                        s,
                        &ok_name,
                        "IPv4",
                        json!([ready("198.18.2.30", "node-2")]),
                    ),
                    slice(
                        "default",
                        &format!("{ok_name}-x"),
                        s,
                        "IPv4",
                        json!([ready("198.18.2.31", "node-2")]),
                    ),
                ],
                ("", "", ""),
            ),
            (
                "node name, zone and hostname of an endpoint",
                vec![
                    service(
                        "default",
                        &ok_name,
                        &ip,
                        json!([tcp_port("http", json!(80))]),
                    ),
                    slice(
                        "default",
                        &format!("{ok_name}-1"),
                        &ok_name,
                        "IPv4",
                        json!([
                            {"addresses": ["198.18.2.32"], "conditions": {"ready": true},
                             "nodeName": s, "zone": s, "hostname": s,
                             "hints": {"forZones": [{"name": s}]}}
                        ]),
                    ),
                ],
                ("", "", ""),
            ),
            (
                "labels and annotations",
                vec![json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": ok_name, "namespace": "default",
                                 "labels": {"app": s, "x": s},
                                 "annotations": {"note": s, s.to_string(): "v"}},
                    "spec": {"clusterIP": ip, "ports": [tcp_port("http", json!(80))]}})],
                ("", "", ""),
            ),
        ];
        for (what, extra, refused) in cases {
            let case = format!("{what} {s:?}");
            let out = check_case(&ns, &case, &extra, &[s]);
            // A Service's only port may be unnamed.
            let valid_label =
                nftproxy_compiler_names_ok(s) || (what == "port name" && s.is_empty());
            if !refused.0.is_empty() && !valid_label {
                assert!(
                    names(&out, refused.0, refused.1, refused.2),
                    "{case}: no diagnostic names the object: {:#?}",
                    out.diagnostics
                );
            }
            everything.extend(extra);
        }
    }
    // All of it at once (deduplicated by what the compiler keeps): the kernel holds exactly
    // the model.
    let mut objects = baseline();
    objects.extend(everything);
    let out = compiled(&objects);
    assert_not_rendered(&out.ruleset, HOSTILE_STRINGS, "everything");
    kernel_lists_back(&ns, &out.ruleset, "every hostile name at once");
}

/// Whether `s` is a valid DNS-1123 label (what Kubernetes allows as a namespace, a
/// Service name or, lowercase, a port name).
fn nftproxy_compiler_names_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[test]
fn names_at_their_maximum_lengths_compile_and_load() {
    if !kernel_tests_enabled("names_at_their_maximum_lengths_compile_and_load") {
        return;
    }
    let ns = NetNs::new("hostile-long");
    let label = format!("n{}", "a".repeat(62));
    let subdomain = format!(
        "{}.{}.{}.{}",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(63),
        "e".repeat(61)
    );
    assert_eq!((label.len(), subdomain.len()), (63, 253));
    let port = "p23456789012345";
    let extra = vec![
        service(
            &label,
            &label,
            "198.19.6.1",
            json!([tcp_port(port, json!(80))]),
        ),
        {
            let mut long = slice(
                &label,
                &subdomain,
                &label,
                "IPv4",
                json!([ready("198.18.2.40", "node-2")]),
            );
            long["ports"][0]["name"] = json!(port);
            long
        },
    ];
    let out = check_case(&ns, "maximum lengths", &extra, &[]);
    assert!(out.diagnostics.is_empty(), "{:#?}", out.diagnostics);
    let script = out.ruleset.to_string();
    assert!(script.contains("198.18.2.40"), "the endpoint is programmed");
    let mut objects = baseline();
    objects.extend(extra);
    kernel_lists_back(&ns, &compiled(&objects).ruleset, "maximum lengths");
    // One more character anywhere is refused, naming the object.
    let too_long = format!("{label}x");
    let out = check_case(
        &ns,
        "64-character name",
        &[service(
            "default",
            &too_long,
            "198.19.6.2",
            json!([tcp_port("http", json!(80))]),
        )],
        &[],
    );
    assert!(
        names(&out, "Service", "default", &too_long),
        "{:#?}",
        out.diagnostics
    );
}

#[test]
fn a_slice_of_100k_endpoints_and_a_service_of_2000_ports_compile_and_load() {
    if !kernel_tests_enabled(
        "a_slice_of_100k_endpoints_and_a_service_of_2000_ports_compile_and_load",
    ) {
        return;
    }
    let ns = NetNs::new("hostile-big");
    let endpoints: Vec<Value> = (0..100_000u32)
        .map(|k| {
            ready(
                &format!("2001:db8:18:{:x}::{:x}", k / 60_000 + 2, k % 60_000 + 1),
                "node-2",
            )
        })
        .collect();
    let big_slice = vec![
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "many", "namespace": "default"},
               "spec": {"clusterIP": "2001:db8:19::10", "ipFamilies": ["IPv6"],
                        "ports": [tcp_port("http", json!(80))]}}),
        slice("default", "many-1", "many", "IPv6", Value::Array(endpoints)),
    ];
    let started = Instant::now();
    let out = check_case(&ns, "100k endpoints in one slice", &big_slice, &[]);
    println!(
        "100k endpoints: compiled and checked in {:?}",
        started.elapsed()
    );
    assert!(out.diagnostics.is_empty(), "{:#?}", out.diagnostics);
    assert!(out.ruleset.to_string().matches("2001:db8:18:").count() >= 100_000);

    let ports: Vec<Value> = (0..2000)
        .map(|k| {
            let protocol = if k % 2 == 0 { "TCP" } else { "UDP" };
            json!({"name": format!("p{k}"), "protocol": protocol, "port": 1000 + k, "targetPort": 2000 + k})
        })
        .collect();
    let slice_ports: Vec<Value> = (0..2000)
        .map(|k| {
            let protocol = if k % 2 == 0 { "TCP" } else { "UDP" };
            json!({"name": format!("p{k}"), "protocol": protocol, "port": 2000 + k})
        })
        .collect();
    let wide = vec![
        service("default", "wide", "198.19.7.1", Value::Array(ports)),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "wide-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "wide"}},
               "addressType": "IPv4", "ports": slice_ports,
               "endpoints": [ready("198.18.2.50", "node-2")]}),
    ];
    let started = Instant::now();
    let out = check_case(&ns, "2000 ports on one service", &wide, &[]);
    println!(
        "2000 ports: compiled and checked in {:?}",
        started.elapsed()
    );
    assert!(out.diagnostics.is_empty(), "{:#?}", out.diagnostics);
    let chains: usize = out.ruleset.tables.values().map(|t| t.chains.len()).sum();
    assert!(chains >= 2000, "a chain per port: {chains}");
}

#[test]
fn duplicates_and_conflicts_are_decided_the_same_whatever_the_order() {
    if !kernel_tests_enabled("duplicates_and_conflicts_are_decided_the_same_whatever_the_order") {
        return;
    }
    let ns = NetNs::new("hostile-dup");
    let extra = vec![
        // The same Service twice, and a second slice with web-1's name in another form.
        service(
            "default",
            "twin",
            "198.19.8.1",
            json!([tcp_port("http", json!(80))]),
        ),
        service(
            "default",
            "twin",
            "198.19.8.2",
            json!([tcp_port("http", json!(81))]),
        ),
        // Another Service claiming web's ClusterIP and port.
        service(
            "other",
            "thief",
            "198.19.0.10",
            json!([tcp_port("http", json!(80))]),
        ),
        slice(
            "other",
            "thief-1",
            "thief",
            "IPv4",
            json!([ready("198.18.2.60", "node-2")]),
        ),
        // Two slices of one name.
        slice(
            "default",
            "twin-1",
            "twin",
            "IPv4",
            json!([ready("198.18.2.61", "node-2")]),
        ),
        slice(
            "default",
            "twin-1",
            "twin",
            "IPv4",
            json!([ready("198.18.2.62", "node-2")]),
        ),
        // One port twice in a Service.
        service(
            "default",
            "dup-port",
            "198.19.8.3",
            json!([tcp_port("a", json!(80)), tcp_port("a", json!(80))]),
        ),
    ];
    let forward = check_case(&ns, "duplicates", &extra, &[]);
    let mut reversed_objects = baseline();
    reversed_objects.extend(extra.iter().rev().cloned());
    let reversed = compiled(&reversed_objects);
    assert_eq!(
        forward.ruleset, reversed.ruleset,
        "the order of the input decides nothing"
    );
    assert!(
        names(&forward, "Service", "other", "thief"),
        "{:#?}",
        forward.diagnostics
    );
    assert!(!forward.diagnostics.is_empty());
}

/// Service `mixed` (198.19.9.8:80) with one IPv4 slice of `endpoints`.
fn mixed(endpoints: Value) -> Vec<Value> {
    vec![
        service(
            "default",
            "mixed",
            "198.19.9.8",
            json!([tcp_port("http", json!(80))]),
        ),
        slice("default", "mixed-1", "mixed", "IPv4", endpoints),
    ]
}

#[test]
fn bad_addresses_ports_and_timeouts_are_refused_naming_the_object() {
    if !kernel_tests_enabled("bad_addresses_ports_and_timeouts_are_refused_naming_the_object") {
        return;
    }
    let ns = NetNs::new("hostile-values");
    let affinity = |timeout: Value| {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "sticky", "namespace": "default"},
               "spec": {"clusterIP": "198.19.9.1", "sessionAffinity": "ClientIP",
                        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": timeout}},
                        "ports": [tcp_port("http", json!(80))]}})
    };
    let node_port = |n: i64| {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "np", "namespace": "default"},
               "spec": {"type": "NodePort", "clusterIP": "198.19.9.2",
                        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": n}]}})
    };
    // (case, objects, whether the compiler must name the object in a diagnostic)
    let cases: Vec<(&str, Vec<Value>, bool)> = vec![
        (
            "port 0",
            vec![service(
                "default",
                "p0",
                "198.19.9.3",
                json!([tcp_port("http", json!(0))]),
            )],
            true,
        ),
        (
            "port 65536",
            vec![service(
                "default",
                "p65536",
                "198.19.9.4",
                json!([tcp_port("http", json!(65536))]),
            )],
            true,
        ),
        (
            "port -1",
            vec![service(
                "default",
                "pneg",
                "198.19.9.5",
                json!([tcp_port("http", json!(-1))]),
            )],
            true,
        ),
        ("nodePort 0", vec![node_port(0)], false),
        ("nodePort 65536", vec![node_port(65536)], true),
        ("nodePort -5", vec![node_port(-5)], true),
        ("affinity timeout 0", vec![affinity(json!(0))], true),
        ("affinity timeout -1", vec![affinity(json!(-1))], true),
        ("affinity timeout 86401", vec![affinity(json!(86401))], true),
        (
            "affinity timeout i32::MAX",
            vec![affinity(json!(i32::MAX))],
            true,
        ),
        (
            "ClusterIP ::ffff:198.19.9.6",
            vec![service(
                "default",
                "mapped",
                "::ffff:198.19.9.6",
                json!([tcp_port("http", json!(80))]),
            )],
            true,
        ),
        (
            "ClusterIP of another family than ipFamilies",
            vec![json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "fam", "namespace": "default"},
            "spec": {"clusterIP": "2001:db8:19::7", "clusterIPs": ["2001:db8:19::7"], "ipFamilies": ["IPv4"],
                     "ports": [tcp_port("http", json!(80))]}})],
            // As kube-proxy: the addresses decide the family (the API server keeps
            // ipFamilies consistent with them).
            false,
        ),
        (
            "two ClusterIPs of one family",
            vec![json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "fam2", "namespace": "default"},
            "spec": {"clusterIP": "198.19.9.12", "clusterIPs": ["198.19.9.12", "198.19.9.13"],
                     "ports": [tcp_port("http", json!(80))]}})],
            true,
        ),
        (
            "ClusterIP that is no address",
            vec![service(
                "default",
                "noip",
                "198.19.9.300",
                json!([tcp_port("http", json!(80))]),
            )],
            true,
        ),
        (
            "IPv6 endpoint in an IPv4 slice, mapped endpoint, loopback endpoint",
            mixed(json!([
                ready("2001:db8:18:2::9", "node-2"),
                ready("::ffff:198.18.2.9", "node-2"),
                ready("127.0.0.1", "node-2"),
                ready("198.18.2.9", "node-2"),
            ])),
            false,
        ),
        (
            "IPv4 endpoint in an IPv6 slice",
            vec![slice(
                "default",
                "web-v6",
                "web",
                "IPv6",
                json!([ready("198.18.2.12", "node-2")]),
            )],
            false,
        ),
        (
            "externalIP of no family",
            vec![json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"clusterIP": "198.19.9.10", "externalIPs": ["192.0.2.300", "::ffff:192.0.2.1"],
                     "ports": [tcp_port("http", json!(80))]}})],
            true,
        ),
        (
            "source range that is no CIDR",
            vec![json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "198.19.9.11", "loadBalancerSourceRanges": ["203.0.113.0/33", "x"],
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30011}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.11"}]}}})],
            true,
        ),
    ];
    for (case, extra, must_name) in cases {
        let out = check_case(&ns, case, &extra, &[]);
        if must_name {
            let object = &extra[0]["metadata"];
            let (namespace, name) = (
                object["namespace"].as_str().unwrap(),
                object["name"].as_str().unwrap(),
            );
            assert!(
                names(&out, "Service", namespace, name),
                "{case}: no diagnostic names {namespace}/{name}: {:#?}",
                out.diagnostics
            );
        }
        println!(
            "{case}: {} diagnostic(s): {}",
            out.diagnostics.len(),
            out.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    // The endpoints that are right still serve: 198.18.2.9 of `mixed` is programmed.
    let mut objects = baseline();
    objects.extend(mixed(json!([
        ready("2001:db8:18:2::9", "node-2"),
        ready("198.18.2.9", "node-2")
    ])));
    assert!(
        compiled(&objects)
            .ruleset
            .to_string()
            .contains("198.18.2.9")
    );
}

/// The CLI on a file with a hostile document among good ones: the bad document is named
/// with its file and line (its name shown escaped), the others are compiled.
#[test]
fn nftproxy_compile_names_the_file_and_line_of_a_hostile_document() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostile.yaml");
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  clusterIP: 198.19.0.10\n  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: \"x; flush ruleset\", namespace: default}\nspec:\n  clusterIP: 198.19.0.11\n  ports: [{name: http, protocol: TCP, port: 80}]\n";
    std::fs::write(&file, text).unwrap();
    let out = common::cli::compile_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("198.19.0.10"),
        "the good Service is compiled"
    );
    assert!(!stdout.contains("flush ruleset"), "{stdout}");
    assert!(
        !stdout.contains("198.19.0.11"),
        "the bad one is not: {stdout}"
    );
    // Named with the file and the line its document starts on, whatever its name holds.
    assert!(
        stderr.contains("hostile.yaml:8: Service default/\"x; flush ruleset\""),
        "the diagnostic names it with its file and line: {stderr}"
    );
}
