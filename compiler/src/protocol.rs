//! Service protocols (TCP, UDP, SCTP) as the API spells them and as nft does.

use std::fmt;

use nftproxy_rules::L4Proto;
use thiserror::Error;

/// A transport protocol a Service port can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// The protocol string is not one the API allows.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unsupported protocol {0:?} (expected TCP, UDP or SCTP)")]
pub struct ProtocolError(pub String);

impl Protocol {
    /// Parses the API's spelling; absent means TCP, as the API server defaults it.
    pub fn parse(value: Option<&str>) -> Result<Self, ProtocolError> {
        match value {
            None | Some("TCP") => Ok(Protocol::Tcp),
            Some("UDP") => Ok(Protocol::Udp),
            Some("SCTP") => Ok(Protocol::Sctp),
            Some(other) => Err(ProtocolError(other.to_owned())),
        }
    }

    /// The lower-case name used in chain names (`tcp`).
    pub fn keyword(self) -> &'static str {
        self.l4().keyword()
    }

    /// The nft protocol.
    pub fn l4(self) -> L4Proto {
        match self {
            Protocol::Tcp => L4Proto::Tcp,
            Protocol::Udp => L4Proto::Udp,
            Protocol::Sctp => L4Proto::Sctp,
        }
    }
}

/// The API's spelling (`TCP`).
impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_protocol_defaults_to_tcp() {
        assert_eq!(Protocol::parse(None), Ok(Protocol::Tcp));
    }

    #[test]
    fn protocols_are_case_sensitive_like_the_api() {
        assert_eq!(Protocol::parse(Some("SCTP")), Ok(Protocol::Sctp));
        assert!(Protocol::parse(Some("tcp")).is_err());
    }
}
