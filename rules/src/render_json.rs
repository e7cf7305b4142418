//! Renders the model as libnftables JSON (`nft -j -f`), the form the controller sends.
//!
//! A whole ruleset becomes the commands that create it from nothing, table after table,
//! each ordered so that every reference resolves when the kernel meets it: the table, then
//! counter objects, then sets and maps, then chains, then set elements (verdicts may name
//! chains, counter maps name counters), then rules. A transaction becomes one
//! command object per op. The JSON shapes are the ones nft 1.0.6's parser accepts; where
//! nft offers several spellings this module picks one and always uses it. Comments and
//! interface names are sanitised exactly as in the script renderer, so loading either form
//! gives the same kernel state.

use serde_json::{Map, Value as Json, json};

use crate::expr::{CmpOp, Expr, FibAddr, RejectKind, Stmt, Value, Verdict};
use crate::model::{Chain, Element, Family, Rule, Ruleset, Set, Table, TableId};
use crate::render_nft::{op_is_noop, safe_comment, safe_ifname};
use crate::transaction::{Op, Transaction};

/// The JSON schema version nft 1.0.6 speaks.
const SCHEMA_VERSION: u32 = 1;

fn document(commands: Vec<Json>) -> Json {
    let mut all = Vec::with_capacity(commands.len() + 1);
    all.push(json!({"metainfo": {"json_schema_version": SCHEMA_VERSION}}));
    all.extend(commands);
    json!({ "nftables": all })
}

impl Ruleset {
    /// The libnftables JSON document that creates this ruleset where none of its tables exist.
    pub fn to_json(&self) -> Json {
        let ops = crate::transaction::creation_ops(self);
        let mut commands = Vec::with_capacity(ops.len());
        for op in &ops {
            push_op_json(op, &mut commands);
        }
        document(commands)
    }
}

impl Transaction {
    /// The libnftables JSON document that runs this transaction (one command per op).
    pub fn to_json(&self) -> Json {
        let mut commands = Vec::with_capacity(self.len());
        for op in &self.ops {
            push_op_json(op, &mut commands);
        }
        document(commands)
    }
}

/// `{"family": ..., "table": ...}` plus `name`: the identity fields of a table's object.
fn object(table: &TableId, name: &str) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("family".into(), json!(table.family.keyword()));
    m.insert("table".into(), json!(table.name));
    m.insert("name".into(), json!(name));
    m
}

fn command(verb: &str, kind: &str, body: Map<String, Json>) -> Json {
    json!({ verb: { kind: Json::Object(body) } })
}

fn table_json(table: &Table) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("family".into(), json!(table.family.keyword()));
    m.insert("name".into(), json!(table.name));
    if let Some(c) = &table.comment {
        m.insert("comment".into(), json!(safe_comment(c)));
    }
    m
}

fn chain_json(table: &TableId, chain: &Chain) -> Map<String, Json> {
    let mut m = object(table, &chain.name);
    if let Some(base) = &chain.base {
        m.insert("type".into(), json!(base.chain_type.keyword()));
        m.insert("hook".into(), json!(base.hook.keyword()));
        m.insert("prio".into(), json!(base.priority));
        m.insert("policy".into(), json!(base.policy.keyword()));
    }
    if let Some(c) = &chain.comment {
        m.insert("comment".into(), json!(safe_comment(c)));
    }
    m
}

fn set_json(table: &TableId, set: &Set) -> Map<String, Json> {
    let mut m = object(table, &set.name);
    let types: Vec<&str> = set.key.iter().map(|t| t.keyword()).collect();
    let ty = match types.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    m.insert("type".into(), ty);
    if let Some(v) = set.value {
        m.insert("map".into(), json!(v.keyword()));
    }
    if !set.flags.is_empty() {
        let flags: Vec<&str> = set.flags.iter().map(|f| f.keyword()).collect();
        m.insert("flags".into(), json!(flags));
    }
    if let Some(t) = set.timeout_secs {
        m.insert("timeout".into(), json!(t));
    }
    if let Some(c) = &set.comment {
        m.insert("comment".into(), json!(safe_comment(c)));
    }
    m
}

fn rule_json(table: &TableId, chain: &str, rule: &Rule) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("family".into(), json!(table.family.keyword()));
    m.insert("table".into(), json!(table.name));
    m.insert("chain".into(), json!(chain));
    let exprs: Vec<Json> = rule
        .stmts
        .list()
        .iter()
        .map(|s| stmt_json(s, table.family))
        .collect();
    m.insert("expr".into(), Json::Array(exprs));
    if let Some(c) = &rule.comment {
        m.insert("comment".into(), json!(safe_comment(c)));
    }
    m
}

fn elements_json(table: &TableId, set: &str, elements: &[Element], keys_only: bool) -> Json {
    let elems: Vec<Json> = elements
        .iter()
        .map(|e| {
            if keys_only {
                key_json(e)
            } else {
                element_json(e)
            }
        })
        .collect();
    let mut m = object(table, set);
    m.insert("elem".into(), Json::Array(elems));
    Json::Object(m)
}

