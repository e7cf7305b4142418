//! Wiring: kernel settings and the `ip` batches that build links, addresses and routes.
//!
//! Every member is a namespace made by [`NetNs`]; links are veth pairs created from inside
//! one lab namespace directly into its peer, so nothing ever appears in the host's
//! namespace. Each namespace is configured by one `ip -n NS -batch -` run, which keeps a
//! lab's setup to a few dozen short processes.
//!
//! ```text
//!  client ─eth0─┐                        ┌─lan0─ node2 ─cali<h>─ node-2 pods
//!               ├── br0 (lan namespace) ─┤
//!  node1 ─lan0──┘
//!    ├─cali<h>─ node-1 pods (routed, Calico-like)  or  cbr0 bridge ─veth<h>─ pods
//!    └─svc0 ─╳  (veth whose peer is down: the sink for un-DNATed VIP traffic)
//! ```

use std::io::Write;
use std::process::{Command, Stdio};

use super::plan::{
    self, CLIENT_CIDR_V4, CLIENT_CIDR_V6, EXTERNAL_CIDR_V4, EXTERNAL_CIDR_V6, NODE_CIDR_V4,
    NODE_CIDR_V6, Node, SERVICE_CIDR_V4, SERVICE_CIDR_V6,
};
use crate::common::netns::NetNs;

/// What a namespace is, for its kernel settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Lan,
    Node,
    Pod,
    Client,
}

/// How node-1's pods are attached. node-2's pods are always routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Calico-like: a veth per pod named `cali<host>`, a host route per pod address, the
    /// pod's default route via the node's LAN address (IPv4) or `fe80::1` (IPv6).
    Routed,
    /// kubenet-like: veths `veth<host>` enslaved to bridge `cbr0`, which holds the node's
    /// first pod addresses (`198.18.1.1`, `2001:db8:18:1::1`); pods use it as gateway.
    Bridge,
}

/// The node-side interface name prefix of routed pods.
pub const ROUTED_PREFIX: &str = "cali";
/// The node-side interface name prefix of bridged pods.
pub const BRIDGED_PREFIX: &str = "veth";
/// The pod bridge on node-1 in [`Attach::Bridge`] mode.
pub const POD_BRIDGE: &str = "cbr0";

/// Sets the namespace's sysctls. Values are set explicitly rather than trusting defaults,
/// because a new namespace inherits some IPv4 settings from the host.
pub fn configure_kernel(ns: &NetNs, role: Role) {
    let mut settings = vec![
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/default/rp_filter", "0"),
        ("net/ipv4/conf/all/arp_ignore", "0"),
        ("net/ipv6/conf/all/accept_dad", "0"),
        ("net/ipv6/conf/default/accept_dad", "0"),
        ("net/ipv4/conf/all/accept_redirects", "0"),
        ("net/ipv4/conf/default/accept_redirects", "0"),
        ("net/ipv6/conf/all/accept_redirects", "0"),
        ("net/ipv6/conf/default/accept_redirects", "0"),
    ];
    let forward = if role == Role::Node { "1" } else { "0" };
    settings.extend([
        ("net/ipv4/ip_forward", forward),
        ("net/ipv6/conf/all/forwarding", forward),
    ]);
    match role {
        // A router on a shared LAN would tell clients to bypass it for DNATed traffic;
        // ICMP rate limits would turn quick REJECTs into timeouts after a few probes.
        Role::Node => settings.extend([
            ("net/ipv4/conf/all/send_redirects", "0"),
            ("net/ipv4/conf/default/send_redirects", "0"),
            ("net/ipv4/icmp_ratelimit", "0"),
            ("net/ipv6/icmp/ratelimit", "0"),
        ]),
        Role::Pod => settings.push(("net/ipv6/bindv6only", "0")),
        // The LAN is a plain wire: bridged frames skip netfilter there.
        Role::Lan => settings.extend([
            ("net/bridge/bridge-nf-call-iptables", "0"),
            ("net/bridge/bridge-nf-call-ip6tables", "0"),
            ("net/bridge/bridge-nf-call-arptables", "0"),
        ]),
        Role::Client => {}
    }
    let name = ns.name().to_owned();
    ns.run_inside(move || {
        for (key, value) in settings {
            let path = format!("/proc/sys/{key}");
            std::fs::write(&path, value)
                .unwrap_or_else(|e| panic!("{name}: cannot set {path} = {value}: {e}"));
        }
    });
}

