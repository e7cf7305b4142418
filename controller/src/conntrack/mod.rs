//! Stale UDP conntrack cleanup: which entries a sync made stale, and deleting them.
//!
//! UDP has no end of connection: a conntrack entry that DNATed a client's flow to an
//! endpoint keeps sending that flow there, after the endpoint left the service, for as long
//! as the client keeps sending. Like kube-proxy, after each successful sync nftproxy compares
//! the UDP service ports it programmed before ([`UdpPort`]) with the new ones:
//!
//! - an endpoint a port no longer uses ("stale endpoint"): delete the entries whose original
//!   destination is one of the port's addresses (ClusterIP, externalIPs, LB IPs, NodePort
//!   on any address) and whose reply comes from that endpoint;
//! - a port that had no endpoints and now has some ("stale service"; a port that did not
//!   exist counts as having none): delete the entries to its addresses that do not lead to
//!   one of its endpoints, in particular the un-DNATed ones left from the time it rejected;
//! - a port that is gone altogether: its endpoints are all stale, so entries leading to them
//!   through the port's old addresses are deleted and the flow meets today's rules at once.
//!
//! After a restart there is no previous sync to compare with: the first sync's ports are
//! reconciled with the kernel's table instead ([`unserved`]): every entry to a UDP port's
//! addresses that does not lead to one of its current endpoints is deleted.
//!
//! TCP connections end on their own and SCTP is left alone, as kube-proxy does.

pub mod netlink;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nftproxy_compiler::UdpPort;

use self::netlink::{Conntrack, Entry, IPPROTO_UDP, NetlinkError};

/// Where the original direction of an entry was headed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    /// A ClusterIP, externalIP or LB IP and the service port.
    Address(SocketAddr),
    /// A NodePort on any address of the family.
    NodePort { ipv6: bool, port: u16 },
}

/// Which reply sources (where the entry leads) a filter selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Entries DNATed to this endpoint.
    From(SocketAddr),
    /// Entries leading anywhere but to these endpoints (sorted), un-DNATed ones included.
    NotFrom(Vec<SocketAddr>),
}

/// UDP entries to delete: any of `destinations`, with a reply source `reply` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackFilter {
    pub destinations: Vec<Destination>,
    pub reply: Reply,
}

impl Reply {
    fn selects(&self, source: SocketAddr) -> bool {
        match self {
            Reply::From(endpoint) => *endpoint == source,
            Reply::NotFrom(endpoints) => endpoints.binary_search(&source).is_err(),
        }
    }
}

/// A port's identity across syncs: the same Service port on the same ClusterIP.
type Key<'a> = (&'a str, &'a str, SocketAddr);

fn key(port: &UdpPort) -> Key<'_> {
    (&port.service, &port.port_name, port.cluster_ip)
}

/// Where traffic reaches `port`.
fn destinations(port: &UdpPort) -> Vec<Destination> {
    let mut out = vec![Destination::Address(port.cluster_ip)];
    out.extend(port.external.iter().copied().map(Destination::Address));
    out.extend(port.node_port.map(|port_number| Destination::NodePort {
        ipv6: port.is_ipv6(),
        port: port_number,
    }));
    out
}

/// The endpoints of `port`; none when it does not exist.
fn endpoints_of(port: Option<&UdpPort>) -> &[SocketAddr] {
    port.map_or(&[], |p| p.endpoints.as_slice())
}

