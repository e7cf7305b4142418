//! Parses `nft -j list ruleset` output back into the model, for the tables one owns.
//!
//! nft lists a ruleset in a normalised form that differs from what was loaded: `==` where
//! `in` was written for a set lookup, `tcp dport` where `meta l4proto tcp th dport` was
//! written, marks as plain integers, elements with comments wrapped in `{"elem": ...}`,
//! numeric chain priorities, handles everywhere. This module inverts that normalisation so
//! that a ruleset in canonical form (see [`crate::expr::CmpOp`]) survives
//! load → list → parse unchanged. Anything the model cannot express is an error rather than
//! a silent approximation: a full sync must never "fix" rules it did not understand.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value as Json;

use crate::expr::{
    AddrType, BitOp, CmpOp, CtFlag, CtKey, Expr, FibAddr, L4Proto, MetaKey, PayloadField,
    RejectKind, Stmt, Value, Verdict,
};
use crate::model::{
    BaseChain, Chain, ChainType, DataType, Element, Family, Hook, Policy, Rule, Ruleset, Set,
    SetFlag, Table, TableId,
};

/// Why a listing could not be turned into the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The document has no top-level `nftables` array.
    #[error("not an nft JSON listing: no top-level \"nftables\" array")]
    ReadDocument,
    /// A field the model needs is missing or has the wrong JSON type.
    #[error("{context}: missing or malformed `{field}` in {json}")]
    ReadField {
        context: String,
        field: &'static str,
        json: String,
    },
    /// A construct the model does not have (the ruleset was not written by this crate).
    #[error("{context}: {what} not supported by the model: {json}")]
    Unsupported {
        context: String,
        what: &'static str,
        json: String,
    },
    /// A chain, set or rule of a wanted table appears before (or without) the table itself.
    #[error("{context}: object of table {table} listed without the table")]
    FindTable { context: String, table: TableId },
}

type Result<T> = std::result::Result<T, ParseError>;

/// The type of a literal, known from the other side of a match or from a set's declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Addr,
    Proto,
    Port,
    Int,
    Ifname,
    CtFlag,
    AddrType,
    Verdict,
    ObjRef,
}

impl From<DataType> for Kind {
    fn from(t: DataType) -> Kind {
        match t {
            DataType::Ipv4Addr | DataType::Ipv6Addr => Kind::Addr,
            DataType::InetProto => Kind::Proto,
            DataType::InetService => Kind::Port,
            DataType::Mark => Kind::Int,
            DataType::Ifname => Kind::Ifname,
            DataType::Verdict => Kind::Verdict,
            DataType::Counter => Kind::ObjRef,
        }
    }
}

/// Where in the listing we are, for error messages.
#[derive(Debug, Clone)]
struct Ctx(String);

impl Ctx {
    fn field(&self, field: &'static str, json: &Json) -> ParseError {
        ParseError::ReadField {
            context: self.0.clone(),
            field,
            json: json.to_string(),
        }
    }

    fn unsupported(&self, what: &'static str, json: &Json) -> ParseError {
        ParseError::Unsupported {
            context: self.0.clone(),
            what,
            json: json.to_string(),
        }
    }

    fn str<'a>(&self, obj: &'a Json, field: &'static str) -> Result<&'a str> {
        obj.get(field)
            .and_then(Json::as_str)
            .ok_or_else(|| self.field(field, obj))
    }

    fn u64(&self, obj: &Json, field: &'static str) -> Result<u64> {
        obj.get(field)
            .and_then(Json::as_u64)
            .ok_or_else(|| self.field(field, obj))
    }

    fn within(&self, what: impl std::fmt::Display) -> Ctx {
        Ctx(format!("{}: {what}", self.0))
    }
}

/// The single key and value of a one-key object such as `{"payload": {...}}`.
fn single(obj: &Json) -> Option<(&str, &Json)> {
    let map = obj.as_object()?;
    let mut it = map.iter();
    let (k, v) = it.next()?;
    it.next().is_none().then_some((k.as_str(), v))
}

fn family(s: &str) -> Option<Family> {
    match s {
        "ip" => Some(Family::Ip),
        "ip6" => Some(Family::Ip6),
        "inet" => Some(Family::Inet),
        _ => None,
    }
}

