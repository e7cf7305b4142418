//! SCTP without SCTP sockets: a hand-made INIT sent and captured through raw IPv4 sockets.
//!
//! This kernel has SCTP conntrack and NAT but no SCTP sockets (`CONFIG_IP_SCTP` off), so
//! the lab cannot run an SCTP server. It can still prove that node-1 DNATs SCTP: a pod
//! sends an INIT chunk to a ClusterIP through a raw socket, and the endpoint pod captures
//! it with a raw socket, showing the address and port it arrived at. Conntrack checks the
//! CRC32c of a packet entering prerouting, so the INIT carries a correct one.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The SCTP port an INIT is sent from.
pub const SOURCE_PORT: u16 = 40000;

/// Where a captured SCTP packet came from and went to, as the endpoint saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// CRC32c (Castagnoli), as SCTP uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An SCTP packet holding one INIT chunk, checksum included.
fn init_packet(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend(src_port.to_be_bytes());
    p.extend(dst_port.to_be_bytes());
    p.extend(0u32.to_be_bytes()); // verification tag: 0 in an INIT
    p.extend(0u32.to_be_bytes()); // checksum, filled in below
    p.extend([1u8, 0]); // chunk type INIT, flags
    p.extend(20u16.to_be_bytes()); // chunk length
    p.extend(0x1234_5678u32.to_be_bytes()); // initiate tag
    p.extend(65_535u32.to_be_bytes()); // advertised receiver window
    p.extend(1u16.to_be_bytes()); // outbound streams
    p.extend(1u16.to_be_bytes()); // inbound streams
    p.extend(1u32.to_be_bytes()); // initial TSN
    let crc = crc32c(&p);
    p[8..12].copy_from_slice(&crc.to_le_bytes());
    p
}

/// Opens a raw IPv4 socket for protocol 132 (SCTP), with a receive timeout.
#[allow(unsafe_code)]
pub fn raw_socket(timeout: Duration) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes plain integers and returns a new descriptor or -1.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_SCTP,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by socket() and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(1),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: `tv` is a live timeval and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            super::sys::socklen(size_of::<libc::timeval>()),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Sends one INIT from [`SOURCE_PORT`] to `to` (the kernel adds the IPv4 header).
#[allow(unsafe_code)]
pub fn send_init(socket: &OwnedFd, to: SocketAddrV4) -> io::Result<()> {
    let packet = init_packet(SOURCE_PORT, to.port());
    let (addr, len) = super::sys::sockaddr(to.into());
    // SAFETY: `packet` and `addr` are live buffers of the stated lengths.
    let rc = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&raw const addr).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for one SCTP packet (until the socket's timeout) and reports its addresses.
#[allow(unsafe_code)]
pub fn capture(socket: &OwnedFd) -> io::Result<Seen> {
    let mut buf = [0u8; 2048];
    // SAFETY: `buf` is a live, writable buffer of the stated length.
    let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let packet = &buf[..n];
    let ihl = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
    if n < ihl + 4 || ihl < 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short SCTP packet",
        ));
    }
    let addr =
        |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    let port = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
    Ok(Seen {
        src: SocketAddrV4::new(addr(12), port(ihl)),
        dst: SocketAddrV4::new(addr(16), port(ihl + 2)),
    })
}
