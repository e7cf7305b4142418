//! The typed nftables model: tables, chains, sets/maps with elements, and rules.
//!
//! Everything here is plain data with a total order, so that a ruleset is a value: two
//! rulesets built from the same input compare equal and render to the same bytes.
//! Collections are ordered maps keyed by name; rule order inside a chain is significant and
//! kept in [`Rules`]. Chains, rules and elements carry content digests (see
//! [`crate::digest`]) that only their own methods update, so `diff` can skip what is equal.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use crate::digest::{DigestMap, EntryDigest, digest};
pub use crate::element_key::ElementKey;
use crate::expr::Value;
use crate::object::Counter;
use crate::stmts::Stmts;

/// Address family of a table (`nft add table <family> <name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `ip`: IPv4 only.
    Ip,
    /// `ip6`: IPv6 only.
    Ip6,
    /// `inet`: both.
    Inet,
}

impl Family {
    /// The keyword nft uses for this family.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// Identity of a table: family and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    pub family: Family,
    pub name: String,
}

impl TableId {
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Self {
            family,
            name: name.into(),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

/// A whole ruleset: the tables one owner manages. Tables not in here are never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: BTreeMap<TableId, Table>,
}

impl Ruleset {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a table, replacing one with the same identity.
    pub fn insert_table(&mut self, table: Table) {
        self.tables.insert(table.id(), table);
    }

    pub fn table(&self, id: &TableId) -> Option<&Table> {
        self.tables.get(id)
    }

    pub fn table_mut(&mut self, id: &TableId) -> Option<&mut Table> {
        self.tables.get_mut(id)
    }
}

/// One table with its chains, sets (maps are sets with a value type) and counter objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    /// Leave `None`: nft 1.0.6 neither loads nor lists table comments through JSON, so a
    /// commented table never lists back equal (a full sync would recreate it).
    pub comment: Option<String>,
    /// Chains by name, sharded with digests: a diff walks only the shards that changed.
    pub chains: DigestMap<String, Chain>,
    pub sets: BTreeMap<String, Set>,
    /// Named counter objects by name, sharded with digests (thousands of them: one per
    /// service port), so a diff walks only the shards that changed.
    pub counters: DigestMap<String, Counter>,
}

impl Table {
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Self {
            family,
            name: name.into(),
            comment: None,
            chains: DigestMap::new(),
            sets: BTreeMap::new(),
            counters: DigestMap::new(),
        }
    }

    /// The table without chains, sets or counters: what `add table` creates.
    pub fn declaration(&self) -> Table {
        Table {
            family: self.family,
            name: self.name.clone(),
            comment: self.comment.clone(),
            chains: DigestMap::new(),
            sets: BTreeMap::new(),
            counters: DigestMap::new(),
        }
    }

    pub fn id(&self) -> TableId {
        TableId::new(self.family, self.name.clone())
    }

    /// Inserts a chain, replacing one with the same name.
    pub fn insert_chain(&mut self, chain: Chain) {
        self.chains.insert(chain.name.clone(), chain);
    }

    /// Inserts a set or map, replacing one with the same name.
    pub fn insert_set(&mut self, set: Set) {
        self.sets.insert(set.name.clone(), set);
    }

    /// Declares a counter object (a no-op if it exists).
    pub fn insert_counter(&mut self, name: impl Into<String>) {
        let counter = Counter::new(name);
        self.counters.insert(counter.name.clone(), counter);
    }
}

/// The type of a base chain (`type filter|nat|route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    pub fn keyword(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// The netfilter hook a base chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn keyword(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// Default verdict of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn keyword(self) -> &'static str {
        match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        }
    }
}

/// What makes a chain a base chain: its type, hook, numeric priority and policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseChain {
    pub chain_type: ChainType,
    pub hook: Hook,
    /// Numeric priority (`dstnat` = -100, `filter` = 0, `srcnat` = 100).
    pub priority: i32,
    pub policy: Policy,
}

/// A chain: a base chain (attached to a hook) or a regular chain (reached by jump/goto).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    /// Leave `None`: nft 1.0.6 neither loads nor lists chain comments through JSON.
    pub comment: Option<String>,
    pub rules: Rules,
}

impl EntryDigest<String> for Chain {
    /// Name, declaration and the digest of the rules (kept by [`Rules`]): no rule is read.
    fn entry_digest(&self, key_digest: u128) -> u128 {
        digest(&(
            key_digest,
            &self.name,
            &self.base,
            &self.comment,
            self.rules.digest(),
        ))
    }
}

