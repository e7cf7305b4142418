//! [`ElementKey`], a set element's key: common shapes kept inline, others shared.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::expr::{L4Proto, Value};
use crate::slice_view::SliceView;

/// The key of a set element: one value per component of the key type.
///
/// The keys of nftproxy's big sets have a few shapes: an address (`cluster-ips`), two IPv4
/// addresses (`endpoint-hairpin`, one element per endpoint), address . protocol . port (the
/// service maps) and protocol . port (NodePorts). Those are kept inline, in 24 bytes with no
/// allocation; any other key is a shared slice (`Arc`: a set holds each key twice, as the
/// element's own and as the key it is stored under, and cloning it is a reference count).
/// The form is canonical (every constructor keeps a key of those shapes inline), so the
/// derived equality and hash follow the values; keys order as their value lists do.
/// Read the values with [`ElementKey::values`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ElementKey(Form);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Form {
    Shared(Arc<[Value]>),
    Addr(IpAddr),
    AddrPair4(Ipv4Addr, Ipv4Addr),
    Vip(IpAddr, L4Proto, Port),
    ProtoPort(L4Proto, Port),
}

/// A port in network byte order: byte arrays keep the inline forms at alignment 1, and
/// big-endian bytes order as the numbers do.
type Port = [u8; 2];

fn addr(value: &Value) -> Option<IpAddr> {
    match value {
        Value::Ipv4(a) => Some(IpAddr::V4(*a)),
        Value::Ipv6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn addr_value(addr: IpAddr) -> Value {
    match addr {
        IpAddr::V4(a) => Value::Ipv4(a),
        IpAddr::V6(a) => Value::Ipv6(a),
    }
}

fn port_value(port: Port) -> Value {
    Value::Port(u16::from_be_bytes(port))
}

impl Form {
    /// The inline form of `values`, when they have one of the inline shapes.
    fn inline(values: &[Value]) -> Option<Form> {
        match values {
            [one] => addr(one).map(Form::Addr),
            [Value::Ipv4(a), Value::Ipv4(b)] => Some(Form::AddrPair4(*a, *b)),
            [Value::Proto(proto), Value::Port(port)] => {
                Some(Form::ProtoPort(*proto, port.to_be_bytes()))
            }
            [ip, Value::Proto(proto), Value::Port(port)] => {
                addr(ip).map(|ip| Form::Vip(ip, *proto, port.to_be_bytes()))
            }
            _ => None,
        }
    }
}

impl ElementKey {
    /// The key's values, as a slice (made on the spot for an inline key).
    pub fn values(&self) -> SliceView<'_, Value> {
        let inline = |values: [Value; 3], len| SliceView::Made(values, len);
        match &self.0 {
            Form::Shared(values) => SliceView::Borrowed(values),
            Form::Addr(a) => inline([addr_value(*a), Value::Int(0), Value::Int(0)], 1),
            Form::AddrPair4(a, b) => inline([Value::Ipv4(*a), Value::Ipv4(*b), Value::Int(0)], 2),
            Form::Vip(a, proto, port) => {
                inline([addr_value(*a), Value::Proto(*proto), port_value(*port)], 3)
            }
            Form::ProtoPort(proto, port) => {
                inline([Value::Proto(*proto), port_value(*port), Value::Int(0)], 2)
            }
        }
    }

    /// The number of values (components of the key type).
    pub fn len(&self) -> usize {
        match &self.0 {
            Form::Shared(values) => values.len(),
            Form::Addr(_) => 1,
            Form::AddrPair4(..) | Form::ProtoPort(..) => 2,
            Form::Vip(..) => 3,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<Value>> for ElementKey {
    fn from(values: Vec<Value>) -> Self {
        ElementKey(Form::inline(&values).unwrap_or_else(|| Form::Shared(values.into())))
    }
}

impl<const N: usize> From<[Value; N]> for ElementKey {
    fn from(values: [Value; N]) -> Self {
        ElementKey(Form::inline(&values).unwrap_or_else(|| Form::Shared(Arc::new(values))))
    }
}

impl fmt::Debug for ElementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ElementKey")
            .field(&&self.values()[..])
            .finish()
    }
}

/// Keys order as their value lists do, whatever their forms. Two keys of the same inline
/// form compare field by field, which gives the same order (`Value` orders IPv4 before
/// IPv6 as `IpAddr` does, and ports are big-endian) without making the values.
impl Ord for ElementKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (Form::Addr(a), Form::Addr(b)) => a.cmp(b),
            (Form::AddrPair4(a, b), Form::AddrPair4(c, d)) => (a, b).cmp(&(c, d)),
            (Form::Vip(a, p, n), Form::Vip(b, q, m)) => (a, p, n).cmp(&(b, q, m)),
            (Form::ProtoPort(p, n), Form::ProtoPort(q, m)) => (p, n).cmp(&(q, m)),
            _ => self.values()[..].cmp(&other.values()[..]),
        }
    }
}

