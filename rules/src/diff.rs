//! `diff(old, new)`: the minimal transaction that turns one ruleset into another.
//!
//! Minimal means: unchanged objects produce no ops, set elements are added and deleted one
//! by one, and a chain whose rules changed is flushed and refilled (nft cannot replace a rule
//! in place without handles, which an incremental sync never lists). Declarations that
//! changed (a set's type or flags, a base chain's hook) are deleted and recreated, and so is
//! everything that referred to them.
//!
//! The transaction is ordered so that every intermediate state is one the kernel accepts:
//!
//! 1. delete removed tables, add new tables, sets and chains (declarations only);
//! 2. delete stale elements, flush every chain whose rules change or that must go
//!    (this removes every reference to what is about to be deleted);
//! 3. delete sets, then chains (referrers before referents, by the old reference graph),
//!    then counter objects (no element names them any more after steps 2 and 3);
//! 4. re-add recreated declarations, then add elements, then rules.
//!
//! After step 2 the reference graph is a subgraph of the old one, and every edge added in
//! step 4 belongs to the new one, so no step can close a loop if the new ruleset has none.
//! The walk over tables, sets, chains and elements is a merge of sorted maps, restricted to
//! the shards of chains and elements whose content digests differ (see [`crate::digest`]):
//! proportional to what changed, not to the size of the rulesets, and nothing is cloned but
//! what goes into the transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;

use crate::expr::Value;
use crate::graph::{ChainGraph, rule_refers_to_set};
use crate::model::{Chain, Element, Ruleset, Set, Table, TableId};
use crate::transaction::{Op, Transaction};

/// Why two rulesets could not be diffed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// An object is stored under a key that is not its own name (a corrupted model).
    #[error("{what} stored under {key:?} is named {name:?}")]
    CheckKey {
        what: &'static str,
        key: String,
        name: String,
    },
}

/// Which maps hold a key: one side, or both.
enum Side<'a, V> {
    Old(&'a V),
    New(&'a V),
    Both(&'a V, &'a V),
}

/// Merge-walks two sorted maps, yielding each key once with where it occurs.
struct Merge<'a, K: 'a, V: 'a, I: Iterator<Item = (&'a K, &'a V)>> {
    old: Peekable<I>,
    new: Peekable<I>,
}

impl<'a, K: Ord + 'a, V: 'a, I: Iterator<Item = (&'a K, &'a V)>> Iterator for Merge<'a, K, V, I> {
    type Item = (&'a K, Side<'a, V>);

    fn next(&mut self) -> Option<Self::Item> {
        let order = match (self.old.peek(), self.new.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        Some(match order {
            std::cmp::Ordering::Less => {
                let (k, v) = self.old.next()?;
                (k, Side::Old(v))
            }
            std::cmp::Ordering::Greater => {
                let (k, v) = self.new.next()?;
                (k, Side::New(v))
            }
            std::cmp::Ordering::Equal => {
                let (k, a) = self.old.next()?;
                let (_, b) = self.new.next()?;
                (k, Side::Both(a, b))
            }
        })
    }
}

fn merge<'a, K: Ord, V>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> Merge<'a, K, V, std::collections::btree_map::Iter<'a, K, V>> {
    Merge {
        old: old.iter().peekable(),
        new: new.iter().peekable(),
    }
}

/// The ops of a transaction, collected per step and concatenated in step order.
#[derive(Default)]
struct Steps {
    delete_tables: Vec<Op>,
    add_declarations: Vec<Op>,
    delete_elements: Vec<Op>,
    flushes: Vec<Op>,
    delete_sets: Vec<Op>,
    delete_chains: Vec<Op>,
    delete_counters: Vec<Op>,
    re_add_declarations: Vec<Op>,
    add_elements: Vec<Op>,
    add_rules: Vec<Op>,
}

