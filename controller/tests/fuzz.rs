//! Fuzzing for a bounded time: manifest parsing and the compiler never panic, every error
//! names a line, and every ruleset the compiler makes is accepted by the kernel.
//!
//! Two generators share the time (`NFTPROXY_FUZZ_SECONDS`, default 60; CI runs the
//! default, longer runs are by hand):
//! - **mutated manifests**: the fixture clusters with lines deleted, duplicated or swapped,
//!   values replaced by hostile ones (out-of-range numbers, wrong address families, names
//!   full of nft and JSON syntax, unicode, very long strings), bytes inserted, text cut
//!   short. Each goes through `manifest::decode`; a decoded one is compiled. Every 50th
//!   also goes through the `nftproxy compile` binary, which must exit 0, 1 or 2 with an
//!   error naming `FILE:LINE`, never crash.
//! - **random clusters**: Services of every type with random ports, protocols, addresses,
//!   affinity and traffic policies, EndpointSlices with random endpoints and conditions,
//!   Nodes, built as API objects, valid and invalid values mixed.
//!
//! Every compiled ruleset must pass `validate_ruleset` (no dangling reference, no comment
//! over the kernel's 128 bytes) and
//! `nft -c` in a throwaway namespace. The seed is printed; `NFTPROXY_FUZZ_SEED=N` replays
//! a run. A failure prints the input that caused it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "../../compiler/tests/support/fixtures.rs"]
mod fixtures;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{NetNs, kernel_tests_enabled};
use common::rng::{Rng, seed_from};
use nftproxy_compiler::kube_proxy_config::KubeProxyConfiguration;
use nftproxy_compiler::{ClusterSnapshot, CompileConfig, compile, manifest};
use nftproxy_rules::validate_ruleset;
use serde_json::{Value, json};

