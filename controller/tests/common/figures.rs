//! Figures a test measured: printed, and appended to `NFTPROXY_FIGURES_FILE` so CI's log shows them.

use std::io::Write;

/// Prints `line` (visible with `--nocapture`) and appends it to the file named by
/// `NFTPROXY_FIGURES_FILE`, which `scripts/test.sh` prints after the suite.
pub fn report(line: &str) {
    println!("{line}");
    let Some(path) = std::env::var_os("NFTPROXY_FIGURES_FILE") else {
        return;
    };
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(error) = appended {
        panic!("cannot append to {}: {error}", path.to_string_lossy());
    }
}
