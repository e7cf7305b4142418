//! A strict simulation of how the kernel runs a transaction, op by op, on the model.
//!
//! It exists to check `diff` without a kernel: every op is refused exactly where nf_tables
//! would refuse it (a reference to a missing chain or set, a jump into a loop or to a base
//! chain, deleting a chain that is referenced or not empty, deleting a set a rule uses or a
//! counter a map element names,
//! deleting something missing, adding to a missing table). `add` of something that exists
//! with the same declaration is a no-op, as with nft's `add`; so is adding an element that
//! exists unchanged. The kernel keeps a transaction all or nothing, and so does `apply_to`:
//! it works on a copy and returns it only if every op succeeded.

use crate::expr::{Stmt, Value};
use crate::graph::{ChainGraph, map_counters, map_targets, rule_refers_to_set, stmt_set_refs};
use crate::model::{Element, Rule, Ruleset, Set, Table, TableId};
use crate::render_nft::op_is_noop;
use crate::transaction::{Op, Transaction};

/// Why the kernel would refuse an op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("table does not exist")]
    MissingTable,
    #[error("chain {0} does not exist")]
    MissingChain(String),
    #[error("set {0} does not exist")]
    MissingSet(String),
    #[error("exists with a different declaration")]
    DeclarationDiffers,
    #[error("chain is not empty")]
    ChainNotEmpty,
    #[error("still referenced by {0}")]
    StillReferenced(String),
    #[error("jump to base chain {0}")]
    JumpToBaseChain(String),
    #[error("jump loop through chains {}", .0.join(", "))]
    Loop(Vec<String>),
    #[error("vmap on {0}, which is not a verdict map")]
    NotVerdictMap(String),
    #[error("counter lookup in {0}, which is not a counter map")]
    NotCounterMap(String),
    #[error("counter {0} does not exist")]
    MissingCounter(String),
    #[error("element {0} has {1} key parts, the set's key has {2}")]
    KeyArity(String, usize, usize),
    #[error("element {0} has a value but the set is not a map, or the reverse")]
    ValueShape(String),
    #[error("element {0} exists with a different value")]
    ElementExists(String),
    #[error("element {0} does not exist")]
    MissingElement(String),
}

/// The op of a transaction that the kernel would refuse, and why. Variants are named after
/// the op; `index` is its position in the transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("op {index}: add table {table}: {refusal}")]
    AddTable {
        index: usize,
        table: TableId,
        refusal: Refusal,
    },
    #[error("op {index}: delete table {table}: {refusal}")]
    DeleteTable {
        index: usize,
        table: TableId,
        refusal: Refusal,
    },
    #[error("op {index}: add chain {table} {chain}: {refusal}")]
    AddChain {
        index: usize,
        table: TableId,
        chain: String,
        refusal: Refusal,
    },
    #[error("op {index}: flush chain {table} {chain}: {refusal}")]
    FlushChain {
        index: usize,
        table: TableId,
        chain: String,
        refusal: Refusal,
    },
    #[error("op {index}: delete chain {table} {chain}: {refusal}")]
    DeleteChain {
        index: usize,
        table: TableId,
        chain: String,
        refusal: Refusal,
    },
    #[error("op {index}: add rule {table} {chain}: {refusal}")]
    AddRule {
        index: usize,
        table: TableId,
        chain: String,
        refusal: Refusal,
    },
    #[error("op {index}: add set {table} {set}: {refusal}")]
    AddSet {
        index: usize,
        table: TableId,
        set: String,
        refusal: Refusal,
    },
    #[error("op {index}: delete set {table} {set}: {refusal}")]
    DeleteSet {
        index: usize,
        table: TableId,
        set: String,
        refusal: Refusal,
    },
    #[error("op {index}: add element {table} {set}: {refusal}")]
    AddElements {
        index: usize,
        table: TableId,
        set: String,
        refusal: Refusal,
    },
    #[error("op {index}: delete element {table} {set}: {refusal}")]
    DeleteElements {
        index: usize,
        table: TableId,
        set: String,
        refusal: Refusal,
    },
    #[error("op {index}: add counter {table} {counter}: {refusal}")]
    AddCounter {
        index: usize,
        table: TableId,
        counter: String,
        refusal: Refusal,
    },
    #[error("op {index}: delete counter {table} {counter}: {refusal}")]
    DeleteCounter {
        index: usize,
        table: TableId,
        counter: String,
        refusal: Refusal,
    },
}

