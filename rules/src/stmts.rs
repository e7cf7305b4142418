//! [`Stmts`], a rule's statements: a boxed list, or the endpoint rule's shape kept inline.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;

use crate::expr::{CmpOp, Expr, L4Proto, MetaKey, Stmt, Value};
use crate::slice_view::SliceView;

/// The statements of a rule, evaluated left to right.
///
/// Most rules of a big ruleset are endpoint rules, one per endpoint of each service port:
/// `[numgen random mod K == 0] meta l4proto P dnat to ADDR[:PORT]`. Kept as a list, each
/// would take a heap allocation of three 56-byte statements; that shape is kept inline
/// instead (no allocation), and every other list as a boxed slice. The form is canonical:
/// every constructor keeps a list of that shape inline, so equal statements always have
/// equal forms and the derived equality and hash follow the contents. Read the statements
/// with [`Stmts::list`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Stmts(Form);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Form {
    List(Box<[Stmt]>),
    Dnat(DnatRule),
}

/// `[numgen random mod MODULUS == 0] meta l4proto PROTO dnat to ADDR[:PORT]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DnatRule {
    modulus: Option<NonZeroU32>,
    proto: L4Proto,
    addr: IpAddr,
    port: Option<u16>,
}

impl DnatRule {
    /// The inline form of `stmts`, when they have the endpoint rule's shape.
    fn of(stmts: &[Stmt]) -> Option<DnatRule> {
        let modulus = stmts.first().and_then(numgen_modulus);
        let rest = &stmts[usize::from(modulus.is_some())..];
        match rest {
            [
                Stmt::Match {
                    left: Expr::Meta(MetaKey::L4proto),
                    op: CmpOp::Eq,
                    right: Expr::Literal(Value::Proto(proto)),
                },
                Stmt::Dnat { addr, port },
            ] => Some(DnatRule {
                modulus,
                proto: *proto,
                addr: *addr,
                port: *port,
            }),
            _ => None,
        }
    }

    /// The statements this stands for (two or three).
    fn expand(self) -> ([Stmt; 3], usize) {
        let l4proto = Stmt::eq(
            Expr::Meta(MetaKey::L4proto),
            Expr::Literal(Value::Proto(self.proto)),
        );
        let dnat = Stmt::Dnat {
            addr: self.addr,
            port: self.port,
        };
        match self.modulus {
            Some(modulus) => (
                [
                    Stmt::eq(
                        Expr::NumgenRandom {
                            modulus: modulus.get(),
                        },
                        Expr::Literal(Value::Int(0)),
                    ),
                    l4proto,
                    dnat,
                ],
                3,
            ),
            // The third entry is never read: `len` is 2.
            None => ([l4proto, dnat, Stmt::Counter], 2),
        }
    }
}

/// `K` of `numgen random mod K == 0`, for a non-zero `K`.
fn numgen_modulus(stmt: &Stmt) -> Option<NonZeroU32> {
    match stmt {
        Stmt::Match {
            left: Expr::NumgenRandom { modulus },
            op: CmpOp::Eq,
            right: Expr::Literal(Value::Int(0)),
        } => NonZeroU32::new(*modulus),
        _ => None,
    }
}