impl Steps {
    fn into_transaction(self) -> Transaction {
        let ops = [
            self.delete_tables,
            self.add_declarations,
            self.delete_elements,
            self.flushes,
            self.delete_sets,
            self.delete_chains,
            self.delete_counters,
            self.re_add_declarations,
            self.add_elements,
            self.add_rules,
        ];
        Transaction {
            ops: ops.into_iter().flatten().collect(),
        }
    }

    /// Creates a whole table: one op, with the declarations, since everything in it refers
    /// only to what it holds itself. The clone shares the table's contents.
    fn create_table(&mut self, table: &Table) {
        self.add_declarations.push(Op::CreateTable(table.clone()));
    }
}

/// The minimal, kernel-valid transaction that turns `old` into `new`.
///
/// `new` is assumed valid (see [`crate::graph::validate`]); the transaction is then valid at
/// every step. `diff(x, x)` is empty.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Result<Transaction, DiffError> {
    let mut steps = Steps::default();
    for (id, side) in merge(&old.tables, &new.tables) {
        match side {
            Side::Old(_) => steps.delete_tables.push(Op::DeleteTable(id.clone())),
            Side::New(t) => {
                check_key("table", &id.to_string(), &t.id().to_string())?;
                steps.create_table(t);
            }
            Side::Both(o, n) if o.declaration() != n.declaration() || o.id() != n.id() => {
                check_key("table", &id.to_string(), &n.id().to_string())?;
                steps.delete_tables.push(Op::DeleteTable(id.clone()));
                steps.create_table(n);
            }
            Side::Both(o, n) => TableDiff::new(id, o, n)?.emit(&mut steps),
        }
    }
    Ok(steps.into_transaction())
}

fn check_key(what: &'static str, key: &str, name: &str) -> Result<(), DiffError> {
    if key == name {
        Ok(())
    } else {
        Err(DiffError::CheckKey {
            what,
            key: key.to_string(),
            name: name.to_string(),
        })
    }
}

/// What changed between two versions of one table.
struct TableDiff<'a> {
    id: &'a TableId,
    old: &'a Table,
    new: &'a Table,
    removed_sets: Vec<&'a str>,
    added_sets: Vec<&'a Set>,
    recreated_sets: BTreeSet<&'a str>,
    kept_sets: Vec<(&'a Set, &'a Set)>,
    removed_chains: BTreeSet<&'a str>,
    added_chains: Vec<&'a Chain>,
    recreated_chains: BTreeSet<&'a str>,
    /// Chains in both versions that are flushed and refilled.
    refilled_chains: BTreeSet<&'a str>,
    added_counters: Vec<&'a str>,
    removed_counters: Vec<&'a str>,
}

impl<'a> TableDiff<'a> {
    fn new(id: &'a TableId, old: &'a Table, new: &'a Table) -> Result<Self, DiffError> {
        let mut d = TableDiff {
            id,
            old,
            new,
            removed_sets: Vec::new(),
            added_sets: Vec::new(),
            recreated_sets: BTreeSet::new(),
            kept_sets: Vec::new(),
            removed_chains: BTreeSet::new(),
            added_chains: Vec::new(),
            recreated_chains: BTreeSet::new(),
            refilled_chains: BTreeSet::new(),
            added_counters: Vec::new(),
            removed_counters: Vec::new(),
        };
        d.compare_counters()?;
        d.compare_sets()?;
        d.compare_chains()?;
        d.refill_referrers_of_recreated();
        Ok(d)
    }

    /// Walks only the counter shards whose digests differ. A counter is only a name, so it
    /// is added or removed, never changed.
    fn compare_counters(&mut self) -> Result<(), DiffError> {
        let shards = self.old.counters.shard_pairs(&self.new.counters, false);
        for (name, side) in shards.flat_map(|(o, n)| merge(o, n)) {
            match side {
                Side::Old(_) => self.removed_counters.push(name),
                Side::New(c) => {
                    check_key("counter", name, &c.name)?;
                    self.added_counters.push(name);
                }
                Side::Both(..) => {}
            }
        }
        self.added_counters.sort_unstable();
        self.removed_counters.sort_unstable();
        Ok(())
    }