/// Appends the command(s) of `op` (none for a no-op, one per op of a created table).
fn push_op_json(op: &Op, commands: &mut Vec<Json>) {
    match op {
        Op::CreateTable(t) => {
            for op in crate::transaction::creating(t) {
                push_op_json(&op, commands);
            }
        }
        _ if op_is_noop(op) => {}
        _ => commands.push(op_json(op)),
    }
}

/// The one command of an op that is neither a no-op nor [`Op::CreateTable`].
fn op_json(op: &Op) -> Json {
    match op {
        Op::AddTable(t) | Op::CreateTable(t) => command("add", "table", table_json(t)),
        Op::DeleteTable(t) => {
            let mut m = Map::new();
            m.insert("family".into(), json!(t.family.keyword()));
            m.insert("name".into(), json!(t.name));
            command("delete", "table", m)
        }
        Op::AddChain { table, chain } => command("add", "chain", chain_json(table, chain)),
        Op::FlushChain { table, chain } => command("flush", "chain", object(table, chain)),
        Op::DeleteChain { table, chain } => command("delete", "chain", object(table, chain)),
        Op::AddRule { table, chain, rule } => command("add", "rule", rule_json(table, chain, rule)),
        Op::AddSet { table, set } => {
            let kind = if set.is_map() { "map" } else { "set" };
            command("add", kind, set_json(table, set))
        }
        Op::DeleteSet { table, set } => command("delete", "set", object(table, set)),
        Op::AddElements {
            table,
            set,
            elements,
        } => json!({"add": {"element": elements_json(table, set, elements, false)}}),
        Op::DeleteElements {
            table,
            set,
            elements,
        } => json!({"delete": {"element": elements_json(table, set, elements, true)}}),
        Op::AddCounter { table, counter } => command("add", "counter", object(table, counter)),
        Op::DeleteCounter { table, counter } => {
            command("delete", "counter", object(table, counter))
        }
    }
}

/// An element's key: one value, or a `concat` of several.
fn key_json(element: &Element) -> Json {
    match &*element.key.values() {
        [one] => value_json(one),
        many => json!({"concat": many.iter().map(value_json).collect::<Vec<_>>()}),
    }
}

/// An element as `add element` takes it: `key`, `{"elem": {"val", "comment"}}`, and for maps
/// the `[key, value]` pair.
pub(crate) fn element_json(element: &Element) -> Json {
    let key = match &element.comment {
        None => key_json(element),
        Some(c) => json!({"elem": {"val": key_json(element), "comment": safe_comment(c)}}),
    };
    match &element.value {
        None => key,
        Some(v) => json!([key, value_json(v)]),
    }
}

fn verdict_json(v: &Verdict) -> Json {
    match v {
        Verdict::Accept => json!({"accept": null}),
        Verdict::Drop => json!({"drop": null}),
        Verdict::Return => json!({"return": null}),
        Verdict::Continue => json!({"continue": null}),
        Verdict::Jump(c) => json!({"jump": {"target": c}}),
        Verdict::Goto(c) => json!({"goto": {"target": c}}),
    }
}

/// A literal value; nft infers its type from the other side of the match or the set.
pub(crate) fn value_json(v: &Value) -> Json {
    match v {
        Value::Ipv4(a) => json!(a.to_string()),
        Value::Ipv6(a) => json!(a.to_string()),
        Value::Prefix(net) => {
            json!({"prefix": {"addr": net.addr().to_string(), "len": net.prefix_len()}})
        }
        Value::Proto(p) => json!(p.keyword()),
        Value::Port(p) => json!(p),
        Value::Int(i) => json!(i),
        Value::Ifname(name) => json!(safe_ifname(name)),
        Value::IfnamePrefix(name) => json!(format!("{}*", safe_ifname(name))),
        Value::Verdict(v) => verdict_json(v),
        Value::CtFlag(f) => json!(f.keyword()),
        Value::AddrType(t) => json!(t.keyword()),
        Value::ObjRef(name) => json!(name),
    }
}

fn expr_json(e: &Expr) -> Json {
    match e {
        Expr::Payload(field) => {
            let (protocol, name) = field.parts();
            json!({"payload": {"protocol": protocol, "field": name}})
        }
        Expr::Meta(key) => json!({"meta": {"key": key.keyword()}}),
        Expr::Ct(key) => json!({"ct": {"key": key.keyword()}}),
        Expr::NumgenRandom { modulus } => {
            json!({"numgen": {"mode": "random", "mod": modulus, "offset": 0}})
        }
        Expr::FibType(addr) => {
            let flag = match addr {
                FibAddr::Daddr => "daddr",
                FibAddr::Saddr => "saddr",
            };
            json!({"fib": {"result": "type", "flags": [flag]}})
        }
        Expr::Concat(parts) => json!({"concat": parts.iter().map(expr_json).collect::<Vec<_>>()}),
        Expr::Bitwise { left, op, right } => json!({ op.symbol(): [expr_json(left), right] }),
        Expr::Literal(v) => value_json(v),
        Expr::AnonSet(values) => json!({"set": values.iter().map(value_json).collect::<Vec<_>>()}),
        Expr::SetRef(name) => json!(format!("@{name}")),
    }
}

