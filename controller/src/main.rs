//! nftproxy: the binary (CLI entry point).

fn main() {}
