//! Transactions: the ordered list of operations that turns one ruleset into another.
//!
//! A transaction is what `diff` produces and what the controller hands to libnftables as
//! one netlink batch (all or nothing). The verbs are nft's own: add, flush, delete.

use std::collections::HashSet;

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

    /// Number of operations (one per `Op`; an `AddElements` of many elements is one).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Number of object-level operations, the measure of a minimal transaction: a chain
    /// rewrite (`FlushChain` then its `AddRule`s) or a new chain with its rules counts 1,
    /// each element of `AddElements`/`DeleteElements` counts 1, every other op counts 1.
    /// An `AddRule` to a chain not flushed or added earlier in the transaction counts 1.
    pub fn object_operations(&self) -> usize {
        let mut rewritten: HashSet<(&TableId, &str)> = HashSet::new();
        let mut count = 0;
        for op in &self.ops {
            count += match op {
                Op::FlushChain { table, chain } => {
                    rewritten.insert((table, chain.as_str()));
                    1
                }
                Op::AddChain { table, chain } => {
                    rewritten.insert((table, chain.name.as_str()));
                    1
                }
                Op::AddRule { table, chain, .. } => {
                    usize::from(!rewritten.contains(&(table, chain.as_str())))
                }
                Op::AddElements { elements, .. } | Op::DeleteElements { elements, .. } => {
                    elements.len()
                }
                _ => 1,
            };
        }
        count
    }
}

/// The ops that create `ruleset` where none of its tables exist, in an order where every
/// reference resolves: tables, counter objects, sets and maps (declarations), chains
/// (declarations), set elements (verdicts may name chains, counter maps name counters),
/// then rules (which may name sets and chains).
pub fn creation_ops(ruleset: &crate::model::Ruleset) -> Vec<Op> {
    creation_ops_of(ruleset.tables.values())
}

/// The ops that create `table` where it does not exist, in the order of [`creation_ops`].
pub fn table_creation_ops(table: &crate::model::Table) -> Vec<Op> {
    creation_ops_of(std::iter::once(table))
}

fn creation_ops_of<'a>(tables: impl Iterator<Item = &'a crate::model::Table> + Clone) -> Vec<Op> {
    let mut ops: Vec<Op> = tables
        .clone()
        .map(|t| Op::AddTable(t.declaration()))
        .collect();
    for t in tables.clone() {
        ops.extend(t.counters.keys().map(|c| Op::AddCounter {
            table: t.id(),
            counter: c.clone(),
        }));
    }
    for t in tables.clone() {
        ops.extend(t.sets.values().map(|s| Op::AddSet {
            table: t.id(),
            set: s.declaration(),
        }));
    }
    for t in tables.clone() {
        ops.extend(t.chains.values().map(|c| Op::AddChain {
            table: t.id(),
            chain: c.declaration(),
        }));
    }
    for t in tables.clone() {
        ops.extend(
            t.sets
                .values()
                .filter(|s| !s.elements.is_empty())
                .map(|s| Op::AddElements {
                    table: t.id(),
                    set: s.name.clone(),
                    elements: s.elements.values().cloned().collect(),
                }),
        );
    }
    for t in tables {
        for c in t.chains.values() {
            ops.extend(c.rules.iter().map(|r| Op::AddRule {
                table: t.id(),
                chain: c.name.clone(),
                rule: r.clone(),
            }));
        }
    }
    ops
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
