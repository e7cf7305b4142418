//! Adopting tables at start: checks with netlink dumps that a table in the kernel is the
//! one nftproxy expects, so that it need not be listed through libnftables.
//!
//! A restart over an unchanged cluster finds its tables as it left them. Listing them
//! through libnftables takes seconds at tens of thousands of Services (nft fills its cache
//! and renders every object), and parsing that listing back into the model is what the
//! diff needs only when something differs. So the table the sync expects is encoded as the
//! batch that would create it, the kernel's table is dumped (chains, rules, sets, elements,
//! objects), and the two are compared in the canonical form of [`canonical`](super::canonical). When they are
//! equal, the expected table *is* the kernel's; when they are not (or the encoder does not
//! cover the table), the caller lists that one table through libnftables.
//!
//! Interval sets (`service-cidrs`) are left out of both sides: the encoder does not write
//! interval elements (nft splits prefixes into range ends). They hold a few prefixes, and
//! the caller compares them apart, each listed through libnftables (milliseconds).

use std::collections::HashMap;
use std::io;

use nftproxy_rules::{Family, Op, Ruleset, Set, Table, TableId, Transaction, table_creation_ops};

use super::batch::{self, nft::*};
use super::canonical::{Record, Records};
use super::direct::{Netfilter, attr_string};
use crate::netlink;

/// Dumps of one network namespace's nf_tables, gathered once for several tables.
struct KernelTables<'a> {
    netfilter: &'a mut Netfilter,
    /// Each table's `NEWTABLE` attributes, from one dump of every table.
    tables: HashMap<TableId, Vec<u8>>,
    /// Each table's chains (`NEWCHAIN` attributes), from one dump per family: the kernel
    /// does not filter chain dumps by table.
    chains: HashMap<TableId, Vec<Vec<u8>>>,
}

fn family_number(family: Family) -> u8 {
    match family {
        Family::Ip => NFPROTO_IPV4 as u8,
        Family::Ip6 => NFPROTO_IPV6 as u8,
        Family::Inet => libc::NFPROTO_INET as u8,
    }
}

fn family_of(number: u8) -> Option<Family> {
    match i32::from(number) {
        libc::NFPROTO_IPV4 => Some(Family::Ip),
        libc::NFPROTO_IPV6 => Some(Family::Ip6),
        libc::NFPROTO_INET => Some(Family::Inet),
        _ => None,
    }
}

/// The `(family, attributes)` of a dump answer of type `NFT_MSG_<msg>`.
fn answer(kind: u16, payload: &[u8], msg: u16) -> Option<(u8, &[u8])> {
    (kind == nftables_message(msg) && payload.len() >= 4).then(|| (payload[0], &payload[4..]))
}

fn string_attr(attrs: &[u8], kind: u16) -> Option<String> {
    netlink::attrs(attrs)
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| attr_string(v))
}

impl<'a> KernelTables<'a> {
    /// Dumps the tables and the chains of `families`.
    fn dump(netfilter: &'a mut Netfilter, families: &[Family]) -> io::Result<Self> {
        let mut tables = HashMap::new();
        netfilter.dump(
            NFT_MSG_GETTABLE,
            0,
            |_| {},
            |kind, payload| {
                let Some((family, attrs)) = answer(kind, payload, NFT_MSG_NEWTABLE) else {
                    return;
                };
                if let (Some(family), Some(name)) =
                    (family_of(family), string_attr(attrs, NFTA_TABLE_NAME))
                {
                    tables.insert(TableId::new(family, name), attrs.to_vec());
                }
            },
        )?;
        let mut chains: HashMap<TableId, Vec<Vec<u8>>> = HashMap::new();
        for &family in families {
            let number = family_number(family);
            netfilter.dump(
                NFT_MSG_GETCHAIN,
                number,
                |_| {},
                |kind, payload| {
                    let Some((_, attrs)) = answer(kind, payload, NFT_MSG_NEWCHAIN) else {
                        return;
                    };
                    if let Some(table) = string_attr(attrs, NFTA_CHAIN_TABLE) {
                        let id = TableId::new(family, table);
                        chains.entry(id).or_default().push(attrs.to_vec());
                    }
                },
            )?;
        }
        Ok(KernelTables {
            netfilter,
            tables,
            chains,
        })
    }

