//! Typed rule expressions and statements: what a rule matches and what it does.
//!
//! Only the vocabulary a service proxy needs is modelled, but each item maps one-to-one to
//! an nft construct, so rendering to the nft script and to libnftables JSON is mechanical
//! and no rule is ever a string glued together from user data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// A transport protocol as nft names it (`meta l4proto tcp`, `inet_proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
}

impl L4Proto {
    pub fn keyword(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Sctp => "sctp",
            L4Proto::Icmp => "icmp",
            L4Proto::Icmpv6 => "ipv6-icmp",
        }
    }

    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
            L4Proto::Sctp => 132,
            L4Proto::Icmp => 1,
            L4Proto::Icmpv6 => 58,
        }
    }
}

/// A literal value: in set elements, on the right of a match, or as a verdict-map value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    /// An address prefix (`10.0.0.0/8`); interval sets and matches only. Boxed: prefixes
    /// are rare, and inline they would make every value 32 bytes instead of 24.
    Prefix(Box<IpNet>),
    Proto(L4Proto),
    Port(u16),
    /// A plain integer (marks, numgen results).
    Int(u32),
    /// An interface name (`"eth0"`).
    Ifname(Box<str>),
    /// An interface name prefix: `"veth*"` matches every name that starts with `veth`.
    IfnamePrefix(Box<str>),
    Verdict(Verdict),
    /// A `ct state` / `ct status` keyword such as `new`, `dnat`.
    CtFlag(CtFlag),
    /// A `fib ... type` result such as `local`.
    AddrType(AddrType),
    /// The name of a stateful object (a counter): the value of a `counter` map's element.
    ObjRef(Box<str>),
}

impl Value {
    /// The canonical value for an address prefix, the form nft lists it in: host bits
    /// cleared, and a full-length prefix (`/32`, `/128`) as a plain address.
    pub fn prefix(net: IpNet) -> Value {
        let net = net.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            Value::from(net.addr())
        } else {
            Value::Prefix(Box::new(net))
        }
    }

    /// An interface name, or a name prefix when `wildcard` (`"veth*"`).
    pub fn ifname(name: impl Into<Box<str>>, wildcard: bool) -> Value {
        if wildcard {
            Value::IfnamePrefix(name.into())
        } else {
            Value::Ifname(name.into())
        }
    }
}

impl From<IpAddr> for Value {
    fn from(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => Value::Ipv4(a),
            IpAddr::V6(a) => Value::Ipv6(a),
        }
    }
}

/// Keywords for `ct state` and `ct status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtFlag {
    /// `ct state new`
    New,
    /// `ct state established`
    Established,
    /// `ct state related`
    Related,
    /// `ct state invalid`
    Invalid,
    /// `ct status dnat`
    Dnat,
}

impl CtFlag {
    pub fn keyword(self) -> &'static str {
        match self {
            CtFlag::New => "new",
            CtFlag::Established => "established",
            CtFlag::Related => "related",
            CtFlag::Invalid => "invalid",
            CtFlag::Dnat => "dnat",
        }
    }
}

/// Address types returned by `fib ... type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrType {
    Local,
    Unicast,
}

impl AddrType {
    pub fn keyword(self) -> &'static str {
        match self {
            AddrType::Local => "local",
            AddrType::Unicast => "unicast",
        }
    }
}

/// A verdict: in a rule, or as the value of a verdict-map element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Continue,
    Jump(Box<str>),
    Goto(Box<str>),
}

impl Verdict {
    /// The chain this verdict transfers control to, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }
}

/// Packet header fields (`ip saddr`, `th dport`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PayloadField {
    IpSaddr,
    IpDaddr,
    Ip6Saddr,
    Ip6Daddr,
    /// `th dport`: destination port of TCP, UDP or SCTP.
    ThDport,
    /// `th sport`
    ThSport,
}

impl PayloadField {
    /// (protocol, field) as nft names them.
    pub fn parts(self) -> (&'static str, &'static str) {
        match self {
            PayloadField::IpSaddr => ("ip", "saddr"),
            PayloadField::IpDaddr => ("ip", "daddr"),
            PayloadField::Ip6Saddr => ("ip6", "saddr"),
            PayloadField::Ip6Daddr => ("ip6", "daddr"),
            PayloadField::ThDport => ("th", "dport"),
            PayloadField::ThSport => ("th", "sport"),
        }
    }
}

/// `meta` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaKey {
    L4proto,
    Mark,
    Iifname,
    Oifname,
    Nfproto,
}

impl MetaKey {
    pub fn keyword(self) -> &'static str {
        match self {
            MetaKey::L4proto => "l4proto",
            MetaKey::Mark => "mark",
            MetaKey::Iifname => "iifname",
            MetaKey::Oifname => "oifname",
            MetaKey::Nfproto => "nfproto",
        }
    }
}

/// `ct` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtKey {
    State,
    Status,
}

impl CtKey {
    pub fn keyword(self) -> &'static str {
        match self {
            CtKey::State => "state",
            CtKey::Status => "status",
        }
    }
}

/// Which address a `fib` lookup examines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FibAddr {
    Daddr,
    Saddr,
}

/// Bitwise operators for `meta mark & 0x4000`, `meta mark | 0x4000`, `meta mark ^ 0x4000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BitOp {
    And,
    Or,
    Xor,
}

impl BitOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BitOp::And => "&",
            BitOp::Or => "|",
            BitOp::Xor => "^",
        }
    }
}

