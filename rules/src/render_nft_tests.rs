//! Unit tests for `render_nft`.
use super::*;
use crate::expr::{BitOp, CtFlag, L4Proto, PayloadField};
use crate::model::{ChainType, DataType, Hook, SetFlag};

fn small_ruleset() -> Ruleset {
    let mut table = Table::new(Family::Ip, "nftproxy");
    let mut map = Set::map(
        "service-ips",
        vec![
            DataType::Ipv4Addr,
            DataType::InetProto,
            DataType::InetService,
        ],
        DataType::Verdict,
    );
    map.insert(
        Element::mapping(
            vec![
                Value::Ipv4([198, 19, 0, 1].into()),
                Value::Proto(L4Proto::Tcp),
                Value::Port(80),
            ],
            Value::Verdict(Verdict::Goto("service-a".into())),
        )
        .with_comment("default/web:http"),
    );
    map.insert(Element::mapping(
        vec![
            Value::Ipv4([198, 19, 0, 2].into()),
            Value::Proto(L4Proto::Udp),
            Value::Port(53),
        ],
        Value::Verdict(Verdict::Drop),
    ));
    table.insert_set(map);
    table.insert_chain(
        Chain::base("nat-prerouting", ChainType::Nat, Hook::Prerouting, -100).with_rule(Rule::new(
            vec![Stmt::Verdict(Verdict::Jump("services".into()))],
        )),
    );
    table.insert_chain(
        Chain::regular("services").with_rule(Rule::new(vec![Stmt::Vmap {
            key: Expr::concat(vec![
                Expr::Payload(PayloadField::IpDaddr),
                Expr::Meta(MetaKey::L4proto),
                Expr::Payload(PayloadField::ThDport),
            ]),
            map: "service-ips".into(),
        }])),
    );
    table.insert_chain(Chain::regular("service-a").with_rule(Rule::new(vec![
        Stmt::Match {
            left: Expr::NumgenRandom { modulus: 3 },
            op: CmpOp::Eq,
            right: Expr::Literal(Value::Int(0)),
        },
        Stmt::eq(
            Expr::Meta(MetaKey::L4proto),
            Expr::Literal(Value::Proto(L4Proto::Tcp)),
        ),
        Stmt::Dnat {
            addr: [198, 18, 0, 1].into(),
            port: Some(8080),
        },
    ])));
    let mut ruleset = Ruleset::new();
    ruleset.insert_table(table);
    ruleset
}

#[test]
fn ruleset_renders_like_nft_list_with_sorted_elements_one_per_line() {
    let expected = "\
table ip nftproxy {
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = {
\t\t\t198.19.0.1 . tcp . 80 comment \"default/web:http\" : goto service-a,
\t\t\t198.19.0.2 . udp . 53 : drop
\t\t}
\t}

\tchain nat-prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump services
\t}

\tchain service-a {
\t\tnumgen random mod 3 == 0 meta l4proto tcp dnat to 198.18.0.1:8080
\t}

\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t}
}
";
    assert_eq!(small_ruleset().to_string(), expected);
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(small_ruleset().to_string(), small_ruleset().to_string());
}

#[test]
fn comments_with_quotes_or_control_characters_are_sanitised() {
    let rule = Rule::new(vec![Stmt::Verdict(Verdict::Accept)])
        .with_comment("a\"; flush ruleset; \"\\\n\u{e9}");
    assert_eq!(
        rule.to_string(),
        "accept comment \"a_; flush ruleset; ____\""
    );
}

#[test]
fn ifnames_cannot_escape_their_quotes_or_fake_a_wildcard() {
    let v = Value::ifname("et\"h*0 x", true);
    assert_eq!(v.to_string(), "\"et_h_0_x*\"");
}

#[test]
fn names_that_nft_cannot_parse_are_made_harmless() {
    let v = Verdict::Jump("x; flush ruleset".into());
    assert_eq!(v.to_string(), "jump x__flush_ruleset");
    assert_eq!(
        safe_name("service-AB/ns/web/tcp/80"),
        "service-AB/ns/web/tcp/80"
    );
}

