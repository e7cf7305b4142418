//! The `nftproxy` binary as a user runs it.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// `nftproxy compile --hostname node-1 FILE`, with no `RUST_LOG` from the environment.
pub fn compile_file(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nftproxy"))
        .args(["compile", "--hostname", "node-1"])
        .arg(file)
        .env_remove("RUST_LOG")
        .output()
        .expect("nftproxy runs")
}
