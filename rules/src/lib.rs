//! nftproxy-rules: a typed model of an nftables ruleset, with rendering, parsing and diffing.
//!
//! This crate speaks nft's own words (table, chain, set, map, element, rule; add, flush,
//! delete) and knows nothing of Kubernetes, async or I/O. The compiler builds a [`Ruleset`];
//! [`diff()`] turns two rulesets into a [`Transaction`]; the controller sends the transaction's
//! JSON to libnftables. `Display` renders the nft script a human reviews.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod apply;
pub mod diff;
pub mod digest;
pub mod element_key;
pub mod expr;
pub mod fixtures;
pub mod graph;
pub mod model;
pub mod object;
pub mod parse_json;
pub mod render_json;
pub mod render_nft;
pub mod slice_view;
pub mod stmts;
pub mod transaction;

pub use apply::{ApplyError, Refusal};
pub use diff::{DiffError, diff};
pub use digest::{DigestMap, EntryDigest};
pub use expr::{
    AddrType, BitOp, CmpOp, CtFlag, CtKey, Expr, FibAddr, L4Proto, MetaKey, PayloadField,
    RejectKind, Stmt, Value, Verdict,
};
pub use graph::{ChainGraph, GraphError, validate, validate_ruleset};
pub use model::{
    BaseChain, Chain, ChainType, DataType, Element, ElementKey, Family, Hook, Policy, Rule, Rules,
    Ruleset, Set, SetFlag, Table, TableId,
};
pub use object::Counter;
pub use parse_json::ParseError;
pub use render_nft::{MAX_COMMENT_LEN, bounded_comment};
pub use slice_view::SliceView;
pub use stmts::Stmts;
pub use transaction::{Op, Transaction, creation_ops, table_creation_ops};
