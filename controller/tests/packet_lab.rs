//! Self-tests of the packet-flow lab, with hand-written nft rules only: the lab routes,
//! answers and fails exactly as the nftproxy packet tests assume.

mod common;
mod lab;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::netns::kernel_tests_enabled;
use lab::{Lab, Member, Node, Outcome, Proto, at, ip};

/// A DNAT of `198.19.0.10:80` and `[2001:db8:19::10]:80` (TCP and UDP) to pod `a`
/// (`198.18.1.10`), in prerouting and output, optionally masquerading hairpin traffic.
fn dnat_to_a(masquerade_hairpin: bool) -> String {
    let post = if masquerade_hairpin {
        "ip saddr 198.18.1.10 ip daddr 198.18.1.10 masquerade;"
    } else {
        ""
    };
    let post6 = if masquerade_hairpin {
        "ip6 saddr 2001:db8:18:1::10 ip6 daddr 2001:db8:18:1::10 masquerade;"
    } else {
        ""
    };
    format!(
        "table ip labtest {{
           chain pre {{ type nat hook prerouting priority -100; jump vip; }}
           chain out {{ type nat hook output priority -100; jump vip; }}
           chain vip {{ ip daddr 198.19.0.10 meta l4proto {{ tcp, udp }} th dport 80 dnat to 198.18.1.10:8080; }}
           chain post {{ type nat hook postrouting priority 100; {post} }}
         }}
         table ip6 labtest {{
           chain pre {{ type nat hook prerouting priority -100; jump vip; }}
           chain out {{ type nat hook output priority -100; jump vip; }}
           chain vip {{ ip6 daddr 2001:db8:19::10 meta l4proto {{ tcp, udp }} th dport 80 dnat to [2001:db8:18:1::10]:8080; }}
           chain post {{ type nat hook postrouting priority 100; {post6} }}
         }}"
    )
}

#[test]
fn pods_on_different_nodes_reach_each_other_unnatted_over_both_families() {
    if !kernel_tests_enabled("pods_on_different_nodes_reach_each_other_unnatted_over_both_families")
    {
        return;
    }
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::Two, 10)
        .pod("c", Node::One, 11)
        .build();
    for (from, to) in [("a", "b"), ("b", "a"), ("a", "c")] {
        for proto in [Proto::Tcp, Proto::Udp] {
            let v4 = lab.probe(Member::Pod(from), proto, (lab.pod_ipv4(to), 8080).into());
            assert_eq!(v4.reply(), (to, lab.pod_ipv4(from).into()), "{v4}");
            let v6 = lab.probe(Member::Pod(from), proto, (lab.pod_ipv6(to), 8080).into());
            assert_eq!(v6.reply(), (to, lab.pod_ipv6(from).into()), "{v6}");
        }
    }
}

#[test]
fn external_client_reaches_pods_on_both_nodes_and_node1_reaches_its_pods() {
    if !kernel_tests_enabled(
        "external_client_reaches_pods_on_both_nodes_and_node1_reaches_its_pods",
    ) {
        return;
    }
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::Two, 10)
        .client("ext", 10)
        .build();
    for pod in ["a", "b"] {
        let v4 = lab.probe(
            Member::Client("ext"),
            Proto::Tcp,
            (lab.pod_ipv4(pod), 8080).into(),
        );
        assert_eq!(v4.reply(), (pod, lab.client_ipv4("ext").into()), "{v4}");
        let v6 = lab.probe(
            Member::Client("ext"),
            Proto::Udp,
            (lab.pod_ipv6(pod), 8080).into(),
        );
        assert_eq!(v6.reply(), (pod, lab.client_ipv6("ext").into()), "{v6}");
    }
    let from_node = lab.probe(Member::Node1, Proto::Tcp, (lab.pod_ipv4("a"), 8080).into());
    assert_eq!(
        from_node.reply(),
        ("a", Node::One.ipv4().into()),
        "{from_node}"
    );
}

