//! Encodes a transaction as one nf_tables netlink batch, without libnftables.
//!
//! libnftables fetches a cache of the whole ruleset before it runs even one `add element`,
//! which costs tens of milliseconds at 10k services. The diff already knows every name, so
//! incremental syncs need no cache: this module writes the batch itself. It covers what the
//! compiler emits in chains, set declarations and elements of non-interval sets, and
//! counter objects with the maps that name them. A
//! transaction with anything else (interval sets, anonymous sets) is [`Unsupported`] and
//! goes through libnftables instead. `tests/kernel_batch.rs` checks every construct against
//! the kernel: what nft lists after a batch equals the model.

pub(in crate::kernel) mod attrs;
mod expr;
pub(in crate::kernel) mod nft;

use nftproxy_rules::{
    DataType, Element, Family, Hook, Op, Policy, Rule, Ruleset, Set, SetFlag, TableId, Transaction,
    Value,
};

use self::attrs::Writer;
use self::nft::*;

/// What the encoder cannot express; the transaction then goes through libnftables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the netlink encoder does not cover {what}")]
pub struct Unsupported {
    what: &'static str,
}

impl Unsupported {
    fn new(what: &'static str) -> Self {
        Unsupported { what }
    }
}

/// An encoded batch: the bytes to send and the sequence number of each operation's message.
#[derive(Debug)]
pub struct Batch {
    pub bytes: Vec<u8>,
    /// `(sequence number, index of the op in the transaction)` for every message between
    /// the batch's begin and end.
    pub messages: Vec<(u32, usize)>,
    /// The sequence number of the last message, the only one that asks for an ack.
    pub last_seq: u32,
}

/// Elements per `NEWSETELEM`/`DELSETELEM` message are cut so that the nested element list
/// (whose length is 16 bits) stays well below 64 KiB.
const ELEMENTS_NEST_LIMIT: usize = 32 * 1024;

/// Encodes `transaction` with sequence numbers from `first_seq` on. The declarations of the
/// sets whose elements it touches are looked up in `declared`, in order (the desired
/// ruleset first, then what the kernel holds, for sets the transaction deletes).
pub fn encode(
    transaction: &Transaction,
    first_seq: u32,
    declared: &[&Ruleset],
) -> Result<Batch, Unsupported> {
    let set = |table: &TableId, name: &str| {
        declared
            .iter()
            .find_map(|r| r.table(table).and_then(|t| t.sets.get(name)))
    };
    let mut encoder = Encoder {
        w: Writer::new(),
        seq: first_seq,
        messages: Vec::new(),
        last_start: None,
    };
    encoder.batch_delimiter(NFNL_MSG_BATCH_BEGIN);
    for (index, op) in transaction.iter().enumerate() {
        encoder.op(index, &op, &set)?;
    }
    let Some(&(last_seq, _)) = encoder.messages.last() else {
        return Err(Unsupported::new("an empty transaction"));
    };
    if let Some(last) = encoder.last_start {
        encoder.w.add_flags(last, NLM_F_ACK);
    }
    encoder.batch_delimiter(NFNL_MSG_BATCH_END);
    Ok(Batch {
        bytes: encoder.w.into_bytes(),
        messages: encoder.messages,
        last_seq,
    })
}

struct Encoder {
    w: Writer,
    seq: u32,
    messages: Vec<(u32, usize)>,
    /// Where the last operation's message starts, to set `NLM_F_ACK` on it at the end.
    last_start: Option<attrs::Open>,
}

fn family_number(family: Family) -> Result<u8, Unsupported> {
    match family {
        Family::Ip => Ok(NFPROTO_IPV4 as u8),
        Family::Ip6 => Ok(NFPROTO_IPV6 as u8),
        Family::Inet => Err(Unsupported::new("inet tables")),
    }
}

impl Encoder {
    /// `NFNL_MSG_BATCH_BEGIN` or `NFNL_MSG_BATCH_END` for the nf_tables subsystem.
    fn batch_delimiter(&mut self, kind: u16) {
        let seq = self.next_seq();
        let open = self
            .w
            .begin_message(kind, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES);
        self.w.end_message(open);
    }

    fn next_seq(&mut self) -> u32 {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        seq
    }

    /// Starts the message of op `index`.
    fn begin(
        &mut self,
        index: usize,
        msg: u16,
        flags: u16,
        table: &TableId,
    ) -> Result<attrs::Open, Unsupported> {
        let family = family_number(table.family)?;
        let seq = self.next_seq();
        self.messages.push((seq, index));
        let kind = nftables_message(msg);
        let open = self
            .w
            .begin_message(kind, NLM_F_REQUEST | flags, seq, family, 0);
        self.last_start = Some(open);
        Ok(open)
    }

