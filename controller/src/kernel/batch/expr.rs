//! Lowers the rules model's statements to nf_tables expressions, as nft 1.0.6 does.
//!
//! Registers: every statement starts again at the first 32-bit register. A value of `n`
//! bytes takes `ceil(n / 4)` consecutive 32-bit registers; a register that starts a
//! 16-byte block is named by its 128-bit alias (`NFT_REG_1`..), as nft names it.

use std::net::IpAddr;

use nftproxy_rules::{
    AddrType, BitOp, CmpOp, CtFlag, CtKey, Expr, Family, FibAddr, MetaKey, PayloadField,
    RejectKind, Stmt, Value, Verdict,
};

use super::Unsupported;
use super::attrs::Writer;
use super::nft::*;

/// Writes the `NFTA_RULE_EXPRESSIONS` of one rule.
pub fn rule_expressions(w: &mut Writer, family: Family, stmts: &[Stmt]) -> Result<(), Unsupported> {
    let list = w.begin_nest(NFTA_RULE_EXPRESSIONS);
    for stmt in stmts {
        lower_stmt(w, family, stmt)?;
    }
    w.end_nest(list);
    Ok(())
}

/// The register name of 32-bit slot `slot`.
fn reg(slot: u32) -> u32 {
    if slot.is_multiple_of(4) {
        NFT_REG_1 + slot / 4
    } else {
        NFT_REG32_00 + slot
    }
}

/// The 32-bit slots a value of `len` bytes takes.
fn slots(len: u32) -> u32 {
    len.div_ceil(4)
}

/// One expression: `NFTA_LIST_ELEM { NAME, DATA { attributes } }`.
fn expression(w: &mut Writer, name: &str, data: impl FnOnce(&mut Writer)) {
    let elem = w.begin_nest(NFTA_LIST_ELEM);
    w.str(NFTA_EXPR_NAME, name);
    let nest = w.begin_nest(NFTA_EXPR_DATA);
    data(w);
    w.end_nest(nest);
    w.end_nest(elem);
}

/// A data attribute holding a plain value (`NFTA_DATA_VALUE`).
pub fn data_value(w: &mut Writer, kind: u16, bytes: &[u8]) {
    let nest = w.begin_nest(kind);
    w.attr(NFTA_DATA_VALUE, bytes);
    w.end_nest(nest);
}

/// A data attribute holding a verdict (`NFTA_DATA_VERDICT { CODE, CHAIN }`).
pub fn data_verdict(w: &mut Writer, kind: u16, verdict: &Verdict) {
    let nest = w.begin_nest(kind);
    let inner = w.begin_nest(NFTA_DATA_VERDICT);
    let (code, chain) = match verdict {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Continue => (NFT_CONTINUE, None),
        Verdict::Jump(chain) => (NFT_JUMP, Some(chain)),
        Verdict::Goto(chain) => (NFT_GOTO, Some(chain)),
    };
    w.u32(NFTA_VERDICT_CODE, code as u32);
    if let Some(chain) = chain {
        w.str(NFTA_VERDICT_CHAIN, chain);
    }
    w.end_nest(inner);
    w.end_nest(nest);
}

fn cmp(w: &mut Writer, slot: u32, op: u32, bytes: &[u8]) {
    expression(w, "cmp", |w| {
        w.u32(NFTA_CMP_SREG, reg(slot));
        w.u32(NFTA_CMP_OP, op);
        data_value(w, NFTA_CMP_DATA, bytes);
    });
}

fn bitwise(w: &mut Writer, slot: u32, len: u32, mask: &[u8], xor: &[u8]) {
    expression(w, "bitwise", |w| {
        w.u32(NFTA_BITWISE_SREG, reg(slot));
        w.u32(NFTA_BITWISE_DREG, reg(slot));
        w.u32(NFTA_BITWISE_LEN, len);
        data_value(w, NFTA_BITWISE_MASK, mask);
        data_value(w, NFTA_BITWISE_XOR, xor);
    });
}

fn immediate(w: &mut Writer, slot: u32, bytes: &[u8]) {
    expression(w, "immediate", |w| {
        w.u32(NFTA_IMMEDIATE_DREG, reg(slot));
        data_value(w, NFTA_IMMEDIATE_DATA, bytes);
    });
}

fn payload(w: &mut Writer, slot: u32, base: u32, offset: u32, len: u32) {
    expression(w, "payload", |w| {
        w.u32(NFTA_PAYLOAD_DREG, reg(slot));
        w.u32(NFTA_PAYLOAD_BASE, base);
        w.u32(NFTA_PAYLOAD_OFFSET, offset);
        w.u32(NFTA_PAYLOAD_LEN, len);
    });
}

