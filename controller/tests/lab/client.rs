//! Clients: one TCP connection or UDP exchange, classified by what came back.
//!
//! Functions here run in the calling thread's network namespace; the lab calls them on a
//! thread switched into the member it connects from.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::sys::tcp_connect;

/// How long a probe waits for an answer: long enough to be reliable, short enough that
/// a DROP assertion is cheap.
pub const TIMEOUT: Duration = Duration::from_millis(1500);
/// A REJECT must be seen within this time: it is an ICMP error, not a timer.
pub const REJECT_WITHIN: Duration = Duration::from_millis(500);

/// The transport protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// A pod server answered; `peer` is the source address it saw.
    Reply { pod: String, peer: IpAddr },
    /// TCP reset or ICMP port unreachable (`ECONNREFUSED`), reported as soon as the
    /// error arrives (see [`super::sys::tcp_connect`]).
    Refused,
    /// ICMP host/network unreachable, or no route (`EHOSTUNREACH` / `ENETUNREACH`).
    Unreachable,
    /// Nothing came back within [`TIMEOUT`] (a DROP, or a black hole).
    Timeout,
    /// The sender's own output hook dropped the packet: `sendmsg` fails with `EPERM`.
    /// This is how a DROP looks to a UDP socket on node-1 itself (a TCP SYN dropped
    /// there is retransmitted, so TCP sees [`Outcome::Timeout`]).
    NotPermitted,
    /// Anything else (connection reset after accept, a malformed answer, ...).
    Failed(String),
}

/// One probe: where it went, what happened and how long it took.
#[derive(Debug, Clone)]
pub struct Probe {
    pub from: String,
    pub proto: Proto,
    pub to: SocketAddr,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} from {} to {}: {:?} after {:?}",
            self.proto, self.from, self.to, self.outcome, self.elapsed
        )
    }
}

impl Probe {
    /// The answering pod and the peer address it saw; panics unless a pod answered.
    pub fn reply(&self) -> (&str, IpAddr) {
        match &self.outcome {
            Outcome::Reply { pod, peer } => (pod, *peer),
            _ => panic!("expected a reply: {self}"),
        }
    }

    /// Panics unless the probe was refused within [`REJECT_WITHIN`].
    pub fn assert_refused_quickly(&self) {
        assert_eq!(self.outcome, Outcome::Refused, "expected REJECT: {self}");
        assert!(self.elapsed < REJECT_WITHIN, "REJECT took too long: {self}");
    }

    /// Panics unless nothing came back (DROP in a forwarding hop).
    pub fn assert_timeout(&self) {
        assert_eq!(self.outcome, Outcome::Timeout, "expected DROP: {self}");
    }

    /// Panics unless the packet was dropped: a timeout, or `EPERM` when the sender's own
    /// output hook dropped it.
    pub fn assert_dropped(&self) {
        assert!(
            matches!(self.outcome, Outcome::Timeout | Outcome::NotPermitted),
            "expected DROP: {self}"
        );
    }
}

/// Connects (TCP) or exchanges one datagram (UDP) with `to` and classifies the result.
pub fn probe(from: &str, proto: Proto, to: SocketAddr, timeout: Duration) -> Probe {
    let start = Instant::now();
    let outcome = match proto {
        Proto::Tcp => tcp(to, timeout),
        Proto::Udp => udp(to, timeout),
    };
    Probe {
        from: from.to_owned(),
        proto,
        to,
        outcome,
        elapsed: start.elapsed(),
    }
}

fn tcp(to: SocketAddr, timeout: Duration) -> Outcome {
    let mut stream = match tcp_connect(to, timeout) {
        Ok(stream) => stream,
        Err(e) => return classify(&e),
    };
    let mut text = String::new();
    let read = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.read_to_string(&mut text));
    match read {
        Ok(_) => parse_answer(&text),
        Err(e) => Outcome::Failed(format!("connected, then {e}")),
    }
}

fn udp(to: SocketAddr, timeout: Duration) -> Outcome {
    let any: IpAddr = match to {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let exchange = || -> io::Result<String> {
        let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
        socket.connect(to)?;
        socket.set_read_timeout(Some(timeout))?;
        if let Err(e) = socket.send(b"hello\n") {
            // A REJECT in the sender's own output hook both drops the datagram (EPERM)
            // and sends the ICMP error, which is already pending on the socket.
            return Err(socket.take_error()?.unwrap_or(e));
        }
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    match exchange() {
        Ok(text) => parse_answer(&text),
        Err(e) => classify(&e),
    }
}

fn classify(err: &io::Error) -> Outcome {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::Refused,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => Outcome::Unreachable,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Outcome::Timeout,
        io::ErrorKind::PermissionDenied => Outcome::NotPermitted,
        _ => Outcome::Failed(err.to_string()),
    }
}

fn parse_answer(text: &str) -> Outcome {
    let mut words = text.split_whitespace();
    match (
        words.next(),
        words.next().map(str::parse::<IpAddr>),
        words.next(),
    ) {
        (Some(pod), Some(Ok(peer)), None) => Outcome::Reply {
            pod: pod.to_owned(),
            peer,
        },
        _ => Outcome::Failed(format!("unexpected answer {text:?}")),
    }
}

/// What `n` probes to the same address saw, summarised.
#[derive(Debug, Clone, Default)]
pub struct Spread {
    /// Pods that answered at least once.
    pub pods: BTreeSet<String>,
    /// Peer addresses the answering pods saw.
    pub peers: BTreeSet<IpAddr>,
    /// Probes that got no answer.
    pub failures: Vec<Probe>,
}

impl Spread {
    /// Adds one probe's result.
    pub fn record(&mut self, probe: Probe) {
        match &probe.outcome {
            Outcome::Reply { pod, peer } => {
                self.pods.insert(pod.clone());
                self.peers.insert(*peer);
            }
            _ => self.failures.push(probe),
        }
    }

    /// The answering pods, sorted, for comparisons in assertions.
    pub fn pod_names(&self) -> Vec<&str> {
        self.pods.iter().map(String::as_str).collect()
    }

    /// Panics if any probe got no answer.
    pub fn assert_all_answered(&self) {
        assert!(
            self.failures.is_empty(),
            "{} probe(s) got no answer, first: {}",
            self.failures.len(),
            self.failures[0]
        );
    }
}