#[test]
fn flag_matches_and_membership_render_without_operator() {
    let ct = Stmt::is_in(
        Expr::Ct(CtKey::State),
        Expr::Literal(Value::CtFlag(CtFlag::New)),
    );
    assert_eq!(ct.to_string(), "ct state new");
    let ct_eq = Stmt::eq(
        Expr::Ct(CtKey::State),
        Expr::Literal(Value::CtFlag(CtFlag::New)),
    );
    assert_eq!(ct_eq.to_string(), "ct state == new");
    let set = Stmt::is_in(
        Expr::concat(vec![
            Expr::Payload(PayloadField::IpSaddr),
            Expr::Payload(PayloadField::IpDaddr),
        ]),
        Expr::SetRef("endpoint-hairpin".into()),
    );
    assert_eq!(set.to_string(), "ip saddr . ip daddr @endpoint-hairpin");
}

#[test]
fn mark_arithmetic_renders_in_hex() {
    let mark = || Box::new(Expr::Meta(MetaKey::Mark));
    let test = Stmt::eq(
        Expr::Bitwise {
            left: mark(),
            op: BitOp::And,
            right: 0x4000,
        },
        Expr::Literal(Value::Int(0)),
    );
    assert_eq!(test.to_string(), "meta mark & 0x4000 == 0");
    let set = Stmt::SetMark(Expr::Bitwise {
        left: mark(),
        op: BitOp::Or,
        right: 0x4000,
    });
    assert_eq!(set.to_string(), "meta mark set meta mark | 0x4000");
}

#[test]
fn ipv6_dnat_brackets_the_address_and_inet_tables_qualify_it() {
    let addr: IpAddr = "2001:db8::1".parse().unwrap();
    let stmt = Stmt::Dnat {
        addr,
        port: Some(80),
    };
    assert_eq!(stmt.to_string(), "dnat to [2001:db8::1]:80");
    assert_eq!(
        InFamily(&stmt, Some(Family::Inet)).to_string(),
        "dnat ip6 to [2001:db8::1]:80"
    );
}

#[test]
fn set_declaration_lists_flags_timeout_and_comment() {
    let mut set = Set::set("affinity", vec![DataType::Ipv4Addr])
        .with_flag(SetFlag::Timeout)
        .with_flag(SetFlag::Interval);
    set.timeout_secs = Some(10800);
    set.comment = Some("x".into());
    assert_eq!(
        set.to_string(),
        "\tset affinity {\n\t\ttype ipv4_addr\n\t\tflags interval,timeout\n\t\ttimeout 10800s\n\t\tcomment \"x\"\n\t}\n"
    );
}

