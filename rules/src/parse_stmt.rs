//! Parses the statements, expressions and literals of listed rules and elements.
//!
//! Literals carry no type in nft's JSON, so every literal is read with the [`Kind`] of the
//! expression it is compared with (or of the set's key), the way nft itself types them.

use super::*;

/// Parses one statement of a rule's `expr` array, appending one or more model statements.
pub(super) fn parse_stmt(json: &Json, ctx: &Ctx, out: &mut Vec<Stmt>) -> Result<()> {
    let Some((kind, body)) = single(json) else {
        return Err(ctx.unsupported("statement", json));
    };
    let stmt = match kind {
        "match" => return parse_match(body, ctx, out),
        "vmap" => {
            let key = parse_expr(body.get("key").unwrap_or(&Json::Null), ctx)?;
            let map = set_ref(ctx, body.get("data").unwrap_or(&Json::Null))?;
            Stmt::Vmap { key, map }
        }
        "accept" | "drop" | "return" | "continue" | "jump" | "goto" => {
            Stmt::Verdict(parse_verdict(json, ctx)?)
        }
        "dnat" => parse_dnat(body, ctx)?,
        "masquerade" => parse_masquerade(body, ctx)?,
        "mangle" => {
            let key = body.get("key").unwrap_or(&Json::Null);
            if parse_expr(key, ctx)? != Expr::Meta(MetaKey::Mark) {
                return Err(ctx.unsupported("mangle key", body));
            }
            Stmt::SetMark(parse_expr(body.get("value").unwrap_or(&Json::Null), ctx)?)
        }
        "reject" => parse_reject(body, ctx)?,
        "counter" if body.is_null() || body.get("packets").is_some() => Stmt::Counter,
        "counter" if body.get("map").is_some() => {
            let map = body.get("map").unwrap_or(&Json::Null);
            Stmt::CounterMap {
                key: parse_expr(map.get("key").unwrap_or(&Json::Null), ctx)?,
                map: set_ref(ctx, map.get("data").unwrap_or(&Json::Null))?,
            }
        }
        "set" if body.get("op").and_then(Json::as_str) == Some("update") => Stmt::UpdateSet {
            set: set_ref(ctx, body.get("set").unwrap_or(&Json::Null))?,
            key: parse_expr(body.get("elem").unwrap_or(&Json::Null), ctx)?,
        },
        _ => return Err(ctx.unsupported("statement", json)),
    };
    out.push(stmt);
    Ok(())
}

fn set_ref(ctx: &Ctx, json: &Json) -> Result<String> {
    json.as_str()
        .and_then(|s| s.strip_prefix('@'))
        .map(String::from)
        .ok_or_else(|| ctx.unsupported("set reference", json))
}

/// `{"match": ...}`. nft lists `meta l4proto tcp th dport X` as `tcp dport X`; that is
/// turned back into the two matches the model has (the model has no `tcp dport`).
fn parse_match(body: &Json, ctx: &Ctx, out: &mut Vec<Stmt>) -> Result<()> {
    let left_json = body.get("left").unwrap_or(&Json::Null);
    let right_json = body.get("right").unwrap_or(&Json::Null);
    let left = match transport_payload(left_json) {
        Some((proto, field)) => {
            out.push(Stmt::eq(
                Expr::Meta(MetaKey::L4proto),
                Expr::Literal(Value::Proto(proto)),
            ));
            Expr::Payload(field)
        }
        None => parse_expr(left_json, ctx)?,
    };
    let right = parse_right(right_json, &left, ctx)?;
    let op = match body.get("op").and_then(Json::as_str) {
        Some("==") if matches!(right, Expr::SetRef(_) | Expr::AnonSet(_)) => CmpOp::In,
        Some("==") => CmpOp::Eq,
        Some("!=") => CmpOp::Ne,
        Some("in") => CmpOp::In,
        _ => return Err(ctx.unsupported("match operator", body)),
    };
    out.push(Stmt::Match { left, op, right });
    Ok(())
}

