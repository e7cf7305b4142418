//! Renders the model as an nft script (`Display`), the form humans review and `nft -f` loads.
//!
//! The output is deterministic byte for byte (the model is ordered) and laid out like
//! `nft list ruleset`: tab indentation, one object per block, a blank line between objects,
//! one set element per line. nft's script syntax has no escapes inside quoted strings and
//! no quoting for names, so every string that reaches the script goes through
//! [`safe_comment`], [`safe_ifname`] or [`safe_name`]: a character that could change the
//! script's meaning is replaced by `_`. The output can therefore be wrong (a renamed
//! object, which `validate` in the graph module reports) but never injected.

use std::fmt::{self, Display, Formatter, Write as _};
use std::net::IpAddr;

use crate::expr::{CmpOp, CtKey, Expr, FibAddr, MetaKey, RejectKind, Stmt, Value, Verdict};
use crate::model::{BaseChain, Chain, Element, Family, Rule, Ruleset, Set, Table, TableId};
use crate::transaction::{Op, Transaction};

/// Longest comment the kernel accepts (bytes), for tables, chains, sets, rules and elements.
pub const MAX_COMMENT_LEN: usize = 128;

/// `comment` cut to [`MAX_COMMENT_LEN`] bytes, ending in `...` when it was cut: what a
/// model should hold, since the kernel refuses a whole transaction over one longer comment.
pub fn bounded_comment(comment: String) -> String {
    if comment.len() <= MAX_COMMENT_LEN {
        return comment;
    }
    let mut end = MAX_COMMENT_LEN - 3;
    while !comment.is_char_boundary(end) {
        end -= 1;
    }
    [&comment[..end], "..."].concat()
}

/// Whether `c` may appear in a quoted nft string without changing the script's meaning.
fn comment_char_is_safe(c: char) -> bool {
    (' '..='~').contains(&c) && c != '"' && c != '\\'
}

/// A comment as it is rendered: printable ASCII except `"` and `\`, others become `_`.
pub fn safe_comment(comment: &str) -> String {
    comment
        .chars()
        .map(|c| if comment_char_is_safe(c) { c } else { '_' })
        .collect()
}

/// An interface name as it is rendered: like a comment, and `*` only as the wildcard suffix.
pub fn safe_ifname(name: &str) -> String {
    name.chars()
        .map(|c| {
            if comment_char_is_safe(c) && c != '*' && c != ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `c` may appear in an unquoted nft identifier (table, chain and set names).
pub fn name_char_is_valid(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.')
}

/// A name as it is rendered in a script: characters nft's identifiers cannot hold become `_`.
pub fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| if name_char_is_valid(c) { c } else { '_' })
        .collect()
}

/// `Display` adapter for a name.
struct Name<'a>(&'a str);

impl Display for Name<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.chars().all(name_char_is_valid) {
            f.write_str(self.0)
        } else {
            f.write_str(&safe_name(self.0))
        }
    }
}

/// `Display` adapter for a quoted comment (`comment "..."`).
struct Comment<'a>(&'a str);

impl Display for Comment<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "comment \"{}\"", safe_comment(self.0))
    }
}

impl Display for Verdict {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Continue => f.write_str("continue"),
            Verdict::Jump(c) => write!(f, "jump {}", Name(c)),
            Verdict::Goto(c) => write!(f, "goto {}", Name(c)),
        }
    }
}

impl Display for Value {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Value::Ipv4(a) => write!(f, "{a}"),
            Value::Ipv6(a) => write!(f, "{a}"),
            Value::Prefix(net) => write!(f, "{net}"),
            Value::Proto(p) => f.write_str(p.keyword()),
            Value::Port(p) => write!(f, "{p}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Ifname(name) => write!(f, "\"{}\"", safe_ifname(name)),
            Value::IfnamePrefix(name) => write!(f, "\"{}*\"", safe_ifname(name)),
            Value::Verdict(v) => write!(f, "{v}"),
            Value::CtFlag(flag) => f.write_str(flag.keyword()),
            Value::AddrType(t) => f.write_str(t.keyword()),
            Value::ObjRef(name) => write!(f, "\"{}\"", Name(name)),
        }
    }
}