/// The rules of a chain, in order, with a digest of their content.
///
/// Read through `Deref<Target = [Rule]>`; change only through `push`, `extend`, `insert`,
/// `retain` and `clear`. The digest is `digest(&rules)` (one pass over the whole sequence,
/// so it is order-sensitive), computed on first use after a change and cached: a chain is
/// built by many pushes and digested once, when it is inserted into its table. Every
/// mutation goes through `&mut self` and drops the cached value.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    digest: OnceLock<u128>,
}

impl Rules {
    pub fn new() -> Self {
        Self::default()
    }

    /// The order-sensitive content digest: equal rules give equal digests.
    pub fn digest(&self) -> u128 {
        *self.digest.get_or_init(|| digest(&self.rules))
    }

    /// Drops the cached digest: called by every method that changes the rules.
    fn changed(&mut self) {
        self.digest.take();
    }

    pub fn push(&mut self, rule: Rule) {
        self.changed();
        self.rules.push(rule);
    }

    pub fn clear(&mut self) {
        self.changed();
        self.rules.clear();
    }

    /// Inserts a rule at `index`, shifting the later ones (panics past the end, as `Vec`).
    pub fn insert(&mut self, index: usize, rule: Rule) {
        self.changed();
        self.rules.insert(index, rule);
    }

    /// Keeps the rules for which `keep` is true, in order.
    pub fn retain(&mut self, keep: impl FnMut(&Rule) -> bool) {
        self.changed();
        self.rules.retain(keep);
    }

    pub fn reserve_exact(&mut self, additional: usize) {
        self.rules.reserve_exact(additional);
    }
}

impl std::ops::Deref for Rules {
    type Target = [Rule];

    fn deref(&self) -> &[Rule] {
        &self.rules
    }
}

impl PartialEq for Rules {
    /// Exact equality; different digests (when both are known) prove a difference without
    /// reading the rules.
    fn eq(&self, other: &Self) -> bool {
        if let (Some(a), Some(b)) = (self.digest.get(), other.digest.get())
            && a != b
        {
            return false;
        }
        self.rules == other.rules
    }
}

impl Eq for Rules {}

impl Extend<Rule> for Rules {
    fn extend<I: IntoIterator<Item = Rule>>(&mut self, iter: I) {
        self.changed();
        self.rules.extend(iter);
    }
}

impl FromIterator<Rule> for Rules {
    fn from_iter<I: IntoIterator<Item = Rule>>(iter: I) -> Self {
        Vec::from_iter(iter).into()
    }
}

impl From<Vec<Rule>> for Rules {
    fn from(rules: Vec<Rule>) -> Self {
        Rules {
            rules,
            digest: OnceLock::new(),
        }
    }
}

impl<'a> IntoIterator for &'a Rules {
    type Item = &'a Rule;
    type IntoIter = std::slice::Iter<'a, Rule>;

    fn into_iter(self) -> Self::IntoIter {
        self.rules.iter()
    }
}

impl Chain {
    /// A regular chain with no rules.
    pub fn regular(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            base: None,
            comment: None,
            rules: Rules::new(),
        }
    }

    /// A base chain with no rules and policy accept.
    pub fn base(name: impl Into<String>, chain_type: ChainType, hook: Hook, priority: i32) -> Self {
        Self {
            name: name.into(),
            base: Some(BaseChain {
                chain_type,
                hook,
                priority,
                policy: Policy::Accept,
            }),
            comment: None,
            rules: Rules::new(),
        }
    }

    /// Appends a rule (builder style).
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn push(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// The chain without its rules: what `add chain` creates.
    pub fn declaration(&self) -> Chain {
        Chain {
            name: self.name.clone(),
            base: self.base.clone(),
            comment: self.comment.clone(),
            rules: Rules::new(),
        }
    }

    /// Whether only the declaration (not the rules) differs from `other`.
    pub fn same_declaration(&self, other: &Chain) -> bool {
        self.name == other.name && self.base == other.base && self.comment == other.comment
    }
}

/// One rule: statements evaluated left to right, with an optional comment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub stmts: Stmts,
    pub comment: Option<Box<str>>,
}

impl Rule {
    pub fn new(stmts: impl Into<Stmts>) -> Self {
        Self {
            stmts: stmts.into(),
            comment: None,
        }
    }

    pub fn with_comment(mut self, comment: impl Into<Box<str>>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}

/// The data types of set keys and map values (`type ipv4_addr . inet_service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataType {
    Ipv4Addr,
    Ipv6Addr,
    InetProto,
    InetService,
    Mark,
    Ifname,
    Verdict,
    /// A reference to a counter object (map values only: `type ... : counter`).
    Counter,
}