impl PartialOrd for ElementKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| Value::Ipv4(Ipv4Addr::from(o))),
            any::<[u8; 16]>().prop_map(|o| Value::Ipv6(Ipv6Addr::from(o))),
            prop_oneof![Just(L4Proto::Tcp), Just(L4Proto::Udp), Just(L4Proto::Sctp)]
                .prop_map(Value::Proto),
            any::<u16>().prop_map(Value::Port),
            any::<u32>().prop_map(Value::Int),
        ]
    }

    /// Keys biased to the inline shapes, with some of every other shape.
    fn values() -> impl Strategy<Value = Vec<Value>> {
        let ip4 = || any::<[u8; 4]>().prop_map(|o| Value::Ipv4(Ipv4Addr::from(o)));
        let ip = || {
            prop_oneof![
                ip4(),
                any::<[u8; 16]>().prop_map(|o| Value::Ipv6(Ipv6Addr::from(o)))
            ]
        };
        let proto = || prop_oneof![Just(L4Proto::Tcp), Just(L4Proto::Udp)].prop_map(Value::Proto);
        // Few small ports (equal keys are common) and any port (order across bytes).
        let port = || prop_oneof![0u16..4, any::<u16>()].prop_map(Value::Port);
        prop_oneof![
            ip().prop_map(|a| vec![a]),
            (ip4(), ip4()).prop_map(|(a, b)| vec![a, b]),
            (ip(), proto(), port()).prop_map(|(a, p, n)| vec![a, p, n]),
            (proto(), port()).prop_map(|(p, n)| vec![p, n]),
            prop::collection::vec(value(), 0..4),
        ]
    }

    proptest! {
        #[test]
        fn keys_read_back_and_compare_as_their_values(a in values(), b in values()) {
            let (ka, kb) = (ElementKey::from(a.clone()), ElementKey::from(b.clone()));
            prop_assert_eq!(&ka.values()[..], &a[..]);
            prop_assert_eq!(ka.len(), a.len());
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
            if a == b {
                prop_assert_eq!(crate::digest::digest(&ka), crate::digest::digest(&kb));
            }
        }
    }

    #[test]
    fn the_big_sets_keys_are_inline_and_others_shared() {
        let v4 = Value::Ipv4(Ipv4Addr::new(198, 18, 0, 1));
        let v6 = Value::Ipv6(Ipv6Addr::LOCALHOST);
        let tcp = Value::Proto(L4Proto::Tcp);
        let inline = [
            vec![v4.clone()],
            vec![v6.clone()],
            vec![v4.clone(), v4.clone()],
            vec![v6.clone(), tcp.clone(), Value::Port(80)],
            vec![tcp.clone(), Value::Port(30080)],
        ];
        for values in inline {
            let key = ElementKey::from(values.clone());
            assert!(!matches!(key.0, Form::Shared(_)), "{values:?}");
            assert_eq!(format!("{key:?}"), format!("ElementKey({values:?})"));
        }
        let shared = [vec![v6.clone(), v6], vec![Value::Port(1)], vec![v4, tcp]];
        for values in shared {
            assert!(matches!(
                ElementKey::from(values.clone()).0,
                Form::Shared(_)
            ));
        }
        assert_eq!(
            ElementKey::from([Value::Port(7)]),
            ElementKey::from(vec![Value::Port(7)])
        );
    }

    #[test]
    fn an_inline_key_is_no_bigger_than_three_words() {
        assert!(std::mem::size_of::<ElementKey>() <= 24);
    }
}