impl Transaction {
    /// Runs the transaction on a copy of `ruleset` the way the kernel would; all or nothing.
    pub fn apply_to(&self, ruleset: &Ruleset) -> Result<Ruleset, ApplyError> {
        let mut state = ruleset.clone();
        for (index, op) in self.iter().enumerate() {
            apply_op(&mut state, index, &op)?;
        }
        Ok(state)
    }
}

/// Runs one op on `state`, or says which step refused it.
pub fn apply_op(state: &mut Ruleset, index: usize, op: &Op) -> Result<(), ApplyError> {
    if op_is_noop(op) {
        return Ok(());
    }
    run_op(state, op).map_err(|refusal| name_refusal(index, op, refusal))
}

fn name_refusal(index: usize, op: &Op, refusal: Refusal) -> ApplyError {
    let t = |t: &TableId, n: &str| (t.clone(), n.to_string());
    match op {
        Op::CreateTable(table) => ApplyError::AddTable {
            index,
            table: table.id(),
            refusal,
        },
        Op::AddTable(table) => ApplyError::AddTable {
            index,
            table: table.id(),
            refusal,
        },
        Op::DeleteTable(table) => ApplyError::DeleteTable {
            index,
            table: table.clone(),
            refusal,
        },
        Op::AddChain { table, chain } => {
            let (table, chain) = t(table, &chain.name);
            ApplyError::AddChain {
                index,
                table,
                chain,
                refusal,
            }
        }
        Op::FlushChain { table, chain } => {
            let (table, chain) = t(table, chain);
            ApplyError::FlushChain {
                index,
                table,
                chain,
                refusal,
            }
        }
        Op::DeleteChain { table, chain } => {
            let (table, chain) = t(table, chain);
            ApplyError::DeleteChain {
                index,
                table,
                chain,
                refusal,
            }
        }
        Op::AddRule { table, chain, .. } => {
            let (table, chain) = t(table, chain);
            ApplyError::AddRule {
                index,
                table,
                chain,
                refusal,
            }
        }
        Op::AddSet { table, set } => {
            let (table, set) = t(table, &set.name);
            ApplyError::AddSet {
                index,
                table,
                set,
                refusal,
            }
        }
        Op::DeleteSet { table, set } => {
            let (table, set) = t(table, set);
            ApplyError::DeleteSet {
                index,
                table,
                set,
                refusal,
            }
        }
        Op::AddElements { table, set, .. } => {
            let (table, set) = t(table, set);
            ApplyError::AddElements {
                index,
                table,
                set,
                refusal,
            }
        }
        Op::DeleteElements { table, set, .. } => {
            let (table, set) = t(table, set);
            ApplyError::DeleteElements {
                index,
                table,
                set,
                refusal,
            }
        }
        Op::AddCounter { table, counter } => {
            let (table, counter) = t(table, counter);
            ApplyError::AddCounter {
                index,
                table,
                counter,
                refusal,
            }
        }
        Op::DeleteCounter { table, counter } => {
            let (table, counter) = t(table, counter);
            ApplyError::DeleteCounter {
                index,
                table,
                counter,
                refusal,
            }
        }
    }
}

fn table_mut<'a>(state: &'a mut Ruleset, id: &TableId) -> Result<&'a mut Table, Refusal> {
    state.table_mut(id).ok_or(Refusal::MissingTable)
}