    fn op<'a>(
        &mut self,
        index: usize,
        op: &Op,
        set: &impl Fn(&TableId, &str) -> Option<&'a Set>,
    ) -> Result<(), Unsupported> {
        match op {
            Op::AddTable(table) => {
                if table.comment.is_some() {
                    return Err(Unsupported::new("table comments"));
                }
                let id = table.id();
                let msg = self.begin(index, NFT_MSG_NEWTABLE, NLM_F_CREATE, &id)?;
                self.w.str(NFTA_TABLE_NAME, &id.name);
                self.w.end_message(msg);
            }
            Op::DeleteTable(id) => {
                let msg = self.begin(index, NFT_MSG_DELTABLE, 0, id)?;
                self.w.str(NFTA_TABLE_NAME, &id.name);
                self.w.end_message(msg);
            }
            Op::AddChain { table, chain } => {
                if chain.comment.is_some() {
                    return Err(Unsupported::new("chain comments"));
                }
                let msg = self.begin(index, NFT_MSG_NEWCHAIN, NLM_F_CREATE, table)?;
                self.w.str(NFTA_CHAIN_TABLE, &table.name);
                self.w.str(NFTA_CHAIN_NAME, &chain.name);
                if let Some(base) = &chain.base {
                    let hook = self.w.begin_nest(NFTA_CHAIN_HOOK);
                    self.w.u32(NFTA_HOOK_HOOKNUM, hook_number(base.hook));
                    self.w.u32(NFTA_HOOK_PRIORITY, base.priority as u32);
                    self.w.end_nest(hook);
                    let policy = match base.policy {
                        Policy::Accept => NF_ACCEPT,
                        Policy::Drop => NF_DROP,
                    };
                    self.w.u32(NFTA_CHAIN_POLICY, policy as u32);
                    self.w.str(NFTA_CHAIN_TYPE, base.chain_type.keyword());
                }
                self.w.end_message(msg);
            }
            Op::FlushChain { table, chain } => {
                let msg = self.begin(index, NFT_MSG_DELRULE, 0, table)?;
                self.w.str(NFTA_RULE_TABLE, &table.name);
                self.w.str(NFTA_RULE_CHAIN, chain);
                self.w.end_message(msg);
            }
            Op::DeleteChain { table, chain } => {
                let msg = self.begin(index, NFT_MSG_DELCHAIN, 0, table)?;
                self.w.str(NFTA_CHAIN_TABLE, &table.name);
                self.w.str(NFTA_CHAIN_NAME, chain);
                self.w.end_message(msg);
            }
            Op::AddRule { table, chain, rule } => self.add_rule(index, table, chain, rule)?,
            Op::AddSet { table, set } => self.add_set(index, table, set)?,
            Op::DeleteSet { table, set } => {
                let msg = self.begin(index, NFT_MSG_DELSET, 0, table)?;
                self.w.str(NFTA_SET_TABLE, &table.name);
                self.w.str(NFTA_SET_NAME, set);
                self.w.end_message(msg);
            }
            Op::AddElements {
                table,
                set: name,
                elements,
            } => {
                let declared = set(table, name).ok_or(Unsupported::new("an undeclared set"))?;
                self.elements(index, NFT_MSG_NEWSETELEM, table, declared, elements)?;
            }
            Op::DeleteElements {
                table,
                set: name,
                elements,
            } => {
                let declared = set(table, name).ok_or(Unsupported::new("an undeclared set"))?;
                self.elements(index, NFT_MSG_DELSETELEM, table, declared, elements)?;
            }
            Op::AddCounter { table, counter } => {
                let msg = self.begin(index, NFT_MSG_NEWOBJ, NLM_F_CREATE, table)?;
                self.counter_identity(table, counter);
                // The kernel wants the object's data: a counter starts at zero.
                let data = self.w.begin_nest(NFTA_OBJ_DATA);
                self.w.u64(NFTA_COUNTER_BYTES, 0);
                self.w.u64(NFTA_COUNTER_PACKETS, 0);
                self.w.end_nest(data);
                self.w.end_message(msg);
            }
            Op::DeleteCounter { table, counter } => {
                let msg = self.begin(index, NFT_MSG_DELOBJ, 0, table)?;
                self.counter_identity(table, counter);
                self.w.end_message(msg);
            }
            Op::CreateTable(t) => {
                for op in nftproxy_rules::table_creation_ops(t) {
                    self.op(index, &op, set)?;
                }
            }
        }
        Ok(())
    }

    /// Table, name and type of a counter object (`NEWOBJ`/`DELOBJ` both need all three).
    fn counter_identity(&mut self, table: &TableId, counter: &str) {
        self.w.str(NFTA_OBJ_TABLE, &table.name);
        self.w.str(NFTA_OBJ_NAME, counter);
        self.w.u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
    }

    /// `NEWSET`: a plain set or map, with the type ids nft gives its key and data types so
    /// that nft lists it back the same. Interval sets are left to libnftables.
    fn add_set(&mut self, index: usize, table: &TableId, set: &Set) -> Result<(), Unsupported> {
        let mut flags = 0;
        for flag in &set.flags {
            flags |= match flag {
                SetFlag::Constant => NFT_SET_CONSTANT,
                SetFlag::Timeout => NFT_SET_TIMEOUT,
                SetFlag::Interval | SetFlag::Dynamic => {
                    return Err(Unsupported::new("interval or dynamic set declarations"));
                }
            };
        }
        if set.comment.is_some() {
            return Err(Unsupported::new("set comments"));
        }
        let (key_id, key_len) = key_type(&set.key)?;
        // A counter map is an object map: NFT_SET_OBJECT and the object type, no data type
        // (the kernel refuses NFT_SET_MAP with NFT_SET_OBJECT).
        let objects = set.value == Some(DataType::Counter);
        let data = match set.value {
            Some(DataType::Verdict) => Some((NFT_DATA_VERDICT, 0)),
            Some(DataType::Counter) | None => None,
            Some(other) => Some(key_type(&[other])?),
        };
        let msg = self.begin(index, NFT_MSG_NEWSET, NLM_F_CREATE, table)?;
        self.w.str(NFTA_SET_TABLE, &table.name);
        self.w.str(NFTA_SET_NAME, &set.name);
        let kind = match (data.is_some(), objects) {
            (true, _) => NFT_SET_MAP,
            (false, true) => NFT_SET_OBJECT,
            (false, false) => 0,
        };
        self.w.u32(NFTA_SET_FLAGS, flags | kind);
        self.w.u32(NFTA_SET_KEY_TYPE, key_id);
        self.w.u32(NFTA_SET_KEY_LEN, key_len);
        if let Some((data_type, data_len)) = data {
            self.w.u32(NFTA_SET_DATA_TYPE, data_type);
            self.w.u32(NFTA_SET_DATA_LEN, data_len);
        }
        if objects {
            self.w.u32(NFTA_SET_OBJ_TYPE, NFT_OBJECT_COUNTER);
        }
        // Unique within the batch; rules and elements name the set, but the kernel wants
        // an id for a set created in the same transaction.
        self.w
            .u32(NFTA_SET_ID, u32::try_from(index).unwrap_or(u32::MAX));
        if let Some(secs) = set.timeout_secs {
            self.w.u64(NFTA_SET_TIMEOUT, u64::from(secs) * 1000);
        }
        // Marks are host-endian; nft reads that from the set's user data, and would list
        // them byte-swapped without it.
        let mut udata = Vec::new();
        for (entry, host_endian) in [
            (UDATA_SET_KEY_BYTEORDER, set.key == [DataType::Mark]),
            (UDATA_SET_DATA_BYTEORDER, set.value == Some(DataType::Mark)),
        ] {
            if host_endian {
                udata.extend([entry, 4]);
                udata.extend(BYTEORDER_HOST_ENDIAN.to_ne_bytes());
            }
        }
        if !udata.is_empty() {
            self.w.attr(NFTA_SET_USERDATA, &udata);
        }
        self.w.end_message(msg);
        Ok(())
    }

    fn add_rule(
        &mut self,
        index: usize,
        table: &TableId,
        chain: &str,
        rule: &Rule,
    ) -> Result<(), Unsupported> {
        let msg = self.begin(index, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, table)?;
        self.w.str(NFTA_RULE_TABLE, &table.name);
        self.w.str(NFTA_RULE_CHAIN, chain);
        expr::rule_expressions(&mut self.w, table.family, &rule.stmts.list())?;
        if let Some(comment) = &rule.comment {
            self.w.attr(NFTA_RULE_USERDATA, &comment_udata(comment)?);
        }
        self.w.end_message(msg);
        Ok(())
    }

    /// `NEWSETELEM`/`DELSETELEM` messages for `elements`, as many as the size limit needs.
    fn elements(
        &mut self,
        index: usize,
        msg_type: u16,
        table: &TableId,
        set: &Set,
        elements: &[Element],
    ) -> Result<(), Unsupported> {
        if set.is_interval() {
            return Err(Unsupported::new("elements of interval sets"));
        }
        let flags = if msg_type == NFT_MSG_NEWSETELEM {
            NLM_F_CREATE
        } else {
            0
        };
        let mut rest = elements;
        while !rest.is_empty() {
            let msg = self.begin(index, msg_type, flags, table)?;
            self.w.str(NFTA_SET_ELEM_LIST_TABLE, &table.name);
            self.w.str(NFTA_SET_ELEM_LIST_SET, &set.name);
            let list = self.w.begin_nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            let start = self.w.len();
            let mut taken = 0;
            for element in rest {
                if taken > 0 && self.w.len() - start > ELEMENTS_NEST_LIMIT {
                    break;
                }
                self.element(set, element, msg_type == NFT_MSG_NEWSETELEM)?;
                taken += 1;
            }
            self.w.end_nest(list);
            self.w.end_message(msg);
            rest = &rest[taken..];
        }
        Ok(())
    }

    fn element(
        &mut self,
        set: &Set,
        element: &Element,
        with_data: bool,
    ) -> Result<(), Unsupported> {
        let key = element.key.values();
        if key.len() != set.key.len() || key.is_empty() {
            return Err(Unsupported::new(
                "an element whose key does not fit its set",
            ));
        }
        let mut bytes = Vec::with_capacity(key.len() * 4);
        for value in key.iter() {
            if matches!(value, Value::Prefix(_) | Value::Verdict(_)) {
                return Err(Unsupported::new("prefixes or verdicts in element keys"));
            }
            bytes.extend(expr::value_bytes(value)?);
            if key.len() > 1 {
                // Concatenation components are each padded to 32 bits.
                bytes.resize(bytes.len().div_ceil(4) * 4, 0);
            }
        }
        let item = self.w.begin_nest(NFTA_LIST_ELEM);
        let nest = self.w.begin_nest(NFTA_SET_ELEM_KEY);
        self.w.attr(NFTA_DATA_VALUE, &bytes);
        self.w.end_nest(nest);
        if with_data {
            match (&element.value, set.value) {
                (Some(Value::Verdict(verdict)), Some(_)) => {
                    expr::data_verdict(&mut self.w, NFTA_SET_ELEM_DATA, verdict);
                }
                (Some(Value::ObjRef(name)), Some(DataType::Counter)) => {
                    self.w.str(NFTA_SET_ELEM_OBJREF, name);
                }
                (Some(value), Some(_)) => {
                    expr::data_value(&mut self.w, NFTA_SET_ELEM_DATA, &expr::value_bytes(value)?);
                }
                (None, None) => {}
                _ => {
                    return Err(Unsupported::new(
                        "an element whose value does not fit its set",
                    ));
                }
            }
            if let Some(comment) = &element.comment {
                self.w
                    .attr(NFTA_SET_ELEM_USERDATA, &comment_udata(comment)?);
            }
        }
        self.w.end_nest(item);
        Ok(())
    }
}