fn budget() -> Duration {
    let seconds = std::env::var("NFTPROXY_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// Values that mean something to a parser, nft, JSON or the compiler.
const HOSTILE: &[&str] = &[
    "\"\"",
    "-1",
    "0",
    "1",
    "65535",
    "65536",
    "2147483647",
    "-2147483648",
    "99999999999999999999",
    "1e3",
    "null",
    "true",
    "[]",
    "{}",
    "\"198.19.0.300\"",
    "\"::ffff:198.18.0.1\"",
    "\"::ffff:198.19.0.10\"",
    "\"2001:db8::1\"",
    "\"2001:db8::/64\"",
    "\"0.0.0.0/0\"",
    "\"198.18.0.0/33\"",
    "\"127.0.0.1\"",
    "\"169.254.169.254\"",
    "\"a\\\"b\"",
    "\"x; flush ruleset\"",
    "\"} drop; {\"",
    "\"# comment\"",
    "\"line\\nbreak\"",
    "\"$var @set\"",
    "\"ünïcödé-名前\"",
    "\"back\\\\slash\"",
    "\"TCP\"",
    "\"UDP\"",
    "\"SCTP\"",
    "\"ICMP\"",
    "\"ClientIP\"",
    "\"Local\"",
    "\"Cluster\"",
    "\"LoadBalancer\"",
    "\"NodePort\"",
    "\"ExternalName\"",
    "\"IPv6\"",
    "\"FQDN\"",
    "\"None\"",
    "\"Proxy\"",
    "\"VIP\"",
];

fn long_name(rng: &mut Rng) -> String {
    let len = *rng.pick(&[63, 64, 253, 254, 1000]);
    let c = *rng.pick(&['a', 'z', '-', '9', 'é']);
    format!("\"{}\"", std::iter::repeat_n(c, len).collect::<String>())
}

/// One random edit of `text`, line-wise or char-wise.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        return text.to_owned();
    }
    let i = rng.below(lines.len());
    match rng.below(8) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        2 => {
            let j = rng.below(lines.len());
            lines.swap(i, j);
        }
        3 | 4 => {
            // Replace the value after a `key: ` (or the last flow-style value).
            if let Some(colon) = lines[i].rfind(": ") {
                let value = if rng.chance(15) {
                    long_name(rng)
                } else {
                    (*rng.pick(HOSTILE)).to_owned()
                };
                let head = lines[i][..colon + 2].to_owned();
                let tail = &lines[i][colon + 2..];
                // Keep flow-style closers so the document stays mostly YAML.
                let closers: String = tail.chars().filter(|c| matches!(c, '}' | ']')).collect();
                lines[i] = format!("{head}{value}{closers}");
            }
        }
        5 => {
            let chars: Vec<char> = lines[i].chars().collect();
            let at = rng.below(chars.len() + 1);
            let insert = *rng.pick(&[
                "\"", "'", "{", "}", "[", "]", ";", "#", "\t", ":", "\\", "\0", "&a", "*a",
                "!!binary", "%",
            ]);
            let mut line: String = chars[..at].iter().collect();
            line.push_str(insert);
            line.extend(&chars[at..]);
            lines[i] = line;
        }
        6 => {
            let indent = " ".repeat(rng.below(6));
            lines[i] = format!("{indent}{}", lines[i].trim_start());
        }
        _ => {
            lines.truncate(i + 1);
            let chars: Vec<char> = lines[i].chars().collect();
            lines[i] = chars[..rng.below(chars.len() + 1)].iter().collect();
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The objects of `decoded` and the compile configuration the documents ask for.
fn snapshot_of(decoded: Vec<manifest::Decoded>) -> (ClusterSnapshot, CompileConfig) {
    let mut snapshot = ClusterSnapshot::default();
    let mut config = None;
    for d in decoded {
        if let Some(other) = snapshot.push(d.object)
            && other.kind == "KubeProxyConfiguration"
        {
            config = serde_json::from_value::<KubeProxyConfiguration>(other.value)
                .ok()
                .and_then(|c| c.compile_config(fixtures::HOSTNAME).ok());
        }
    }
    let config = config.unwrap_or_else(|| CompileConfig {
        hostname: fixtures::HOSTNAME.into(),
        ..CompileConfig::default()
    });
    (snapshot, config)
}

#[derive(Default)]
struct Tally {
    inputs: u64,
    decoded: u64,
    rejected: u64,
    compiled: u64,
    diagnostics: u64,
    kernel_checks: u64,
    cli_runs: u64,
}

/// Compiles and checks one cluster; `input` describes it for a failure message.
fn compile_and_check(
    ns: &NetNs,
    snapshot: &ClusterSnapshot,
    config: &CompileConfig,
    input: &dyn Fn() -> String,
    tally: &mut Tally,
) {
    let compiled = catch_unwind(AssertUnwindSafe(|| compile(snapshot, config)))
        .unwrap_or_else(|_| panic!("the compiler panicked on:\n{}", input()));
    tally.compiled += 1;
    tally.diagnostics += compiled.diagnostics.len() as u64;
    if let Err(e) = validate_ruleset(&compiled.ruleset) {
        panic!("an invalid ruleset ({e}) from:\n{}", input());
    }
    let script = compiled.ruleset.to_string();
    if let Err(e) = ns.nft_check(&script, false) {
        panic!(
            "the kernel refused the ruleset: {e}\n--- input ---\n{}\n--- ruleset ---\n{script}",
            input()
        );
    }
    tally.kernel_checks += 1;
}

/// `nftproxy compile FILE` on `text`: it exits 0 (clean), 1 (diagnostics, `--strict`)
/// or 2 (unusable input, naming the file and a line), and never crashes.
fn check_cli(dir: &Path, text: &str, tally: &mut Tally) {
    let file = dir.join("fuzzed.yaml");
    std::fs::write(&file, text).unwrap();
    let out = common::cli::compile_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0 | 1) => {}
        Some(2) => assert!(
            stderr
                .split("fuzzed.yaml:")
                .nth(1)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())),
            "an unusable file is named as FILE:LINE: {stderr}\n--- input ---\n{text}"
        ),
        other => panic!("nftproxy compile exited {other:?}: {stderr}\n--- input ---\n{text}"),
    }
    tally.cli_runs += 1;
}

