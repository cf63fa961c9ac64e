//! Golden files: the default outputs, reviewed once and compared on every run.
//!
//! The cases are in `tests/golden/cases.txt`; `UPDATE_GOLDEN=1` rewrites the files. The binary
//! is checked against the same files by `tests/tests/suite/tools_cli.rs`.

#![cfg(test)]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use super::{parse, render};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

/// `(file, arguments)` of every case.
pub fn cases() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(golden_dir().join("cases.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (file, args) = l.split_once('|').unwrap();
            (file.trim().to_string(), args.split_whitespace().map(String::from).collect())
        })
        .collect()
}

#[test]
fn golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(cases.len() >= 5);
    let mut failures = Vec::new();
    for (file, args) in cases {
        let text = render(&parse(args, |_| None).unwrap()).unwrap();
        let path = golden_dir().join(&file);
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != text {
            failures.push(file);
        }
    }
    assert!(failures.is_empty(), "differs from the golden file (review, then UPDATE_GOLDEN=1): {failures:?}");
}
