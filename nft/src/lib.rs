//! nftproxy-nft: libnftables for nftproxy, run in a separate program behind a pipe.
//!
//! nftproxy is licensed MIT OR Apache-2.0 and links Apache-2.0 crates; libnftables is
//! GPL-2.0-only. So nftproxy does not link libnftables: this crate (GPL-2.0-only) does, and
//! its program `nftproxy-nft` runs nft commands for nftproxy. The two are separate programs
//! that exchange nft's own public formats (nft JSON or script in, nft's output or error text
//! out) in the frames of the `nftproxy-wire` crate, over the helper's stdin and stdout.
//!
//! - [`ffi`]: the handful of libnftables functions used.
//! - [`Context`]: one libnftables context, safe to use; errors captured as [`NftError`].
//! - [`Worker`]: a context on a dedicated thread, serving requests from any thread in turn.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod context;
pub mod ffi;
pub mod worker;

pub use context::{Context, NftError};
pub use worker::Worker;
