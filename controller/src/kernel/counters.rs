//! Reads the per-service-port traffic counters: one netlink dump of nftproxy's counter objects.
//!
//! The compiler gives every service port a named counter object in each family's main
//! table (`counter-HASH-NAMESPACE/NAME/PROTO/PORT`, see `docs/ruleset.md`). Listing the
//! ruleset through nft to read them would take seconds at 10k services; an
//! `NFT_MSG_GETOBJ` dump filtered to counter objects returns just the objects, with their
//! packet and byte counts, in one round of datagrams. Names map to metric labels with
//! [`nftproxy_compiler::parse_counter_name`] (see [`ServiceCounter::labels`]).

use std::sync::{Mutex, PoisonError};

use nftproxy_compiler::{CounterLabels, parse_counter_name};
use nftproxy_rules::Family;

use super::batch::nft::{
    NFT_MSG_GETOBJ, NFT_MSG_NEWOBJ, NFT_OBJECT_COUNTER, NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS,
    NFTA_OBJ_DATA, NFTA_OBJ_NAME, NFTA_OBJ_TABLE, NFTA_OBJ_TYPE, nftables_message,
};
use super::direct::{Netfilter, attr_string};
use crate::netlink;

/// One counter object as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCounter {
    pub family: Family,
    pub table: String,
    /// The object's name, `counter-HASH-NAMESPACE/NAME/PROTO/PORT` for nftproxy's own.
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

impl ServiceCounter {
    /// The namespace, service, protocol and port its name stands for; `None` for a counter
    /// that nftproxy did not name.
    pub fn labels(&self) -> Option<CounterLabels> {
        parse_counter_name(&self.name)
    }
}

/// Reads the counters on a netfilter socket of its own, so that a scrape never waits for a
/// sync (which holds the kernel client's socket). The socket belongs to the network
/// namespace of the thread that opened it; after a failed dump it is opened again (on the
/// reading thread).
#[derive(Debug)]
pub struct CounterReader {
    socket: Mutex<Option<Netfilter>>,
}

impl CounterReader {
    /// A reader whose socket is opened now, in the calling thread's network namespace.
    pub fn open() -> std::io::Result<Self> {
        Ok(CounterReader {
            socket: Mutex::new(Some(Netfilter::open()?)),
        })
    }

    /// Every counter object of nftproxy's tables.
    pub fn read(&self) -> std::io::Result<Vec<ServiceCounter>> {
        let mut socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        let netfilter = match socket.as_mut() {
            Some(netfilter) => netfilter,
            None => socket.insert(Netfilter::open()?),
        };
        let counters = service_counters(netfilter);
        if counters.is_err() {
            *socket = None;
        }
        counters
    }
}

/// The dump's answers are `NFT_MSG_NEWOBJ` messages.
const NEW_OBJ: u16 = nftables_message(NFT_MSG_NEWOBJ);

/// Every counter object of nftproxy's `ip` and `ip6` tables, in dump order.
pub fn service_counters(netfilter: &mut Netfilter) -> std::io::Result<Vec<ServiceCounter>> {
    let mut counters = Vec::new();
    // Family 0: every family; the type attribute makes the kernel send counters only.
    let request = |w: &mut super::batch::attrs::Writer| w.u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
    netfilter.dump(NFT_MSG_GETOBJ, 0, request, |kind, payload| {
        if kind != NEW_OBJ {
            return;
        }
        let counter = parse_counter(payload)
            .filter(|c| c.family != Family::Inet && nftproxy_compiler::is_table_name(&c.table));
        counters.extend(counter);
    })?;
    Ok(counters)
}