fn cmp_op_json(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::In => "in",
    }
}

fn stmt_json(s: &Stmt, family: Family) -> Json {
    match s {
        Stmt::Match { left, op, right } => json!({"match": {
            "op": cmp_op_json(*op),
            "left": expr_json(left),
            "right": expr_json(right),
        }}),
        Stmt::Vmap { key, map } => {
            json!({"vmap": {"key": expr_json(key), "data": format!("@{map}")}})
        }
        Stmt::Verdict(v) => verdict_json(v),
        Stmt::Dnat { addr, port } => {
            let mut m = Map::new();
            if family == Family::Inet {
                m.insert(
                    "family".into(),
                    json!(if addr.is_ipv4() { "ip" } else { "ip6" }),
                );
            }
            m.insert("addr".into(), json!(addr.to_string()));
            if let Some(p) = port {
                m.insert("port".into(), json!(p));
            }
            json!({ "dnat": m })
        }
        Stmt::Masquerade { fully_random } => {
            if *fully_random {
                json!({"masquerade": {"flags": "fully-random"}})
            } else {
                json!({"masquerade": null})
            }
        }
        Stmt::SetMark(e) => {
            json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": expr_json(e)}})
        }
        Stmt::Reject(RejectKind::PortUnreachable) => json!({"reject": null}),
        Stmt::Reject(RejectKind::TcpReset) => json!({"reject": {"type": "tcp reset"}}),
        Stmt::Counter => json!({"counter": null}),
        Stmt::CounterMap { key, map } => {
            json!({"counter": {"map": {"key": expr_json(key), "data": format!("@{map}")}}})
        }
        Stmt::UpdateSet { set, key } => json!({"set": {
            "op": "update",
            "elem": expr_json(key),
            "set": format!("@{set}"),
        }}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::every_construct;

    #[test]
    fn ruleset_json_starts_with_metainfo_and_declares_before_it_fills() {
        let doc = every_construct().to_json();
        let cmds = doc["nftables"].as_array().unwrap();
        assert_eq!(cmds[0]["metainfo"]["json_schema_version"], 1);
        let kinds: Vec<&str> = cmds[1..]
            .iter()
            .map(|c| {
                c["add"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .next()
                    .unwrap()
                    .as_str()
            })
            .collect();
        let rank = |k: &str| match k {
            "table" => 0,
            "counter" => 1,
            "set" | "map" => 1,
            "chain" => 2,
            "element" => 3,
            _ => 4,
        };
        // Table after table (no table refers to another), each in dependency order.
        let tables: Vec<&[&str]> = kinds.chunk_by(|_, next| *next != "table").collect();
        assert_eq!(tables.len(), every_construct().tables.len());
        for table in tables {
            let mut sorted = table.to_vec();
            sorted.sort_by_key(|k| rank(k));
            assert_eq!(table, sorted, "objects are not in dependency order");
            assert_eq!(table[0], "table");
            assert!(table.contains(&"rule"));
        }
    }

    #[test]
    fn commented_map_element_is_an_elem_object_paired_with_its_verdict() {
        let e = Element::mapping(
            vec![Value::Port(80)],
            Value::Verdict(Verdict::Goto("c".into())),
        )
        .with_comment("ns/x:\"http\"");
        assert_eq!(
            element_json(&e),
            json!([{"elem": {"val": 80, "comment": "ns/x:_http_"}}, {"goto": {"target": "c"}}])
        );
    }

    #[test]
    fn prefixes_and_concatenations_use_nft_json_objects() {
        let e = Element::key(vec![
            Value::Prefix(Box::new("10.0.0.0/8".parse().unwrap())),
            Value::Port(80),
        ]);
        assert_eq!(
            element_json(&e),
            json!({"concat": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, 80]})
        );
    }

    #[test]
    fn set_flags_render_in_a_fixed_order() {
        let set = Set::set("s", vec![crate::model::DataType::Ipv4Addr])
            .with_flag(crate::model::SetFlag::Timeout)
            .with_flag(crate::model::SetFlag::Interval);
        let m = set_json(&TableId::new(Family::Ip, "t"), &set);
        assert_eq!(m["flags"], json!(["interval", "timeout"]));
    }

    #[test]
    fn empty_element_ops_are_left_out() {
        let mut tx = Transaction::new();
        tx.push(Op::AddElements {
            table: TableId::new(Family::Ip, "t"),
            set: "s".into(),
            elements: vec![],
        });
        assert_eq!(tx.to_json()["nftables"].as_array().unwrap().len(), 1);
    }
}