#[test]
fn hand_written_dnat_in_node1_moves_cluster_ip_traffic_to_a_pod() {
    if !kernel_tests_enabled("hand_written_dnat_in_node1_moves_cluster_ip_traffic_to_a_pod") {
        return;
    }
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::Two, 10)
        .pod("c", Node::One, 11)
        .client("ext", 10)
        .build();
    lab.load_ruleset(&dnat_to_a(false));
    let cases = [
        (
            Member::Pod("c"),
            lab.pod_ipv4("c").into(),
            lab.pod_ipv6("c").into(),
        ),
        (
            Member::Pod("b"),
            lab.pod_ipv4("b").into(),
            lab.pod_ipv6("b").into(),
        ),
        (
            Member::Node1,
            Node::One.ipv4().into(),
            Node::One.ipv6().into(),
        ),
        (
            Member::Client("ext"),
            lab.client_ipv4("ext").into(),
            lab.client_ipv6("ext").into(),
        ),
    ];
    for (from, peer4, peer6) in cases {
        if from == Member::Pod("b") {
            // node-2 runs no ruleset and has no route to ClusterIPs.
            let p = lab.probe(from, Proto::Tcp, at("198.19.0.10:80"));
            assert_eq!(p.outcome, Outcome::Unreachable, "{p}");
            continue;
        }
        for proto in [Proto::Tcp, Proto::Udp] {
            let v4 = lab.probe(from, proto, at("198.19.0.10:80"));
            assert_eq!(v4.reply(), ("a", peer4), "{v4}");
            let v6 = lab.probe(from, proto, at("[2001:db8:19::10]:80"));
            assert_eq!(v6.reply(), ("a", peer6), "{v6}");
        }
    }
}

#[test]
fn hairpin_through_a_dnat_fails_without_masquerade_and_works_with_it() {
    if !kernel_tests_enabled("hairpin_through_a_dnat_fails_without_masquerade_and_works_with_it") {
        return;
    }
    let lab = Lab::builder().pod("a", Node::One, 10).build();
    lab.load_ruleset(&dnat_to_a(false));
    let hairpins = [
        (Member::Pod("a"), Proto::Tcp, at("198.19.0.10:80")),
        (Member::Pod("a"), Proto::Udp, at("198.19.0.10:80")),
        (Member::Pod("a"), Proto::Tcp, at("[2001:db8:19::10]:80")),
    ];
    for probe in lab.probe_all(&hairpins) {
        // The pod drops a packet whose source is its own address (a martian).
        probe.assert_timeout();
    }
    lab.node1()
        .exec_ok(&["nft", "delete", "table", "ip", "labtest"]);
    lab.node1()
        .exec_ok(&["nft", "delete", "table", "ip6", "labtest"]);
    lab.load_ruleset(&dnat_to_a(true));
    for probe in lab.probe_all(&hairpins) {
        let node = if probe.to.is_ipv4() {
            Node::One.ipv4().into()
        } else {
            Node::One.ipv6().into()
        };
        assert_eq!(probe.reply(), ("a", node), "{probe}");
    }
}

#[test]
fn hand_written_reject_refuses_at_once_and_drop_times_out() {
    if !kernel_tests_enabled("hand_written_reject_refuses_at_once_and_drop_times_out") {
        return;
    }
    let lab = Lab::builder().pod("a", Node::One, 10).build();
    lab.load_ruleset(
        "table inet labtest {
           chain check {
             ip daddr 198.19.0.20 reject
             ip6 daddr 2001:db8:19::20 reject
             ip daddr 198.19.0.30 drop
           }
           chain forward { type filter hook forward priority 0; jump check; }
           chain output { type filter hook output priority 0; jump check; }
         }",
    );
    let mut probes = Vec::new();
    for from in [Member::Pod("a"), Member::Node1] {
        for proto in [Proto::Tcp, Proto::Udp] {
            probes.push((from, proto, at("198.19.0.20:80")));
            probes.push((from, proto, at("[2001:db8:19::20]:80")));
            probes.push((from, proto, at("198.19.0.30:80")));
        }
    }
    for probe in lab.probe_all(&probes) {
        if probe.to.ip() == ip("198.19.0.30") {
            if probe.from == "node-1" && probe.proto == Proto::Udp {
                assert_eq!(probe.outcome, Outcome::NotPermitted, "{probe}");
            } else {
                probe.assert_timeout();
            }
        } else {
            probe.assert_refused_quickly();
        }
    }
}