/// A `NFT_MSG_NEWOBJ` payload (`nfgenmsg`, then attributes) of a counter object; `None`
/// for another object type, another family than `ip`/`ip6`, or a malformed message.
pub fn parse_counter(payload: &[u8]) -> Option<ServiceCounter> {
    let family = match i32::from(*payload.first()?) {
        libc::NFPROTO_IPV4 => Family::Ip,
        libc::NFPROTO_IPV6 => Family::Ip6,
        _ => return None,
    };
    let (mut table, mut name, mut kind, mut data) = (None, None, None, None);
    for (attr, value) in netlink::attrs(payload.get(4..)?) {
        match attr {
            NFTA_OBJ_TABLE => table = Some(attr_string(value)),
            NFTA_OBJ_NAME => name = Some(attr_string(value)),
            NFTA_OBJ_TYPE => kind = Some(u32::from_be_bytes(value.try_into().ok()?)),
            NFTA_OBJ_DATA => data = Some(value),
            _ => {}
        }
    }
    if kind != Some(NFT_OBJECT_COUNTER) {
        return None;
    }
    let (mut packets, mut bytes) = (None, None);
    for (attr, value) in netlink::attrs(data?) {
        match attr {
            NFTA_COUNTER_PACKETS => packets = Some(u64::from_be_bytes(value.try_into().ok()?)),
            NFTA_COUNTER_BYTES => bytes = Some(u64::from_be_bytes(value.try_into().ok()?)),
            _ => {}
        }
    }
    Some(ServiceCounter {
        family,
        table: table?,
        name: name?,
        packets: packets?,
        bytes: bytes?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::batch::attrs::Writer;

    /// A `NEWOBJ` payload as the kernel sends it (header stripped): `nfgenmsg`, table,
    /// name, type, data { bytes, packets }, use and handle.
    fn newobj(family: u8, kind: u32, name: &str, packets: u64, bytes: u64) -> Vec<u8> {
        let mut w = Writer::new();
        let open = w.begin_message(NEW_OBJ, 0, 1, family, 0);
        w.str(NFTA_OBJ_TABLE, "nftproxy");
        w.str(NFTA_OBJ_NAME, name);
        w.u32(NFTA_OBJ_TYPE, kind);
        let data = w.begin_nest(NFTA_OBJ_DATA);
        w.u64(NFTA_COUNTER_BYTES, bytes);
        w.u64(NFTA_COUNTER_PACKETS, packets);
        w.end_nest(data);
        w.u32(5, 1); // NFTA_OBJ_USE
        w.u64(6, 42); // NFTA_OBJ_HANDLE
        w.end_message(open);
        w.into_bytes()[16..].to_vec()
    }

    #[test]
    fn a_counter_object_parses_with_its_counts() {
        let name = "counter-77OTATZV-shop/cluster-ip/tcp/http";
        let payload = newobj(libc::NFPROTO_IPV6 as u8, NFT_OBJECT_COUNTER, name, 7, 1234);
        assert_eq!(
            parse_counter(&payload),
            Some(ServiceCounter {
                family: Family::Ip6,
                table: "nftproxy".into(),
                name: name.into(),
                packets: 7,
                bytes: 1234,
            })
        );
    }

    #[test]
    fn other_objects_and_families_are_skipped() {
        let quota = newobj(libc::NFPROTO_IPV4 as u8, 2, "q", 0, 0);
        assert_eq!(parse_counter(&quota), None);
        let inet = newobj(libc::NFPROTO_INET as u8, NFT_OBJECT_COUNTER, "c", 0, 0);
        assert_eq!(parse_counter(&inet), None);
        let cut = newobj(libc::NFPROTO_IPV4 as u8, NFT_OBJECT_COUNTER, "c", 1, 2);
        assert_eq!(parse_counter(&cut[..cut.len() - 40]), None);
    }

    #[test]
    fn labels_come_from_the_name_nftproxy_gave() {
        let counter = ServiceCounter {
            family: Family::Ip,
            table: "nftproxy".into(),
            name: "counter-77OTATZV-shop/cluster-ip/tcp/http".into(),
            packets: 0,
            bytes: 0,
        };
        let labels = counter.labels();
        // The hash must match the identity; the name comes from the every-service-type
        // snapshot, so it does.
        let labels = labels.unwrap();
        assert_eq!(
            (labels.namespace.as_str(), labels.service.as_str()),
            ("shop", "cluster-ip")
        );
        assert_eq!(
            (labels.protocol.as_str(), labels.port.as_str()),
            ("tcp", "http")
        );
    }
}
