//! Names of per-service-port chains and the comments of their map elements.
//!
//! `service-HASH-NAMESPACE/NAME/PROTO/PORT`: the hash is the first 8 characters of the
//! unpadded RFC 4648 base32 SHA-256 of `NAMESPACE/NAME/PROTO/PORT`. Names depend only on
//! the service port's identity, so an unchanged service produces no diff. Every part was
//! validated at the boundary (DNS labels, IANA port names), so the name is at most ~160
//! characters and holds nothing nft would interpret.

use std::net::IpAddr;

use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};

use crate::service::{ServiceId, ServicePortDef};

/// The names derived from one service port, computed once and shared by both families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortNames {
    /// `service-HASH-ns/name/proto/port`.
    pub chain: String,
    /// `ns/name:port`: the comment of the port's map elements.
    pub comment: String,
    /// `counter-HASH-ns/name/proto/port`: the port's counter object (same hash as `chain`).
    pub counter: String,
}

impl PortNames {
    pub fn new(service: &ServiceId, port: &ServicePortDef) -> Self {
        let number;
        let label = if port.name.is_empty() {
            number = port.port.to_string();
            number.as_str()
        } else {
            port.name.as_str()
        };
        let (namespace, name) = (&*service.namespace, &*service.name);
        let identity = [
            namespace,
            "/",
            name,
            "/",
            port.protocol.keyword(),
            "/",
            label,
        ];
        let chain = chain_name("service-", "", &identity);
        let counter = [
            crate::counters::COUNTER_PREFIX,
            chain.strip_prefix("service-").unwrap_or(&chain),
        ]
        .concat();
        PortNames {
            chain,
            comment: port_comment(namespace, name, label),
            counter,
        }
    }
}

/// `ns/name:port`, within the kernel's 128 bytes: with the longest names (143 bytes) the
/// service name is cut (`ns/nam...:port`) so that the port stays readable.
fn port_comment(namespace: &str, name: &str, label: &str) -> String {
    let full = [namespace, "/", name, ":", label].concat();
    let fixed = namespace.len() + 1 + 3 + 1 + label.len();
    match nftproxy_rules::MAX_COMMENT_LEN.checked_sub(fixed) {
        Some(room) if full.len() > nftproxy_rules::MAX_COMMENT_LEN && room > 0 => {
            let mut end = room.min(name.len());
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            [namespace, "/", &name[..end], "...:", label].concat()
        }
        _ => nftproxy_rules::bounded_comment(full),
    }
}

/// The chains of one externally reachable service port, computed only for such ports.
/// Their hash input is the identity prefixed with the chain kind (`external-ns/name/…`),
/// so each kind hashes differently from the `service-` chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalNames {
    /// `external-HASH-…`: where NodePort, externalIP and LB IP traffic goes.
    pub external: String,
    /// `local-HASH-…`: this node's endpoints (externalTrafficPolicy Local).
    pub local: String,
    /// `cluster-HASH-…`: every endpoint, when the `service-` chain holds only local ones
    /// (internalTrafficPolicy Local).
    pub cluster: String,
    /// `firewall-HASH-…`: the loadBalancerSourceRanges check of the LB IPs.
    pub firewall: String,
}

impl ExternalNames {
    pub fn new(service: &ServiceId, port: &ServicePortDef) -> Self {
        let identity = port_identity(service, port);
        let identity = [identity.as_str()];
        ExternalNames {
            external: chain_name("external-", "external-", &identity),
            local: chain_name("local-", "local-", &identity),
            cluster: chain_name("cluster-", "cluster-", &identity),
            firewall: chain_name("firewall-", "firewall-", &identity),
        }
    }
}

/// The per-endpoint affinity sets of one service port (`sessionAffinity: ClientIP`),
/// computed only for such ports: `affinity-HASH-NAMESPACE/NAME/PROTO/PORT__ADDR/TARGETPORT`,
/// hashed like the chains with the kind as prefix of the hash input. nft names cannot hold
/// `:`, so an IPv6 address is written with `.` instead (`2001.db8.18.1..10`); the hash and
/// the table (one family each) keep the names apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityNames {
    /// `NAMESPACE/NAME/PROTO/PORT`.
    identity: String,
}

impl AffinityNames {
    pub fn new(service: &ServiceId, port: &ServicePortDef) -> Self {
        AffinityNames {
            identity: port_identity(service, port),
        }
    }

    /// The set of the clients that stick to endpoint `addr:port`.
    pub fn set(&self, addr: IpAddr, port: u16) -> String {
        let addr = match addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => a.to_string().replace(':', "."),
        };
        let port = port.to_string();
        let identity = [
            self.identity.as_str(),
            "__",
            addr.as_str(),
            "/",
            port.as_str(),
        ];
        chain_name("affinity-", "affinity-", &identity)
    }
}

/// `counter-HASH-IDENTITY` for the identity `NAMESPACE/NAME/PROTO/PORT` (the hash of the
/// `service-…` chain): what [`crate::counters::parse_counter_name`] checks a name against.
pub fn counter_name(identity: &str) -> String {
    chain_name(crate::counters::COUNTER_PREFIX, "", &[identity])
}

/// `NAMESPACE/NAME/PROTO/PORT`: what the names of a service port's external chains and
/// affinity sets are derived from.
fn port_identity(service: &ServiceId, port: &ServicePortDef) -> String {
    let label = port.label();
    [
        &*service.namespace,
        "/",
        &*service.name,
        "/",
        port.protocol.keyword(),
        "/",
        label.as_str(),
    ]
    .concat()
}