impl Stmts {
    /// The statements, as a slice (made on the spot for the inline form).
    pub fn list(&self) -> SliceView<'_, Stmt> {
        match &self.0 {
            Form::List(list) => SliceView::Borrowed(list),
            Form::Dnat(rule) => {
                let (stmts, len) = rule.expand();
                SliceView::Made(stmts, len)
            }
        }
    }

    /// The statements that may refer to a chain, set or map (jump, goto, vmap, set
    /// lookups, counter maps, set updates): all of a boxed list, none of the inline form,
    /// whose statements refer to nothing. Borrowed from the rule, unlike [`Stmts::list`].
    pub fn referring(&self) -> &[Stmt] {
        match &self.0 {
            Form::List(list) => list,
            Form::Dnat(_) => &[],
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Form::List(list) => list.len(),
            Form::Dnat(rule) => 2 + usize::from(rule.modulus.is_some()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_vec(self) -> Vec<Stmt> {
        match self.0 {
            Form::List(list) => list.into_vec(),
            Form::Dnat(_) => self.list().to_vec(),
        }
    }
}

impl From<Vec<Stmt>> for Stmts {
    fn from(stmts: Vec<Stmt>) -> Self {
        match DnatRule::of(&stmts) {
            Some(rule) => Stmts(Form::Dnat(rule)),
            None => Stmts(Form::List(stmts.into_boxed_slice())),
        }
    }
}

impl From<Box<[Stmt]>> for Stmts {
    fn from(stmts: Box<[Stmt]>) -> Self {
        match DnatRule::of(&stmts) {
            Some(rule) => Stmts(Form::Dnat(rule)),
            None => Stmts(Form::List(stmts)),
        }
    }
}

impl<const N: usize> From<[Stmt; N]> for Stmts {
    fn from(stmts: [Stmt; N]) -> Self {
        Stmts::from(Box::<[Stmt]>::from(stmts))
    }
}

impl FromIterator<Stmt> for Stmts {
    fn from_iter<I: IntoIterator<Item = Stmt>>(iter: I) -> Self {
        Stmts::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl fmt::Debug for Stmts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list().iter()).finish()
    }
}

/// Statements order as their lists do, whatever their forms.
impl Ord for Stmts {
    fn cmp(&self, other: &Self) -> Ordering {
        self.list()[..].cmp(&other.list()[..])
    }
}

impl PartialOrd for Stmts {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn endpoint_rule(modulus: Option<u32>, port: Option<u16>) -> Vec<Stmt> {
        let mut stmts = Vec::new();
        if let Some(modulus) = modulus {
            stmts.push(Stmt::eq(
                Expr::NumgenRandom { modulus },
                Expr::Literal(Value::Int(0)),
            ));
        }
        stmts.push(Stmt::eq(
            Expr::Meta(MetaKey::L4proto),
            Expr::Literal(Value::Proto(L4Proto::Udp)),
        ));
        stmts.push(Stmt::Dnat {
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
            port,
        });
        stmts
    }

    #[test]
    fn endpoint_rules_are_kept_inline_and_read_back_unchanged() {
        for stmts in [
            endpoint_rule(Some(7), Some(8080)),
            endpoint_rule(None, Some(53)),
            endpoint_rule(Some(2), None),
        ] {
            let kept = Stmts::from(stmts.clone());
            assert!(matches!(kept.0, Form::Dnat(_)), "{stmts:?}");
            assert_eq!(&kept.list()[..], &stmts[..]);
            assert_eq!(kept.len(), stmts.len());
            assert_eq!(kept.clone().into_vec(), stmts);
        }
    }

    #[test]
    fn the_inline_form_refers_to_nothing() {
        let kept = Stmts::from(endpoint_rule(Some(3), Some(80)));
        assert!(kept.referring().is_empty());
        for stmt in kept.list().iter() {
            assert_eq!(stmt.target(), None);
            crate::graph::stmt_set_refs(stmt, &mut |set| panic!("refers to {set}"));
        }
        let listed = Stmts::from(vec![Stmt::Counter, Stmt::Counter]);
        assert_eq!(listed.referring().len(), 2);
    }

    #[test]
    fn other_lists_are_kept_as_they_are() {
        let mut modulus_zero = endpoint_rule(Some(0), Some(80));
        let mut with_counter = endpoint_rule(None, Some(80));
        with_counter.insert(0, Stmt::Counter);
        let mut ne_proto = endpoint_rule(None, Some(80));
        ne_proto[0] = Stmt::ne(
            Expr::Meta(MetaKey::L4proto),
            Expr::Literal(Value::Proto(L4Proto::Udp)),
        );
        let mut numgen_one = endpoint_rule(Some(3), Some(80));
        numgen_one[0] = Stmt::eq(
            Expr::NumgenRandom { modulus: 3 },
            Expr::Literal(Value::Int(1)),
        );
        modulus_zero.truncate(3);
        for stmts in [modulus_zero, with_counter, ne_proto, numgen_one, Vec::new()] {
            let kept = Stmts::from(stmts.clone());
            assert!(matches!(kept.0, Form::List(_)), "{stmts:?}");
            assert_eq!(&kept.list()[..], &stmts[..]);
        }
    }

    #[test]
    fn equality_hash_and_order_follow_the_statements_whatever_the_constructor() {
        let a = endpoint_rule(Some(4), Some(80));
        let b = endpoint_rule(Some(5), Some(80));
        let from_vec = Stmts::from(a.clone());
        let from_box = Stmts::from(a.clone().into_boxed_slice());
        let from_iter: Stmts = a.iter().cloned().collect();
        assert_eq!(from_vec, from_box);
        assert_eq!(from_vec, from_iter);
        assert_eq!(
            crate::digest::digest(&from_vec),
            crate::digest::digest(&from_box)
        );
        let other = Stmts::from(b.clone());
        assert_ne!(from_vec, other);
        assert_eq!(from_vec.cmp(&other), a.cmp(&b));
        let listed = Stmts::from(vec![Stmt::Counter]);
        assert_eq!(from_vec.cmp(&listed), a[..].cmp(&[Stmt::Counter][..]));
        assert_eq!(format!("{from_vec:?}"), format!("{a:?}"));
    }

    #[test]
    fn an_endpoint_rule_takes_no_more_room_than_a_boxed_list_and_a_word() {
        assert!(std::mem::size_of::<Stmts>() <= 32);
    }
}