fn fuzz_manifests(ns: &NetNs, rng: &mut Rng, until: Instant, tally: &mut Tally) {
    let mut corpus: Vec<String> = fixtures::fixtures()
        .iter()
        .map(|(_, path)| std::fs::read_to_string(path).unwrap())
        .collect();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.yaml");
    corpus.push(std::fs::read_to_string(example).unwrap());
    let dir = tempfile::tempdir().unwrap();
    while Instant::now() < until {
        let mut text = rng.pick(&corpus).clone();
        for _ in 0..=rng.below(4) {
            text = mutate(rng, &text);
        }
        tally.inputs += 1;
        let decoded = catch_unwind(AssertUnwindSafe(|| manifest::decode(&text)))
            .unwrap_or_else(|_| panic!("manifest::decode panicked on:\n{text}"));
        match decoded {
            Ok(decoded) => {
                tally.decoded += 1;
                let (snapshot, config) = snapshot_of(decoded);
                compile_and_check(ns, &snapshot, &config, &|| text.clone(), tally);
            }
            Err(e) => {
                tally.rejected += 1;
                let lines = text.lines().count().max(1);
                assert!(
                    e.line >= 1 && e.line <= lines + 1,
                    "line {} of {lines}: {e}\n{text}",
                    e.line
                );
                assert!(e.to_string().starts_with("line "), "{e}");
            }
        }
        if tally.inputs % 50 == 1 {
            check_cli(dir.path(), &text, tally);
        }
    }
}

fn lab_ip(rng: &mut Rng, v6: bool, prefix: &str) -> String {
    if v6 {
        format!("2001:db8:{prefix}::{:x}", rng.below(60) + 1)
    } else {
        format!("{prefix}.{}.{}", rng.below(3), rng.below(250) + 1)
    }
}

/// An address for a field: mostly right, sometimes the wrong family or not an address.
fn address(rng: &mut Rng, v6: bool, prefix4: &str, prefix6: &str) -> Value {
    match rng.below(20) {
        0 => json!(lab_ip(rng, !v6, if v6 { prefix4 } else { prefix6 })),
        1 => json!(format!("::ffff:{}", lab_ip(rng, false, prefix4))),
        2 => json!(rng.pick(&["not-an-ip", "", "198.19.0.256", "None", "0.0.0.0", "::"])),
        _ if v6 => json!(lab_ip(rng, true, prefix6)),
        _ => json!(lab_ip(rng, false, prefix4)),
    }
}

fn port_number(rng: &mut Rng) -> Value {
    match rng.below(25) {
        0 => json!(rng.pick(&[0, -1, 65536, 70000, i32::MAX, i32::MIN])),
        _ => json!(*rng.pick(&[53, 80, 443, 8080, 9000, 30000]) + rng.below(3) as i32),
    }
}

fn protocol(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => json!(rng.pick(&["ICMP", "tcp", "", "HTTP"])),
        1 => Value::Null,
        _ => json!(rng.pick(&["TCP", "TCP", "UDP", "SCTP"])),
    }
}

fn port_name(rng: &mut Rng, k: usize) -> Value {
    match rng.below(15) {
        0 => json!(rng.pick(&[
            "",
            "HTTP",
            "a\"b",
            "p23456789012345",
            "x;y",
            "p-",
            "a-very-long-port-name",
            "ünï"
        ])),
        _ => json!(format!("p{k}")),
    }
}

/// A random Service `n` in `namespace`, as an API object.
/// The name of Service `n`: every third one as long as a Service name may be (63).
fn service_name(n: usize) -> String {
    let short = format!("svc-{n}");
    if n % 3 == 2 {
        format!("{short}-{}", "l".repeat(63 - short.len() - 1))
    } else {
        short
    }
}

