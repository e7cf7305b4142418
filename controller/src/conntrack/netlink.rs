//! A minimal ctnetlink client: dump the conntrack table of one family and delete entries.
//!
//! It speaks the three messages it needs by hand over a `NETLINK_NETFILTER` socket
//! (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`, `IPCTNL_MSG_CT_DELETE` with the original tuple),
//! which is less code than adapting a general netlink crate. The socket belongs to the network
//! namespace of the thread that opens it, so the client acts on the namespace nftproxy runs
//! in. The socket and the message parsing are the shared ones of `crate::netlink`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

use crate::netlink::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkSocket, attrs,
    error_code, messages,
};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// The IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Netlink header (16 bytes) plus the netfilter generic header (4 bytes).
const HEADERS: usize = 20;

/// Why a conntrack request failed.
#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("cannot open a netfilter netlink socket: {0}")]
    Open(#[source] io::Error),
    #[error("cannot send a {request} request: {source}")]
    Send {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot receive the answer to a {request} request: {source}")]
    Receive {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the kernel refused a {request} request: {source}")]
    Refused {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("malformed netlink answer to a {request} request: {what}")]
    Malformed {
        request: &'static str,
        what: &'static str,
    },
}

/// One address and port pair of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A conntrack entry with a port-based protocol, as far as cleanup needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// IP protocol number (17 for UDP).
    pub proto: u8,
    /// The original direction: client to the address it sent to.
    pub original: Tuple,
    /// The reply direction: its source is where the entry leads (the DNAT target).
    pub reply: Tuple,
    /// The kernel's id of the entry, so a delete cannot hit a newer entry.
    pub id: Option<u32>,
    /// The conntrack zone, when not the default one.
    pub zone: Option<u16>,
}

/// A ctnetlink socket in the current network namespace.
#[derive(Debug)]
pub struct Conntrack {
    socket: NetlinkSocket,
    seq: u32,
}

impl Conntrack {
    /// Opens the socket (needs `CAP_NET_ADMIN` to delete, not to list).
    pub fn open() -> Result<Self, NetlinkError> {
        let socket = NetlinkSocket::open(NETLINK_NETFILTER, Duration::from_secs(10))
            .map_err(NetlinkError::Open)?;
        Ok(Conntrack { socket, seq: 0 })
    }

    /// Every entry of `family` (IPv6 when `ipv6`) with ports in both tuples.
    pub fn dump(&mut self, ipv6: bool) -> Result<Vec<Entry>, NetlinkError> {
        const REQUEST: &str = "conntrack dump";
        let message = Message::new(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, ipv6);
        let seq = self.send(message, REQUEST)?;
        let mut entries = Vec::new();
        loop {
            let datagram = self.receive(REQUEST)?;
            for message in messages(datagram) {
                let (kind, _flags, msg_seq, payload) =
                    message.map_err(|what| malformed(REQUEST, what))?;
                if msg_seq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(entries),
                    NLMSG_ERROR => match error_code(payload) {
                        Some(0) => return Ok(entries),
                        Some(code) => return Err(refused(REQUEST, code)),
                        None => return Err(malformed(REQUEST, "short error message")),
                    },
                    _ => {
                        if let Some(entry) = parse_entry(payload) {
                            entries.push(entry);
                        }
                    }
                }
            }
        }
    }

    /// Deletes `entry`; `Ok(false)` when it was already gone.
    pub fn delete(&mut self, entry: &Entry) -> Result<bool, NetlinkError> {
        const REQUEST: &str = "conntrack delete";
        let message = delete_request(entry);
        let seq = self.send(message, REQUEST)?;
        loop {
            let datagram = self.receive(REQUEST)?;
            for message in messages(datagram) {
                let (kind, _flags, msg_seq, payload) =
                    message.map_err(|what| malformed(REQUEST, what))?;
                if msg_seq != seq || kind != NLMSG_ERROR {
                    continue;
                }
                return match error_code(payload) {
                    Some(0) => Ok(true),
                    Some(code) if code == -libc::ENOENT => Ok(false),
                    Some(code) => Err(refused(REQUEST, code)),
                    None => Err(malformed(REQUEST, "short error message")),
                };
            }
        }
    }

    /// Sends `message` with the next sequence number; returns that number.
    fn send(&mut self, mut message: Message, request: &'static str) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        self.socket
            .send(message.finish(self.seq))
            .map_err(|source| NetlinkError::Send { request, source })?;
        Ok(self.seq)
    }

    /// Receives one datagram.
    fn receive(&mut self, request: &'static str) -> Result<&[u8], NetlinkError> {
        self.socket
            .receive(0)
            .map_err(|source| NetlinkError::Receive { request, source })
    }
}

fn malformed(request: &'static str, what: &'static str) -> NetlinkError {
    NetlinkError::Malformed { request, what }
}

fn refused(request: &'static str, code: i32) -> NetlinkError {
    let source = io::Error::from_raw_os_error(code.saturating_neg());
    NetlinkError::Refused { request, source }
}

/// `IPCTNL_MSG_CT_DELETE` for `entry`: its original tuple, id and zone.
fn delete_request(entry: &Entry) -> Message {
    let ipv6 = entry.original.src.is_ipv6();
    let mut message = Message::new(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, ipv6);
    message.tuple(CTA_TUPLE_ORIG, entry.proto, &entry.original);
    if let Some(id) = entry.id {
        message.attr(CTA_ID, &id.to_be_bytes());
    }
    if let Some(zone) = entry.zone {
        message.attr(CTA_ZONE, &zone.to_be_bytes());
    }
    message
}

/// A request being built: netlink and nfgen headers, then attributes.
struct Message(Vec<u8>);