#[test]
fn cluster_ip_traffic_without_a_rule_reaches_the_forward_hook_and_goes_nowhere() {
    if !kernel_tests_enabled(
        "cluster_ip_traffic_without_a_rule_reaches_the_forward_hook_and_goes_nowhere",
    ) {
        return;
    }
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .client("ext", 10)
        .build();
    lab.load_ruleset(
        "table inet labtest {
           counter vip { }
           chain forward { type filter hook forward priority 0; ip daddr 198.19.0.99 counter name vip; ip6 daddr 2001:db8:19::99 counter name vip; }
         }",
    );
    let probes = [
        (Member::Pod("a"), Proto::Tcp, at("198.19.0.99:80")),
        (Member::Pod("a"), Proto::Udp, at("[2001:db8:19::99]:80")),
        (Member::Client("ext"), Proto::Tcp, at("198.19.0.99:80")),
    ];
    for probe in lab.probe_all(&probes) {
        probe.assert_timeout();
    }
    let counter = lab
        .node1()
        .exec_ok(&["nft", "list", "counter", "inet", "labtest", "vip"]);
    let packets: u64 = counter
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {counter}"));
    assert!(
        packets >= 3,
        "forward hook saw {packets} packets:\n{counter}"
    );
}

#[test]
fn bridged_pods_reach_the_lan_and_the_other_node() {
    if !kernel_tests_enabled("bridged_pods_reach_the_lan_and_the_other_node") {
        return;
    }
    let lab = Lab::builder()
        .bridged_pods()
        .pod("a", Node::One, 10)
        .pod("b", Node::Two, 10)
        .client("ext", 10)
        .build();
    let to_a = lab.probe(
        Member::Client("ext"),
        Proto::Tcp,
        (lab.pod_ipv4("a"), 8080).into(),
    );
    assert_eq!(to_a.reply(), ("a", lab.client_ipv4("ext").into()), "{to_a}");
    let a_to_b = lab.probe(
        Member::Pod("a"),
        Proto::Udp,
        (lab.pod_ipv6("b"), 8080).into(),
    );
    assert_eq!(a_to_b.reply(), ("b", lab.pod_ipv6("a").into()), "{a_to_b}");
    let b_to_a = lab.probe(
        Member::Pod("b"),
        Proto::Tcp,
        (lab.pod_ipv4("a"), 8080).into(),
    );
    assert_eq!(b_to_a.reply(), ("a", lab.pod_ipv4("b").into()), "{b_to_a}");
}

#[test]
fn a_lab_builds_quickly_and_deletes_every_namespace_on_drop() {
    if !kernel_tests_enabled("a_lab_builds_quickly_and_deletes_every_namespace_on_drop") {
        return;
    }
    let start = std::time::Instant::now();
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("b", Node::One, 11)
        .pod("c", Node::Two, 10)
        .client("ext", 10)
        .build();
    let took = start.elapsed();
    let names = lab.namespace_names();
    assert_eq!(names.len(), 7);
    drop(lab);
    let listed = list_netns();
    for name in names {
        assert!(!listed.contains(&name), "{name} still exists");
    }
    assert!(
        took < std::time::Duration::from_secs(3),
        "building took {took:?}"
    );
    eprintln!("lab with 3 pods and a client built in {took:?}");
}

/// Names of all named network namespaces (`ip netns list` prints `NAME [(id: N)]`).
fn list_netns() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap_or_else(|e| panic!("ip netns list: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn sctp_checksum_is_crc32c() {
    // The check value of RFC 3720 (iSCSI), which uses the same CRC as SCTP.
    assert_eq!(lab::sctp::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn hand_written_sctp_dnat_moves_a_raw_init_to_a_pod() {
    if !kernel_tests_enabled("hand_written_sctp_dnat_moves_a_raw_init_to_a_pod") {
        return;
    }
    let lab = Lab::builder()
        .pod("a", Node::One, 10)
        .pod("x", Node::One, 20)
        .build();
    let x = SocketAddrV4::new(lab.pod_ipv4("x"), lab::sctp::SOURCE_PORT);
    let a = SocketAddrV4::new(lab.pod_ipv4("a"), 3869);
    let direct = lab.sctp_init(Member::Pod("x"), a, "a");
    assert_eq!(direct, Some(lab::sctp::Seen { src: x, dst: a }));
    let vip = SocketAddrV4::new(ip4("198.19.0.40"), 3868);
    assert_eq!(
        lab.sctp_init(Member::Pod("x"), vip, "a"),
        None,
        "no rule yet"
    );
    lab.load_ruleset(
        "table ip labtest {
           chain pre { type nat hook prerouting priority -100; ip daddr 198.19.0.40 sctp dport 3868 dnat to 198.18.1.10:3869; }
         }",
    );
    let dnatted = lab.sctp_init(Member::Pod("x"), vip, "a");
    assert_eq!(dnatted, Some(lab::sctp::Seen { src: x, dst: a }));
}

fn ip4(addr: &str) -> Ipv4Addr {
    addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"))
}
