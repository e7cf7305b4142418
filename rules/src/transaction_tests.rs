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