fn write_joined<T: Display>(f: &mut Formatter<'_>, items: &[T], sep: &str) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Payload(field) => {
                let (proto, name) = field.parts();
                write!(f, "{proto} {name}")
            }
            Expr::Meta(key) => match key {
                MetaKey::Iifname | MetaKey::Oifname => f.write_str(key.keyword()),
                _ => write!(f, "meta {}", key.keyword()),
            },
            Expr::Ct(key) => write!(f, "ct {}", key.keyword()),
            Expr::NumgenRandom { modulus } => write!(f, "numgen random mod {modulus}"),
            Expr::FibType(FibAddr::Daddr) => f.write_str("fib daddr type"),
            Expr::FibType(FibAddr::Saddr) => f.write_str("fib saddr type"),
            Expr::Concat(parts) => write_joined(f, parts, " . "),
            Expr::Bitwise { left, op, right } => {
                write!(f, "{left} {} {right:#x}", op.symbol())
            }
            Expr::Literal(v) => write!(f, "{v}"),
            Expr::AnonSet(values) => {
                f.write_str("{ ")?;
                write_joined(f, values, ", ")?;
                f.write_str(" }")
            }
            Expr::SetRef(name) => write!(f, "@{}", Name(name)),
        }
    }
}

/// Whether an `==` match must spell out its operator: nft reads an implicit operator on a
/// flag type (`ct state new`) as a flag test and cannot parse `numgen ... 0` or `x & y 0`.
fn eq_needs_operator(left: &Expr, right: &Expr) -> bool {
    matches!(left, Expr::Bitwise { .. } | Expr::NumgenRandom { .. })
        || matches!(left, Expr::Ct(CtKey::State | CtKey::Status))
        || matches!(right, Expr::AnonSet(_) | Expr::SetRef(_))
}

/// A statement rendered in the context of a table family (`dnat ip to` in `inet` tables).
struct InFamily<'a, T>(&'a T, Option<Family>);

impl Display for InFamily<'_, Stmt> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Stmt::Match { left, op, right } => match op {
                CmpOp::In => write!(f, "{left} {right}"),
                CmpOp::Ne => write!(f, "{left} != {right}"),
                CmpOp::Eq if eq_needs_operator(left, right) => write!(f, "{left} == {right}"),
                CmpOp::Eq => write!(f, "{left} {right}"),
            },
            Stmt::Vmap { key, map } => write!(f, "{key} vmap @{}", Name(map)),
            Stmt::Verdict(v) => write!(f, "{v}"),
            Stmt::Dnat { addr, port } => {
                f.write_str("dnat ")?;
                if self.1 == Some(Family::Inet) {
                    f.write_str(if addr.is_ipv4() { "ip " } else { "ip6 " })?;
                }
                match (addr, port) {
                    (IpAddr::V6(a), Some(p)) => write!(f, "to [{a}]:{p}"),
                    (a, Some(p)) => write!(f, "to {a}:{p}"),
                    (a, None) => write!(f, "to {a}"),
                }
            }
            Stmt::Masquerade { fully_random } => {
                f.write_str("masquerade")?;
                if *fully_random {
                    f.write_str(" fully-random")?;
                }
                Ok(())
            }
            Stmt::SetMark(e) => write!(f, "meta mark set {e}"),
            Stmt::Reject(RejectKind::PortUnreachable) => f.write_str("reject"),
            Stmt::Reject(RejectKind::TcpReset) => f.write_str("reject with tcp reset"),
            Stmt::Counter => f.write_str("counter"),
            Stmt::CounterMap { key, map } => write!(f, "counter name {key} map @{}", Name(map)),
            Stmt::UpdateSet { set, key } => write!(f, "update @{} {{ {key} }}", Name(set)),
        }
    }
}

impl Display for Stmt {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        InFamily(self, None).fmt(f)
    }
}

impl Display for InFamily<'_, Rule> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, stmt) in self.0.stmts.list().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            InFamily(stmt, self.1).fmt(f)?;
        }
        if let Some(c) = &self.0.comment {
            if !self.0.stmts.is_empty() {
                f.write_str(" ")?;
            }
            Comment(c).fmt(f)?;
        }
        Ok(())
    }
}

impl Display for Rule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        InFamily(self, None).fmt(f)
    }
}