fn random_service(rng: &mut Rng, namespace: &str, n: usize, v6: bool) -> Value {
    let type_ = *rng.pick(&[
        "ClusterIP",
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
        "ExternalName",
        "Weird",
    ]);
    let ports: Vec<Value> = (0..=rng.below(3))
        .map(|k| {
            let mut port = json!({
                "name": port_name(rng, k),
                "protocol": protocol(rng),
                "port": port_number(rng),
                "targetPort": if rng.chance(20) { json!(format!("p{k}")) } else { port_number(rng) },
            });
            if type_ != "ClusterIP" && rng.chance(70) {
                port["nodePort"] = json!(if rng.chance(10) { 80 } else { 30000 + rng.below(2768) as i32 });
            }
            port
        })
        .collect();
    let cluster_ip = if rng.chance(8) {
        json!("None")
    } else {
        address(rng, v6, "198.19", "19")
    };
    let mut spec = json!({"type": type_, "clusterIP": cluster_ip, "ports": ports});
    if rng.chance(30) {
        spec["clusterIPs"] = json!([cluster_ip, address(rng, !v6, "198.19", "19")]);
        spec["ipFamilies"] = json!(if v6 {
            ["IPv6", "IPv4"]
        } else {
            ["IPv4", "IPv6"]
        });
    }
    if rng.chance(25) {
        spec["externalIPs"] = json!([address(rng, v6, "192.0", "2")]);
    }
    if rng.chance(20) {
        spec["sessionAffinity"] = json!(rng.pick(&["ClientIP", "None", "Sticky"]));
        let timeout = *rng.pick(&[0, -5, 1, 10800, 86400, 86401, i32::MAX]);
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": timeout}});
    }
    for field in ["externalTrafficPolicy", "internalTrafficPolicy"] {
        if rng.chance(20) {
            spec[field] = json!(rng.pick(&["Local", "Cluster", "Sometimes"]));
        }
    }
    if type_ == "LoadBalancer" {
        if rng.chance(30) {
            spec["loadBalancerSourceRanges"] = json!([rng.pick(&[
                "203.0.113.0/24",
                "2001:db8::/32",
                "0.0.0.0/0",
                "bad",
                "203.0.113.7"
            ])]);
        }
        if rng.chance(30) {
            spec["healthCheckNodePort"] = port_number(rng);
        }
    }
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service_name(n), "namespace": namespace},
        "spec": spec,
    });
    if type_ == "LoadBalancer" && rng.chance(60) {
        let ip_mode = rng
            .pick(&[Value::Null, json!("VIP"), json!("Proxy"), json!("Other")])
            .clone();
        service["status"] = json!({"loadBalancer": {"ingress": [
            {"ip": address(rng, v6, "192.0", "2"), "ipMode": ip_mode}
        ]}});
    }
    service
}

/// A random EndpointSlice of Service `n`.
fn random_slice(rng: &mut Rng, namespace: &str, n: usize, k: usize, v6: bool) -> Value {
    let endpoints: Vec<Value> = (0..rng.below(6))
        .map(|_| {
            let mut endpoint = json!({"addresses": [address(rng, v6, "198.18", "18")]});
            if rng.chance(80) {
                let flag =
                    |rng: &mut Rng| rng.pick(&[Value::Null, json!(true), json!(false)]).clone();
                endpoint["conditions"] =
                    json!({"ready": flag(rng), "serving": flag(rng), "terminating": flag(rng)});
            }
            if rng.chance(70) {
                endpoint["nodeName"] = json!(rng.pick(&["node-1", "node-2", "node-3", ""]));
            }
            if rng.chance(20) {
                endpoint["zone"] = json!(rng.pick(&["zone-a", "zone-b"]));
                endpoint["hints"] =
                    json!({"forZones": [{"name": rng.pick(&["zone-a", "zone-b"])}]});
            }
            endpoint
        })
        .collect();
    let ports: Vec<Value> = (0..=rng.below(3))
        .map(|j| json!({"name": port_name(rng, j), "protocol": protocol(rng), "port": port_number(rng)}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("slice-{n}-{k}"), "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service_name(n)}},
        "addressType": if rng.chance(5) { json!("FQDN") } else if v6 { json!("IPv6") } else { json!("IPv4") },
        "endpoints": endpoints,
        "ports": ports,
    })
}

fn node(rng: &mut Rng) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": rng.pick(&["zone-a", "zone-b"])}},
        "spec": {"podCIDRs": [rng.pick(&["198.18.1.0/24", "2001:db8:18:1::/64", "bad"])]},
        "status": {"addresses": [{"type": "InternalIP", "address": address(rng, false, "198.51", "51")}]},
    })
}

/// The configurations random clusters are compiled with (fields of a
/// KubeProxyConfiguration, as YAML lines).
const CONFIGS: &[&str] = &[
    "",
    "clusterCIDR: 198.18.0.0/16\ndetectLocalMode: ClusterCIDR",
    "nodePortAddresses: [198.51.100.0/24, 2001:db8::/32]",
    "nodePortAddresses: [primary]",
    "nftables: {masqueradeAll: true}",
    "detectLocalMode: NodeCIDR",
];