impl DataType {
    pub fn keyword(self) -> &'static str {
        match self {
            DataType::Ipv4Addr => "ipv4_addr",
            DataType::Ipv6Addr => "ipv6_addr",
            DataType::InetProto => "inet_proto",
            DataType::InetService => "inet_service",
            DataType::Mark => "mark",
            DataType::Ifname => "ifname",
            DataType::Verdict => "verdict",
            DataType::Counter => "counter",
        }
    }
}

/// Flags of a set (`flags interval, timeout`). Kept in a fixed order for rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetFlag {
    Constant,
    Interval,
    Timeout,
    /// Not listed by nft 1.0.6's JSON: do not use. A `timeout` set that a rule updates
    /// (`update @set`) is made dynamic by the kernel without it.
    Dynamic,
}

impl SetFlag {
    pub fn keyword(self) -> &'static str {
        match self {
            SetFlag::Constant => "constant",
            SetFlag::Interval => "interval",
            SetFlag::Timeout => "timeout",
            SetFlag::Dynamic => "dynamic",
        }
    }
}

/// A named set (no value type) or map (with a value type; `Verdict` makes a verdict map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    /// Key type; more than one entry is a concatenation.
    pub key: Vec<DataType>,
    /// Value type for maps; `None` for plain sets.
    pub value: Option<DataType>,
    /// Flags, sorted and deduplicated.
    pub flags: Vec<SetFlag>,
    /// Default element timeout in seconds (`timeout 10800s`), for sets with the timeout flag.
    pub timeout_secs: Option<u32>,
    /// Leave `None`: nft 1.0.6 lists set comments but its JSON parser ignores them.
    pub comment: Option<String>,
    /// Elements keyed by their key, sharded with digests; iterated in key order so
    /// rendering is deterministic.
    pub elements: DigestMap<ElementKey, Element>,
}

impl Set {
    /// A plain set with the given key type.
    #[allow(clippy::self_named_constructors)]
    pub fn set(name: impl Into<String>, key: Vec<DataType>) -> Self {
        Self {
            name: name.into(),
            key,
            value: None,
            flags: Vec::new(),
            timeout_secs: None,
            comment: None,
            elements: DigestMap::new(),
        }
    }

    /// A map from `key` to `value` (`DataType::Verdict` for a verdict map).
    pub fn map(name: impl Into<String>, key: Vec<DataType>, value: DataType) -> Self {
        Self {
            value: Some(value),
            ..Self::set(name, key)
        }
    }

    pub fn with_flag(mut self, flag: SetFlag) -> Self {
        if !self.flags.contains(&flag) {
            self.flags.push(flag);
            self.flags.sort();
        }
        self
    }

    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// Whether its elements are intervals (`flags interval`: prefixes, ranges).
    pub fn is_interval(&self) -> bool {
        self.flags.contains(&SetFlag::Interval)
    }

    /// Inserts an element, replacing one with the same key.
    pub fn insert(&mut self, element: Element) {
        self.elements.insert(element.key.clone(), element);
    }

    /// The set without its elements: what `add set` / `add map` creates.
    pub fn declaration(&self) -> Set {
        Set {
            name: self.name.clone(),
            key: self.key.clone(),
            value: self.value,
            flags: self.flags.clone(),
            timeout_secs: self.timeout_secs,
            comment: self.comment.clone(),
            elements: DigestMap::new(),
        }
    }

    /// Whether the declaration (everything but the elements) equals `other`'s.
    pub fn same_declaration(&self, other: &Set) -> bool {
        self.name == other.name
            && self.key == other.key
            && self.value == other.value
            && self.flags == other.flags
            && self.timeout_secs == other.timeout_secs
            && self.comment == other.comment
    }
}

/// A set or map element: key, value (maps only) and comment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    pub key: ElementKey,
    pub value: Option<Value>,
    pub comment: Option<Box<str>>,
}

impl EntryDigest<ElementKey> for Element {
    /// The map key's digest stands for the element's own key (they are equal when stored
    /// by [`Set::insert`]); a plain set element (no value, no comment) is just its key.
    fn entry_digest(&self, key_digest: u128) -> u128 {
        if self.value.is_none() && self.comment.is_none() {
            key_digest
        } else {
            digest(&(key_digest, &self.value, &self.comment))
        }
    }
}

impl Element {
    /// A set element.
    pub fn key(key: impl Into<ElementKey>) -> Self {
        Self {
            key: key.into(),
            value: None,
            comment: None,
        }
    }

    /// A map element.
    pub fn mapping(key: impl Into<ElementKey>, value: Value) -> Self {
        Self {
            key: key.into(),
            value: Some(value),
            comment: None,
        }
    }

    pub fn with_comment(mut self, comment: impl Into<Box<str>>) -> Self {
        self.comment = Some(comment.into());
        self
    }
}
