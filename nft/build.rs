//! Links libnftables, found through pkg-config (Debian: libnftables-dev provides libnftables.pc).

fn main() {
    // 1.0.6 (Debian 12) is the version this crate is built and tested against; the symbols
    // it declares are older, but the buffer and JSON behaviour it relies on was checked there.
    if let Err(err) = pkg_config::Config::new()
        .atleast_version("1.0.6")
        .probe("libnftables")
    {
        eprintln!("libnftables not found through pkg-config: {err}");
        eprintln!("install it (Debian/Ubuntu: apt-get install libnftables-dev pkg-config)");
        std::process::exit(1);
    }
}
