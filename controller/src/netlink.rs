//! Raw netlink sockets and message parsing, shared by the conntrack and address clients.
//!
//! A socket belongs to the network namespace of the thread that opens it. This module holds
//! all the `unsafe` code those clients need: four libc calls on the socket.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
/// On a dump's answers: the data changed while the dump ran.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Large enough for any message the kernel puts in one dump datagram.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// A raw netlink socket with its receive buffer.
#[derive(Debug)]
pub struct NetlinkSocket {
    socket: OwnedFd,
    buffer: Vec<u8>,
}

impl NetlinkSocket {
    /// A socket of netlink `protocol` whose receives wait at most `timeout`.
    pub fn open(protocol: libc::c_int, timeout: Duration) -> io::Result<Self> {
        let flags = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        // SAFETY: plain socket(2) call with constant arguments; no pointers involved.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, flags, protocol) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2), is valid and owned by nobody else.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: `timeout` is a live timeval and the length passed is its exact size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NetlinkSocket {
            socket,
            buffer: vec![0; RECEIVE_BUFFER],
        })
    }

    /// Sets an integer socket option (`setsockopt(level, name, value)`).
    pub fn set_int_option(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: `value` is a live c_int and the length passed is its exact size.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Subscribes the socket to the multicast `groups` (a bitmask).
    pub fn bind_groups(&self, groups: u32) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data for which all zero bytes is a valid value.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = groups;
        // SAFETY: `address` is a live sockaddr_nl and the length passed is its exact size.
        let rc = unsafe {
            libc::bind(
                self.socket.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one datagram.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: `bytes` is a live, initialised slice and its exact length is passed.
        let sent = unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram (retrying on EINTR) with extra recv(2) `flags`; returns it.
    pub fn receive(&mut self, flags: libc::c_int) -> io::Result<&[u8]> {
        loop {
            // SAFETY: the buffer is live and writable for its whole length, which is passed.
            let len = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    flags | libc::MSG_TRUNC,
                )
            };
            if len < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let len = usize::try_from(len).unwrap_or_default();
            if len > self.buffer.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "datagram larger than the receive buffer",
                ));
            }
            return Ok(&self.buffer[..len]);
        }
    }
}

/// One parsed message: (type, flags, sequence, payload after nlmsghdr), or what is wrong.
pub type Parsed<'a> = Result<(u16, u16, u32, &'a [u8]), &'static str>;

/// The netlink messages of one datagram.
pub fn messages(mut data: &[u8]) -> impl Iterator<Item = Parsed<'_>> {
    std::iter::from_fn(move || {
        if data.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            data = &[];
            return Some(Err("bad message length"));
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let flags = u16::from_ne_bytes([data[6], data[7]]);
        let seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        let payload = &data[16..len];
        data = &data[align(len).min(data.len())..];
        Some(Ok((kind, flags, seq, payload)))
    })
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The `error` field of an `NLMSG_ERROR` payload (0 for an acknowledgement).
pub fn error_code(payload: &[u8]) -> Option<i32> {
    let bytes = payload.get(..4)?;
    Some(i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The attributes of `data`: (type without flags, payload).
pub fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        if len < 4 || len > data.len() {
            data = &[];
            return None;
        }
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        let payload = &data[4..len];
        data = &data[align(len).min(data.len())..];
        Some((kind, payload))
    })
}
