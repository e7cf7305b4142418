//! The chain-reference graph of a table: who jumps where, directly or through a verdict map.
//!
//! The kernel refuses a rule or map element that names a missing chain or set, a jump
//! into a loop, and the deletion of a chain that something still jumps to. This module
//! makes those facts explicit: [`ChainGraph`] holds an edge `C -> T` for every rule of
//! chain `C` that jumps/goes to `T`, and for every element of a verdict map that `C` looks
//! up with `vmap` whose verdict jumps/goes to `T`. [`validate`] rejects dangling references
//! and loops; `diff` uses the graph to delete referrers before referents.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;

/// A fixed hasher: the graph's node order is insertion order, and stays deterministic.
type Hasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

use crate::expr::{Expr, Stmt, Value};
use crate::model::{Rule, Set, Table, TableId};

/// Why a table's references are not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// A rule or map element jumps to a chain that does not exist.
    #[error("table {table}: {from} jumps to missing chain {to}")]
    MissingChain {
        table: TableId,
        from: String,
        to: String,
    },
    /// A rule or map element jumps to a base chain (the kernel refuses this).
    #[error("table {table}: {from} jumps to base chain {to}")]
    JumpToBaseChain {
        table: TableId,
        from: String,
        to: String,
    },
    /// A rule refers to a set or map that does not exist.
    #[error("table {table}: chain {chain} refers to missing set {set}")]
    MissingSet {
        table: TableId,
        chain: String,
        set: String,
    },
    /// A map element names a counter object that does not exist.
    #[error("table {table}: map {map} names missing counter {counter}")]
    MissingCounter {
        table: TableId,
        map: String,
        counter: String,
    },
    /// A comment longer than the kernel takes ([`crate::MAX_COMMENT_LEN`] bytes).
    #[error("table {table}: the comment of {object} is {len} bytes long, over the kernel's {max}")]
    CommentTooLong {
        table: TableId,
        object: String,
        len: usize,
        max: usize,
    },
    /// Chains that jump into each other (directly or through verdict maps).
    #[error("table {table}: jump loop through chains {}", chains.join(", "))]
    Loop { table: TableId, chains: Vec<String> },
}

/// Calls `f` with the name of every set or map a statement refers to.
pub fn stmt_set_refs<'a>(stmt: &'a Stmt, f: &mut impl FnMut(&'a str)) {
    fn expr_refs<'a>(e: &'a Expr, f: &mut impl FnMut(&'a str)) {
        match e {
            Expr::SetRef(name) => f(name),
            Expr::Concat(parts) => parts.iter().for_each(|p| expr_refs(p, f)),
            Expr::Bitwise { left, .. } => expr_refs(left, f),
            _ => {}
        }
    }
    match stmt {
        Stmt::Match { left, right, .. } => {
            expr_refs(left, f);
            expr_refs(right, f);
        }
        Stmt::Vmap { key, map } => {
            expr_refs(key, f);
            f(map);
        }
        Stmt::UpdateSet { set, key } => {
            f(set);
            expr_refs(key, f);
        }
        Stmt::CounterMap { key, map } => {
            expr_refs(key, f);
            f(map);
        }
        Stmt::SetMark(e) => expr_refs(e, f),
        _ => {}
    }
}

/// Whether any statement of `rule` refers to the set `name`.
pub fn rule_refers_to_set(rule: &Rule, name: &str) -> bool {
    let mut found = false;
    for stmt in rule.stmts.referring() {
        stmt_set_refs(stmt, &mut |s| found |= s == name);
    }
    found
}

/// The counter objects the elements of a `counter` map name.
pub fn map_counters(set: &Set) -> impl Iterator<Item = &str> {
    set.elements.values().filter_map(|e| match &e.value {
        Some(Value::ObjRef(name)) => Some(&**name),
        _ => None,
    })
}

/// The chains the elements of a verdict map jump/go to.
pub fn map_targets(set: &Set) -> impl Iterator<Item = &str> {
    set.elements.values().filter_map(|e| match &e.value {
        Some(Value::Verdict(v)) => v.target(),
        _ => None,
    })
}

/// The chain-reference graph of one table.
#[derive(Debug, Clone)]
pub struct ChainGraph<'a> {
    graph: DiGraphMap<&'a str, (), Hasher>,
}

impl<'a> ChainGraph<'a> {
    /// Builds the graph: one node per chain, edges from rules and from vmap'd map elements.
    pub fn new(table: &'a Table) -> Self {
        let mut graph = DiGraphMap::with_capacity(table.chains.len(), 0);
        for name in table.chains.keys() {
            graph.add_node(name.as_str());
        }
        for (name, chain) in &table.chains {
            for stmt in chain.rules.iter().flat_map(|r| r.stmts.referring()) {
                if let Some(target) = stmt.target() {
                    graph.add_edge(name.as_str(), target, ());
                }
                if let Stmt::Vmap { map, .. } = stmt {
                    for target in table.sets.get(map).into_iter().flat_map(map_targets) {
                        graph.add_edge(name.as_str(), target, ());
                    }
                }
            }
        }
        ChainGraph { graph }
    }