impl Display for Element {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_joined(f, &self.key.values()[..], " . ")?;
        if let Some(c) = &self.comment {
            write!(f, " {}", Comment(c))?;
        }
        if let Some(v) = &self.value {
            write!(f, " : {v}")?;
        }
        Ok(())
    }
}

/// The `type ... hook ... priority ...; policy ...;` line of a base chain.
impl Display for BaseChain {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {} hook {} priority {}; policy {};",
            self.chain_type.keyword(),
            self.hook.keyword(),
            self.priority,
            self.policy.keyword()
        )
    }
}

/// The declaration lines of a set (`type`, `flags`, `timeout`, `comment`), without elements.
fn set_declaration_lines(set: &Set) -> Vec<String> {
    let mut lines = Vec::new();
    let mut ty = set
        .key
        .iter()
        .map(|t| t.keyword())
        .collect::<Vec<_>>()
        .join(" . ");
    if let Some(v) = set.value {
        ty.push_str(" : ");
        ty.push_str(v.keyword());
    }
    lines.push(format!("type {ty}"));
    if !set.flags.is_empty() {
        let flags: Vec<_> = set.flags.iter().map(|f| f.keyword()).collect();
        lines.push(format!("flags {}", flags.join(",")));
    }
    if let Some(t) = set.timeout_secs {
        lines.push(format!("timeout {t}s"));
    }
    if let Some(c) = &set.comment {
        lines.push(Comment(c).to_string());
    }
    lines
}

fn set_keyword(set: &Set) -> &'static str {
    if set.is_map() { "map" } else { "set" }
}

/// Writes a set block at one level of indentation (inside a table block).
impl Display for Set {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "\t{} {} {{", set_keyword(self), Name(&self.name))?;
        for line in set_declaration_lines(self) {
            writeln!(f, "\t\t{line}")?;
        }
        if !self.elements.is_empty() {
            writeln!(f, "\t\telements = {{")?;
            let last = self.elements.len() - 1;
            for (i, element) in self.elements.values().enumerate() {
                let sep = if i == last { "" } else { "," };
                writeln!(f, "\t\t\t{element}{sep}")?;
            }
            writeln!(f, "\t\t}}")?;
        }
        writeln!(f, "\t}}")
    }
}

impl Display for InFamily<'_, Chain> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let chain = self.0;
        writeln!(f, "\tchain {} {{", Name(&chain.name))?;
        if let Some(c) = &chain.comment {
            writeln!(f, "\t\t{}", Comment(c))?;
        }
        if let Some(base) = &chain.base {
            writeln!(f, "\t\t{base}")?;
        }
        for rule in &chain.rules {
            writeln!(f, "\t\t{}", InFamily(rule, self.1))?;
        }
        writeln!(f, "\t}}")
    }
}

/// Writes a chain block at one level of indentation (inside a table block).
impl Display for Chain {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        InFamily(self, None).fmt(f)
    }
}

/// Writes `table FAMILY NAME { ... }`: comment, counters (one line each, as a block),
/// sets and maps, then chains.
impl Display for Table {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {} {} {{", self.family, Name(&self.name))?;
        if let Some(c) = &self.comment {
            writeln!(f, "\t{}", Comment(c))?;
        }
        let mut first = true;
        for name in self.counters.keys() {
            first = false;
            writeln!(f, "\tcounter {} {{ }}", Name(name))?;
        }
        for set in self.sets.values() {
            if !std::mem::take(&mut first) {
                f.write_str("\n")?;
            }
            set.fmt(f)?;
        }
        for chain in self.chains.values() {
            if !std::mem::take(&mut first) {
                f.write_str("\n")?;
            }
            InFamily(chain, Some(self.family)).fmt(f)?;
        }
        writeln!(f, "}}")
    }
}

/// Writes every table, separated by a blank line: the script `nft -f` loads from scratch.
impl Display for Ruleset {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, table) in self.tables.values().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            table.fmt(f)?;
        }
        Ok(())
    }
}

/// `family name` with the name made safe.
struct TableRef<'a>(&'a TableId);

impl Display for TableRef<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.family, Name(&self.0.name))
    }
}

