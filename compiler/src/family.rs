//! IP families: which table an address belongs to, and the per-family nft vocabulary.
//!
//! The ruleset has one table per family (`ip nftproxy`, `ip6 nftproxy`); everything that
//! differs between them (address type, `ip` versus `ip6` payload fields) is decided here.

use std::fmt;
use std::net::IpAddr;

use nftproxy_rules::{DataType, Family, PayloadField};

/// An IP family, in table order (IPv4 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// Both families, in table order.
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The family of a network prefix.
    pub fn of_net(net: &ipnet::IpNet) -> Self {
        match net {
            ipnet::IpNet::V4(_) => IpFamily::V4,
            ipnet::IpNet::V6(_) => IpFamily::V6,
        }
    }

    /// Index into per-family arrays (`[T; 2]`).
    pub fn index(self) -> usize {
        match self {
            IpFamily::V4 => 0,
            IpFamily::V6 => 1,
        }
    }

    /// The nft table family.
    pub fn table_family(self) -> Family {
        match self {
            IpFamily::V4 => Family::Ip,
            IpFamily::V6 => Family::Ip6,
        }
    }

    /// The nft data type of an address of this family.
    pub fn addr_type(self) -> DataType {
        match self {
            IpFamily::V4 => DataType::Ipv4Addr,
            IpFamily::V6 => DataType::Ipv6Addr,
        }
    }

    /// `ip saddr` / `ip6 saddr`.
    pub fn saddr(self) -> PayloadField {
        match self {
            IpFamily::V4 => PayloadField::IpSaddr,
            IpFamily::V6 => PayloadField::Ip6Saddr,
        }
    }

    /// `ip daddr` / `ip6 daddr`.
    pub fn daddr(self) -> PayloadField {
        match self {
            IpFamily::V4 => PayloadField::IpDaddr,
            IpFamily::V6 => PayloadField::Ip6Daddr,
        }
    }
}

/// The API's spelling (`IPv4`, `IPv6`), as in `addressType` and `ipFamilies`.
impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) stands for. Such an
/// address never appears on the wire and the API server refuses it in every field a
/// proxy reads, so the compiler refuses it too, saying what to write instead.
pub fn ipv4_mapped(ip: &std::net::IpAddr) -> Option<std::net::Ipv4Addr> {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        std::net::IpAddr::V4(_) => None,
    }
}
