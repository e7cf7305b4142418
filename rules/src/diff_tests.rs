//! Unit tests for `diff`.
use super::*;
use crate::expr::{Expr, PayloadField, Stmt, Verdict};
use crate::fixtures::every_construct;
use crate::model::{DataType, Family, Rule, SetFlag};

fn ip() -> TableId {
    TableId::new(Family::Ip, "nftproxy")
}

fn table_mut(r: &mut Ruleset) -> &mut Table {
    r.table_mut(&ip()).unwrap()
}

fn checked(old: &Ruleset, new: &Ruleset) -> Transaction {
    let tx = diff(old, new).unwrap();
    assert_eq!(tx.apply_to(old).as_ref(), Ok(new), "transaction:\n{tx}");
    tx
}

#[test]
fn diff_of_a_ruleset_with_itself_is_empty() {
    let r = every_construct();
    assert!(diff(&r, &r).unwrap().is_empty());
}

#[test]
fn diff_from_nothing_creates_everything() {
    let r = every_construct();
    let tx = checked(&Ruleset::new(), &r);
    assert!(matches!(tx.ops[0], Op::CreateTable(_)), "{tx}");
    let expanded: Vec<_> = tx.iter().collect();
    assert!(matches!(expanded[0].as_ref(), Op::AddTable(_)));
    assert_eq!(expanded.len(), tx.len());
}

#[test]
fn diff_to_nothing_deletes_the_tables() {
    let r = every_construct();
    let tx = checked(&r, &Ruleset::new());
    assert_eq!(tx.len(), 2);
    assert!(tx.ops.iter().all(|op| matches!(op, Op::DeleteTable(_))));
}

#[test]
fn a_changed_element_value_is_deleted_then_added() {
    let old = every_construct();
    let mut new = old.clone();
    let map = table_mut(&mut new)
        .sets
        .get_mut("no-endpoint-services")
        .unwrap();
    let key = map.elements.keys().next().unwrap().clone();
    map.elements.get_mut(&key).unwrap().value = Some(Value::Verdict(Verdict::Accept));
    let tx = checked(&old, &new);
    assert_eq!(tx.len(), 2, "{tx}");
    assert!(matches!(&tx.ops[0], Op::DeleteElements { elements, .. } if elements.len() == 1));
    assert!(matches!(&tx.ops[1], Op::AddElements { elements, .. } if elements.len() == 1));
}

#[test]
fn a_changed_chain_is_flushed_and_refilled_and_nothing_else_moves() {
    let old = every_construct();
    let mut new = old.clone();
    let mut chain = table_mut(&mut new).chains.get_mut("reject-chain").unwrap();
    chain.push(Rule::new(vec![Stmt::Verdict(Verdict::Drop)]));
    drop(chain);
    let tx = checked(&old, &new);
    assert_eq!(tx.len(), 3, "{tx}");
    assert!(matches!(&tx.ops[0], Op::FlushChain { chain, .. } if chain == "reject-chain"));
}

#[test]
fn a_removed_service_chain_is_flushed_then_deleted_after_its_map_elements() {
    let old = every_construct();
    let mut new = old.clone();
    let t = table_mut(&mut new);
    let service = "service-ABCDEFGH-default/web/tcp/http";
    t.chains.remove(service);
    for set in t.sets.values_mut() {
        set.elements.retain(
            |_, e| !matches!(&e.value, Some(Value::Verdict(v)) if v.target() == Some(service)),
        );
    }
    let tx = checked(&old, &new);
    let pos = |f: &dyn Fn(&Op) -> bool| tx.ops.iter().position(f).unwrap();
    let flush = pos(&|op| matches!(op, Op::FlushChain { chain, .. } if chain == service));
    let delete = pos(&|op| matches!(op, Op::DeleteChain { chain, .. } if chain == service));
    let elements = pos(&|op| matches!(op, Op::DeleteElements { .. }));
    assert!(flush < delete && elements < delete, "{tx}");
}

#[test]
fn a_changed_set_declaration_recreates_it_and_refills_its_users() {
    let old = every_construct();
    let mut new = old.clone();
    let set = table_mut(&mut new).sets.get_mut("cluster-ips").unwrap();
    *set = set.clone().with_flag(SetFlag::Interval);
    let tx = checked(&old, &new);
    assert!(
        tx.ops
            .iter()
            .any(|op| matches!(op, Op::DeleteSet { set, .. } if set == "cluster-ips"))
    );
    assert!(
        tx.ops
            .iter()
            .any(|op| matches!(op, Op::FlushChain { chain, .. } if chain == "services"))
    );
}

#[test]
fn a_changed_base_chain_declaration_is_recreated() {
    let old = every_construct();
    let mut new = old.clone();
    let mut chain = table_mut(&mut new).chains.get_mut("nat-output").unwrap();
    chain.base.as_mut().unwrap().priority = -99;
    drop(chain);
    let tx = checked(&old, &new);
    assert!(
        tx.ops
            .iter()
            .any(|op| matches!(op, Op::DeleteChain { chain, .. } if chain == "nat-output"))
    );
}

#[test]
fn a_regular_chain_whose_comment_changes_is_recreated_with_its_referrers() {
    let old = every_construct();
    let mut new = old.clone();
    table_mut(&mut new)
        .chains
        .get_mut("reject-chain")
        .unwrap()
        .comment = Some("x".into());
    table_mut(&mut new)
        .chains
        .get_mut("services")
        .unwrap()
        .comment = Some("y".into());
    checked(&old, &new);
}

#[test]
fn swapping_the_direction_of_a_jump_never_forms_a_loop_midway() {
    let mut old = Ruleset::new();
    let mut t = Table::new(Family::Ip, "nftproxy");
    let jump = |to: &str| Rule::new(vec![Stmt::Verdict(Verdict::Jump(to.into()))]);
    t.insert_chain(Chain::regular("a").with_rule(jump("b")));
    t.insert_chain(Chain::regular("b"));
    let mut m = Set::map("m", vec![DataType::InetService], DataType::Verdict);
    m.insert(Element::mapping(
        vec![Value::Port(1)],
        Value::Verdict(Verdict::Goto("a".into())),
    ));
    t.insert_set(m.clone());
    old.insert_table(t.clone());
    let mut new = Ruleset::new();
    t.insert_chain(Chain::regular("a"));
    t.insert_chain(
        Chain::regular("b")
            .with_rule(jump("a"))
            .with_rule(Rule::new(vec![Stmt::Vmap {
                key: Expr::Payload(PayloadField::ThDport),
                map: "m".into(),
            }])),
    );
    m.elements.clear();
    t.insert_set(m);
    new.insert_table(t);
    checked(&old, &new);
    checked(&new, &old);
}

#[test]
fn a_set_stored_under_the_wrong_key_is_reported() {
    let old = every_construct();
    let mut new = old.clone();
    let t = table_mut(&mut new);
    let set = t.sets["cluster-ips"].clone();
    t.sets.insert("other".into(), set);
    assert!(matches!(
        diff(&old, &new),
        Err(DiffError::CheckKey { what: "set", .. })
    ));
}
