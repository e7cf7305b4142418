//! Unit tests of KubeProxyConfiguration decoding, defaults and mapping.

use super::*;

const FULL: &str = r#"
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: "198.18.0.0/16, 2001:db8:18::/48"
hostnameOverride: node-1
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["198.51.100.0/24", "2001:db8::/32"]
bindAddressHardFail: false
featureGates: {SomeGate: true}
nftables:
  masqueradeAll: true
  masqueradeBit: 7
  syncPeriod: 1m0s
  minSyncPeriod: 500ms
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpEstablishedTimeout: 24h0m0s
  tcpCloseWaitTimeout: 1h0m0s
  udpTimeout: 30s
  udpStreamTimeout: 2m
"#;

fn parse(text: &str) -> KubeProxyConfiguration {
    match KubeProxyConfiguration::from_yaml(text) {
        Ok(c) => c,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn full_configuration_decodes_every_field_and_ignores_unknown_ones() {
    let c = parse(FULL);
    assert_eq!(c.mode, "nftables");
    assert_eq!(c.hostname_override, "node-1");
    assert_eq!(c.healthz_bind_address, "0.0.0.0:10256");
    assert_eq!(c.metrics_bind_address, "127.0.0.1:10249");
    assert!(c.nftables.masquerade_all);
    assert_eq!(c.masquerade_bit(), 7);
    assert_eq!(c.sync_period(), Duration::from_secs(60));
    assert_eq!(c.min_sync_period(), Duration::from_millis(500));
    assert_eq!(c.conntrack.max_per_core, Some(32768));
    assert_eq!(c.conntrack.min, Some(131072));
    assert_eq!(
        c.conntrack.tcp_established_timeout,
        Some(Duration::from_secs(86400))
    );
    assert_eq!(
        c.conntrack.tcp_close_wait_timeout,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(c.conntrack.udp_timeout, Some(Duration::from_secs(30)));
    assert_eq!(
        c.conntrack.udp_stream_timeout,
        Some(Duration::from_secs(120))
    );
}

#[test]
fn full_configuration_maps_onto_compile_config() {
    let cfg = parse(FULL).compile_config("node-1").unwrap();
    assert_eq!(cfg.hostname, "node-1");
    assert!(cfg.extra_node_ips.is_empty());
    assert_eq!(
        cfg.detect_local,
        DetectLocal::ClusterCidr(vec![net("198.18.0.0/16"), net("2001:db8:18::/48")])
    );
    assert!(cfg.masquerade_all);
    assert_eq!(cfg.masquerade_bit, 7);
    assert_eq!(
        cfg.node_port_addresses,
        vec!["198.51.100.0/24".to_owned(), "2001:db8::/32".to_owned()]
    );
}

#[test]
fn empty_document_gives_kube_proxy_defaults() {
    let c = parse("{}");
    assert_eq!(c.masquerade_bit(), 14);
    assert_eq!(c.sync_period(), Duration::from_secs(30));
    assert_eq!(c.min_sync_period(), Duration::from_secs(1));
    let cfg = c.compile_config("n").unwrap();
    assert_eq!(cfg.detect_local, DetectLocal::None);
    assert_eq!(cfg.masquerade_bit, 14);
    assert!(!cfg.masquerade_all);
    assert!(cfg.node_port_addresses.is_empty());
}

#[test]
fn json_configuration_is_accepted() {
    let c = parse(r#"{"kind":"KubeProxyConfiguration","mode":"","clusterCIDR":"198.18.0.0/16"}"#);
    assert_eq!(c.cluster_cidrs().unwrap(), vec![net("198.18.0.0/16")]);
}

#[test]
fn iptables_mode_is_refused_with_its_line() {
    let err = KubeProxyConfiguration::from_yaml("kind: KubeProxyConfiguration\nmode: iptables\n")
        .unwrap_err();
    assert_eq!(err.line(), Some(2));
    assert!(err.to_string().contains("iptables"), "{err}");
    assert!(!err.to_string().contains("at line"), "{err}");
}

#[test]
fn another_kind_is_refused() {
    let err = KubeProxyConfiguration::from_yaml("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
    assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
}

#[test]
fn masquerade_bit_outside_0_to_31_is_refused() {
    let err = KubeProxyConfiguration::from_yaml("nftables:\n  masqueradeBit: 32\n").unwrap_err();
    assert_eq!(err.line(), Some(2));
    assert!(err.to_string().contains("masqueradeBit"), "{err}");
    assert_eq!(parse("nftables:\n  masqueradeBit: 0\n").masquerade_bit(), 0);
    assert_eq!(
        parse("nftables:\n  masqueradeBit: 31\n").masquerade_bit(),
        31
    );
}

#[test]
fn malformed_yaml_reports_a_line() {
    let err = KubeProxyConfiguration::from_yaml("mode: nftables\nnftables:\n  - [\n").unwrap_err();
    assert!(err.line().is_some(), "{err:?}");
}

#[test]
fn unknown_detect_local_mode_is_refused_with_its_line() {
    let err =
        KubeProxyConfiguration::from_yaml("mode: nftables\ndetectLocalMode: Magic\n").unwrap_err();
    assert_eq!(err.line(), Some(2));
}

#[test]
fn bad_duration_is_refused_with_its_line() {
    let err = KubeProxyConfiguration::from_yaml("nftables:\n  syncPeriod: soon\n").unwrap_err();
    assert_eq!(err.line(), Some(2));
    assert!(err.to_string().contains("soon"), "{err}");
}

#[test]
fn detect_local_mode_unset_with_cluster_cidr_means_cluster_cidr() {
    let c = parse("clusterCIDR: 198.18.0.0/16\n");
    assert_eq!(
        c.detect_local().unwrap(),
        DetectLocal::ClusterCidr(vec![net("198.18.0.0/16")])
    );
}

#[test]
fn cluster_cidr_mode_without_cidr_is_no_detector() {
    let c = parse("detectLocalMode: ClusterCIDR\n");
    assert_eq!(c.detect_local().unwrap(), DetectLocal::None);
}

#[test]
fn node_cidr_mode_maps_to_node_cidr() {
    let c = parse("detectLocalMode: NodeCIDR\nclusterCIDR: 198.18.0.0/16\n");
    assert_eq!(c.detect_local().unwrap(), DetectLocal::NodeCidr);
}

#[test]
fn bridge_interface_mode_needs_a_bridge() {
    let missing = parse("detectLocalMode: BridgeInterface\n");
    assert!(matches!(
        missing.compile_config("n"),
        Err(ConfigError::MissingBridgeInterface)
    ));
    let given = parse("detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0\n");
    assert_eq!(
        given.detect_local().unwrap(),
        DetectLocal::BridgeInterface("cbr0".to_owned())
    );
}

#[test]
fn interface_name_prefix_mode_needs_a_prefix() {
    let missing = parse("detectLocalMode: InterfaceNamePrefix\n");
    assert!(matches!(
        missing.compile_config("n"),
        Err(ConfigError::MissingInterfaceNamePrefix)
    ));
    let given =
        parse("detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth\n");
    assert_eq!(
        given.detect_local().unwrap(),
        DetectLocal::InterfaceNamePrefix("veth".to_owned())
    );
}

#[test]
fn invalid_cluster_cidr_names_the_value() {
    let err = parse("clusterCIDR: 198.18.0.0/16,not-a-cidr\n")
        .compile_config("n")
        .unwrap_err();
    assert!(err.to_string().contains("not-a-cidr"), "{err}");
}

#[test]
fn two_cluster_cidrs_of_one_family_are_refused() {
    let err = parse("clusterCIDR: 198.18.0.0/16,198.19.0.0/16\n")
        .compile_config("n")
        .unwrap_err();
    assert!(matches!(err, ConfigError::ClusterCidr { .. }), "{err}");
}

#[test]
fn cluster_cidr_host_bits_are_cleared_and_match_all_is_allowed() {
    let c = parse("clusterCIDR: 198.18.7.1/16,::/0\n");
    assert_eq!(
        c.cluster_cidrs().unwrap(),
        vec![net("198.18.0.0/16"), net("::/0")]
    );
    assert!(
        parse("clusterCIDR: 0.0.0.0/0\n")
            .compile_config("n")
            .is_ok()
    );
}

#[test]
fn node_port_addresses_accept_primary_alone_or_cidrs() {
    assert_eq!(
        parse("nodePortAddresses: [primary]\n")
            .node_port_addresses()
            .unwrap(),
        vec!["primary".to_owned()]
    );
    assert!(
        parse("nodePortAddresses: [\"0.0.0.0/0\", \"::/0\"]\n")
            .node_port_addresses()
            .is_ok()
    );
    let err = parse("nodePortAddresses: [eth0]\n")
        .compile_config("n")
        .unwrap_err();
    assert!(err.to_string().contains("eth0"), "{err}");
    assert!(
        parse("nodePortAddresses: [primary, \"0.0.0.0/0\"]\n")
            .node_port_addresses()
            .is_err()
    );
    assert!(
        parse("nodePortAddresses: null\n")
            .node_port_addresses()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn go_durations_parse_like_go() {
    let cases = [
        ("0", Duration::ZERO),
        ("30s", Duration::from_secs(30)),
        ("1m0s", Duration::from_secs(60)),
        ("1h30m", Duration::from_secs(5400)),
        ("500ms", Duration::from_millis(500)),
        ("1.5s", Duration::from_millis(1500)),
        ("250us", Duration::from_micros(250)),
        ("10ns", Duration::from_nanos(10)),
        (
            "2h45m30.5s",
            Duration::from_millis((2 * 3600 + 45 * 60 + 30) * 1000 + 500),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse_go_duration(text), Ok(want), "{text}");
    }
}

#[test]
fn malformed_or_negative_go_durations_are_refused() {
    for text in ["", "30", "s", "1x", "-1s", "1.2.3s", "."] {
        assert!(
            parse_go_duration(text).is_err(),
            "{text:?} should be refused"
        );
    }
}

#[test]
fn hostname_flag_wins_over_override_and_machine() {
    let got = resolve_hostname(Some("Node-A"), "node-b", || -> Result<String, String> {
        panic!("machine hostname must not be looked up")
    });
    assert_eq!(got.unwrap(), "node-a");
}

#[test]
fn hostname_override_wins_over_machine() {
    let got = resolve_hostname(None, " node-b ", || -> Result<String, String> {
        panic!("machine hostname must not be looked up")
    });
    assert_eq!(got.unwrap(), "node-b");
}

#[test]
fn machine_hostname_is_the_fallback() {
    let got = resolve_hostname(Some(""), "", || Ok::<_, String>("Host-1\n".to_owned()));
    assert_eq!(got.unwrap(), "host-1");
}

#[test]
fn failing_machine_hostname_is_an_error() {
    let got = resolve_hostname(None, "", || Err::<String, _>("no uts namespace"));
    assert!(matches!(got, Err(ConfigError::Hostname(m)) if m.contains("no uts")));
}