/// The `{ type ...; comment "..."; }` suffix of `add chain`, empty for a plain regular chain.
fn chain_spec(chain: &Chain) -> String {
    let mut parts = String::new();
    if let Some(base) = &chain.base {
        let _ = write!(parts, " {base}");
    }
    if let Some(c) = &chain.comment {
        let _ = write!(parts, " {};", Comment(c));
    }
    if parts.is_empty() {
        parts
    } else {
        format!(" {{{parts} }}")
    }
}

fn write_elements<'e>(
    f: &mut Formatter<'_>,
    elements: impl IntoIterator<Item = &'e Element>,
    keys_only: bool,
) -> fmt::Result {
    f.write_str("{ ")?;
    for (i, e) in elements.into_iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        if keys_only {
            write_joined(f, &e.key.values()[..], " . ")?;
        } else {
            e.fmt(f)?;
        }
    }
    f.write_str(" }")
}

impl Display for Op {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddTable(t) => {
                write!(f, "add table {}", TableRef(&t.id()))?;
                if let Some(c) = &t.comment {
                    write!(f, " {{ {}; }}", Comment(c))?;
                }
                Ok(())
            }
            Op::DeleteTable(t) => write!(f, "delete table {}", TableRef(t)),
            Op::AddChain { table, chain } => write!(
                f,
                "add chain {} {}{}",
                TableRef(table),
                Name(&chain.name),
                chain_spec(chain)
            ),
            Op::FlushChain { table, chain } => {
                write!(f, "flush chain {} {}", TableRef(table), Name(chain))
            }
            Op::DeleteChain { table, chain } => {
                write!(f, "delete chain {} {}", TableRef(table), Name(chain))
            }
            Op::AddRule { table, chain, rule } => write!(
                f,
                "add rule {} {} {}",
                TableRef(table),
                Name(chain),
                InFamily(rule, Some(table.family))
            ),
            Op::AddSet { table, set } => {
                let decl = set_declaration_lines(set).join("; ");
                let kw = set_keyword(set);
                write!(
                    f,
                    "add {kw} {} {} {{ {decl}; }}",
                    TableRef(table),
                    Name(&set.name)
                )
            }
            Op::DeleteSet { table, set } => {
                write!(f, "delete set {} {}", TableRef(table), Name(set))
            }
            Op::AddElements {
                table,
                set,
                elements,
            } => {
                write!(f, "add element {} {} ", TableRef(table), Name(set))?;
                write_elements(f, elements, false)
            }
            Op::DeleteElements {
                table,
                set,
                elements,
            } => {
                write!(f, "delete element {} {} ", TableRef(table), Name(set))?;
                write_elements(f, elements, true)
            }
            Op::AddCounter { table, counter } => {
                write!(f, "add counter {} {}", TableRef(table), Name(counter))
            }
            Op::DeleteCounter { table, counter } => {
                write!(f, "delete counter {} {}", TableRef(table), Name(counter))
            }
            Op::CreateTable(t) => {
                // One command per line, like a transaction. A set's elements are written
                // from the set in one command: nothing is copied, and libnftables
                // keeps less after a few big commands than after many small ones.
                let (declarations, filled, rules) = crate::transaction::creation_stages(t);
                let id = t.id();
                let mut first = true;
                let mut separate = |f: &mut Formatter<'_>| {
                    if !std::mem::replace(&mut first, false) {
                        writeln!(f)?;
                    }
                    Ok(())
                };
                for op in declarations {
                    separate(f)?;
                    write!(f, "{op}")?;
                }
                for set in filled {
                    separate(f)?;
                    write!(f, "add element {} {} ", TableRef(&id), Name(&set.name))?;
                    write_elements(f, set.elements.values(), false)?;
                }
                for op in rules {
                    separate(f)?;
                    write!(f, "{op}")?;
                }
                Ok(())
            }
        }
    }
}

/// Whether an op renders to nothing (nft refuses an empty element list; it changes nothing).
pub(crate) fn op_is_noop(op: &Op) -> bool {
    matches!(
        op,
        Op::AddElements { elements, .. } | Op::DeleteElements { elements, .. } if elements.is_empty()
    )
}

/// Writes one command per line, in order: the script `nft -f` runs as one transaction.
impl Display for Transaction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // A table's creation renders itself (see `Op::CreateTable`), many lines at once.
        for op in self.ops.iter().filter(|op| !op_is_noop(op)) {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "render_nft_tests.rs"]
mod tests;
