//! Pod servers: answer every TCP connection and UDP datagram with `<pod-name> <peer-ip>`.
//!
//! A server is one thread inside the pod's namespace. It binds dual-stack (`[::]`) TCP
//! and UDP sockets on every configured port, reports readiness once bound, and serves
//! until the lab drops its [`Server`], which hangs up a socket pair the thread polls.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::sys::poll_readable;
use crate::common::netns::NetNs;

/// A running pod server; dropping it stops the thread and waits for it.
#[derive(Debug)]
pub struct Server {
    hangup: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server for `pod` inside `ns` and returns once every socket is bound.
    pub fn start(ns: &NetNs, pod: &str, ports: &[u16]) -> Server {
        let (hangup, wakeup) =
            UnixStream::pair().unwrap_or_else(|e| panic!("socketpair for {pod}: {e}"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let name = pod.to_owned();
        let ports = ports.to_vec();
        let thread = ns.spawn(move || serve(&name, &ports, &wakeup, &ready_tx));
        let server = Server {
            hangup: Some(hangup),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => server,
            Ok(Err(e)) => panic!("server of pod {pod} cannot bind: {e}"),
            Err(_) => panic!("server of pod {pod} died before binding"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.hangup.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Udp(s) => s.as_raw_fd(),
        }
    }

    /// Answers everything pending; the sockets are non-blocking.
    fn answer_pending(&self, pod: &str) {
        match self {
            Listener::Tcp(listener) => {
                while let Ok((mut stream, peer)) = listener.accept() {
                    let _ = stream.write_all(line(pod, peer).as_bytes());
                }
            }
            Listener::Udp(socket) => {
                let mut buf = [0u8; 512];
                while let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(line(pod, peer).as_bytes(), peer);
                }
            }
        }
    }
}

fn line(pod: &str, peer: SocketAddr) -> String {
    format!("{pod} {}\n", peer.ip().to_canonical())
}

fn bind_all(ports: &[u16]) -> io::Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    for &port in ports {
        let any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        let tcp = TcpListener::bind(any)?;
        tcp.set_nonblocking(true)?;
        let udp = UdpSocket::bind(any)?;
        udp.set_nonblocking(true)?;
        listeners.push(Listener::Tcp(tcp));
        listeners.push(Listener::Udp(udp));
    }
    Ok(listeners)
}

fn serve(pod: &str, ports: &[u16], wakeup: &UnixStream, ready: &mpsc::Sender<Result<(), String>>) {
    let listeners = match bind_all(ports) {
        Ok(listeners) => listeners,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut fds = vec![wakeup.as_raw_fd()];
    fds.extend(listeners.iter().map(Listener::fd));
    loop {
        let Ok(readable) = poll_readable(&fds) else {
            return;
        };
        if readable[0] {
            return;
        }
        for (listener, _) in listeners.iter().zip(&readable[1..]).filter(|(_, r)| **r) {
            listener.answer_pending(pod);
        }
    }
}