    /// Chains that `chain` jumps/goes to.
    pub fn targets(&self, chain: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        self.graph
            .neighbors_directed(chain, petgraph::Direction::Outgoing)
    }

    /// Chains that jump/go to `chain`.
    pub fn referrers(&self, chain: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        self.graph
            .neighbors_directed(chain, petgraph::Direction::Incoming)
    }

    /// Groups of chains that form jump loops (each sorted; a self-jump is a group of one).
    pub fn loops(&self) -> Vec<Vec<String>> {
        let mut loops: Vec<Vec<String>> = tarjan_scc(&self.graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || self.graph.contains_edge(scc[0], scc[0]))
            .map(|scc| {
                let mut names: Vec<String> = scc.into_iter().map(String::from).collect();
                names.sort();
                names
            })
            .collect();
        loops.sort();
        loops
    }

    /// `chains` ordered so that every referrer comes before the chains it refers to
    /// (the order to delete them in). Chains in loops keep their name order.
    pub fn referrers_first(&self, chains: &BTreeSet<&'a str>) -> Vec<&'a str> {
        // tarjan_scc yields components in reverse topological order (referents first).
        let mut order: Vec<&'a str> = tarjan_scc(&self.graph)
            .into_iter()
            .flat_map(|mut scc| {
                scc.sort_unstable();
                scc
            })
            .filter(|c| chains.contains(c))
            .collect();
        order.reverse();
        order
    }
}

/// Checks that every reference in `table` resolves and that no chain jumps into a loop.
pub fn validate(table: &Table) -> Result<(), GraphError> {
    let id = table.id();
    for (name, chain) in &table.chains {
        for stmt in chain.rules.iter().flat_map(|r| r.stmts.referring()) {
            if let Some(target) = stmt.target() {
                check_target(table, &id, || format!("chain {name}"), target)?;
            }
            let mut missing = None;
            stmt_set_refs(stmt, &mut |set| {
                if missing.is_none() && !table.sets.contains_key(set) {
                    missing = Some(set.to_string());
                }
            });
            if let Some(set) = missing {
                return Err(GraphError::MissingSet {
                    table: id,
                    chain: name.clone(),
                    set,
                });
            }
        }
    }
    for (name, set) in &table.sets {
        for target in map_targets(set) {
            check_target(table, &id, || format!("map {name}"), target)?;
        }
        if let Some(counter) = map_counters(set).find(|c| !table.counters.contains_key(*c)) {
            return Err(GraphError::MissingCounter {
                table: id,
                map: name.clone(),
                counter: counter.to_string(),
            });
        }
    }
    check_comments(table, &id)?;
    match ChainGraph::new(table).loops().into_iter().next() {
        Some(chains) => Err(GraphError::Loop { table: id, chains }),
        None => Ok(()),
    }
}

/// Every comment of the table (its own, its chains', rules', sets' and elements') fits.
fn check_comments(table: &Table, id: &TableId) -> Result<(), GraphError> {
    let too_long = |object: String, comment: Option<&str>| match comment {
        Some(c) if c.len() > crate::MAX_COMMENT_LEN => Err(GraphError::CommentTooLong {
            table: id.clone(),
            object,
            len: c.len(),
            max: crate::MAX_COMMENT_LEN,
        }),
        _ => Ok(()),
    };
    too_long("the table".into(), table.comment.as_deref())?;
    for (name, chain) in &table.chains {
        too_long(format!("chain {name}"), chain.comment.as_deref())?;
        for (i, rule) in chain.rules.iter().enumerate() {
            too_long(format!("rule {i} of chain {name}"), rule.comment.as_deref())?;
        }
    }
    for (name, set) in &table.sets {
        too_long(format!("set {name}"), set.comment.as_deref())?;
        for (key, element) in set.elements.iter() {
            too_long(
                format!("element {key:?} of {name}"),
                element.comment.as_deref(),
            )?;
        }
    }
    Ok(())
}

fn check_target(
    table: &Table,
    id: &TableId,
    from: impl Fn() -> String,
    target: &str,
) -> Result<(), GraphError> {
    match table.chains.get(target) {
        None => Err(GraphError::MissingChain {
            table: id.clone(),
            from: from(),
            to: target.to_string(),
        }),
        Some(c) if c.base.is_some() => Err(GraphError::JumpToBaseChain {
            table: id.clone(),
            from: from(),
            to: target.to_string(),
        }),
        Some(_) => Ok(()),
    }
}

/// Validates every table of a ruleset.
pub fn validate_ruleset(ruleset: &crate::model::Ruleset) -> Result<(), GraphError> {
    ruleset.tables.values().try_for_each(validate)
}

/// For each chain, the chains that refer to it (used to find who must be flushed first).
pub fn referrer_map(table: &Table) -> BTreeMap<&str, BTreeSet<&str>> {
    let graph = ChainGraph::new(table);
    table
        .chains
        .keys()
        .map(|c| (c.as_str(), graph.referrers(c).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Verdict;
    use crate::fixtures::every_construct;
    use crate::model::{Chain, DataType, Element, Family};

    fn jump(to: &str) -> Rule {
        Rule::new(vec![Stmt::Verdict(Verdict::Jump(to.into()))])
    }

    #[test]
    fn a_comment_over_128_bytes_is_refused_naming_its_object_and_a_bounded_one_passes() {
        let long = "x".repeat(129);
        let mut t = table_with(vec![Chain::regular("c")]);
        let mut set = crate::model::Set::set("s", vec![DataType::Ipv4Addr]);
        let key =
            crate::model::ElementKey::from(vec![crate::expr::Value::Ipv4([198, 19, 0, 1].into())]);
        set.elements.insert(
            key.clone(),
            Element {
                key,
                value: None,
                comment: Some(long.clone().into()),
            },
        );
        t.insert_set(set);
        let err = validate(&t).unwrap_err();
        assert!(
            matches!(&err, GraphError::CommentTooLong { object, len: 129, .. } if object.contains("of s")),
            "{err}"
        );
        let bounded = crate::bounded_comment(long);
        assert_eq!(bounded.len(), crate::MAX_COMMENT_LEN);
        assert!(bounded.ends_with("..."));
        assert_eq!(crate::bounded_comment("short".into()), "short");
        // Cut on a character boundary.
        let wide = crate::bounded_comment("é".repeat(100));
        assert!(wide.len() <= crate::MAX_COMMENT_LEN && wide.ends_with("..."));
    }

    fn table_with(chains: Vec<Chain>) -> Table {
        let mut t = Table::new(Family::Ip, "t");
        for c in chains {
            t.insert_chain(c);
        }
        t
    }

    #[test]
    fn the_every_construct_fixture_is_valid() {
        assert_eq!(validate_ruleset(&every_construct()), Ok(()));
    }

    #[test]
    fn a_jump_to_a_missing_chain_names_both_ends() {
        let t = table_with(vec![Chain::regular("a").with_rule(jump("nowhere"))]);
        let err = validate(&t).unwrap_err();
        assert_eq!(
            err.to_string(),
            "table ip t: chain a jumps to missing chain nowhere"
        );
    }

    #[test]
    fn a_map_element_to_a_missing_chain_is_dangling() {
        let mut t = table_with(vec![]);
        let mut m = Set::map("m", vec![DataType::InetService], DataType::Verdict);
        m.insert(Element::mapping(
            vec![Value::Port(1)],
            Value::Verdict(Verdict::Goto("gone".into())),
        ));
        t.insert_set(m);
        assert!(matches!(validate(&t), Err(GraphError::MissingChain { to, .. }) if to == "gone"));
    }

    #[test]
    fn a_reference_to_a_missing_set_is_rejected() {
        let t = table_with(vec![Chain::regular("a").with_rule(Rule::new(vec![
            Stmt::Vmap {
                key: Expr::Payload(crate::expr::PayloadField::ThDport),
                map: "m".into(),
            },
        ]))]);
        assert!(matches!(validate(&t), Err(GraphError::MissingSet { set, .. }) if set == "m"));
    }

    #[test]
    fn a_loop_through_a_verdict_map_is_found_and_named() {
        let mut t = table_with(vec![
            Chain::regular("a").with_rule(Rule::new(vec![Stmt::Vmap {
                key: Expr::Payload(crate::expr::PayloadField::ThDport),
                map: "m".into(),
            }])),
            Chain::regular("b").with_rule(jump("a")),
            Chain::regular("c"),
        ]);
        let mut m = Set::map("m", vec![DataType::InetService], DataType::Verdict);
        m.insert(Element::mapping(
            vec![Value::Port(1)],
            Value::Verdict(Verdict::Goto("b".into())),
        ));
        t.insert_set(m);
        assert_eq!(
            validate(&t),
            Err(GraphError::Loop {
                table: t.id(),
                chains: vec!["a".into(), "b".into()]
            })
        );
    }

    #[test]
    fn referrers_come_before_their_targets() {
        let t = table_with(vec![
            Chain::regular("z").with_rule(jump("a")),
            Chain::regular("a").with_rule(jump("m")),
            Chain::regular("m"),
        ]);
        let g = ChainGraph::new(&t);
        let all: BTreeSet<&str> = ["a", "m", "z"].into();
        assert_eq!(g.referrers_first(&all), vec!["z", "a", "m"]);
        assert_eq!(g.referrers("a").collect::<Vec<_>>(), vec!["z"]);
    }
}