    fn compare_sets(&mut self) -> Result<(), DiffError> {
        for (name, side) in merge(&self.old.sets, &self.new.sets) {
            match side {
                Side::Old(_) => self.removed_sets.push(name),
                Side::New(s) => {
                    check_key("set", name, &s.name)?;
                    self.added_sets.push(s);
                }
                Side::Both(o, n) if !o.same_declaration(n) => {
                    check_key("set", name, &n.name)?;
                    self.recreated_sets.insert(name);
                }
                Side::Both(o, n) => self.kept_sets.push((o, n)),
            }
        }
        Ok(())
    }

    /// Walks only the chain shards whose digests differ; inside them, a chain whose rules
    /// digest is unchanged is unchanged (see [`crate::digest`]), so no rule is read.
    fn compare_chains(&mut self) -> Result<(), DiffError> {
        let shards = self.old.chains.shard_pairs(&self.new.chains, false);
        for (name, side) in shards.flat_map(|(o, n)| merge(o, n)) {
            match side {
                Side::Old(_) => {
                    self.removed_chains.insert(name);
                }
                Side::New(c) => {
                    check_key("chain", name, &c.name)?;
                    self.added_chains.push(c);
                }
                Side::Both(o, n) if !o.same_declaration(n) => {
                    check_key("chain", name, &n.name)?;
                    self.recreated_chains.insert(name);
                }
                Side::Both(o, n) if o.rules.digest() != n.rules.digest() => {
                    self.refilled_chains.insert(name);
                }
                Side::Both(..) => {}
            }
        }
        self.added_chains
            .sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    /// Kept chains whose rules refer to a recreated set or jump to a recreated chain must be
    /// flushed before the deletion and refilled after the re-creation.
    fn refill_referrers_of_recreated(&mut self) {
        if self.recreated_sets.is_empty() && self.recreated_chains.is_empty() {
            return;
        }
        for (name, chain) in &self.old.chains {
            if !self.new.chains.contains_key(name) || self.recreated_chains.contains(name.as_str())
            {
                continue;
            }
            let refers = chain.rules.iter().any(|r| {
                r.stmts.referring().iter().any(|s| {
                    s.target()
                        .is_some_and(|t| self.recreated_chains.contains(t))
                }) || self
                    .recreated_sets
                    .iter()
                    .any(|set| rule_refers_to_set(r, set))
            });
            if refers {
                self.refilled_chains.insert(name);
            }
        }
    }

    fn emit(self, steps: &mut Steps) {
        let id = self.id;
        for name in &self.added_counters {
            steps.add_declarations.push(Op::AddCounter {
                table: id.clone(),
                counter: name.to_string(),
            });
        }
        for name in &self.removed_counters {
            steps.delete_counters.push(Op::DeleteCounter {
                table: id.clone(),
                counter: name.to_string(),
            });
        }
        for set in &self.added_sets {
            steps.add_declarations.push(Op::AddSet {
                table: id.clone(),
                set: set.declaration(),
            });
            push_elements(
                &mut steps.add_elements,
                id,
                &set.name,
                set.elements.values(),
            );
        }
        for chain in &self.added_chains {
            steps.add_declarations.push(Op::AddChain {
                table: id.clone(),
                chain: chain.declaration(),
            });
            push_rules(&mut steps.add_rules, id, chain);
        }
        for (o, n) in &self.kept_sets {
            self.element_diff(o, n, steps);
        }
        self.emit_flushes(steps);
        self.emit_deletes(steps);
        self.emit_re_creations(steps);
        for name in &self.refilled_chains {
            push_rules(&mut steps.add_rules, id, &self.new.chains[*name]);
        }
    }

    fn element_diff(&self, old: &Set, new: &Set, steps: &mut Steps) {
        let mut deleted = Vec::new();
        let mut added = Vec::new();
        let points_to_recreated = |e: &Element| match &e.value {
            Some(Value::Verdict(v)) => v
                .target()
                .is_some_and(|t| self.recreated_chains.contains(t)),
            _ => false,
        };
        // Elements pointing to a recreated chain must be re-added even when unchanged, and
        // unchanged shards can hold them: then (rarely) every shard is walked.
        let all = new.is_map() && !self.recreated_chains.is_empty();
        let shards = old.elements.shard_pairs(&new.elements, all);
        for (_, side) in shards.flat_map(|(o, n)| merge(o, n)) {
            match side {
                Side::Old(e) => deleted.push(e.clone()),
                Side::New(e) => added.push(e.clone()),
                Side::Both(o, n)
                    if o.value != n.value || o.comment != n.comment || points_to_recreated(o) =>
                {
                    deleted.push(o.clone());
                    added.push(n.clone());
                }
                Side::Both(..) => {}
            }
        }
        deleted.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        added.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        if !deleted.is_empty() {
            steps.delete_elements.push(Op::DeleteElements {
                table: self.id.clone(),
                set: new.name.clone(),
                elements: deleted,
            });
        }
        if !added.is_empty() {
            steps.add_elements.push(Op::AddElements {
                table: self.id.clone(),
                set: new.name.clone(),
                elements: added,
            });
        }
    }

    fn emit_flushes(&self, steps: &mut Steps) {
        let flushed = self
            .refilled_chains
            .iter()
            .chain(&self.removed_chains)
            .chain(&self.recreated_chains)
            .collect::<BTreeSet<_>>();
        for name in flushed {
            if !self.old.chains[*name].rules.is_empty() {
                steps.flushes.push(Op::FlushChain {
                    table: self.id.clone(),
                    chain: name.to_string(),
                });
            }
        }
    }

    fn emit_deletes(&self, steps: &mut Steps) {
        let sets = self.removed_sets.iter().chain(&self.recreated_sets);
        for name in sets {
            steps.delete_sets.push(Op::DeleteSet {
                table: self.id.clone(),
                set: name.to_string(),
            });
        }
        let doomed: BTreeSet<&str> = self
            .removed_chains
            .union(&self.recreated_chains)
            .copied()
            .collect();
        if doomed.is_empty() {
            return;
        }
        for name in ChainGraph::new(self.old).referrers_first(&doomed) {
            steps.delete_chains.push(Op::DeleteChain {
                table: self.id.clone(),
                chain: name.to_string(),
            });
        }
    }

    fn emit_re_creations(&self, steps: &mut Steps) {
        let id = self.id;
        for name in &self.recreated_chains {
            let chain = &self.new.chains[*name];
            steps.re_add_declarations.push(Op::AddChain {
                table: id.clone(),
                chain: chain.declaration(),
            });
            push_rules(&mut steps.add_rules, id, chain);
        }
        for name in &self.recreated_sets {
            let set = &self.new.sets[*name];
            steps.re_add_declarations.push(Op::AddSet {
                table: id.clone(),
                set: set.declaration(),
            });
            push_elements(
                &mut steps.add_elements,
                id,
                &set.name,
                set.elements.values(),
            );
        }
    }
}

fn push_elements<'a>(
    ops: &mut Vec<Op>,
    table: &TableId,
    set: &str,
    elements: impl ExactSizeIterator<Item = &'a Element>,
) {
    if elements.len() > 0 {
        ops.push(Op::AddElements {
            table: table.clone(),
            set: set.to_string(),
            elements: elements.cloned().collect(),
        });
    }
}

fn push_rules(ops: &mut Vec<Op>, table: &TableId, chain: &Chain) {
    ops.extend(chain.rules.iter().map(|rule| Op::AddRule {
        table: table.clone(),
        chain: chain.name.clone(),
        rule: rule.clone(),
    }));
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