/// Runs `commands` (one `ip` command per line, without the leading `ip`) inside `ns`.
pub fn ip_batch(ns: &NetNs, commands: &[String]) {
    let mut child = Command::new("ip")
        .args(["-n", ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    let script = commands.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to ip: {e}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for ip: {e}"));
    assert!(
        output.status.success(),
        "ip batch in {} failed: {}\nbatch:\n{script}",
        ns.name(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The LAN: bridge `br0` with one port per member; the member end is `lan0` on nodes
/// and `eth0` on clients.
pub fn lan_commands(nodes: [&NetNs; 2], clients: &[(&NetNs, u8)]) -> Vec<String> {
    let mut cmds = vec![
        "link add br0 type bridge stp_state 0 mcast_snooping 0".to_owned(),
        "link set br0 up".to_owned(),
    ];
    for (i, node) in nodes.iter().enumerate() {
        let port = format!("n{}", i + 1);
        cmds.push(format!(
            "link add {port} type veth peer name lan0 netns {}",
            node.name()
        ));
        cmds.push(format!("link set {port} master br0 up"));
    }
    for (client, host) in clients {
        let port = format!("c{host}");
        cmds.push(format!(
            "link add {port} type veth peer name eth0 netns {}",
            client.name()
        ));
        cmds.push(format!("link set {port} master br0 up"));
    }
    cmds
}

/// A node's LAN address, routes to the other node's pods and to clients, and (node-1) the
/// `svc0` sink for ClusterIP and external ranges.
pub fn node_commands(node: Node) -> Vec<String> {
    let other = node.other();
    let mut cmds = vec![
        "link set lan0 up".to_owned(),
        format!("addr add {}/24 dev lan0", node.ipv4()),
        format!("addr add {}/64 dev lan0 nodad", node.ipv6()),
        format!("route add {CLIENT_CIDR_V4} dev lan0"),
        format!("route add {CLIENT_CIDR_V6} dev lan0"),
        format!("route add {} via {}", other.pod_cidr_v4(), other.ipv4()),
        format!("route add {} via {}", other.pod_cidr_v6(), other.ipv6()),
    ];
    if node == Node::One {
        // Un-DNATed traffic to a VIP must reach the forward/output hooks and then vanish:
        // a blackhole route would drop it before the forward hook. svc0 has no ARP/NDP,
        // and its peer is down, so the veth drops what it is given.
        cmds.extend([
            "link add svc0 type veth peer name svc0peer".to_owned(),
            "link set svc0 arp off up".to_owned(),
        ]);
        for cidr in [
            SERVICE_CIDR_V4,
            SERVICE_CIDR_V6,
            EXTERNAL_CIDR_V4,
            EXTERNAL_CIDR_V6,
        ] {
            cmds.push(format!("route add {cidr} dev svc0"));
        }
    }
    cmds
}

/// node-1's pod bridge (for [`Attach::Bridge`]).
pub fn bridge_commands() -> Vec<String> {
    vec![
        format!("link add {POD_BRIDGE} type bridge stp_state 0 mcast_snooping 0"),
        format!("link set {POD_BRIDGE} up"),
        format!(
            "addr add {}/24 dev {POD_BRIDGE}",
            plan::pod_ipv4(Node::One, 1)
        ),
        format!(
            "addr add {}/64 dev {POD_BRIDGE} nodad",
            plan::pod_ipv6(Node::One, 1)
        ),
    ]
}

/// The node side of one pod's link: a veth into the pod's namespace (named `eth0` there).
pub fn pod_link_commands(pod: &NetNs, node: Node, host: u8, attach: Attach) -> Vec<String> {
    match attach {
        Attach::Routed => {
            let dev = format!("{ROUTED_PREFIX}{host}");
            vec![
                format!(
                    "link add {dev} type veth peer name eth0 netns {}",
                    pod.name()
                ),
                format!("link set {dev} up"),
                format!("addr add fe80::1/64 dev {dev} nodad"),
                format!("route add {}/32 dev {dev}", plan::pod_ipv4(node, host)),
                format!("route add {}/128 dev {dev}", plan::pod_ipv6(node, host)),
            ]
        }
        Attach::Bridge => {
            let dev = format!("{BRIDGED_PREFIX}{host}");
            vec![
                format!(
                    "link add {dev} type veth peer name eth0 netns {}",
                    pod.name()
                ),
                format!("link set {dev} master {POD_BRIDGE} up"),
            ]
        }
    }
}

/// Inside a pod: its addresses and default routes.
pub fn pod_commands(node: Node, host: u8, attach: Attach) -> Vec<String> {
    let (v4, v6) = (plan::pod_ipv4(node, host), plan::pod_ipv6(node, host));
    let mut cmds = vec!["link set eth0 up".to_owned()];
    match attach {
        Attach::Routed => cmds.extend([
            format!("addr add {v4}/32 dev eth0"),
            format!("addr add {v6}/128 dev eth0 nodad"),
            format!("route add {}/32 dev eth0 scope link", node.ipv4()),
            format!("route add default via {} dev eth0", node.ipv4()),
            "route add default via fe80::1 dev eth0".to_owned(),
        ]),
        Attach::Bridge => cmds.extend([
            format!("addr add {v4}/24 dev eth0"),
            format!("addr add {v6}/64 dev eth0 nodad"),
            format!("route add default via {}", plan::pod_ipv4(node, 1)),
            format!("route add default via {}", plan::pod_ipv6(node, 1)),
        ]),
    }
    cmds
}

/// Inside an external client: its addresses, the LAN on-link, and service, external and
/// pod ranges via the nodes.
pub fn client_commands(host: u8) -> Vec<String> {
    let (n1, n2) = (Node::One, Node::Two);
    vec![
        "link set eth0 up".to_owned(),
        format!("addr add {}/24 dev eth0", plan::client_ipv4(host)),
        format!("addr add {}/64 dev eth0 nodad", plan::client_ipv6(host)),
        format!("route add {NODE_CIDR_V4} dev eth0 scope link"),
        format!("route add {NODE_CIDR_V6} dev eth0"),
        format!("route add {SERVICE_CIDR_V4} via {}", n1.ipv4()),
        format!("route add {SERVICE_CIDR_V6} via {}", n1.ipv6()),
        format!("route add {EXTERNAL_CIDR_V4} via {}", n1.ipv4()),
        format!("route add {EXTERNAL_CIDR_V6} via {}", n1.ipv6()),
        format!("route add {} via {}", n1.pod_cidr_v4(), n1.ipv4()),
        format!("route add {} via {}", n1.pod_cidr_v6(), n1.ipv6()),
        format!("route add {} via {}", n2.pod_cidr_v4(), n2.ipv4()),
        format!("route add {} via {}", n2.pod_cidr_v6(), n2.ipv6()),
    ]
}