fn run_op(state: &mut Ruleset, op: &Op) -> Result<(), Refusal> {
    match op {
        Op::AddTable(t) => match state.table(&t.id()) {
            Some(existing) if existing.declaration() == t.declaration() => Ok(()),
            Some(_) => Err(Refusal::DeclarationDiffers),
            None => {
                state.insert_table(t.declaration());
                Ok(())
            }
        },
        Op::DeleteTable(id) => state
            .tables
            .remove(id)
            .map(drop)
            .ok_or(Refusal::MissingTable),
        Op::AddChain { table, chain } => {
            let t = table_mut(state, table)?;
            match t.chains.get(&chain.name) {
                Some(existing) if existing.same_declaration(chain) => Ok(()),
                Some(_) => Err(Refusal::DeclarationDiffers),
                None => {
                    t.insert_chain(chain.declaration());
                    Ok(())
                }
            }
        }
        Op::FlushChain { table, chain } => {
            let t = table_mut(state, table)?;
            t.chains
                .update(chain.as_str(), |c| c.rules.clear())
                .ok_or_else(|| Refusal::MissingChain(chain.clone()))
        }
        Op::DeleteChain { table, chain } => delete_chain(table_mut(state, table)?, chain),
        Op::AddRule { table, chain, rule } => add_rule(table_mut(state, table)?, chain, rule),
        Op::AddSet { table, set } => {
            let t = table_mut(state, table)?;
            match t.sets.get(&set.name) {
                Some(existing) if existing.same_declaration(set) => Ok(()),
                Some(_) => Err(Refusal::DeclarationDiffers),
                None => {
                    t.insert_set(set.declaration());
                    Ok(())
                }
            }
        }
        Op::DeleteSet { table, set } => delete_set(table_mut(state, table)?, set),
        Op::AddElements {
            table,
            set,
            elements,
        } => add_elements(table_mut(state, table)?, set, elements),
        Op::DeleteElements {
            table,
            set,
            elements,
        } => {
            let t = table_mut(state, table)?;
            let s = t
                .sets
                .get_mut(set)
                .ok_or_else(|| Refusal::MissingSet(set.clone()))?;
            for e in elements {
                s.elements
                    .remove(&e.key)
                    .ok_or_else(|| Refusal::MissingElement(key_text(e)))?;
            }
            Ok(())
        }
        Op::AddCounter { table, counter } => {
            table_mut(state, table)?.insert_counter(counter.as_str());
            Ok(())
        }
        Op::DeleteCounter { table, counter } => delete_counter(table_mut(state, table)?, counter),
        Op::CreateTable(t) => crate::transaction::creating(t)
            .filter(|op| !op_is_noop(op))
            .try_for_each(|op| run_op(state, &op)),
    }
}

fn delete_counter(t: &mut Table, counter: &str) -> Result<(), Refusal> {
    if !t.counters.contains_key(counter) {
        return Err(Refusal::MissingCounter(counter.to_string()));
    }
    if let Some(set) = t
        .sets
        .values()
        .find(|s| map_counters(s).any(|c| c == counter))
    {
        return Err(Refusal::StillReferenced(format!("map {}", set.name)));
    }
    t.counters.remove(counter);
    Ok(())
}

fn key_text(e: &Element) -> String {
    e.key
        .values()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" . ")
}

fn delete_chain(t: &mut Table, chain: &str) -> Result<(), Refusal> {
    let c = t
        .chains
        .get(chain)
        .ok_or_else(|| Refusal::MissingChain(chain.to_string()))?;
    if !c.rules.is_empty() {
        return Err(Refusal::ChainNotEmpty);
    }
    let by_rule = t.chains.values().find(|c| {
        c.rules
            .iter()
            .flat_map(|r| r.stmts.referring())
            .any(|s| s.target() == Some(chain))
    });
    if let Some(referrer) = by_rule {
        return Err(Refusal::StillReferenced(format!("chain {}", referrer.name)));
    }
    if let Some(set) = t
        .sets
        .values()
        .find(|s| map_targets(s).any(|target| target == chain))
    {
        return Err(Refusal::StillReferenced(format!("map {}", set.name)));
    }
    t.chains.remove(chain);
    Ok(())
}

