//! Probes from lab members: one, several in parallel, or many to see a spread.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::mpsc;

use super::client::{self, Probe, Proto, Spread, TIMEOUT};
use super::sctp;
use super::{Lab, Member};

impl Lab {
    /// One TCP connection or UDP exchange from `from` to `to`.
    pub fn probe(&self, from: Member<'_>, proto: Proto, to: SocketAddr) -> Probe {
        let label = describe(from);
        self.ns(from)
            .run_inside(move || client::probe(&label, proto, to, TIMEOUT))
    }

    /// Several probes at once, each on its own thread, so that expected timeouts overlap
    /// instead of adding up. Results are in the order given.
    pub fn probe_all(&self, probes: &[(Member<'_>, Proto, SocketAddr)]) -> Vec<Probe> {
        let handles: Vec<_> = probes
            .iter()
            .map(|&(from, proto, to)| {
                let label = describe(from);
                self.ns(from)
                    .spawn(move || client::probe(&label, proto, to, TIMEOUT))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    }

    /// `n` probes one after the other (each a new connection, so a new conntrack entry
    /// and a new load-balancing decision), summarised.
    pub fn spread(&self, from: Member<'_>, proto: Proto, to: SocketAddr, n: usize) -> Spread {
        let label = describe(from);
        self.ns(from).run_inside(move || {
            let mut spread = Spread::default();
            for _ in 0..n {
                spread.record(client::probe(&label, proto, to, TIMEOUT));
            }
            spread
        })
    }
}

impl Lab {
    /// The pods that answered `n` new connections from `from` to `to`, sorted; panics if
    /// any connection got no answer.
    pub fn answering(
        &self,
        from: Member<'_>,
        proto: Proto,
        to: SocketAddr,
        n: usize,
    ) -> Vec<String> {
        let spread = self.spread(from, proto, to, n);
        spread.assert_all_answered();
        spread.pods.into_iter().collect()
    }
}

impl Lab {
    /// Sends an SCTP INIT from `from` to `to` through a raw socket and returns what pod
    /// `capture_at` received within [`TIMEOUT`] (`None`: nothing arrived). See [`sctp`].
    pub fn sctp_init(
        &self,
        from: Member<'_>,
        to: SocketAddrV4,
        capture_at: &str,
    ) -> Option<sctp::Seen> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let capture = self.ns(Member::Pod(capture_at)).spawn(move || {
            let socket =
                sctp::raw_socket(TIMEOUT).unwrap_or_else(|e| panic!("raw SCTP socket: {e}"));
            let _ = ready_tx.send(());
            sctp::capture(&socket).ok()
        });
        if ready_rx.recv().is_ok() {
            self.ns(from).run_inside(move || {
                let socket =
                    sctp::raw_socket(TIMEOUT).unwrap_or_else(|e| panic!("raw SCTP socket: {e}"));
                sctp::send_init(&socket, to)
                    .unwrap_or_else(|e| panic!("sending an SCTP INIT to {to}: {e}"));
            });
        }
        capture
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

fn describe(member: Member<'_>) -> String {
    match member {
        Member::Node1 => "node-1".to_owned(),
        Member::Node2 => "node-2".to_owned(),
        Member::Pod(name) => format!("pod {name}"),
        Member::Client(name) => format!("client {name}"),
    }
}