#[test]
fn transaction_renders_one_command_per_line() {
    let id = TableId::new(Family::Ip, "nftproxy");
    let table = small_ruleset().tables.into_values().next().unwrap();
    let mut tx = Transaction::new();
    tx.push(Op::AddTable(Table::new(Family::Ip, "nftproxy")));
    tx.push(Op::AddSet {
        table: id.clone(),
        set: table.sets["service-ips"].clone(),
    });
    tx.push(Op::AddChain {
        table: id.clone(),
        chain: table.chains["nat-prerouting"].clone(),
    });
    tx.push(Op::AddChain {
        table: id.clone(),
        chain: Chain::regular("services"),
    });
    tx.push(Op::AddRule {
        table: id.clone(),
        chain: "services".into(),
        rule: Rule::new(vec![Stmt::Verdict(Verdict::Accept)]).with_comment("c"),
    });
    tx.push(Op::AddElements {
        table: id.clone(),
        set: "service-ips".into(),
        elements: table.sets["service-ips"]
            .elements
            .values()
            .cloned()
            .collect(),
    });
    tx.push(Op::DeleteElements {
        table: id.clone(),
        set: "service-ips".into(),
        elements: table.sets["service-ips"]
            .elements
            .values()
            .take(1)
            .cloned()
            .collect(),
    });
    tx.push(Op::AddElements {
        table: id.clone(),
        set: "service-ips".into(),
        elements: vec![],
    });
    tx.push(Op::FlushChain {
        table: id.clone(),
        chain: "services".into(),
    });
    tx.push(Op::DeleteChain {
        table: id.clone(),
        chain: "services".into(),
    });
    tx.push(Op::DeleteSet {
        table: id.clone(),
        set: "service-ips".into(),
    });
    tx.push(Op::DeleteTable(id));
    let expected = "\
add table ip nftproxy
add map ip nftproxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
add chain ip nftproxy nat-prerouting { type nat hook prerouting priority -100; policy accept; }
add chain ip nftproxy services
add rule ip nftproxy services accept comment \"c\"
add element ip nftproxy service-ips { 198.19.0.1 . tcp . 80 comment \"default/web:http\" : goto service-a, 198.19.0.2 . udp . 53 : drop }
delete element ip nftproxy service-ips { 198.19.0.1 . tcp . 80 }
flush chain ip nftproxy services
delete chain ip nftproxy services
delete set ip nftproxy service-ips
delete table ip nftproxy
";
    assert_eq!(tx.to_string(), expected);
}

#[test]
fn counters_render_first_and_counter_maps_quote_their_values() {
    let table = crate::fixtures::counter_table();
    assert_eq!(
        table.to_string(),
        "table ip nftproxy {\n\tcounter counter-X-ns/a/tcp/80 { }\n\n\tmap m {\n\t\ttype inet_service : counter\n\t\telements = {\n\t\t\t80 : \"counter-X-ns/a/tcp/80\"\n\t\t}\n\t}\n\n\tchain c {\n\t\tcounter name th dport map @m\n\t}\n}\n"
    );
    let id = table.id();
    let add = Op::AddCounter {
        table: id.clone(),
        counter: "counter-X-ns/a/tcp/80".into(),
    };
    assert_eq!(
        add.to_string(),
        "add counter ip nftproxy counter-X-ns/a/tcp/80"
    );
    let del = Op::DeleteCounter {
        table: id,
        counter: "c".into(),
    };
    assert_eq!(del.to_string(), "delete counter ip nftproxy c");
}

#[test]
fn a_created_table_writes_each_set_s_elements_in_one_command_and_everything_else_as_its_ops() {
    let mut table = crate::fixtures::every_construct()
        .tables
        .into_values()
        .next()
        .unwrap();
    let mut big = Set::set("big", vec![DataType::Ipv4Addr]);
    let count = 3 * crate::transaction::ELEMENTS_PER_OP + 7;
    for i in 0..count {
        let addr = std::net::Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap());
        big.insert(Element::key(vec![Value::Ipv4(addr)]));
    }
    table.insert_set(big);
    let tx = Transaction {
        ops: vec![Op::CreateTable(table.clone())],
    };
    let script = tx.to_string();
    let big_lines: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("add element ip ") && l.contains(" big "))
        .collect();
    assert_eq!(big_lines.len(), 1, "one command for the big set");
    assert_eq!(big_lines[0].matches(", ").count() + 1, count);
    // Apart from the element commands, the lines are those of the ops, in order; and the
    // element commands hold exactly the elements of the ops.
    let ops = crate::transaction::table_creation_ops(&table);
    let op_lines: Vec<String> = ops
        .iter()
        .filter(|op| !matches!(op, Op::AddElements { .. }))
        .map(ToString::to_string)
        .collect();
    let script_lines: Vec<&str> = script
        .lines()
        .filter(|l| !l.starts_with("add element "))
        .collect();
    assert_eq!(script_lines, op_lines);
    let mut from_ops: Vec<String> = ops
        .iter()
        .filter_map(|op| match op {
            Op::AddElements { set, elements, .. } => Some(
                elements
                    .iter()
                    .map(|e| format!("{set} {e}"))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    let mut from_script: Vec<String> = Vec::new();
    for set in table.sets.values() {
        from_script.extend(set.elements.values().map(|e| format!("{} {e}", set.name)));
    }
    from_ops.sort();
    from_script.sort();
    assert_eq!(from_ops, from_script);
    let element_commands = script
        .lines()
        .filter(|l| l.starts_with("add element "))
        .count();
    let filled = table
        .sets
        .values()
        .filter(|s| !s.elements.is_empty())
        .count();
    assert_eq!(element_commands, filled);
}
