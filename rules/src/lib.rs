//! nftproxy-rules: a typed model of an nftables ruleset, with rendering, parsing and diffing.
//!
//! This crate speaks nft's own words (table, chain, set, map, element, rule; add, flush,
//! delete) and knows nothing of Kubernetes, async or I/O. The compiler builds a [`Ruleset`];
//! [`diff`] turns two rulesets into a [`Transaction`]; the controller sends the transaction's
//! JSON to libnftables. `Display` renders the nft script a human reviews.

pub mod expr;
pub mod model;
pub mod transaction;

pub use expr::{
    AddrType, BitOp, CmpOp, CtFlag, CtKey, Expr, FibAddr, L4Proto, MetaKey, PayloadField,
    RejectKind, Stmt, Value, Verdict,
};
pub use model::{
    BaseChain, Chain, ChainType, DataType, Element, ElementKey, Family, Hook, Policy, Rule,
    Ruleset, Set, SetFlag, Table, TableId,
};
pub use transaction::{Op, Transaction};