impl Ruleset {
    /// Parses an `nft -j list ruleset` (or `list table`) document, keeping only `tables`.
    ///
    /// Tables of the listing that are not in `tables` are ignored whatever they contain;
    /// wanted tables that are not listed are absent from the result.
    pub fn from_nft_json(value: &Json, tables: &[TableId]) -> Result<Ruleset> {
        let items = value
            .get("nftables")
            .and_then(Json::as_array)
            .ok_or(ParseError::ReadDocument)?;
        let wanted: BTreeSet<&TableId> = tables.iter().collect();
        let mut ruleset = Ruleset::new();
        for item in items {
            let Some((kind, body)) = single(item) else {
                return Err(Ctx("listing".into()).unsupported("item", item));
            };
            if kind == "metainfo" {
                continue;
            }
            let ctx = Ctx(kind.to_string());
            let id = table_id(&ctx, kind, body)?;
            if !wanted.contains(&id) {
                continue;
            }
            parse_item(&mut ruleset, &id, kind, body, &ctx.within(&id))?;
        }
        Ok(ruleset)
    }
}

/// The table an item belongs to (for a table item, the table itself).
fn table_id(ctx: &Ctx, kind: &str, body: &Json) -> Result<TableId> {
    let fam = ctx.str(body, "family")?;
    let fam = family(fam).ok_or_else(|| ctx.unsupported("family", body))?;
    let name = if kind == "table" {
        ctx.str(body, "name")?
    } else {
        ctx.str(body, "table")?
    };
    Ok(TableId::new(fam, name))
}

fn parse_item(
    ruleset: &mut Ruleset,
    id: &TableId,
    kind: &str,
    body: &Json,
    ctx: &Ctx,
) -> Result<()> {
    if kind == "table" {
        let mut table = Table::new(id.family, id.name.clone());
        table.comment = body.get("comment").and_then(Json::as_str).map(String::from);
        ruleset.insert_table(table);
        return Ok(());
    }
    let table = ruleset.table_mut(id).ok_or_else(|| ParseError::FindTable {
        context: ctx.0.clone(),
        table: id.clone(),
    })?;
    match kind {
        "chain" => table.insert_chain(parse_chain(body, ctx)?),
        "set" | "map" => table.insert_set(parse_set(body, ctx)?),
        // The listed `packets` and `bytes` are the kernel's, not configuration.
        "counter" => table.insert_counter(ctx.str(body, "name")?),
        "rule" => {
            let chain_name = ctx.str(body, "chain")?;
            let ctx = ctx.within(format_args!("rule in chain {chain_name}"));
            let rule = parse_rule(body, &ctx)?;
            table
                .chains
                .update(chain_name, |chain| chain.push(rule))
                .ok_or_else(|| ctx.field("chain", body))?;
        }
        _ => return Err(ctx.unsupported("object type", body)),
    }
    Ok(())
}

fn parse_chain(body: &Json, ctx: &Ctx) -> Result<Chain> {
    let name = ctx.str(body, "name")?;
    let ctx = ctx.within(format_args!("chain {name}"));
    let mut chain = Chain::regular(name);
    chain.comment = body.get("comment").and_then(Json::as_str).map(String::from);
    if body.get("hook").is_none() {
        return Ok(chain);
    }
    let chain_type = match ctx.str(body, "type")? {
        "filter" => ChainType::Filter,
        "nat" => ChainType::Nat,
        "route" => ChainType::Route,
        _ => return Err(ctx.unsupported("chain type", body)),
    };
    let hook = match ctx.str(body, "hook")? {
        "prerouting" => Hook::Prerouting,
        "input" => Hook::Input,
        "forward" => Hook::Forward,
        "output" => Hook::Output,
        "postrouting" => Hook::Postrouting,
        _ => return Err(ctx.unsupported("hook", body)),
    };
    let priority = body
        .get("prio")
        .and_then(Json::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| ctx.field("prio", body))?;
    let policy = match body.get("policy").and_then(Json::as_str) {
        None | Some("accept") => Policy::Accept,
        Some("drop") => Policy::Drop,
        Some(_) => return Err(ctx.unsupported("policy", body)),
    };
    chain.base = Some(BaseChain {
        chain_type,
        hook,
        priority,
        policy,
    });
    Ok(chain)
}

fn data_type(ctx: &Ctx, json: &Json) -> Result<DataType> {
    Ok(match json.as_str() {
        Some("ipv4_addr") => DataType::Ipv4Addr,
        Some("ipv6_addr") => DataType::Ipv6Addr,
        Some("inet_proto") => DataType::InetProto,
        Some("inet_service") => DataType::InetService,
        Some("mark") => DataType::Mark,
        Some("ifname") => DataType::Ifname,
        Some("verdict") => DataType::Verdict,
        Some("counter") => DataType::Counter,
        _ => return Err(ctx.unsupported("data type", json)),
    })
}

