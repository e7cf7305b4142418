//! Tests of transaction accounting.

use super::*;
use crate::expr::{Stmt, Value, Verdict};
use crate::model::{Family, Rule};

fn id() -> TableId {
    TableId::new(Family::Ip, "t")
}

fn rule() -> Rule {
    Rule::new(vec![Stmt::Verdict(Verdict::Accept)])
}

fn add_rule(chain: &str) -> Op {
    Op::AddRule {
        table: id(),
        chain: chain.to_owned(),
        rule: rule(),
    }
}

#[test]
fn chain_rewrite_and_new_chain_count_once_and_elements_count_each() {
    let element = |i: u32| Element::key(vec![Value::Int(i)]);
    let tx = Transaction {
        ops: vec![
            Op::AddChain {
                table: id(),
                chain: Chain::regular("new"),
            },
            Op::FlushChain {
                table: id(),
                chain: "old".to_owned(),
            },
            Op::DeleteElements {
                table: id(),
                set: "s".to_owned(),
                elements: vec![element(1)],
            },
            Op::AddElements {
                table: id(),
                set: "s".to_owned(),
                elements: vec![element(2), element(3)],
            },
            add_rule("new"),
            add_rule("new"),
            add_rule("old"),
            add_rule("old"),
            add_rule("kept"),
        ],
    };
    assert_eq!(tx.len(), 9);
    // new chain 1, rewrite 1, 1 deleted element, 2 added, 1 rule appended to "kept".
    assert_eq!(tx.object_operations(), 6);
}

#[test]
fn a_big_set_is_created_in_pieces_that_together_hold_every_element_once() {
    let mut table = crate::model::Table::new(Family::Ip, "t");
    let mut set = crate::model::Set::set("big", vec![crate::model::DataType::Ipv4Addr]);
    let count = 2 * ELEMENTS_PER_OP + 452;
    for i in 0..count {
        let addr = std::net::Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap());
        set.insert(Element::key(vec![Value::Ipv4(addr)]));
    }
    table.insert_set(set.clone());
    table.insert_set(crate::model::Set::set(
        "empty",
        vec![crate::model::DataType::Ipv4Addr],
    ));
    let tx = Transaction {
        ops: vec![Op::CreateTable(table.clone())],
    };
    let pieces: Vec<usize> = tx
        .iter()
        .filter_map(|op| match op.as_ref() {
            Op::AddElements { set, elements, .. } => {
                assert_eq!(set, "big", "an empty set gets no AddElements");
                Some(elements.len())
            }
            _ => None,
        })
        .collect();
    assert_eq!(pieces, [ELEMENTS_PER_OP, ELEMENTS_PER_OP, 452]);
    assert_eq!(tx.len(), tx.iter().count(), "len counts the pieces");
    assert_eq!(
        tx.object_operations(),
        1 + 2 + count,
        "table, two sets, each element"
    );
    let mut added: Vec<Element> = tx
        .iter()
        .filter_map(|op| match op.into_owned() {
            Op::AddElements { elements, .. } => Some(elements),
            _ => None,
        })
        .flatten()
        .collect();
    added.sort();
    let mut expected: Vec<Element> = set.elements.values().cloned().collect();
    expected.sort();
    assert_eq!(added, expected);
    let mut ruleset = crate::model::Ruleset::new();
    ruleset.insert_table(table.clone());
    assert_eq!(table_creation_ops(&table), creation_ops(&ruleset));
}
