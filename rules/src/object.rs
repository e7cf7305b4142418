//! Named stateful objects of a table: counters (`counter NAME { }`).
//!
//! A counter object is declared by name only. The kernel keeps its packet and byte counts;
//! the model does not, so a listed table (whose counters carry values) parses back equal to
//! the declared one and a full sync never resets a counter. Rules reach counters through
//! maps whose value type is `counter` ([`crate::DataType::Counter`]): `counter name KEY map
//! @MAP` ([`crate::Stmt::CounterMap`]), with elements whose value is
//! [`crate::Value::ObjRef`].

use crate::digest::EntryDigest;

/// A named counter object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Counter {
    pub name: String,
}

impl Counter {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl EntryDigest<String> for Counter {
    /// A counter is its name: the map key's digest stands for it.
    fn entry_digest(&self, key_digest: u128) -> u128 {
        key_digest
    }
}