/// (base, offset, length) of a header field.
fn field(field: PayloadField) -> (u32, u32, u32) {
    match field {
        PayloadField::IpSaddr => (NFT_PAYLOAD_NETWORK_HEADER, 12, 4),
        PayloadField::IpDaddr => (NFT_PAYLOAD_NETWORK_HEADER, 16, 4),
        PayloadField::Ip6Saddr => (NFT_PAYLOAD_NETWORK_HEADER, 8, 16),
        PayloadField::Ip6Daddr => (NFT_PAYLOAD_NETWORK_HEADER, 24, 16),
        PayloadField::ThSport => (NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2),
        PayloadField::ThDport => (NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
    }
}

fn meta_key(key: MetaKey) -> (u32, u32) {
    match key {
        MetaKey::L4proto => (NFT_META_L4PROTO, 1),
        MetaKey::Mark => (NFT_META_MARK, 4),
        MetaKey::Iifname => (NFT_META_IIFNAME, IFNAMSIZ),
        MetaKey::Oifname => (NFT_META_OIFNAME, IFNAMSIZ),
        MetaKey::Nfproto => (NFT_META_NFPROTO, 1),
    }
}

/// Loads `expr` into registers from `slot` on; returns the length in bytes it occupies
/// (concatenation components each rounded up to 4 bytes).
fn load(w: &mut Writer, expr: &Expr, slot: u32) -> Result<u32, Unsupported> {
    match expr {
        Expr::Payload(f) => {
            let (base, offset, len) = field(*f);
            payload(w, slot, base, offset, len);
            Ok(len)
        }
        Expr::Meta(key) => {
            let (key, len) = meta_key(*key);
            expression(w, "meta", |w| {
                w.u32(NFTA_META_DREG, reg(slot));
                w.u32(NFTA_META_KEY, key);
            });
            Ok(len)
        }
        Expr::Ct(key) => {
            let key = match key {
                CtKey::State => NFT_CT_STATE,
                CtKey::Status => NFT_CT_STATUS,
            };
            expression(w, "ct", |w| {
                w.u32(NFTA_CT_DREG, reg(slot));
                w.u32(NFTA_CT_KEY, key);
            });
            Ok(4)
        }
        Expr::NumgenRandom { modulus } => {
            expression(w, "numgen", |w| {
                w.u32(NFTA_NG_DREG, reg(slot));
                w.u32(NFTA_NG_MODULUS, *modulus);
                w.u32(NFTA_NG_TYPE, NFT_NG_RANDOM);
            });
            Ok(4)
        }
        Expr::FibType(addr) => {
            let flags = match addr {
                FibAddr::Daddr => NFTA_FIB_F_DADDR,
                FibAddr::Saddr => NFTA_FIB_F_SADDR,
            };
            expression(w, "fib", |w| {
                w.u32(NFTA_FIB_DREG, reg(slot));
                w.u32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
                w.u32(NFTA_FIB_FLAGS, flags);
            });
            Ok(4)
        }
        Expr::Concat(parts) => {
            let mut next = slot;
            for part in parts {
                if matches!(part, Expr::Concat(_)) {
                    return Err(Unsupported::new("a nested concatenation"));
                }
                let len = load(w, part, next)?;
                next += slots(len);
            }
            Ok((next - slot) * 4)
        }
        Expr::Bitwise { left, op, right } => {
            let len = load(w, left, slot)?;
            if len != 4 {
                return Err(Unsupported::new(
                    "a bitwise operation on a non-32-bit value",
                ));
            }
            let (mask, xor) = match op {
                BitOp::And => (*right, 0),
                BitOp::Or => (!*right, *right),
                BitOp::Xor => (u32::MAX, *right),
            };
            bitwise(w, slot, 4, &mask.to_ne_bytes(), &xor.to_ne_bytes());
            Ok(4)
        }
        Expr::Literal(_) | Expr::AnonSet(_) | Expr::SetRef(_) => Err(Unsupported::new(
            "a literal or set where a packet value is loaded",
        )),
    }
}

/// The bytes of a literal as a value of `left`'s type (host order where nft uses it).
pub fn value_bytes(value: &Value) -> Result<Vec<u8>, Unsupported> {
    Ok(match value {
        Value::Ipv4(a) => a.octets().to_vec(),
        Value::Ipv6(a) => a.octets().to_vec(),
        Value::Proto(p) => vec![p.number()],
        Value::Port(p) => p.to_be_bytes().to_vec(),
        Value::Int(i) => i.to_ne_bytes().to_vec(),
        // `"veth*"` compares the prefix only, without a terminator.
        Value::IfnamePrefix(name) => name.as_bytes().to_vec(),
        Value::Ifname(name) => {
            let mut bytes = name.as_bytes().to_vec();
            if bytes.len() >= IFNAMSIZ as usize {
                return Err(Unsupported::new("an interface name of 16 bytes or more"));
            }
            bytes.resize(IFNAMSIZ as usize, 0);
            bytes
        }
        Value::CtFlag(flag) => ct_flag(*flag).to_ne_bytes().to_vec(),
        Value::AddrType(t) => match t {
            AddrType::Local => RTN_LOCAL,
            AddrType::Unicast => RTN_UNICAST,
        }
        .to_ne_bytes()
        .to_vec(),
        Value::Prefix(_) | Value::Verdict(_) | Value::ObjRef(_) => {
            return Err(Unsupported::new(
                "a prefix, verdict or object name as a plain value",
            ));
        }
    })
}

fn ct_flag(flag: CtFlag) -> u32 {
    match flag {
        CtFlag::Invalid => 1,
        CtFlag::Established => 2,
        CtFlag::Related => 4,
        CtFlag::New => 8,
        CtFlag::Dnat => 0x20,
    }
}

fn lower_stmt(w: &mut Writer, family: Family, stmt: &Stmt) -> Result<(), Unsupported> {
    match stmt {
        Stmt::Match { left, op, right } => lower_match(w, left, *op, right),
        Stmt::Vmap { key, map } => {
            load(w, key, 0)?;
            expression(w, "lookup", |w| {
                w.str(NFTA_LOOKUP_SET, map);
                w.u32(NFTA_LOOKUP_SREG, reg(0));
                w.u32(NFTA_LOOKUP_DREG, NFT_REG_VERDICT);
            });
            Ok(())
        }
        Stmt::Verdict(verdict) => {
            expression(w, "immediate", |w| {
                w.u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                data_verdict(w, NFTA_IMMEDIATE_DATA, verdict);
            });
            Ok(())
        }
        Stmt::Dnat { addr, port } => {
            let (nfproto, bytes) = match (family, addr) {
                (Family::Ip, IpAddr::V4(a)) => (NFPROTO_IPV4, a.octets().to_vec()),
                (Family::Ip6, IpAddr::V6(a)) => (NFPROTO_IPV6, a.octets().to_vec()),
                _ => return Err(Unsupported::new("dnat to an address of another family")),
            };
            immediate(w, 0, &bytes);
            if let Some(port) = port {
                immediate(w, 4, &port.to_be_bytes());
            }
            expression(w, "nat", |w| {
                w.u32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                w.u32(NFTA_NAT_FAMILY, nfproto);
                w.u32(NFTA_NAT_REG_ADDR_MIN, reg(0));
                if port.is_some() {
                    w.u32(NFTA_NAT_REG_PROTO_MIN, reg(4));
                    w.u32(NFTA_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
                }
            });
            Ok(())
        }
        Stmt::Masquerade { fully_random } => {
            expression(w, "masq", |w| {
                if *fully_random {
                    w.u32(NFTA_MASQ_FLAGS, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
                }
            });
            Ok(())
        }
        Stmt::SetMark(value) => {
            match value {
                Expr::Literal(Value::Int(mark)) => immediate(w, 0, &mark.to_ne_bytes()),
                other => {
                    if load(w, other, 0)? != 4 {
                        return Err(Unsupported::new("a mark that is not 32 bits"));
                    }
                }
            }
            expression(w, "meta", |w| {
                w.u32(NFTA_META_KEY, NFT_META_MARK);
                w.u32(NFTA_META_SREG, reg(0));
            });
            Ok(())
        }
        Stmt::Reject(kind) => {
            let (kind, code) = match (kind, family) {
                (RejectKind::TcpReset, _) => {
                    // nft's implicit dependency: `reject with tcp reset` only for TCP.
                    let (key, _) = meta_key(MetaKey::L4proto);
                    expression(w, "meta", |w| {
                        w.u32(NFTA_META_DREG, reg(0));
                        w.u32(NFTA_META_KEY, key);
                    });
                    cmp(w, 0, NFT_CMP_EQ, &[6]);
                    (NFT_REJECT_TCP_RST, 0)
                }
                (RejectKind::PortUnreachable, Family::Ip) => (NFT_REJECT_ICMP_UNREACH, 3),
                (RejectKind::PortUnreachable, Family::Ip6) => (NFT_REJECT_ICMP_UNREACH, 4),
                (RejectKind::PortUnreachable, Family::Inet) => {
                    return Err(Unsupported::new("reject in an inet table"));
                }
            };
            expression(w, "reject", |w| {
                w.u32(NFTA_REJECT_TYPE, kind);
                w.attr(NFTA_REJECT_ICMP_CODE, &[code]);
            });
            Ok(())
        }
        Stmt::Counter => {
            expression(w, "counter", |w| {
                w.u64(NFTA_COUNTER_BYTES, 0);
                w.u64(NFTA_COUNTER_PACKETS, 0);
            });
            Ok(())
        }
        Stmt::CounterMap { key, map } => {
            load(w, key, 0)?;
            expression(w, "objref", |w| {
                w.u32(NFTA_OBJREF_SET_SREG, reg(0));
                w.str(NFTA_OBJREF_SET_NAME, map);
            });
            Ok(())
        }
        Stmt::UpdateSet { set, key } => {
            load(w, key, 0)?;
            expression(w, "dynset", |w| {
                w.str(NFTA_DYNSET_SET_NAME, set);
                w.u32(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
                w.u32(NFTA_DYNSET_SREG_KEY, reg(0));
            });
            Ok(())
        }
    }
}

fn lower_match(w: &mut Writer, left: &Expr, op: CmpOp, right: &Expr) -> Result<(), Unsupported> {
    match right {
        Expr::SetRef(set) => {
            load(w, left, 0)?;
            expression(w, "lookup", |w| {
                w.str(NFTA_LOOKUP_SET, set);
                w.u32(NFTA_LOOKUP_SREG, reg(0));
                if op == CmpOp::Ne {
                    w.u32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            });
            Ok(())
        }
        Expr::Literal(Value::CtFlag(flag)) if op != CmpOp::Eq => {
            // A flag test: (value & flag) != 0, or == 0 for a negation.
            if load(w, left, 0)? != 4 {
                return Err(Unsupported::new("a flag test on a non-32-bit value"));
            }
            let mask = ct_flag(*flag).to_ne_bytes();
            bitwise(w, 0, 4, &mask, &[0; 4]);
            let cmp_op = if op == CmpOp::Ne {
                NFT_CMP_EQ
            } else {
                NFT_CMP_NEQ
            };
            cmp(w, 0, cmp_op, &[0; 4]);
            Ok(())
        }
        Expr::Literal(Value::Prefix(net)) => lower_prefix(w, left, op, net),
        Expr::Literal(value) => {
            load(w, left, 0)?;
            let cmp_op = if op == CmpOp::Ne {
                NFT_CMP_NEQ
            } else {
                NFT_CMP_EQ
            };
            cmp(w, 0, cmp_op, &value_bytes(value)?);
            Ok(())
        }
        _ => Err(Unsupported::new("a match against an anonymous set")),
    }
}

/// `addr == prefix`: a byte-aligned prefix loads only its bytes (as nft does); any other
/// masks the full address first.
fn lower_prefix(
    w: &mut Writer,
    left: &Expr,
    op: CmpOp,
    net: &ipnet::IpNet,
) -> Result<(), Unsupported> {
    let Expr::Payload(f) = left else {
        return Err(Unsupported::new(
            "a prefix match on something other than an address",
        ));
    };
    let (base, offset, len) = field(*f);
    let net = net.trunc();
    let address = match net.addr() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    if address.len() != len as usize {
        return Err(Unsupported::new(
            "a prefix of another family than the address",
        ));
    }
    let prefix_len = u32::from(net.prefix_len());
    if prefix_len == 0 {
        return Err(Unsupported::new("a zero-length prefix"));
    }
    let cmp_op = if op == CmpOp::Ne {
        NFT_CMP_NEQ
    } else {
        NFT_CMP_EQ
    };
    if prefix_len.is_multiple_of(8) {
        let bytes = prefix_len / 8;
        payload(w, 0, base, offset, bytes);
        cmp(w, 0, cmp_op, &address[..bytes as usize]);
    } else {
        payload(w, 0, base, offset, len);
        let mask = match net.netmask() {
            IpAddr::V4(m) => m.octets().to_vec(),
            IpAddr::V6(m) => m.octets().to_vec(),
        };
        bitwise(w, 0, len, &mask, &vec![0; len as usize]);
        cmp(w, 0, cmp_op, &address);
    }
    Ok(())
}
