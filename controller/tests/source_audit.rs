//! Audits of the shipped source (every crate's `src/`, test modules left out): nftproxy
//! starts one program, its own helper, with no arguments and no shell, so no object from
//! the cluster can ever reach a command line; and every `unsafe` block carries the
//! `// SAFETY:` note that justifies it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

const CRATES: [&str; 5] = ["rules", "compiler", "controller", "nft", "wire"];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The shipped source: each file's lines up to its `#[cfg(test)]` module, without the
/// files that are test modules themselves (`tests.rs`, `*_tests.rs`, `tests/`).
fn shipped_sources() -> Vec<(PathBuf, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in CRATES {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 50, "found the sources: {}", files.len());
    files
        .into_iter()
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            let in_tests_dir = path.components().any(|c| c.as_os_str() == "tests");
            name != "tests.rs" && !name.ends_with("_tests.rs") && !in_tests_dir
        })
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text
                .lines()
                .take_while(|l| l.trim() != "#[cfg(test)]")
                .map(str::to_owned)
                .collect();
            (path, lines)
        })
        .collect()
}

fn relative(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn the_only_program_nftproxy_starts_is_its_helper_without_arguments() {
    let mut spawns = Vec::new();
    for (path, lines) in shipped_sources() {
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains("Command::new") || code.contains("libc::exec") {
                // The spawn and the builder calls that follow it, up to `.spawn()`.
                let call: Vec<&str> = lines[i..]
                    .iter()
                    .map(String::as_str)
                    .take_while(|l| !l.contains(".spawn()"))
                    .collect();
                spawns.push((relative(&path), i + 1, call.join("\n")));
            }
        }
    }
    assert_eq!(spawns.len(), 1, "{spawns:#?}");
    let (file, _, call) = &spawns[0];
    assert_eq!(file, "controller/src/kernel/helper.rs", "{spawns:#?}");
    assert!(call.contains("Command::new(&self.path)"), "{call}");
    for forbidden in [
        ".arg(", ".args(", ".env(", ".envs(", "\"sh\"", "/bin/sh", "\"-c\"",
    ] {
        assert!(
            !call.contains(forbidden),
            "the helper is started with nothing but its path: {call}"
        );
    }
}

#[test]
fn every_unsafe_block_has_a_safety_note() {
    let mut missing = Vec::new();
    let mut blocks = 0;
    for (path, lines) in shipped_sources() {
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if !code.contains("unsafe {") {
                continue;
            }
            blocks += 1;
            // The note is in the comment lines right above the statement (or on its line).
            let above = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim_start();
                    t.starts_with("//")
                        || t.starts_with("let ")
                        || t.ends_with('(')
                        || t.ends_with('=')
                        || t.is_empty()
                })
                .any(|l| l.contains("SAFETY:"));
            if !(above || line.contains("SAFETY:")) {
                missing.push(format!("{}:{}: {}", relative(&path), i + 1, line.trim()));
            }
        }
    }
    assert!(blocks > 5, "found the unsafe blocks: {blocks}");
    assert!(
        missing.is_empty(),
        "unsafe without a SAFETY note:\n{}",
        missing.join("\n")
    );
}
