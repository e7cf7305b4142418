//! Names of per-service-port chains and the comments of their map elements.
//!
//! `service-HASH-NAMESPACE/NAME/PROTO/PORT`: the hash is the first 8 characters of the
//! unpadded RFC 4648 base32 SHA-256 of `NAMESPACE/NAME/PROTO/PORT`. Names depend only on
//! the service port's identity, so an unchanged service produces no diff. Every part was
//! validated at the boundary (DNS labels, IANA port names), so the name is at most ~160
//! characters and holds nothing nft would interpret.

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
        let (namespace, name) = (service.namespace.as_str(), service.name.as_str());
        let identity = [
            namespace,
            "/",
            name,
            "/",
            port.protocol.keyword(),
            "/",
            label,
        ];
        PortNames {
            chain: chain_name("service-", "", &identity),
            comment: [namespace, "/", name, ":", label].concat(),
        }
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
        let label = port.label();
        let identity = [
            service.namespace.as_str(),
            "/",
            service.name.as_str(),
            "/",
            port.protocol.keyword(),
            "/",
            label.as_str(),
        ];
        ExternalNames {
            external: chain_name("external-", "external-", &identity),
            local: chain_name("local-", "local-", &identity),
            cluster: chain_name("cluster-", "cluster-", &identity),
            firewall: chain_name("firewall-", "firewall-", &identity),
        }
    }
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
    fn protocol_changes_the_hash() {
        let tcp = PortNames::new(&id("ns", "dns"), &port("dns", 53, Protocol::Tcp));
        let udp = PortNames::new(&id("ns", "dns"), &port("dns", 53, Protocol::Udp));
        assert_ne!(tcp.chain[8..16], udp.chain[8..16]);
    }
}
