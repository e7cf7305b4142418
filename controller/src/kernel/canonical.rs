//! nf_tables objects in a canonical byte form, in which what nftproxy would send and what
//! the kernel dumps compare equal exactly when they describe the same object.
//!
//! A restart checks the kernel's tables against the ruleset it expects without libnftables
//! (see `adopt`): the expected tables are encoded as the batch that would create them, the
//! kernel's tables are dumped, and both sides' messages become [`Records`]. The canonical
//! form keeps what defines an object and drops what the kernel adds or keeps for itself:
//! handles, ids of the batch, use counts, positions, counter values, element expirations,
//! and attributes the kernel reports with their default value (a zero flag word, a NAT
//! range whose maximum is its minimum). Anything not understood is kept byte for byte, so
//! a difference can only make the comparison fail, never pass.

use std::collections::HashMap;

use super::batch::nft::*;
use crate::netlink;

/// One object: its message type and canonical attributes.
pub type Record = Vec<u8>;

/// The canonical records of one table, as messages are added.
#[derive(Debug, Default)]
pub struct Records {
    records: Vec<Record>,
    /// How many rules each chain has so far: a rule's place is part of its record.
    rules_per_chain: HashMap<Vec<u8>, u32>,
}

// nf_tables attribute numbers that only this module needs (linux/netfilter/nf_tables.h).
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_USERDATA: u16 = 12;
const NFTA_SET_POLICY: u16 = 8;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_EXPR: u16 = 17;
const NFTA_SET_EXPRESSIONS: u16 = 18;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
const NFTA_OBJ_USERDATA: u16 = 8;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_OBJREF_SET_ID: u16 = 5;
const NFTA_BITWISE_OP: u16 = 6;
const NFTA_BITWISE_DATA: u16 = 7;
const NFTA_RANGE_FROM_DATA: u16 = 3;
const NFTA_RANGE_TO_DATA: u16 = 4;
const NFTA_NG_OFFSET: u16 = 4;
const NFTA_DYNSET_SET_ID: u16 = 2;
const NFTA_DYNSET_TIMEOUT: u16 = 6;
const NFTA_DYNSET_FLAGS: u16 = 9;
const NFTA_NAT_REG_ADDR_MAX: u16 = 4;
const NFTA_NAT_REG_PROTO_MAX: u16 = 6;
const NFTA_MASQ_REG_PROTO_MIN: u16 = 2;
const NFTA_MASQ_REG_PROTO_MAX: u16 = 3;
/// `NF_NAT_RANGE_MAP_IPS`: the kernel sets it itself when a NAT statement has an address.
const NF_NAT_RANGE_MAP_IPS: u32 = 1;
/// `NFT_SET_EVAL`: the packet path adds elements (nft's `dynamic`).
const NFT_SET_EVAL: u32 = 0x20;
/// A made-up attribute type for a rule's place in its chain.
const RULE_INDEX: u16 = 0xffff;

impl Records {
    pub fn new() -> Self {
        Records::default()
    }

    /// Adds the objects of one `NFT_MSG_NEW*` message (`msg` without the subsystem; `attrs`
    /// after the `nfgenmsg` header). An element message adds one record per element.
    /// Other messages are ignored.
    pub fn add_message(&mut self, msg: u16, attrs: &[u8]) {
        match msg {
            NFT_MSG_NEWTABLE => self.push(msg, table(attrs)),
            NFT_MSG_NEWCHAIN => self.push(msg, chain(attrs)),
            NFT_MSG_NEWRULE => {
                let chain = find(attrs, NFTA_RULE_CHAIN).unwrap_or_default().to_vec();
                let index = self.rules_per_chain.entry(chain).or_default();
                let record = rule(attrs, *index);
                *index += 1;
                self.push(msg, record);
            }
            NFT_MSG_NEWSET => self.push(msg, set(attrs)),
            NFT_MSG_NEWSETELEM => {
                let set = find(attrs, NFTA_SET_ELEM_LIST_SET).unwrap_or_default();
                let elements = find(attrs, NFTA_SET_ELEM_LIST_ELEMENTS).unwrap_or_default();
                for (_, element_attrs) in netlink::attrs(elements) {
                    let record = vec![
                        (NFTA_SET_ELEM_LIST_SET, set.to_vec()),
                        (NFTA_SET_ELEM_LIST_ELEMENTS, element(element_attrs)),
                    ];
                    self.push(msg, record);
                }
            }
            NFT_MSG_NEWOBJ => self.push(msg, object(attrs)),
            _ => {}
        }
    }

