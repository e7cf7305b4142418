//! Unit tests for `parse_json`.
use super::*;
use serde_json::json;

fn ip_nftproxy() -> TableId {
    TableId::new(Family::Ip, "nftproxy")
}

#[test]
fn other_tables_are_ignored_whatever_they_contain() {
    let listing = json!({"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"table": {"family": "inet", "name": "firewall", "handle": 1}},
        {"chain": {"family": "inet", "table": "firewall", "name": "x", "handle": 2}},
        {"rule": {"family": "inet", "table": "firewall", "chain": "x", "handle": 3,
                  "expr": [{"queue": {"num": 3}}]}},
        {"table": {"family": "ip", "name": "nftproxy", "handle": 4}},
    ]});
    let parsed = Ruleset::from_nft_json(&listing, &[ip_nftproxy()]).unwrap();
    let mut expected = Ruleset::new();
    expected.insert_table(Table::new(Family::Ip, "nftproxy"));
    assert_eq!(parsed, expected);
}

#[test]
fn listed_tcp_dport_becomes_l4proto_match_then_th_dport() {
    let listing = json!({"nftables": [
        {"table": {"family": "ip", "name": "nftproxy"}},
        {"chain": {"family": "ip", "table": "nftproxy", "name": "c"}},
        {"rule": {"family": "ip", "table": "nftproxy", "chain": "c", "handle": 9, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}},
            {"accept": null}]}},
    ]});
    let parsed = Ruleset::from_nft_json(&listing, &[ip_nftproxy()]).unwrap();
    let rules = &parsed.tables[&ip_nftproxy()].chains["c"].rules;
    assert_eq!(
        rules[0].stmts.list().to_vec(),
        vec![
            Stmt::eq(
                Expr::Meta(MetaKey::L4proto),
                Expr::Literal(Value::Proto(L4Proto::Tcp))
            ),
            Stmt::eq(
                Expr::Payload(PayloadField::ThDport),
                Expr::Literal(Value::Port(80))
            ),
            Stmt::Verdict(Verdict::Accept),
        ]
    );
}

#[test]
fn set_lookup_listed_with_equals_is_membership() {
    let listing = json!({"nftables": [
        {"table": {"family": "ip", "name": "nftproxy"}},
        {"chain": {"family": "ip", "table": "nftproxy", "name": "c"}},
        {"rule": {"family": "ip", "table": "nftproxy", "chain": "c", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@s"}}]}},
    ]});
    let parsed = Ruleset::from_nft_json(&listing, &[ip_nftproxy()]).unwrap();
    let stmts = parsed.tables[&ip_nftproxy()].chains["c"].rules[0]
        .stmts
        .list();
    let stmt = &stmts[0];
    assert_eq!(
        stmt,
        &Stmt::is_in(
            Expr::Payload(PayloadField::IpDaddr),
            Expr::SetRef("s".into())
        )
    );
}

#[test]
fn elements_with_an_expiry_are_runtime_state_and_skipped() {
    let listing = json!({"nftables": [
        {"table": {"family": "ip", "name": "nftproxy"}},
        {"set": {"family": "ip", "table": "nftproxy", "name": "aff", "type": "ipv4_addr",
                 "flags": ["timeout"], "timeout": 10800, "size": 65535,
                 "elem": [{"elem": {"val": "198.18.0.1", "timeout": 10800, "expires": 10799}}]}},
    ]});
    let parsed = Ruleset::from_nft_json(&listing, &[ip_nftproxy()]).unwrap();
    let set = &parsed.tables[&ip_nftproxy()].sets["aff"];
    assert!(set.elements.is_empty());
    assert_eq!(set.timeout_secs, Some(10800));
    assert_eq!(set.flags, vec![SetFlag::Timeout]);
}

#[test]
fn unknown_statements_are_errors_not_silently_dropped() {
    let listing = json!({"nftables": [
        {"table": {"family": "ip", "name": "nftproxy"}},
        {"chain": {"family": "ip", "table": "nftproxy", "name": "c"}},
        {"rule": {"family": "ip", "table": "nftproxy", "chain": "c", "expr": [{"queue": {"num": 1}}]}},
    ]});
    let err = Ruleset::from_nft_json(&listing, &[ip_nftproxy()]).unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::Unsupported {
                what: "statement",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("chain c"), "{err}");
}

#[test]
fn a_document_without_nftables_array_is_refused() {
    let err = Ruleset::from_nft_json(&json!({"x": 1}), &[]).unwrap_err();
    assert_eq!(err, ParseError::ReadDocument);
}

#[test]
fn counter_objects_parse_without_their_counts_and_counter_maps_name_them() {
    let listing = json!({"nftables": [
        {"table": {"family": "ip", "name": "nftproxy"}},
        {"counter": {"family": "ip", "name": "counter-X-ns/a/tcp/80", "table": "nftproxy",
                     "handle": 2, "packets": 17, "bytes": 2040}},
        {"map": {"family": "ip", "name": "m", "table": "nftproxy", "type": "inet_service",
                 "handle": 3, "map": "counter", "elem": [[80, "counter-X-ns/a/tcp/80"]]}},
        {"chain": {"family": "ip", "table": "nftproxy", "name": "c"}},
        {"rule": {"family": "ip", "table": "nftproxy", "chain": "c", "handle": 9, "expr": [
            {"counter": {"map": {"key": {"payload": {"protocol": "th", "field": "dport"}},
                                 "data": "@m"}}}
        ]}},
    ]});
    let parsed = Ruleset::from_nft_json(&listing, &[ip_nftproxy()]).unwrap();
    let table = crate::fixtures::counter_table();
    let mut expected = Ruleset::new();
    expected.insert_table(table);
    assert_eq!(parsed, expected);
}
