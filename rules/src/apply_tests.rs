//! Unit tests for `apply`.
use super::*;
use crate::expr::{Expr, PayloadField, Verdict};
use crate::fixtures::every_construct;
use crate::model::{Chain, ChainType, DataType, Family, Hook};

fn ip() -> TableId {
    TableId::new(Family::Ip, "nftproxy")
}

fn tx(ops: Vec<Op>) -> Transaction {
    Transaction { ops }
}

fn jump(to: &str) -> Rule {
    Rule::new(vec![Stmt::Verdict(Verdict::Jump(to.into()))])
}

#[test]
fn adding_a_rule_that_jumps_to_a_missing_chain_is_refused() {
    let t = tx(vec![Op::AddRule {
        table: ip(),
        chain: "services".into(),
        rule: jump("nope"),
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(
        matches!(err, ApplyError::AddRule { refusal: Refusal::MissingChain(c), .. } if c == "nope")
    );
}

#[test]
fn deleting_a_chain_that_a_map_element_jumps_to_is_refused() {
    let service = "service-ABCDEFGH-default/web/tcp/http";
    let t = tx(vec![
        Op::FlushChain {
            table: ip(),
            chain: service.into(),
        },
        Op::DeleteChain {
            table: ip(),
            chain: service.into(),
        },
    ]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(
        matches!(&err, ApplyError::DeleteChain { index: 1, refusal: Refusal::StillReferenced(by), .. } if by.starts_with("map ")),
        "{err}"
    );
}

#[test]
fn deleting_a_non_empty_chain_is_refused() {
    let t = tx(vec![Op::DeleteChain {
        table: ip(),
        chain: "masquerading".into(),
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::DeleteChain {
            refusal: Refusal::ChainNotEmpty,
            ..
        }
    ));
}

#[test]
fn deleting_a_set_a_rule_uses_is_refused() {
    let t = tx(vec![Op::DeleteSet {
        table: ip(),
        set: "cluster-ips".into(),
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::DeleteSet {
            refusal: Refusal::StillReferenced(_),
            ..
        }
    ));
}

#[test]
fn deleting_a_missing_element_is_refused_and_nothing_changes() {
    let r = every_construct();
    let t = tx(vec![
        Op::FlushChain {
            table: ip(),
            chain: "services".into(),
        },
        Op::DeleteElements {
            table: ip(),
            set: "cluster-ips".into(),
            elements: vec![Element::key(vec![Value::Ipv4([10, 0, 0, 1].into())])],
        },
    ]);
    let err = t.apply_to(&r).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::DeleteElements {
            index: 1,
            refusal: Refusal::MissingElement(_),
            ..
        }
    ));
    assert_eq!(r, every_construct());
}

#[test]
fn adding_an_element_with_the_wrong_key_arity_is_refused() {
    let t = tx(vec![Op::AddElements {
        table: ip(),
        set: "endpoint-hairpin".into(),
        elements: vec![Element::key(vec![Value::Ipv4([10, 0, 0, 1].into())])],
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::AddElements {
            refusal: Refusal::KeyArity(_, 1, 2),
            ..
        }
    ));
}

#[test]
fn adding_existing_objects_with_the_same_declaration_is_a_no_op() {
    let r = every_construct();
    let table = r.table(&ip()).unwrap();
    let existing = table.sets["cluster-ips"]
        .elements
        .values()
        .cloned()
        .collect();
    let t = tx(vec![
        Op::AddTable(table.declaration()),
        Op::AddChain {
            table: ip(),
            chain: table.chains["services"].clone(),
        },
        Op::AddSet {
            table: ip(),
            set: table.sets["cluster-ips"].clone(),
        },
        Op::AddElements {
            table: ip(),
            set: "cluster-ips".into(),
            elements: existing,
        },
    ]);
    assert_eq!(t.apply_to(&r), Ok(r));
}

#[test]
fn adding_a_chain_that_exists_with_another_declaration_is_refused() {
    let chain = Chain::base("services", ChainType::Filter, Hook::Input, 0);
    let t = tx(vec![Op::AddChain { table: ip(), chain }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::AddChain {
            refusal: Refusal::DeclarationDiffers,
            ..
        }
    ));
}

#[test]
fn a_rule_that_closes_a_loop_is_refused() {
    let t = tx(vec![Op::AddRule {
        table: ip(),
        chain: "masquerading".into(),
        rule: jump("services"),
    }]);
    assert_eq!(
        t.apply_to(&every_construct()),
        Ok({
            let mut r = every_construct();
            r.table_mut(&ip())
                .unwrap()
                .chains
                .get_mut("masquerading")
                .unwrap()
                .push(jump("services"));
            r
        })
    );
    let looping = tx(vec![
        Op::AddRule {
            table: ip(),
            chain: "masquerading".into(),
            rule: jump("services"),
        },
        Op::AddRule {
            table: ip(),
            chain: "services".into(),
            rule: jump("masquerading"),
        },
    ]);
    let err = looping.apply_to(&every_construct()).unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::AddRule {
                index: 1,
                refusal: Refusal::Loop(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn jumping_to_a_base_chain_is_refused() {
    let t = tx(vec![Op::AddRule {
        table: ip(),
        chain: "services".into(),
        rule: jump("nat-output"),
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::AddRule {
            refusal: Refusal::JumpToBaseChain(_),
            ..
        }
    ));
}

#[test]
fn a_vmap_on_a_plain_set_is_refused() {
    let rule = Rule::new(vec![Stmt::Vmap {
        key: Expr::Payload(PayloadField::IpDaddr),
        map: "cluster-ips".into(),
    }]);
    let t = tx(vec![Op::AddRule {
        table: ip(),
        chain: "services".into(),
        rule,
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::AddRule {
            refusal: Refusal::NotVerdictMap(_),
            ..
        }
    ));
}

#[test]
fn adding_to_a_missing_table_is_refused() {
    let t = tx(vec![Op::AddSet {
        table: TableId::new(Family::Inet, "x"),
        set: Set::set("s", vec![DataType::Ipv4Addr]),
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::AddSet {
            refusal: Refusal::MissingTable,
            ..
        }
    ));
}

const COUNTER: &str = "counter-ABCDEFGH-default/web/tcp/http";

#[test]
fn deleting_a_counter_a_map_element_names_is_refused() {
    let t = tx(vec![Op::DeleteCounter {
        table: ip(),
        counter: COUNTER.into(),
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::DeleteCounter { refusal: Refusal::StillReferenced(m), .. } if m == "map service-counters"
    ));
}

#[test]
fn a_counter_map_element_naming_a_missing_counter_is_refused() {
    let t = tx(vec![Op::AddElements {
        table: ip(),
        set: "service-counters".into(),
        elements: vec![Element::mapping(
            vec![
                Value::Ipv4([198, 19, 0, 99].into()),
                Value::Proto(crate::expr::L4Proto::Udp),
                Value::Port(53),
            ],
            Value::ObjRef("nope".into()),
        )],
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::AddElements { refusal: Refusal::MissingCounter(c), .. } if c == "nope"
    ));
}

#[test]
fn counting_through_a_verdict_map_is_refused() {
    let t = tx(vec![Op::AddRule {
        table: ip(),
        chain: "services".into(),
        rule: Rule::new(vec![Stmt::CounterMap {
            key: Expr::Payload(PayloadField::ThDport),
            map: "service-ips".into(),
        }]),
    }]);
    let err = t.apply_to(&every_construct()).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::AddRule { refusal: Refusal::NotCounterMap(m), .. } if m == "service-ips"
    ));
}

#[test]
fn an_unused_counter_is_deleted_and_a_new_one_added() {
    let idle = "counter-IJKLMNOP-default/idle/udp/53";
    let t = tx(vec![
        Op::DeleteCounter {
            table: ip(),
            counter: idle.into(),
        },
        Op::AddCounter {
            table: ip(),
            counter: "fresh".into(),
        },
    ]);
    let after = t.apply_to(&every_construct()).unwrap();
    let table = after.table(&ip()).unwrap();
    assert!(!table.counters.contains_key(idle));
    assert!(table.counters.contains_key("fresh"));
}