/// The user data nft stores a comment in: one TLV entry holding the NUL-terminated text.
fn comment_udata(comment: &str) -> Result<Vec<u8>, Unsupported> {
    let len = u8::try_from(comment.len() + 1)
        .map_err(|_| Unsupported::new("comments of 255 bytes or more"))?;
    let mut bytes = vec![UDATA_COMMENT, len];
    bytes.extend_from_slice(comment.as_bytes());
    bytes.push(0);
    Ok(bytes)
}

/// nft's type id and the length in bytes of a (possibly concatenated) key: each component's
/// id shifted in by [`NFT_TYPE_BITS`], each length rounded up to 4 bytes when concatenated.
fn key_type(key: &[DataType]) -> Result<(u32, u32), Unsupported> {
    let mut id = 0;
    let mut len = 0;
    for data_type in key {
        let (one_id, one_len) = match data_type {
            DataType::Ipv4Addr => (7, 4),
            DataType::Ipv6Addr => (8, 16),
            DataType::InetProto => (12, 1),
            DataType::InetService => (13, 2),
            DataType::Mark => (19, 4),
            DataType::Ifname => (41, 16),
            DataType::Verdict | DataType::Counter => {
                return Err(Unsupported::new("verdicts or objects in set keys"));
            }
        };
        id = (id << NFT_TYPE_BITS) | one_id;
        len += if key.len() > 1 {
            u32::div_ceil(one_len, 4) * 4
        } else {
            one_len
        };
    }
    if key.is_empty() {
        return Err(Unsupported::new("a set without a key"));
    }
    Ok((id, len))
}

fn hook_number(hook: Hook) -> u32 {
    match hook {
        Hook::Prerouting => NF_INET_PRE_ROUTING,
        Hook::Input => NF_INET_LOCAL_IN,
        Hook::Forward => NF_INET_FORWARD,
        Hook::Output => NF_INET_LOCAL_OUT,
        Hook::Postrouting => NF_INET_POST_ROUTING,
    }
}