fn set_flag(ctx: &Ctx, json: &Json) -> Result<SetFlag> {
    Ok(match json.as_str() {
        Some("constant") => SetFlag::Constant,
        Some("interval") => SetFlag::Interval,
        Some("timeout") => SetFlag::Timeout,
        Some("dynamic") => SetFlag::Dynamic,
        _ => return Err(ctx.unsupported("set flag", json)),
    })
}

/// A JSON value that may be one item or an array of items.
fn one_or_many(json: &Json) -> Vec<&Json> {
    match json {
        Json::Array(items) => items.iter().collect(),
        one => vec![one],
    }
}

fn parse_set(body: &Json, ctx: &Ctx) -> Result<Set> {
    let name = ctx.str(body, "name")?;
    let ctx = ctx.within(format_args!("set {name}"));
    let ty = body.get("type").ok_or_else(|| ctx.field("type", body))?;
    let key = one_or_many(ty)
        .into_iter()
        .map(|t| data_type(&ctx, t))
        .collect::<Result<Vec<_>>>()?;
    let mut set = Set::set(name, key);
    if let Some(v) = body.get("map") {
        set.value = Some(data_type(&ctx, v)?);
    }
    if let Some(flags) = body.get("flags") {
        for flag in one_or_many(flags) {
            set = set.with_flag(set_flag(&ctx, flag)?);
        }
    }
    if body.get("timeout").is_some() {
        let t = ctx.u64(body, "timeout")?;
        set.timeout_secs = Some(u32::try_from(t).map_err(|_| ctx.field("timeout", body))?);
    }
    set.comment = body.get("comment").and_then(Json::as_str).map(String::from);
    if let Some(elems) = body.get("elem") {
        let elems = elems.as_array().ok_or_else(|| ctx.field("elem", body))?;
        for elem in elems {
            if let Some(element) = parse_element(&set, elem, &ctx)? {
                set.insert(element);
            }
        }
    }
    Ok(set)
}

/// One listed element; `None` for elements with an expiry, which are runtime state
/// (added by the packet path or timing out), not configuration.
fn parse_element(set: &Set, elem: &Json, ctx: &Ctx) -> Result<Option<Element>> {
    let (key_json, value_json) = match (&set.value, elem) {
        (Some(_), Json::Array(pair)) if pair.len() == 2 => (&pair[0], Some(&pair[1])),
        (Some(_), _) => return Err(ctx.field("elem", elem)),
        (None, _) => (elem, None),
    };
    let (key_json, comment) = match key_json.get("elem") {
        Some(inner) => {
            if inner.get("expires").is_some() {
                return Ok(None);
            }
            let val = inner.get("val").ok_or_else(|| ctx.field("val", inner))?;
            (val, inner.get("comment").and_then(Json::as_str))
        }
        None => (key_json, None),
    };
    let parts = match (set.key.len(), key_json.get("concat")) {
        (1, _) => vec![key_json],
        (_, Some(Json::Array(parts))) if parts.len() == set.key.len() => parts.iter().collect(),
        _ => return Err(ctx.field("concat", key_json)),
    };
    let key = parts
        .into_iter()
        .zip(&set.key)
        .map(|(part, ty)| parse_value(part, Kind::from(*ty), ctx))
        .collect::<Result<Vec<_>>>()?;
    let mut element = match (set.value, value_json) {
        (Some(ty), Some(v)) => Element::mapping(key, parse_value(v, Kind::from(ty), ctx)?),
        _ => Element::key(key),
    };
    element.comment = comment.map(Box::from);
    Ok(Some(element))
}

fn parse_rule(body: &Json, ctx: &Ctx) -> Result<Rule> {
    let exprs = body
        .get("expr")
        .and_then(Json::as_array)
        .ok_or_else(|| ctx.field("expr", body))?;
    let mut stmts = Vec::with_capacity(exprs.len());
    for e in exprs {
        parse_stmt(e, ctx, &mut stmts)?;
    }
    let mut rule = Rule::new(stmts);
    rule.comment = body.get("comment").and_then(Json::as_str).map(Box::from);
    Ok(rule)
}

#[path = "parse_stmt.rs"]
mod parse_stmt;

use parse_stmt::{parse_stmt, parse_value};

#[cfg(test)]
#[path = "parse_json_tests.rs"]
mod tests;
