//! A minimal route netlink client: dump the interface addresses and wait for address events.
//!
//! Two messages are enough: `RTM_GETADDR` with `NLM_F_DUMP` lists every address of every
//! interface, and a socket bound to `RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` receives an
//! `RTM_NEWADDR` / `RTM_DELADDR` for each change. A dump over a raw socket was chosen over
//! `getifaddrs(3)`: it parses the same messages as the events (one parser, tested without a
//! kernel), it needs no walk over a C-allocated linked list, and the namespace it reads is
//! plainly the one the socket was opened in. Each socket belongs to the network namespace of
//! the thread that opens it; sockets and parsing are the shared ones of `crate::netlink`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use thiserror::Error;

use crate::netlink::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkSocket, attrs, error_code, messages,
};

const NETLINK_ROUTE: libc::c_int = 0;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// `struct ifaddrmsg`: family, prefix length, flags, scope, interface index.
const IFADDRMSG: usize = 8;

/// Why reading or watching the addresses failed.
#[derive(Debug, Error)]
pub enum AddressError {
    #[error("cannot open a route netlink socket: {0}")]
    Open(#[source] io::Error),
    #[error("cannot subscribe to address changes: {0}")]
    Subscribe(#[source] io::Error),
    #[error("cannot send an address dump request: {0}")]
    Send(#[source] io::Error),
    #[error("cannot receive address messages: {0}")]
    Receive(#[source] io::Error),
    #[error("the kernel refused the address dump: {0}")]
    Refused(#[source] io::Error),
    #[error("malformed netlink answer to the address dump: {0}")]
    Malformed(&'static str),
    #[error("cannot start the address watcher thread: {0}")]
    Thread(#[source] io::Error),
}

/// A route netlink socket in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct RouteSocket {
    socket: NetlinkSocket,
    seq: u32,
}

impl RouteSocket {
    /// A socket for dump requests; a receive waits at most `timeout`.
    pub fn open(timeout: Duration) -> Result<Self, AddressError> {
        let socket = NetlinkSocket::open(NETLINK_ROUTE, timeout).map_err(AddressError::Open)?;
        Ok(RouteSocket { socket, seq: 0 })
    }

    /// A socket that receives every IPv4 and IPv6 address event.
    pub fn subscribe(timeout: Duration) -> Result<Self, AddressError> {
        let socket = Self::open(timeout)?;
        socket
            .socket
            .bind_groups(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            .map_err(AddressError::Subscribe)?;
        Ok(socket)
    }

    /// Every address of every interface, as the kernel lists them (unfiltered).
    pub fn dump(&mut self) -> Result<Vec<IpAddr>, AddressError> {
        self.seq = self.seq.wrapping_add(1);
        let sequence = self.seq;
        self.socket
            .send(&dump_request(sequence))
            .map_err(AddressError::Send)?;
        let mut out = Vec::new();
        loop {
            let datagram = self.socket.receive(0).map_err(AddressError::Receive)?;
            for message in messages(datagram) {
                let (kind, _flags, seq, payload) = message.map_err(AddressError::Malformed)?;
                if seq != sequence {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        return match error_code(payload) {
                            Some(0) => Ok(out),
                            Some(code) => Err(AddressError::Refused(io::Error::from_raw_os_error(
                                code.saturating_neg(),
                            ))),
                            None => Err(AddressError::Malformed("short error message")),
                        };
                    }
                    RTM_NEWADDR => out.extend(parse_address(payload)),
                    _ => {}
                }
            }
        }
    }

    /// Waits up to the socket's timeout for address events and reads every one already
    /// queued. `Ok(true)` when something may have changed: an address event arrived, or
    /// events were lost because the socket's buffer overflowed.
    pub fn wait_for_events(&mut self) -> Result<bool, AddressError> {
        let mut changed = false;
        let mut flags = 0;
        loop {
            let datagram = match self.socket.receive(flags) {
                Ok(datagram) => datagram,
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    changed = true;
                    flags = libc::MSG_DONTWAIT;
                    continue;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(changed),
                Err(err) => return Err(AddressError::Receive(err)),
            };
            changed |= messages(datagram)
                .flatten()
                .any(|(kind, ..)| kind == RTM_NEWADDR || kind == RTM_DELADDR);
            flags = libc::MSG_DONTWAIT;
        }
    }
}

/// `RTM_GETADDR` with `NLM_F_DUMP` for every family.
fn dump_request(seq: u32) -> Vec<u8> {
    let len = 16 + IFADDRMSG;
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&u32::try_from(len).unwrap_or_default().to_ne_bytes());
    bytes.extend_from_slice(&RTM_GETADDR.to_ne_bytes());
    bytes.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    bytes.extend_from_slice(&seq.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    bytes.extend_from_slice(&[0; IFADDRMSG]); // AF_UNSPEC, any interface
    bytes
}

/// The address of an `RTM_NEWADDR` payload (after nlmsghdr): `IFA_LOCAL` when present (on
/// a point-to-point link `IFA_ADDRESS` is the peer), else `IFA_ADDRESS`.
pub fn parse_address(payload: &[u8]) -> Option<IpAddr> {
    let family = libc::c_int::from(*payload.first()?);
    let mut address = None;
    let mut local = None;
    for (kind, value) in attrs(payload.get(IFADDRMSG..)?) {
        let ip = match family {
            libc::AF_INET => value
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            libc::AF_INET6 => value
                .get(..16)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        };
        match kind {
            IFA_ADDRESS => address = ip,
            IFA_LOCAL => local = ip,
            _ => {}
        }
    }
    local.or(address)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An `ifaddrmsg` of `family` followed by (type, value) attributes.
    fn payload(family: libc::c_int, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut bytes = vec![u8::try_from(family).unwrap(), 24, 0, 0, 2, 0, 0, 0];
        for (kind, value) in attributes {
            let len = u16::try_from(4 + value.len()).unwrap();
            bytes.extend_from_slice(&len.to_ne_bytes());
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(value);
            while !bytes.len().is_multiple_of(4) {
                bytes.push(0);
            }
        }
        bytes
    }

    #[test]
    fn the_local_address_wins_over_the_peer_address() {
        let v4 = payload(
            libc::AF_INET,
            &[
                (IFA_ADDRESS, &[203, 0, 113, 1]),
                (IFA_LOCAL, &[198, 51, 100, 7]),
            ],
        );
        assert_eq!(parse_address(&v4), Some("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn an_ipv6_address_comes_from_ifa_address() {
        let ip: Ipv6Addr = "2001:db8:51::11".parse().unwrap();
        let v6 = payload(libc::AF_INET6, &[(IFA_ADDRESS, &ip.octets())]);
        assert_eq!(parse_address(&v6), Some(IpAddr::V6(ip)));
    }

    #[test]
    fn short_or_foreign_payloads_give_no_address() {
        assert_eq!(parse_address(&[]), None);
        let short = payload(libc::AF_INET, &[(IFA_LOCAL, &[198, 51])]);
        assert_eq!(parse_address(&short), None);
        let other = payload(libc::AF_PACKET, &[(IFA_LOCAL, &[198, 51, 100, 7])]);
        assert_eq!(parse_address(&other), None);
    }

    #[test]
    fn the_dump_request_is_one_well_formed_message() {
        let request = dump_request(7);
        let parsed: Vec<_> = messages(&request).collect();
        assert_eq!(parsed.len(), 1);
        let (kind, flags, seq, payload) = parsed[0].unwrap();
        assert_eq!(
            (kind, flags, seq),
            (RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 7)
        );
        assert_eq!(payload, [0; IFADDRMSG]);
    }
}