/// The entries made stale by going from the `old` UDP ports to the `new` ones.
pub fn stale(old: &[UdpPort], new: &[UdpPort]) -> Vec<ConntrackFilter> {
    let old: BTreeMap<Key<'_>, &UdpPort> = old.iter().map(|p| (key(p), p)).collect();
    let new: BTreeMap<Key<'_>, &UdpPort> = new.iter().map(|p| (key(p), p)).collect();
    let keys: BTreeSet<&Key<'_>> = old.keys().chain(new.keys()).collect();
    let mut filters = Vec::new();
    for key in keys {
        let (before, after) = (old.get(key).copied(), new.get(key).copied());
        let (was, is) = (endpoints_of(before), endpoints_of(after));
        if let Some(before) = before {
            let gone = was.iter().filter(|e| is.binary_search(e).is_err());
            filters.extend(gone.map(|endpoint| ConntrackFilter {
                destinations: destinations(before),
                reply: Reply::From(*endpoint),
            }));
        }
        if let Some(after) = after
            && was.is_empty()
            && !is.is_empty()
        {
            filters.push(ConntrackFilter {
                destinations: destinations(after),
                reply: Reply::NotFrom(is.to_vec()),
            });
        }
    }
    filters
}

/// Every entry to a UDP port of `ports` that does not lead to one of its endpoints: the
/// reconciliation used when there is no previous sync to compare with.
pub fn unserved(ports: &[UdpPort]) -> Vec<ConntrackFilter> {
    ports
        .iter()
        .map(|port| ConntrackFilter {
            destinations: destinations(port),
            reply: Reply::NotFrom(port.endpoints.clone()),
        })
        .collect()
}

/// Filters indexed by destination, for one look-up per entry.
#[derive(Debug, Default)]
pub struct Matcher<'a> {
    addresses: BTreeMap<SocketAddr, Vec<&'a Reply>>,
    node_ports: BTreeMap<(bool, u16), Vec<&'a Reply>>,
}

impl<'a> Matcher<'a> {
    pub fn new(filters: &'a [ConntrackFilter]) -> Self {
        let mut matcher = Matcher::default();
        for filter in filters {
            for destination in &filter.destinations {
                let replies = match *destination {
                    Destination::Address(addr) => matcher.addresses.entry(addr).or_default(),
                    Destination::NodePort { ipv6, port } => {
                        matcher.node_ports.entry((ipv6, port)).or_default()
                    }
                };
                replies.push(&filter.reply);
            }
        }
        matcher
    }

    /// Whether no filter can select anything.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.node_ports.is_empty()
    }

    /// The families (IPv6 or not) that filters name.
    pub fn families(&self) -> BTreeSet<bool> {
        let addresses = self.addresses.keys().map(SocketAddr::is_ipv6);
        addresses
            .chain(self.node_ports.keys().map(|(ipv6, _)| *ipv6))
            .collect()
    }

    /// Whether some filter selects `entry`.
    pub fn matches(&self, entry: &Entry) -> bool {
        if entry.proto != IPPROTO_UDP {
            return false;
        }
        let dst = entry.original.dst;
        let source = entry.reply.src;
        let selects = |replies: Option<&Vec<&Reply>>| {
            replies.is_some_and(|replies| replies.iter().any(|r| r.selects(source)))
        };
        selects(self.addresses.get(&dst))
            || selects(self.node_ports.get(&(dst.is_ipv6(), dst.port())))
    }
}

/// What one cleanup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Entries listed (all protocols, of the families the filters name).
    pub listed: usize,
    /// Entries deleted (selected ones that vanished meanwhile are not counted).
    pub deleted: usize,
    pub duration: Duration,
}

/// Deletes every UDP entry that `filters` select, in the current network namespace. Lists
/// nothing when there are no filters.
pub fn clean(filters: &[ConntrackFilter]) -> Result<Cleaned, NetlinkError> {
    let started = Instant::now();
    let matcher = Matcher::new(filters);
    let mut cleaned = Cleaned::default();
    if matcher.is_empty() {
        return Ok(cleaned);
    }
    let mut conntrack = Conntrack::open()?;
    for ipv6 in matcher.families() {
        let entries = conntrack.dump(ipv6)?;
        cleaned.listed += entries.len();
        for entry in entries.iter().filter(|e| matcher.matches(e)) {
            if conntrack.delete(entry)? {
                cleaned.deleted += 1;
            }
        }
    }
    cleaned.duration = started.elapsed();
    Ok(cleaned)
}

#[cfg(test)]
pub mod sample_ports;
#[cfg(test)]
mod tests;