/// An expression: something evaluated against the packet, or a literal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expr {
    Payload(PayloadField),
    Meta(MetaKey),
    Ct(CtKey),
    /// `numgen random mod N` (offset 0).
    NumgenRandom {
        modulus: u32,
    },
    /// `fib daddr type` (with the `. iif`/`. oif` qualifiers left out).
    FibType(FibAddr),
    /// `a . b . c`
    Concat(Box<[Expr]>),
    /// `meta mark & 0x4000` etc.
    Bitwise {
        left: Box<Expr>,
        op: BitOp,
        right: u32,
    },
    Literal(Value),
    /// An anonymous set `{ a, b }` (matches only).
    AnonSet(Box<[Value]>),
    /// A reference to a named set or map: `@name`.
    SetRef(Box<str>),
}

impl Expr {
    /// `a . b . c`
    pub fn concat(parts: impl Into<Box<[Expr]>>) -> Expr {
        Expr::Concat(parts.into())
    }

    /// `{ a, b }`
    pub fn anon_set(values: impl Into<Box<[Value]>>) -> Expr {
        Expr::AnonSet(values.into())
    }
}

/// Comparison operators of a match.
///
/// Canonical use (what `nft -j list` gives back, so that parse(list(load(R))) == R):
/// - `In` for set membership (`ip daddr @set`, `meta l4proto { tcp, udp }`) and for flag
///   tests on `ct state` / `ct status` (`ct state new`). nft lists set lookups as `==`; the
///   parser turns `==` with a set on the right back into `In`.
/// - `Eq` for every other equality: `meta l4proto tcp`, `fib daddr type local`,
///   `numgen random mod 3 == 0`, `meta mark & 0x4000 == 0`. (`Eq` on `ct state` is an
///   exact comparison, `ct state == new`, and round-trips as such, but it is not a flag test.)
/// - `Ne` for negations of either (`ip saddr != 10.0.0.0/8`, `ip daddr != @set`).
///
/// Other normalisations of nft 1.0.6 the model's canonical form follows:
/// - `meta l4proto tcp` directly followed by `th dport`/`th sport` is listed as `tcp dport`;
///   the parser restores the pair, so keep the two matches adjacent.
/// - `reject with tcp reset` implies `meta l4proto tcp`, and nft hides an explicit one:
///   write `Stmt::Reject(RejectKind::TcpReset)` with no preceding l4proto match.
/// - prefixes without host bits, and a full-length prefix as a plain address (see
///   [`Value::prefix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    /// Set membership / flag test (`ct state new`, `ip daddr @set`): nft's `in` in JSON.
    In,
}

/// Kinds of reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectKind {
    /// `reject`: ICMP port unreachable (ICMPv6 in ip6 tables).
    PortUnreachable,
    /// `reject with tcp reset`: only valid after a TCP match.
    TcpReset,
}

/// A statement: a match (condition) or an action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stmt {
    /// `left op right`; a failed match ends evaluation of the rule.
    Match {
        left: Expr,
        op: CmpOp,
        right: Expr,
    },
    /// `key vmap @map` (or an anonymous map given as `Expr::AnonSet` of no values is invalid).
    Vmap {
        key: Expr,
        map: String,
    },
    Verdict(Verdict),
    /// `dnat to addr[:port]` (the address family is the table's).
    Dnat {
        addr: IpAddr,
        port: Option<u16>,
    },
    /// `masquerade [fully-random]`
    Masquerade {
        fully_random: bool,
    },
    /// `meta mark set <expr>`
    SetMark(Expr),
    Reject(RejectKind),
    Counter,
    /// `counter name KEY map @MAP`: counts the packet in the counter object that the
    /// element of the `counter` map `MAP` for `KEY` names. Without an element the rule
    /// ends there, as after a failed match (the kernel's objref lookup breaks the rule).
    CounterMap {
        key: Expr,
        map: String,
    },
    /// `update @set { key }`: add or refresh an element from the packet (affinity).
    UpdateSet {
        set: String,
        key: Expr,
    },
}

impl Stmt {
    /// `left == right`
    pub fn eq(left: Expr, right: Expr) -> Stmt {
        Stmt::Match {
            left,
            op: CmpOp::Eq,
            right,
        }
    }

    /// `left != right`
    pub fn ne(left: Expr, right: Expr) -> Stmt {
        Stmt::Match {
            left,
            op: CmpOp::Ne,
            right,
        }
    }

    /// `left @set` / `ct state new` (membership).
    pub fn is_in(left: Expr, right: Expr) -> Stmt {
        Stmt::Match {
            left,
            op: CmpOp::In,
            right,
        }
    }

    /// The chain this statement transfers control to, if any (jump/goto; not vmaps).
    pub fn target(&self) -> Option<&str> {
        match self {
            Stmt::Verdict(v) => v.target(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ruleset holds hundreds of thousands of values and statements (three statements and
    /// an element key of two values per endpoint): a variant that grows one of these types
    /// grows every rule and element. Box what is rare instead (prefixes, concatenations,
    /// anonymous sets and set names are).
    #[test]
    fn values_expressions_and_statements_stay_small() {
        assert_eq!(size_of::<Value>(), 24);
        assert_eq!(size_of::<Option<Value>>(), 24);
        assert_eq!(size_of::<Expr>(), 24);
        assert_eq!(size_of::<Stmt>(), 56);
    }

    #[test]
    fn an_interface_name_is_a_prefix_only_when_asked() {
        assert_eq!(Value::ifname("eth0", false), Value::Ifname("eth0".into()));
        assert_eq!(
            Value::ifname("veth", true),
            Value::IfnamePrefix("veth".into())
        );
    }
}