/// `{"payload": {"protocol": "tcp", "field": "dport"}}` and friends.
fn transport_payload(json: &Json) -> Option<(L4Proto, PayloadField)> {
    let p = json.get("payload")?;
    let proto = match p.get("protocol")?.as_str()? {
        "tcp" => L4Proto::Tcp,
        "udp" => L4Proto::Udp,
        "sctp" => L4Proto::Sctp,
        _ => return None,
    };
    let field = match p.get("field")?.as_str()? {
        "dport" => PayloadField::ThDport,
        "sport" => PayloadField::ThSport,
        _ => return None,
    };
    Some((proto, field))
}

/// The kind of literal an expression is compared with.
fn kind_of(e: &Expr) -> Option<Kind> {
    Some(match e {
        Expr::Payload(PayloadField::ThDport | PayloadField::ThSport) => Kind::Port,
        Expr::Payload(_) => Kind::Addr,
        Expr::Meta(MetaKey::L4proto) => Kind::Proto,
        Expr::Meta(MetaKey::Mark) => Kind::Int,
        Expr::Meta(MetaKey::Iifname | MetaKey::Oifname) => Kind::Ifname,
        Expr::Meta(MetaKey::Nfproto) => return None,
        Expr::Ct(_) => Kind::CtFlag,
        Expr::NumgenRandom { .. } | Expr::Bitwise { .. } => Kind::Int,
        Expr::FibType(_) => Kind::AddrType,
        Expr::Concat(_) | Expr::Literal(_) | Expr::AnonSet(_) | Expr::SetRef(_) => return None,
    })
}

/// The right-hand side of a match, typed by the left.
fn parse_right(json: &Json, left: &Expr, ctx: &Ctx) -> Result<Expr> {
    if let Some(s) = json.as_str().and_then(|s| s.strip_prefix('@')) {
        return Ok(Expr::SetRef(s.into()));
    }
    if let (Some(parts), Expr::Concat(lefts)) = (json.get("concat"), left) {
        let parts = parts.as_array().filter(|p| p.len() == lefts.len());
        let parts = parts.ok_or_else(|| ctx.field("concat", json))?;
        return parts
            .iter()
            .zip(lefts)
            .map(|(p, l)| parse_right(p, l, ctx))
            .collect::<Result<Vec<_>>>()
            .map(Expr::concat);
    }
    let kind = kind_of(left).ok_or_else(|| ctx.unsupported("match left side", json))?;
    if let Some(items) = json.get("set") {
        let items = items.as_array().ok_or_else(|| ctx.field("set", json))?;
        return items
            .iter()
            .map(|v| parse_value(v, kind, ctx))
            .collect::<Result<Vec<_>>>()
            .map(Expr::anon_set);
    }
    parse_value(json, kind, ctx).map(Expr::Literal)
}

/// An expression evaluated against the packet (not a literal: those need a kind).
fn parse_expr(json: &Json, ctx: &Ctx) -> Result<Expr> {
    if let Some(name) = json.as_str().and_then(|s| s.strip_prefix('@')) {
        return Ok(Expr::SetRef(name.into()));
    }
    let Some((kind, body)) = single(json) else {
        return Err(ctx.unsupported("expression", json));
    };
    Ok(match kind {
        "payload" => {
            Expr::Payload(payload_field(body).ok_or_else(|| ctx.unsupported("payload", json))?)
        }
        "meta" => Expr::Meta(meta_key(body).ok_or_else(|| ctx.unsupported("meta key", json))?),
        "ct" => Expr::Ct(ct_key(body).ok_or_else(|| ctx.unsupported("ct key", json))?),
        "numgen" => {
            let random = body.get("mode").and_then(Json::as_str) == Some("random");
            let offset = body.get("offset").and_then(Json::as_u64).unwrap_or(0);
            let modulus = ctx.u64(body, "mod")?;
            match (random, offset, u32::try_from(modulus)) {
                (true, 0, Ok(modulus)) => Expr::NumgenRandom { modulus },
                _ => return Err(ctx.unsupported("numgen", json)),
            }
        }
        "fib" => parse_fib(body).ok_or_else(|| ctx.unsupported("fib", json))?,
        "concat" => {
            let parts = body.as_array().ok_or_else(|| ctx.field("concat", json))?;
            Expr::Concat(
                parts
                    .iter()
                    .map(|p| parse_expr(p, ctx))
                    .collect::<Result<_>>()?,
            )
        }
        "&" | "|" | "^" => parse_bitwise(kind, body, ctx)?,
        _ => return Err(ctx.unsupported("expression", json)),
    })
}