impl Message {
    fn new(kind: u16, flags: u16, ipv6: bool) -> Self {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        bytes.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
        bytes.extend_from_slice(&flags.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by finish
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
        bytes.push(u8::try_from(family).unwrap_or_default());
        bytes.push(0); // NFNETLINK_V0
        bytes.extend_from_slice(&0u16.to_be_bytes()); // resource id
        Message(bytes)
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.pad();
    }

    /// A `CTA_TUPLE_*` attribute: addresses, protocol and ports.
    fn tuple(&mut self, kind: u16, proto: u8, tuple: &Tuple) {
        let (src_kind, dst_kind) = if tuple.src.is_ipv6() {
            (CTA_IP_V6_SRC, CTA_IP_V6_DST)
        } else {
            (CTA_IP_V4_SRC, CTA_IP_V4_DST)
        };
        let outer = self.begin_nested(kind);
        let ip = self.begin_nested(CTA_TUPLE_IP);
        self.attr(src_kind, &ip_bytes(tuple.src.ip()));
        self.attr(dst_kind, &ip_bytes(tuple.dst.ip()));
        self.end_nested(ip);
        let ports = self.begin_nested(CTA_TUPLE_PROTO);
        self.attr(CTA_PROTO_NUM, &[proto]);
        self.attr(CTA_PROTO_SRC_PORT, &tuple.src.port().to_be_bytes());
        self.attr(CTA_PROTO_DST_PORT, &tuple.dst.port().to_be_bytes());
        self.end_nested(ports);
        self.end_nested(outer);
    }

    /// Starts a nested attribute; returns where its header is.
    fn begin_nested(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&0u16.to_ne_bytes());
        self.0
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end_nested(&mut self, at: usize) {
        let len = u16::try_from(self.0.len() - at).unwrap_or(u16::MAX);
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.0
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}

/// An entry from a ctnetlink message payload (after nlmsghdr); `None` when it lacks a
/// tuple with ports (ICMP, say).
fn parse_entry(payload: &[u8]) -> Option<Entry> {
    let mut original = None;
    let mut reply = None;
    let mut id = None;
    let mut zone = None;
    for (kind, value) in attrs(payload.get(HEADERS - 16..)?) {
        match kind {
            CTA_TUPLE_ORIG => original = parse_tuple(value),
            CTA_TUPLE_REPLY => reply = parse_tuple(value),
            CTA_ID => {
                id = value
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            CTA_ZONE => zone = value.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])),
            _ => {}
        }
    }
    let (proto, original) = original?;
    let (_, reply) = reply?;
    Some(Entry {
        proto,
        original,
        reply,
        id,
        zone,
    })
}

/// (protocol, tuple) from a `CTA_TUPLE_*` payload.
fn parse_tuple(data: &[u8]) -> Option<(u8, Tuple)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for (kind, value) in attrs(data) {
        match kind {
            CTA_TUPLE_IP => {
                for (kind, value) in attrs(value) {
                    match kind {
                        CTA_IP_V4_SRC => src = ipv4(value),
                        CTA_IP_V4_DST => dst = ipv4(value),
                        CTA_IP_V6_SRC => src = ipv6(value),
                        CTA_IP_V6_DST => dst = ipv6(value),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (kind, value) in attrs(value) {
                    match kind {
                        CTA_PROTO_NUM => proto = value.first().copied(),
                        CTA_PROTO_SRC_PORT => sport = port(value),
                        CTA_PROTO_DST_PORT => dport = port(value),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let tuple = Tuple {
        src: SocketAddr::new(src?, sport?),
        dst: SocketAddr::new(dst?, dport?),
    };
    Some((proto?, tuple))
}

fn ipv4(value: &[u8]) -> Option<IpAddr> {
    let bytes: [u8; 4] = value.get(..4)?.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(bytes)))
}

fn ipv6(value: &[u8]) -> Option<IpAddr> {
    let bytes: [u8; 16] = value.get(..16)?.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

fn port(value: &[u8]) -> Option<u16> {
    let bytes: [u8; 2] = value.get(..2)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A delete request, parsed back as if it were a dump answer (same tuple layout).
    #[test]
    fn a_delete_request_carries_the_original_tuple_id_and_zone() {
        let entry = Entry {
            proto: IPPROTO_UDP,
            original: Tuple {
                src: "198.18.1.20:4000".parse().unwrap(),
                dst: "198.19.0.10:53".parse().unwrap(),
            },
            reply: Tuple {
                src: "198.18.1.10:5353".parse().unwrap(),
                dst: "198.18.1.20:4000".parse().unwrap(),
            },
            id: Some(7),
            zone: Some(3),
        };
        let mut message = delete_request(&entry);
        // Dump answers carry the reply tuple too, with the same layout.
        message.tuple(CTA_TUPLE_REPLY, IPPROTO_UDP, &entry.reply);
        let bytes = message.finish(9).to_vec();
        let parsed: Vec<_> = messages(&bytes).collect();
        assert_eq!(parsed.len(), 1);
        let (kind, _, seq, payload) = parsed[0].unwrap();
        assert_eq!((kind, seq), ((1 << 8) | IPCTNL_MSG_CT_DELETE, 9));
        assert_eq!(parse_entry(payload), Some(entry));
    }

    #[test]
    fn truncated_messages_are_reported_not_read_past() {
        let mut message = Message::new(IPCTNL_MSG_CT_GET, NLM_F_REQUEST, true);
        message.attr(CTA_ID, &1u32.to_be_bytes());
        let bytes = message.finish(1).to_vec();
        let cut = &bytes[..bytes.len() - 2];
        let parsed: Vec<_> = messages(cut).collect();
        assert_eq!(parsed, [Err("bad message length")]);
        assert_eq!(parse_entry(&bytes[16..]), None, "no tuple: no entry");
    }
}