    /// The canonical records of table `id` as the kernel holds it, but for its interval
    /// sets, which are named apart (sorted); `None` if the table does not exist.
    fn records(&mut self, id: &TableId) -> io::Result<Option<(Vec<Record>, Vec<String>)>> {
        let Some(table) = self.tables.get(id) else {
            return Ok(None);
        };
        let mut records = Records::new();
        records.add_message(NFT_MSG_NEWTABLE, table);
        for chain in self.chains.get(id).into_iter().flatten() {
            records.add_message(NFT_MSG_NEWCHAIN, chain);
        }
        let family = family_number(id.family);
        let mut sets = Vec::new();
        let mut interval_sets = Vec::new();
        let by_table = |kind| move |w: &mut batch::attrs::Writer| w.str(kind, &id.name);
        for (get, new, table_attr) in [
            (NFT_MSG_GETRULE, NFT_MSG_NEWRULE, NFTA_RULE_TABLE),
            (NFT_MSG_GETSET, NFT_MSG_NEWSET, NFTA_SET_TABLE),
            (NFT_MSG_GETOBJ, NFT_MSG_NEWOBJ, NFTA_OBJ_TABLE),
        ] {
            self.netfilter
                .dump(get, family, by_table(table_attr), |kind, payload| {
                    let Some((_, attrs)) = answer(kind, payload, new) else {
                        return;
                    };
                    // The request names the table; a kernel that ignored that would send
                    // other tables' objects too.
                    if string_attr(attrs, table_attr).as_deref() != Some(&id.name) {
                        return;
                    }
                    if new == NFT_MSG_NEWSET {
                        let name = string_attr(attrs, NFTA_SET_NAME);
                        if set_flags(attrs) & NFT_SET_INTERVAL != 0 {
                            interval_sets.extend(name);
                            return;
                        }
                        sets.extend(name);
                    }
                    records.add_message(new, attrs);
                })?;
        }
        for set in sets {
            let request = |w: &mut batch::attrs::Writer| {
                w.str(NFTA_SET_ELEM_LIST_TABLE, &id.name);
                w.str(NFTA_SET_ELEM_LIST_SET, &set);
            };
            self.netfilter
                .dump(NFT_MSG_GETSETELEM, family, request, |kind, payload| {
                    if let Some((_, attrs)) = answer(kind, payload, NFT_MSG_NEWSETELEM) {
                        records.add_message(NFT_MSG_NEWSETELEM, attrs);
                    }
                })?;
        }
        interval_sets.sort_unstable();
        Ok(Some((records.into_sorted(), interval_sets)))
    }
}

/// A set's `NFTA_SET_FLAGS` (0 when absent).
fn set_flags(attrs: &[u8]) -> u32 {
    netlink::attrs(attrs)
        .find(|(k, _)| *k == NFTA_SET_FLAGS)
        .and_then(|(_, v)| Some(u32::from_be_bytes(v.try_into().ok()?)))
        .unwrap_or_default()
}

/// A table the kernel holds as expected, except perhaps its interval sets, which the
/// caller must still compare (the dumps leave them out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchanged {
    pub table: TableId,
    /// The names of its interval sets, which both sides have.
    pub interval_sets: Vec<String>,
}

/// Which of `tables` (which exist) the kernel holds exactly as in `expected`, interval
/// sets apart. A table is left out when the encoder does not cover it, when it differs,
/// when a dump fails, or when anything in the namespace changed while the tables were
/// dumped.
pub fn unchanged_tables(
    netfilter: &mut Netfilter,
    tables: &[TableId],
    expected: &Ruleset,
) -> Vec<Unchanged> {
    if !tables.iter().any(|id| expected.table(id).is_some()) {
        return Vec::new();
    }
    match check(netfilter, tables, expected) {
        Ok(same) => same,
        Err(err) => {
            tracing::debug!(%err, "cannot check nftproxy's tables over netlink; listing them");
            Vec::new()
        }
    }
}

