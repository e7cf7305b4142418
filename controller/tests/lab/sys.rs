//! System calls the lab needs that `std` does not offer: `poll`, an SCTP probe, and a TCP
//! connect that reports ICMP errors at once.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Waits until at least one of `fds` is readable (or hung up) and says which are.
#[allow(unsafe_code)]
pub fn poll_readable(fds: &[RawFd]) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let count = libc::nfds_t::try_from(pollfds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds"))?;
    loop {
        // SAFETY: `pollfds` is an exclusively borrowed, initialised array of `count` pollfd
        // structures that lives across the call; poll writes only their `revents` fields.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), count, -1) };
        if rc >= 0 {
            return Ok(pollfds.iter().map(|p| p.revents != 0).collect());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether this kernel can open SCTP sockets (`CONFIG_IP_SCTP`). SCTP conntrack and NAT
/// work without it, so rulesets with SCTP services load either way.
#[allow(unsafe_code)]
pub fn sctp_sockets_supported() -> bool {
    // SAFETY: socket() takes plain integers and returns a new descriptor or -1; it touches
    // no memory of ours.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    unsafe { libc::close(fd) };
    true
}

/// Connects like `TcpStream::connect_timeout`, but with `IP_RECVERR` / `IPV6_RECVERR` on,
/// so that an ICMP error is reported the moment it arrives.
///
/// Without it an ICMP error that arrives while `connect()` still holds the socket lock
/// (always the case in the lab, where the whole path runs in the softirq of the sending
/// call) is only recorded as a soft error, and the client learns of the REJECT one SYN
/// retransmission (1 s) later. With it the error is also queued on the socket's error
/// queue, which `poll` reports at once.
#[allow(unsafe_code)]
pub fn tcp_connect(to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let (domain, level, option) = match to {
        SocketAddr::V4(_) => (libc::AF_INET, libc::SOL_IP, libc::IP_RECVERR),
        SocketAddr::V6(_) => (libc::AF_INET6, libc::SOL_IPV6, libc::IPV6_RECVERR),
    };
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket() takes plain integers and returns a new descriptor or -1.
    let raw = unsafe { libc::socket(domain, kind, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by socket() and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let on: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&raw const on).cast(),
            socklen(size_of::<libc::c_int>()),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let (addr, len) = sockaddr(to);
    // SAFETY: `addr` holds an initialised sockaddr_in/sockaddr_in6 of `len` bytes.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
    }
    wait_connected(&fd, timeout)?;
    let stream = TcpStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

#[allow(unsafe_code)]
fn wait_connected(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        if millis == 0 {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: `pfd` is one live, exclusively borrowed pollfd.
        let rc = unsafe { libc::poll(&raw mut pfd, 1, millis) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if let Some(err) = socket_error(fd)? {
            return Err(err);
        }
        if pfd.revents & libc::POLLERR != 0
            && let Some(err) = queued_icmp_error(fd)?
        {
            return Err(err);
        }
        if pfd.revents & (libc::POLLOUT | libc::POLLHUP) != 0 {
            return Ok(());
        }
    }
}

/// `SO_ERROR`: the socket's pending hard error, cleared by reading it.
#[allow(unsafe_code)]
fn socket_error(fd: &OwnedFd) -> io::Result<Option<io::Error>> {
    let mut value: libc::c_int = 0;
    let mut len = socklen(size_of::<libc::c_int>());
    // SAFETY: value and len are live and sized for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((value != 0).then(|| io::Error::from_raw_os_error(value)))
}

/// Reads one entry of the socket's error queue and returns the errno it carries.
#[allow(unsafe_code)]
fn queued_icmp_error(fd: &OwnedFd) -> io::Result<Option<io::Error>> {
    let mut data = [0u8; 256];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: msg points to live buffers whose sizes it states.
    let rc = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, libc::MSG_ERRQUEUE) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: the kernel filled `msg` and its control buffer; the CMSG macros walk that
    // buffer within msg_controllen, and the extended error is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            let recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
            if recverr {
                let ee: libc::sock_extended_err =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let errno = libc::c_int::try_from(ee.ee_errno).unwrap_or(libc::EIO);
                return Ok(Some(io::Error::from_raw_os_error(errno)));
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok(None)
}

pub fn socklen(n: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(n).unwrap_or(libc::socklen_t::MAX)
}

/// `to` as a C socket address (in storage big enough for either family) and its length.
pub fn sockaddr(to: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match to {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or_default(),
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            write_into(&mut storage, sin);
            (storage, socklen(size_of::<libc::sockaddr_in>()))
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::sa_family_t::try_from(libc::AF_INET6).unwrap_or_default(),
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            write_into(&mut storage, sin6);
            (storage, socklen(size_of::<libc::sockaddr_in6>()))
        }
    }
}

#[allow(unsafe_code)]
fn write_into<T>(storage: &mut libc::sockaddr_storage, value: T) {
    assert!(size_of::<T>() <= size_of::<libc::sockaddr_storage>());
    // SAFETY: the storage is large enough (checked above) and suitably aligned for any
    // sockaddr type; `value` is plain data.
    unsafe { std::ptr::write((&raw mut *storage).cast::<T>(), value) };
}