/// `PREFIX-HASH-IDENTITY` with the hash of `salt` + identity, built in place with one
/// allocation (this runs once per service port, so `format!` and intermediate strings
/// showed in compile profiles).
fn chain_name(prefix: &str, salt: &str, identity: &[&str]) -> String {
    const HASH: usize = 8;
    let start = prefix.len() + HASH + 1;
    let mut chain = String::with_capacity(start + identity.iter().map(|p| p.len()).sum::<usize>());
    chain.push_str(prefix);
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    identity.iter().for_each(|p| hasher.update(p.as_bytes()));
    let digest = hasher.finalize();
    // 5 bytes are 40 bits: exactly the first 8 base32 characters of the full digest.
    let mut hash = [0u8; HASH];
    BASE32_NOPAD.encode_mut(digest.get(..5).unwrap_or_default(), &mut hash);
    hash.iter().for_each(|&c| chain.push(char::from(c)));
    chain.push('-');
    identity.iter().for_each(|p| chain.push_str(p));
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;

    fn id(namespace: &str, name: &str) -> ServiceId {
        ServiceId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn port(name: &str, port: u16, protocol: Protocol) -> ServicePortDef {
        ServicePortDef {
            name: name.into(),
            port,
            protocol,
        }
    }

    #[test]
    fn chain_name_is_hash_then_identity() {
        let names = PortNames::new(&id("default", "web"), &port("http", 80, Protocol::Tcp));
        let full = BASE32_NOPAD.encode(&Sha256::digest(b"default/web/tcp/http"));
        assert_eq!(
            names.chain,
            format!("service-{}-default/web/tcp/http", &full[..8])
        );
        assert_eq!(names.comment, "default/web:http");
    }

    #[test]
    fn the_comment_of_the_longest_names_fits_the_kernels_128_bytes() {
        let label = "n".repeat(63);
        let names = PortNames::new(
            &id(&label, &label),
            &port("p23456789012345", 80, Protocol::Tcp),
        );
        assert_eq!(names.comment.len(), 128, "{}", names.comment);
        assert!(names.comment.starts_with(&format!("{label}/nnnnn")));
        assert!(
            names.comment.ends_with("...:p23456789012345"),
            "{}",
            names.comment
        );
        // The chain name, which tells ports apart, is not cut.
        assert!(
            names.chain.ends_with("/tcp/p23456789012345"),
            "{}",
            names.chain
        );
    }

    #[test]
    fn unnamed_port_is_named_by_its_number() {
        let names = PortNames::new(&id("ns", "dns"), &port("", 53, Protocol::Udp));
        assert!(names.chain.ends_with("-ns/dns/udp/53"), "{}", names.chain);
        assert_eq!(names.comment, "ns/dns:53");
    }

    #[test]
    fn external_chains_hash_their_kind_with_the_identity() {
        let svc = PortNames::new(&id("ns", "web"), &port("http", 80, Protocol::Tcp));
        let ext = ExternalNames::new(&id("ns", "web"), &port("http", 80, Protocol::Tcp));
        let full = BASE32_NOPAD.encode(&Sha256::digest(b"external-ns/web/tcp/http"));
        assert_eq!(
            ext.external,
            format!("external-{}-ns/web/tcp/http", &full[..8])
        );
        assert_ne!(svc.chain[8..16], ext.local[6..14]);
        assert!(ext.cluster.starts_with("cluster-") && ext.cluster.ends_with("-ns/web/tcp/http"));
    }

    #[test]
    fn affinity_sets_name_the_endpoint_and_hash_it_with_the_kind() {
        let names = AffinityNames::new(&id("ns", "web"), &port("http", 80, Protocol::Tcp));
        let set = names.set("198.18.1.10".parse().unwrap(), 8080);
        let full = BASE32_NOPAD.encode(&Sha256::digest(
            b"affinity-ns/web/tcp/http__198.18.1.10/8080",
        ));
        assert_eq!(
            set,
            format!("affinity-{}-ns/web/tcp/http__198.18.1.10/8080", &full[..8])
        );
        let other = names.set("198.18.1.11".parse().unwrap(), 8080);
        assert_ne!(set[9..17], other[9..17]);
    }

    #[test]
    fn affinity_set_names_write_ipv6_colons_as_dots() {
        let names = AffinityNames::new(&id("ns", "web"), &port("", 80, Protocol::Udp));
        let set = names.set("2001:db8:18:1::10".parse().unwrap(), 8080);
        assert!(
            set.ends_with("-ns/web/udp/80__2001.db8.18.1..10/8080"),
            "{set}"
        );
        assert!(!set.contains(':'), "{set}");
    }

    #[test]
    fn the_longest_affinity_set_name_fits_the_kernel_limit() {
        let (ns, name) = ("n".repeat(63), "s".repeat(63));
        let names = AffinityNames::new(&id(&ns, &name), &port(&"p".repeat(15), 1, Protocol::Sctp));
        let addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let set = names.set(addr, 65535);
        assert!(set.len() <= 256, "{} characters: {set}", set.len());
        assert!(
            set.chars()
                .all(nftproxy_rules::render_nft::name_char_is_valid),
            "{set}"
        );
    }

    #[test]
    fn protocol_changes_the_hash() {
        let tcp = PortNames::new(&id("ns", "dns"), &port("dns", 53, Protocol::Tcp));
        let udp = PortNames::new(&id("ns", "dns"), &port("dns", 53, Protocol::Udp));
        assert_ne!(tcp.chain[8..16], udp.chain[8..16]);
    }
}