fn check(
    netfilter: &mut Netfilter,
    tables: &[TableId],
    expected: &Ruleset,
) -> io::Result<Vec<Unchanged>> {
    let before = netfilter.generation()?;
    let mut families: Vec<Family> = tables.iter().map(|id| id.family).collect();
    families.sort_unstable();
    families.dedup();
    let mut kernel = KernelTables::dump(netfilter, &families)?;
    let mut same = Vec::new();
    for id in tables {
        let Some(wanted) = expected
            .table(id)
            .and_then(|table| expected_records(expected, table))
        else {
            continue;
        };
        let held = kernel.records(id)?;
        match held {
            Some(held) if held == wanted => same.push(Unchanged {
                table: id.clone(),
                interval_sets: held.1,
            }),
            held => tracing::debug!(
                table = %id,
                difference = %first_difference(&wanted, held.as_ref()),
                "the kernel's table is not the expected one"
            ),
        }
    }
    let after = kernel.netfilter.generation()?;
    if before != after {
        return Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "the ruleset changed while it was dumped",
        ));
    }
    Ok(same)
}

/// The canonical records of table `table` of `expected` as nftproxy would create it, but
/// for its interval sets, which are named apart (sorted); `None` when the batch encoder
/// does not cover something in it.
fn expected_records(expected: &Ruleset, table: &Table) -> Option<(Vec<Record>, Vec<String>)> {
    let interval_sets: Vec<String> = table
        .sets
        .values()
        .filter(|set| set.is_interval())
        .map(|set| set.name.clone())
        .collect();
    let transaction = creation_without_interval_sets(table);
    let encoded = match batch::encode(&transaction, 1, &[expected]) {
        Ok(encoded) => encoded,
        Err(unsupported) => {
            tracing::debug!(table = %table.id(), %unsupported, "cannot check the table over netlink");
            return None;
        }
    };
    let mut records = Records::new();
    for message in netlink::messages(&encoded.bytes) {
        let Ok((kind, _, _, payload)) = message else {
            return None;
        };
        if kind >> 8 == NFNL_SUBSYS_NFTABLES && payload.len() >= 4 {
            records.add_message(kind & 0xff, &payload[4..]);
        }
    }
    Some((records.into_sorted(), interval_sets))
}

/// The transaction that creates `table`, but for its interval sets (declarations and
/// elements): what the dumps are compared against.
pub fn creation_without_interval_sets(table: &Table) -> Transaction {
    let is_interval = |name: &str| table.sets.get(name).is_some_and(Set::is_interval);
    let mut transaction = Transaction::new();
    transaction.ops = table_creation_ops(table)
        .into_iter()
        .filter(|op| match op {
            Op::AddSet { set, .. } => !is_interval(&set.name),
            Op::AddElements { set, .. } => !is_interval(set),
            _ => true,
        })
        .collect();
    transaction
}

/// The first record in which `held` (sorted; `None`: no table) differs from `wanted`, as
/// hex, or the interval sets that differ, for the debug log.
fn first_difference(
    (wanted, wanted_intervals): &(Vec<Record>, Vec<String>),
    held: Option<&(Vec<Record>, Vec<String>)>,
) -> String {
    let Some((held, held_intervals)) = held else {
        return "the table is gone".to_owned();
    };
    if wanted_intervals != held_intervals {
        return format!("interval sets {held_intervals:?} instead of {wanted_intervals:?}");
    }
    let hex = |r: &Record| r.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let at = wanted
        .iter()
        .zip(held)
        .position(|(w, h)| w != h)
        .unwrap_or(wanted.len().min(held.len()));
    match (wanted.get(at), held.get(at)) {
        (Some(w), Some(h)) => format!("expected {} but found {}", hex(w), hex(h)),
        (Some(w), None) => format!("missing {}", hex(w)),
        (None, Some(h)) => format!("unexpected {}", hex(h)),
        (None, None) => "none".to_owned(),
    }
}