fn payload_field(body: &Json) -> Option<PayloadField> {
    let proto = body.get("protocol")?.as_str()?;
    let field = body.get("field")?.as_str()?;
    Some(match (proto, field) {
        ("ip", "saddr") => PayloadField::IpSaddr,
        ("ip", "daddr") => PayloadField::IpDaddr,
        ("ip6", "saddr") => PayloadField::Ip6Saddr,
        ("ip6", "daddr") => PayloadField::Ip6Daddr,
        ("th", "dport") => PayloadField::ThDport,
        ("th", "sport") => PayloadField::ThSport,
        _ => return None,
    })
}

fn meta_key(body: &Json) -> Option<MetaKey> {
    Some(match body.get("key")?.as_str()? {
        "l4proto" => MetaKey::L4proto,
        "mark" => MetaKey::Mark,
        "iifname" => MetaKey::Iifname,
        "oifname" => MetaKey::Oifname,
        "nfproto" => MetaKey::Nfproto,
        _ => return None,
    })
}

fn ct_key(body: &Json) -> Option<CtKey> {
    if body.get("dir").is_some() {
        return None;
    }
    Some(match body.get("key")?.as_str()? {
        "state" => CtKey::State,
        "status" => CtKey::Status,
        _ => return None,
    })
}

fn parse_fib(body: &Json) -> Option<Expr> {
    if body.get("result")?.as_str()? != "type" {
        return None;
    }
    let flags = one_or_many(body.get("flags")?);
    match flags.as_slice() {
        [f] if f.as_str() == Some("daddr") => Some(Expr::FibType(FibAddr::Daddr)),
        [f] if f.as_str() == Some("saddr") => Some(Expr::FibType(FibAddr::Saddr)),
        _ => None,
    }
}

fn parse_bitwise(symbol: &str, body: &Json, ctx: &Ctx) -> Result<Expr> {
    let op = match symbol {
        "&" => BitOp::And,
        "|" => BitOp::Or,
        _ => BitOp::Xor,
    };
    let operands = body.as_array().filter(|a| a.len() == 2);
    let [left, right] = operands.map(Vec::as_slice).unwrap_or_default() else {
        return Err(ctx.field("bitwise operands", body));
    };
    let right = right
        .as_u64()
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(|| ctx.unsupported("bitwise operand", body))?;
    Ok(Expr::Bitwise {
        left: Box::new(parse_expr(left, ctx)?),
        op,
        right,
    })
}

fn parse_verdict(json: &Json, ctx: &Ctx) -> Result<Verdict> {
    let Some((kind, body)) = single(json) else {
        return Err(ctx.unsupported("verdict", json));
    };
    let target = || ctx.str(body, "target").map(String::from);
    Ok(match kind {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "return" => Verdict::Return,
        "continue" => Verdict::Continue,
        "jump" => Verdict::Jump(target()?.into()),
        "goto" => Verdict::Goto(target()?.into()),
        _ => return Err(ctx.unsupported("verdict", json)),
    })
}

fn parse_dnat(body: &Json, ctx: &Ctx) -> Result<Stmt> {
    let addr = ctx.str(body, "addr")?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| ctx.unsupported("dnat address", body))?;
    let port = match body.get("port") {
        None => None,
        Some(p) => Some(
            p.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| ctx.unsupported("dnat port", body))?,
        ),
    };
    if body.get("flags").is_some() {
        return Err(ctx.unsupported("dnat flags", body));
    }
    Ok(Stmt::Dnat { addr, port })
}