fn delete_set(t: &mut Table, set: &str) -> Result<(), Refusal> {
    if !t.sets.contains_key(set) {
        return Err(Refusal::MissingSet(set.to_string()));
    }
    let referrer = t
        .chains
        .values()
        .find(|c| c.rules.iter().any(|r| rule_refers_to_set(r, set)));
    if let Some(c) = referrer {
        return Err(Refusal::StillReferenced(format!("chain {}", c.name)));
    }
    t.sets.remove(set);
    Ok(())
}

/// Checks that `target` exists and is a regular chain.
fn check_target(t: &Table, target: &str) -> Result<(), Refusal> {
    match t.chains.get(target) {
        None => Err(Refusal::MissingChain(target.to_string())),
        Some(c) if c.base.is_some() => Err(Refusal::JumpToBaseChain(target.to_string())),
        Some(_) => Ok(()),
    }
}

/// Refuses the state if its chain graph now has a loop (checked after each add).
fn check_loops(t: &Table) -> Result<(), Refusal> {
    match ChainGraph::new(t).loops().into_iter().next() {
        Some(chains) => Err(Refusal::Loop(chains)),
        None => Ok(()),
    }
}

fn add_rule(t: &mut Table, chain: &str, rule: &Rule) -> Result<(), Refusal> {
    if !t.chains.contains_key(chain) {
        return Err(Refusal::MissingChain(chain.to_string()));
    }
    for stmt in rule.stmts.referring() {
        if let Some(target) = stmt.target() {
            check_target(t, target)?;
        }
        let mut missing = None;
        stmt_set_refs(stmt, &mut |s| {
            if missing.is_none() && !t.sets.contains_key(s) {
                missing = Some(s.to_string());
            }
        });
        if let Some(set) = missing {
            return Err(Refusal::MissingSet(set));
        }
        if let Stmt::Vmap { map, .. } = stmt
            && t.sets[map].value != Some(crate::model::DataType::Verdict)
        {
            return Err(Refusal::NotVerdictMap(map.clone()));
        }
        if let Stmt::CounterMap { map, .. } = stmt
            && t.sets[map].value != Some(crate::model::DataType::Counter)
        {
            return Err(Refusal::NotCounterMap(map.clone()));
        }
    }
    t.chains.update(chain, |c| c.push(rule.clone()));
    let adds_edges = rule
        .stmts
        .referring()
        .iter()
        .any(|s| s.target().is_some() || matches!(s, Stmt::Vmap { .. }));
    if adds_edges {
        check_loops(t)?;
    }
    Ok(())
}

fn check_element(t: &Table, set: &Set, e: &Element) -> Result<(), Refusal> {
    if e.key.len() != set.key.len() {
        return Err(Refusal::KeyArity(key_text(e), e.key.len(), set.key.len()));
    }
    if e.value.is_some() != set.is_map() {
        return Err(Refusal::ValueShape(key_text(e)));
    }
    if let Some(Value::Verdict(v)) = &e.value
        && let Some(target) = v.target()
    {
        check_target(t, target)?;
    }
    if let Some(Value::ObjRef(counter)) = &e.value
        && !t.counters.contains_key(&**counter)
    {
        return Err(Refusal::MissingCounter(counter.to_string()));
    }
    Ok(())
}

fn add_elements(t: &mut Table, set: &str, elements: &[Element]) -> Result<(), Refusal> {
    let s = t
        .sets
        .get(set)
        .ok_or_else(|| Refusal::MissingSet(set.to_string()))?;
    let mut fresh = Vec::new();
    for e in elements {
        check_element(t, s, e)?;
        match s.elements.get(&e.key) {
            Some(existing) if existing.value == e.value => {}
            Some(_) => return Err(Refusal::ElementExists(key_text(e))),
            None => fresh.push(e.clone()),
        }
    }
    let jumps = fresh
        .iter()
        .any(|e| matches!(&e.value, Some(Value::Verdict(v)) if v.target().is_some()));
    if let Some(s) = t.sets.get_mut(set) {
        for e in fresh {
            s.insert(e);
        }
    }
    if jumps {
        check_loops(t)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
