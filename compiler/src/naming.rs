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
        let label = port.label();
        let identity = format!(
            "{}/{}/{}/{}",
            service.namespace,
            service.name,
            port.protocol.keyword(),
            label
        );
        let digest = Sha256::digest(identity.as_bytes());
        // 5 bytes are 40 bits: exactly the first 8 base32 characters of the full digest.
        let hash = BASE32_NOPAD.encode(digest.get(..5).unwrap_or_default());
        PortNames {
            chain: format!("service-{hash}-{identity}"),
            comment: format!("{}/{}:{}", service.namespace, service.name, label),
        }
    }
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
    fn protocol_changes_the_hash() {
        let tcp = PortNames::new(&id("ns", "dns"), &port("dns", 53, Protocol::Tcp));
        let udp = PortNames::new(&id("ns", "dns"), &port("dns", 53, Protocol::Udp));
        assert_ne!(tcp.chain[8..16], udp.chain[8..16]);
    }
}