fn parse_masquerade(body: &Json, ctx: &Ctx) -> Result<Stmt> {
    if body.is_null() {
        return Ok(Stmt::Masquerade {
            fully_random: false,
        });
    }
    let flags = body.get("flags").map(one_or_many).unwrap_or_default();
    match flags.as_slice() {
        [] => Ok(Stmt::Masquerade {
            fully_random: false,
        }),
        [f] if f.as_str() == Some("fully-random") => Ok(Stmt::Masquerade { fully_random: true }),
        _ => Err(ctx.unsupported("masquerade flags", body)),
    }
}

fn parse_reject(body: &Json, ctx: &Ctx) -> Result<Stmt> {
    if body.is_null() {
        return Ok(Stmt::Reject(RejectKind::PortUnreachable));
    }
    let ty = body.get("type").and_then(Json::as_str);
    let code = body.get("expr").and_then(Json::as_str);
    match (ty, code) {
        (Some("tcp reset"), _) => Ok(Stmt::Reject(RejectKind::TcpReset)),
        (Some("icmp" | "icmpv6" | "icmpx"), Some("port-unreachable") | None) => {
            Ok(Stmt::Reject(RejectKind::PortUnreachable))
        }
        _ => Err(ctx.unsupported("reject", body)),
    }
}

fn l4proto(name: &str) -> Option<L4Proto> {
    Some(match name {
        "tcp" => L4Proto::Tcp,
        "udp" => L4Proto::Udp,
        "sctp" => L4Proto::Sctp,
        "icmp" => L4Proto::Icmp,
        "ipv6-icmp" | "icmpv6" => L4Proto::Icmpv6,
        _ => return None,
    })
}

fn l4proto_number(n: u64) -> Option<L4Proto> {
    [
        L4Proto::Tcp,
        L4Proto::Udp,
        L4Proto::Sctp,
        L4Proto::Icmp,
        L4Proto::Icmpv6,
    ]
    .into_iter()
    .find(|p| u64::from(p.number()) == n)
}

fn ct_flag(name: &str) -> Option<CtFlag> {
    Some(match name {
        "new" => CtFlag::New,
        "established" => CtFlag::Established,
        "related" => CtFlag::Related,
        "invalid" => CtFlag::Invalid,
        "dnat" => CtFlag::Dnat,
        _ => return None,
    })
}

fn parse_addr(json: &Json) -> Option<Value> {
    if let Some(p) = json.get("prefix") {
        let addr: IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
        let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
        return IpNet::new(addr, len)
            .ok()
            .map(|net| Value::Prefix(Box::new(net)));
    }
    json.as_str()?.parse::<IpAddr>().ok().map(Value::from)
}

/// A literal of a known kind, in the shapes nft lists it.
pub(super) fn parse_value(json: &Json, kind: Kind, ctx: &Ctx) -> Result<Value> {
    let value = match kind {
        Kind::Addr => parse_addr(json),
        Kind::Proto => match json {
            Json::String(s) => l4proto(s),
            n => n.as_u64().and_then(l4proto_number),
        }
        .map(Value::Proto),
        Kind::Port => json
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(Value::Port),
        Kind::Int => json
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .map(Value::Int),
        Kind::Ifname => json.as_str().map(|s| match s.strip_suffix('*') {
            Some(prefix) => Value::ifname(prefix, true),
            None => Value::ifname(s, false),
        }),
        Kind::CtFlag => json.as_str().and_then(ct_flag).map(Value::CtFlag),
        Kind::AddrType => match json.as_str() {
            Some("local") => Some(Value::AddrType(AddrType::Local)),
            Some("unicast") => Some(Value::AddrType(AddrType::Unicast)),
            _ => None,
        },
        Kind::Verdict => return parse_verdict(json, ctx).map(Value::Verdict),
        Kind::ObjRef => json
            .as_str()
            .map(|name| Value::ObjRef(name.to_string().into())),
    };
    value.ok_or_else(|| ctx.unsupported("literal", json))
}
