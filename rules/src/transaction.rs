//! Transactions: the ordered list of operations that turns one ruleset into another.
//!
//! A transaction is what `diff` produces and what the controller hands to libnftables as
//! one netlink batch (all or nothing). The verbs are nft's own: add, flush, delete.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::model::{Chain, Element, Rule, Set, Table, TableId};

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `add table` (declaration only: no chains or sets).
    AddTable(Table),
    /// `delete table` (with everything in it).
    DeleteTable(TableId),
    /// `add chain` (declaration only: rules come as `AddRule`).
    AddChain { table: TableId, chain: Chain },
    /// `flush chain`: remove every rule.
    FlushChain { table: TableId, chain: String },
    /// `delete chain`: the chain must be empty and unreferenced.
    DeleteChain { table: TableId, chain: String },
    /// `add rule` (appended at the end of the chain).
    AddRule {
        table: TableId,
        chain: String,
        rule: Rule,
    },
    /// `add set` / `add map` (declaration only: elements come as `AddElements`).
    AddSet { table: TableId, set: Set },
    /// `delete set` / `delete map`.
    DeleteSet { table: TableId, set: String },
    /// `add element`.
    AddElements {
        table: TableId,
        set: String,
        elements: Vec<Element>,
    },
    /// `delete element` (only the keys matter).
    DeleteElements {
        table: TableId,
        set: String,
        elements: Vec<Element>,
    },
    /// `add counter`: declares a named counter object (zero counts).
    AddCounter { table: TableId, counter: String },
    /// `delete counter`: no map element may still name it.
    DeleteCounter { table: TableId, counter: String },
    /// A whole table with everything in it: the ops of [`table_creation_ops`], in their
    /// order. Kept as one op so that a transaction creating large tables (a full sync)
    /// holds a clone of each table, which shares its contents with the ruleset it came
    /// from (see `digest`), instead of a copy of every rule and element.
    /// [`Transaction::iter`] expands it.
    CreateTable(Table),
}

/// An ordered list of operations, applied atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub ops: Vec<Op>,
}

impl Transaction {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations, with [`Op::CreateTable`] expanded (an `AddElements` of many
    /// elements is one).
    pub fn len(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                Op::CreateTable(t) => creation_op_count(t),
                _ => 1,
            })
            .sum()
    }

    /// The operations in order, with every [`Op::CreateTable`] expanded into the ops that
    /// create its table; those are made one at a time, as the iterator advances.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, Op>> + '_ {
        self.ops
            .iter()
            .flat_map(|op| -> Box<dyn Iterator<Item = Cow<'_, Op>> + '_> {
                match op {
                    Op::CreateTable(t) => Box::new(creating(t).map(Cow::Owned)),
                    other => Box::new(std::iter::once(Cow::Borrowed(other))),
                }
            })
    }

    /// Number of object-level operations, the measure of a minimal transaction: a chain
    /// rewrite (`FlushChain` then its `AddRule`s) or a new chain with its rules counts 1,
    /// each element of `AddElements`/`DeleteElements` counts 1, every other op counts 1.
    /// An `AddRule` to a chain not flushed or added earlier in the transaction counts 1.
    pub fn object_operations(&self) -> usize {
        let mut rewritten: HashMap<TableId, HashSet<String>> = HashMap::new();
        let mut count = 0;
        for op in self.iter() {
            count += match op.as_ref() {
                Op::FlushChain { table, chain } => {
                    let chains = rewritten.entry(table.clone()).or_default();
                    chains.insert(chain.clone());
                    1
                }
                Op::AddChain { table, chain } => {
                    let chains = rewritten.entry(table.clone()).or_default();
                    chains.insert(chain.name.clone());
                    1
                }
                Op::AddRule { table, chain, .. } => usize::from(
                    !rewritten
                        .get(table)
                        .is_some_and(|chains| chains.contains(chain)),
                ),
                Op::AddElements { elements, .. } | Op::DeleteElements { elements, .. } => {
                    elements.len()
                }
                _ => 1,
            };
        }
        count
    }
}

/// The ops that create `ruleset` where none of its tables exist: table after table (no
/// table refers to another), each in an order where every reference resolves: the table,
/// counter objects, sets and maps (declarations), chains (declarations), set elements
/// (verdicts may name chains, counter maps name counters), then rules (which may name sets
/// and chains).
pub fn creation_ops(ruleset: &crate::model::Ruleset) -> Vec<Op> {
    ruleset.tables.values().flat_map(creating).collect()
}

/// The ops that create `table` where it does not exist, in the order of [`creation_ops`].
pub fn table_creation_ops(table: &crate::model::Table) -> Vec<Op> {
    creating(table).collect()
}

/// [`table_creation_ops`], made one at a time.
pub(crate) fn creating(t: &Table) -> impl Iterator<Item = Op> + '_ {
    let (declarations, filled, rules) = creation_stages(t);
    let id = t.id();
    declarations
        .chain(filled.flat_map(move |s| adding_elements(id.clone(), s)))
        .chain(rules)
}

/// The three stages of a table's creation: the declarations (table, counters, sets,
/// chains), then the sets that have elements (whose `AddElements` come next), then the
/// rules. A renderer that can write a set's elements from the set itself takes the
/// stages apart; [`creating`] puts them together.
pub(crate) fn creation_stages(
    t: &Table,
) -> (
    impl Iterator<Item = Op> + '_,
    impl Iterator<Item = &crate::model::Set> + '_,
    impl Iterator<Item = Op> + '_,
) {
    let id = t.id();
    let (counters, sets, chains) = (id.clone(), id.clone(), id.clone());
    let declarations = std::iter::once(Op::AddTable(t.declaration()))
        .chain(t.counters.keys().map(move |c| Op::AddCounter {
            table: counters.clone(),
            counter: c.clone(),
        }))
        .chain(t.sets.values().map(move |s| Op::AddSet {
            table: sets.clone(),
            set: s.declaration(),
        }))
        .chain(t.chains.values().map(move |c| Op::AddChain {
            table: chains.clone(),
            chain: c.declaration(),
        }));
    let filled = t.sets.values().filter(|s| !s.elements.is_empty());
    let rules = t.chains.values().flat_map(move |c| {
        let id = id.clone();
        c.rules.iter().map(move |r| Op::AddRule {
            table: id.clone(),
            chain: c.name.clone(),
            rule: r.clone(),
        })
    });
    (declarations, filled, rules)
}

/// The most elements one `AddElements` of a table's creation holds: a set of 100k
/// elements is added in pieces, so that making the ops never copies a whole set.
pub const ELEMENTS_PER_OP: usize = 1024;

/// The `AddElements` ops that fill set `s` of `table`, [`ELEMENTS_PER_OP`] elements each
/// (none for an empty set), each made when the iterator gets to it.
fn adding_elements(table: TableId, s: &crate::model::Set) -> impl Iterator<Item = Op> + '_ {
    let mut elements = s.elements.values().peekable();
    std::iter::from_fn(move || {
        elements.peek()?;
        Some(Op::AddElements {
            table: table.clone(),
            set: s.name.clone(),
            elements: elements.by_ref().take(ELEMENTS_PER_OP).cloned().collect(),
        })
    })
}

/// How many ops [`creating`] makes for `t`, without making them.
fn creation_op_count(t: &Table) -> usize {
    let element_ops: usize = t
        .sets
        .values()
        .map(|s| s.elements.len().div_ceil(ELEMENTS_PER_OP))
        .sum();
    let rules: usize = t.chains.values().map(|c| c.rules.len()).sum();
    1 + t.counters.len() + t.sets.len() + t.chains.len() + element_ops + rules
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