fn random_config(rng: &mut Rng) -> CompileConfig {
    let fields = rng.pick(CONFIGS);
    let text = format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n{fields}\n"
    );
    KubeProxyConfiguration::from_yaml(&text)
        .and_then(|c| c.compile_config("node-1"))
        .unwrap_or_else(|e| panic!("fuzz configuration {fields:?}: {e}"))
}

fn fuzz_clusters(ns: &NetNs, rng: &mut Rng, until: Instant, tally: &mut Tally) {
    while Instant::now() < until {
        let mut objects = vec![node(rng)];
        // Sometimes a namespace as long as one may be, so names reach their limits.
        let namespace = if rng.chance(30) {
            "n".repeat(63)
        } else {
            "fz".to_owned()
        };
        for n in 0..=rng.below(8) {
            let v6 = rng.chance(30);
            objects.push(random_service(rng, &namespace, n, v6));
            for k in 0..rng.below(3) {
                objects.push(random_slice(rng, &namespace, n, k, v6));
            }
        }
        tally.inputs += 1;
        let mut snapshot = ClusterSnapshot::default();
        let mut text = String::new();
        for object in &objects {
            writeln!(text, "{object}").unwrap();
            // Values the API server itself would refuse to store (a port of 2^31) do not
            // decode; the rest go in.
            match object["kind"].as_str().unwrap() {
                "Service" => match serde_json::from_value(object.clone()) {
                    Ok(o) => snapshot.services.push(Arc::new(o)),
                    Err(_) => tally.rejected += 1,
                },
                "EndpointSlice" => match serde_json::from_value::<EndpointSlice>(object.clone()) {
                    Ok(o) => snapshot.endpoint_slices.push(Arc::new(o.into())),
                    Err(_) => tally.rejected += 1,
                },
                _ => snapshot
                    .nodes
                    .push(Arc::new(serde_json::from_value(object.clone()).unwrap())),
            }
        }
        let config = random_config(rng);
        compile_and_check(ns, &snapshot, &config, &|| text.clone(), tally);
    }
}

#[test]
fn fuzzed_manifests_and_clusters_never_panic_and_always_compile_to_what_the_kernel_accepts() {
    if !kernel_tests_enabled(
        "fuzzed_manifests_and_clusters_never_panic_and_always_compile_to_what_the_kernel_accepts",
    ) {
        return;
    }
    let seed = seed_from("NFTPROXY_FUZZ_SEED");
    println!("fuzz seed {seed} (replay with NFTPROXY_FUZZ_SEED={seed})");
    let mut rng = Rng(seed);
    let ns = NetNs::new("fuzz");
    let started = Instant::now();
    let half = budget() / 2;

    let mut manifests = Tally::default();
    fuzz_manifests(&ns, &mut rng, started + half, &mut manifests);
    let mut clusters = Tally::default();
    fuzz_clusters(&ns, &mut rng, started + budget(), &mut clusters);

    let seconds = started.elapsed().as_secs_f64();
    common::figures::report(&format!(
        "fuzz {seconds:.0} s: mutated manifests {} ({} decoded, {} refused with a line, {} through `nftproxy compile`); \
         random clusters {} ({} objects the API would refuse); compiled {} ({} diagnostics); nft -c accepted {}",
        manifests.inputs,
        manifests.decoded,
        manifests.rejected,
        manifests.cli_runs,
        clusters.inputs,
        clusters.rejected,
        manifests.compiled + clusters.compiled,
        manifests.diagnostics + clusters.diagnostics,
        manifests.kernel_checks + clusters.kernel_checks,
    ));
    // Both generators ran, and both produced input that got as far as the kernel.
    assert!(manifests.kernel_checks > 0 && clusters.kernel_checks > 0);
    assert!(
        manifests.rejected > 0,
        "the mutations reach the parser's errors"
    );
    assert!(
        manifests.diagnostics + clusters.diagnostics > 0,
        "the hostile values reach the compiler's diagnostics"
    );
}