    fn push(&mut self, msg: u16, attrs: Vec<(u16, Vec<u8>)>) {
        let mut record = msg.to_be_bytes().to_vec();
        record.extend(serialize(attrs, true));
        self.records.push(record);
    }

    /// Every record, sorted: two tables are the same when their sorted records are.
    pub fn into_sorted(mut self) -> Vec<Record> {
        self.records.sort_unstable();
        self.records
    }
}

/// The payload of attribute `kind` in `attrs`, if present.
fn find(attrs: &[u8], kind: u16) -> Option<&[u8]> {
    netlink::attrs(attrs)
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
}

fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

fn is_zero(value: &[u8]) -> bool {
    value.iter().all(|b| *b == 0)
}

/// Attributes as `(type, length, payload)` triples, sorted by type (and payload) when
/// their order carries no meaning.
fn serialize(mut attrs: Vec<(u16, Vec<u8>)>, sort: bool) -> Vec<u8> {
    if sort {
        attrs.sort_unstable();
    }
    let mut out = Vec::new();
    for (kind, payload) in attrs {
        out.extend(kind.to_be_bytes());
        out.extend(
            u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend(payload);
    }
    out
}

/// The attributes of `attrs` whose type `keep` accepts, byte for byte.
fn kept(attrs: &[u8], keep: impl Fn(u16, &[u8]) -> bool) -> Vec<(u16, Vec<u8>)> {
    netlink::attrs(attrs)
        .filter(|(kind, value)| keep(*kind, value))
        .map(|(kind, value)| (kind, value.to_vec()))
        .collect()
}

fn table(attrs: &[u8]) -> Vec<(u16, Vec<u8>)> {
    kept(attrs, |kind, value| match kind {
        NFTA_TABLE_NAME | NFTA_TABLE_USERDATA => true,
        NFTA_TABLE_FLAGS => !is_zero(value),
        _ => false,
    })
}

fn chain(attrs: &[u8]) -> Vec<(u16, Vec<u8>)> {
    netlink::attrs(attrs)
        .filter_map(|(kind, value)| match kind {
            NFTA_CHAIN_NAME | NFTA_CHAIN_POLICY | NFTA_CHAIN_TYPE | NFTA_CHAIN_USERDATA => {
                Some((kind, value.to_vec()))
            }
            NFTA_CHAIN_HOOK => Some((kind, serialize(kept(value, |_, _| true), true))),
            _ => None,
        })
        .collect()
}

fn rule(attrs: &[u8], index: u32) -> Vec<(u16, Vec<u8>)> {
    let mut out: Vec<_> = netlink::attrs(attrs)
        .filter_map(|(kind, value)| match kind {
            NFTA_RULE_CHAIN | NFTA_RULE_USERDATA => Some((kind, value.to_vec())),
            NFTA_RULE_EXPRESSIONS => {
                let expressions = netlink::attrs(value)
                    .map(|(kind, value)| (kind, expression(value)))
                    .collect();
                Some((kind, serialize(expressions, false)))
            }
            _ => None,
        })
        .collect();
    out.push((RULE_INDEX, index.to_be_bytes().to_vec()));
    out
}

fn set(attrs: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let verdict_map = find(attrs, NFTA_SET_DATA_TYPE).and_then(u32_of) == Some(NFT_DATA_VERDICT);
    netlink::attrs(attrs)
        .filter_map(|(kind, value)| match kind {
            NFTA_SET_NAME | NFTA_SET_KEY_TYPE | NFTA_SET_KEY_LEN | NFTA_SET_DATA_TYPE
            | NFTA_SET_TIMEOUT | NFTA_SET_OBJ_TYPE | NFTA_SET_EXPR | NFTA_SET_EXPRESSIONS => {
                Some((kind, value.to_vec()))
            }
            // A verdict's length is the kernel's business (nft sends 0, the kernel says 16).
            NFTA_SET_DATA_LEN => (!verdict_map).then(|| (kind, value.to_vec())),
            NFTA_SET_POLICY => (!is_zero(value)).then(|| (kind, value.to_vec())),
            NFTA_SET_FLAGS => {
                let flags = u32_of(value).unwrap_or_default() & !NFT_SET_EVAL;
                (flags != 0).then(|| (kind, flags.to_be_bytes().to_vec()))
            }
            NFTA_SET_DESC => {
                let desc = kept(value, |kind, _| kind == NFTA_SET_DESC_CONCAT);
                (!desc.is_empty()).then(|| (kind, serialize(desc, true)))
            }
            // Left out, as the rules model has no place for them either: the flag that
            // says the packet path adds elements and the maximum size (nft gives both to
            // the sets that rules update), user data (nft records byte orders and
            // `typeof` expressions there, which the key and data types already pin down),
            // the garbage collection interval; and the handle and id.
            _ => None,
        })
        .collect()
}

fn element(attrs: &[u8]) -> Vec<u8> {
    let attrs = netlink::attrs(attrs)
        .filter_map(|(kind, value)| match kind {
            NFTA_SET_ELEM_KEY | NFTA_SET_ELEM_DATA | NFTA_SET_ELEM_KEY_END => {
                Some((kind, data(value)))
            }
            NFTA_SET_ELEM_TIMEOUT
            | NFTA_SET_ELEM_USERDATA
            | NFTA_SET_ELEM_OBJREF
            | NFTA_SET_ELEM_EXPR
            | NFTA_SET_ELEM_EXPRESSIONS => Some((kind, value.to_vec())),
            NFTA_SET_ELEM_FLAGS => (!is_zero(value)).then(|| (kind, value.to_vec())),
            // Left out: the expiration, which counts down.
            _ => None,
        })
        .collect();
    serialize(attrs, true)
}

fn object(attrs: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let counter = find(attrs, NFTA_OBJ_TYPE).and_then(u32_of) == Some(NFT_OBJECT_COUNTER);
    kept(attrs, |kind, _| match kind {
        NFTA_OBJ_NAME | NFTA_OBJ_TYPE | NFTA_OBJ_USERDATA => true,
        // A counter's data is its current count.
        NFTA_OBJ_DATA => !counter,
        _ => false,
    })
}

/// An `NFTA_DATA_*` nest: a value, or a verdict without the batch's chain id.
fn data(attrs: &[u8]) -> Vec<u8> {
    let attrs = netlink::attrs(attrs)
        .map(|(kind, value)| match kind {
            NFTA_DATA_VERDICT => (
                kind,
                serialize(
                    kept(value, |kind, _| {
                        matches!(kind, NFTA_VERDICT_CODE | NFTA_VERDICT_CHAIN)
                    }),
                    true,
                ),
            ),
            _ => (kind, value.to_vec()),
        })
        .collect();
    serialize(attrs, true)
}

/// One `NFTA_LIST_ELEM` of a rule: the expression's name and its canonical data.
fn expression(attrs: &[u8]) -> Vec<u8> {
    let name = find(attrs, NFTA_EXPR_NAME).unwrap_or_default();
    let name_text = name.split(|b| *b == 0).next().unwrap_or_default();
    let data_attrs = find(attrs, NFTA_EXPR_DATA).unwrap_or_default();
    let attrs = vec![
        (NFTA_EXPR_NAME, name.to_vec()),
        (NFTA_EXPR_DATA, expression_data(name_text, data_attrs)),
    ];
    serialize(attrs, true)
}

fn expression_data(name: &[u8], attrs: &[u8]) -> Vec<u8> {
    // A counter's data is its current count.
    if name == b"counter" {
        return Vec::new();
    }
    let reg = |kind| find(attrs, kind).map(<[u8]>::to_vec);
    let attrs = netlink::attrs(attrs)
        .filter_map(|(kind, value)| {
            let zero = is_zero(value);
            let keep = match (name, kind) {
                (b"lookup", NFTA_LOOKUP_SET_ID)
                | (b"objref", NFTA_OBJREF_SET_ID)
                | (b"dynset", NFTA_DYNSET_SET_ID) => false,
                (b"lookup", NFTA_LOOKUP_FLAGS)
                | (b"dynset", NFTA_DYNSET_TIMEOUT | NFTA_DYNSET_FLAGS)
                | (b"bitwise", NFTA_BITWISE_OP)
                | (b"numgen", NFTA_NG_OFFSET)
                | (b"masq", NFTA_MASQ_FLAGS) => !zero,
                (b"nat", NFTA_NAT_REG_ADDR_MAX) => {
                    reg(NFTA_NAT_REG_ADDR_MIN) != Some(value.to_vec())
                }
                (b"nat", NFTA_NAT_REG_PROTO_MAX) => {
                    reg(NFTA_NAT_REG_PROTO_MIN) != Some(value.to_vec())
                }
                (b"masq", NFTA_MASQ_REG_PROTO_MAX) => {
                    reg(NFTA_MASQ_REG_PROTO_MIN) != Some(value.to_vec())
                }
                _ => true,
            };
            if !keep {
                return None;
            }
            let value = match (name, kind) {
                (b"cmp", NFTA_CMP_DATA)
                | (b"immediate", NFTA_IMMEDIATE_DATA)
                | (b"bitwise", NFTA_BITWISE_MASK | NFTA_BITWISE_XOR | NFTA_BITWISE_DATA)
                | (b"range", NFTA_RANGE_FROM_DATA | NFTA_RANGE_TO_DATA) => data(value),
                (b"nat", NFTA_NAT_FLAGS) => {
                    // The kernel adds the flags that say an address or port range is given.
                    let flags = u32_of(value).unwrap_or_default()
                        & !(NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED);
                    if flags == 0 {
                        return None;
                    }
                    flags.to_be_bytes().to_vec()
                }
                _ => value.to_vec(),
            };
            Some((kind, value))
        })
        .collect();
    serialize(attrs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::batch::attrs::Writer;

    /// The attributes of a message written by `write` (header and `nfgenmsg` stripped).
    fn message(write: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        let open = w.begin_message(0, 0, 1, 2, 0);
        write(&mut w);
        w.end_message(open);
        w.into_bytes()[20..].to_vec()
    }

    fn records(messages: &[(u16, Vec<u8>)]) -> Vec<Record> {
        let mut records = Records::new();
        for (msg, attrs) in messages {
            records.add_message(*msg, attrs);
        }
        records.into_sorted()
    }

    fn nat_rule(handle: u64, flags: Option<u32>, addr_max: bool) -> Vec<u8> {
        message(|w| {
            w.str(NFTA_RULE_TABLE, "t");
            w.str(NFTA_RULE_CHAIN, "c");
            w.u64(3, handle); // NFTA_RULE_HANDLE
            let list = w.begin_nest(NFTA_RULE_EXPRESSIONS);
            let elem = w.begin_nest(NFTA_LIST_ELEM);
            w.str(NFTA_EXPR_NAME, "nat");
            let data = w.begin_nest(NFTA_EXPR_DATA);
            w.u32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
            w.u32(NFTA_NAT_FAMILY, NFPROTO_IPV4);
            w.u32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1);
            if addr_max {
                w.u32(NFTA_NAT_REG_ADDR_MAX, NFT_REG_1);
            }
            if let Some(flags) = flags {
                w.u32(NFTA_NAT_FLAGS, flags);
            }
            w.end_nest(data);
            w.end_nest(elem);
            let elem = w.begin_nest(NFTA_LIST_ELEM);
            w.str(NFTA_EXPR_NAME, "counter");
            let data = w.begin_nest(NFTA_EXPR_DATA);
            w.u64(NFTA_COUNTER_BYTES, handle * 100);
            w.end_nest(data);
            w.end_nest(elem);
            w.end_nest(list);
        })
    }

    #[test]
    fn what_the_kernel_adds_or_counts_does_not_matter() {
        // As sent: no handle, no flags, no maximum. As dumped: a handle, the flag the
        // kernel derives, the maximum equal to the minimum, a counter that has counted.
        let sent = records(&[(NFT_MSG_NEWRULE, nat_rule(0, None, false))]);
        let dumped = records(&[(
            NFT_MSG_NEWRULE,
            nat_rule(7, Some(NF_NAT_RANGE_MAP_IPS), true),
        )]);
        assert_eq!(sent, dumped);
    }

    #[test]
    fn what_defines_a_rule_does_matter() {
        let plain = records(&[(NFT_MSG_NEWRULE, nat_rule(0, None, false))]);
        let random = records(&[(
            NFT_MSG_NEWRULE,
            nat_rule(0, Some(NF_NAT_RANGE_PROTO_RANDOM_FULLY), false),
        )]);
        assert_ne!(plain, random);
        // Two rules in one chain are not the same as the same rule twice in another order.
        let a = nat_rule(0, None, false);
        let b = nat_rule(0, Some(NF_NAT_RANGE_PROTO_RANDOM_FULLY), false);
        let ab = records(&[(NFT_MSG_NEWRULE, a.clone()), (NFT_MSG_NEWRULE, b.clone())]);
        let ba = records(&[(NFT_MSG_NEWRULE, b), (NFT_MSG_NEWRULE, a)]);
        assert_ne!(ab, ba);
    }

    #[test]
    fn counter_objects_compare_by_name_not_count() {
        let counter = |name: &str, packets: u64| {
            message(|w| {
                w.str(NFTA_OBJ_TABLE, "t");
                w.str(NFTA_OBJ_NAME, name);
                w.u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
                let data = w.begin_nest(NFTA_OBJ_DATA);
                w.u64(NFTA_COUNTER_PACKETS, packets);
                w.end_nest(data);
            })
        };
        let a = records(&[(NFT_MSG_NEWOBJ, counter("a", 0))]);
        assert_eq!(a, records(&[(NFT_MSG_NEWOBJ, counter("a", 99))]));
        assert_ne!(a, records(&[(NFT_MSG_NEWOBJ, counter("b", 0))]));
    }

    #[test]
    fn elements_are_records_of_their_own() {
        let elements = |keys: &[u32]| {
            message(|w| {
                w.str(NFTA_SET_ELEM_LIST_TABLE, "t");
                w.str(NFTA_SET_ELEM_LIST_SET, "s");
                let list = w.begin_nest(NFTA_SET_ELEM_LIST_ELEMENTS);
                for key in keys {
                    let item = w.begin_nest(NFTA_LIST_ELEM);
                    let nest = w.begin_nest(NFTA_SET_ELEM_KEY);
                    w.attr(NFTA_DATA_VALUE, &key.to_be_bytes());
                    w.end_nest(nest);
                    w.end_nest(item);
                }
                w.end_nest(list);
            })
        };
        // The same elements in other messages and another order.
        let one_message = records(&[(NFT_MSG_NEWSETELEM, elements(&[1, 2, 3]))]);
        let two_messages = records(&[
            (NFT_MSG_NEWSETELEM, elements(&[3])),
            (NFT_MSG_NEWSETELEM, elements(&[2, 1])),
        ]);
        assert_eq!(one_message, two_messages);
        assert_ne!(
            one_message,
            records(&[(NFT_MSG_NEWSETELEM, elements(&[1, 2, 4]))])
        );
    }
}
